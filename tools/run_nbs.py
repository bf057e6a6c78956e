"""Execute notebooks in place so that their stored outputs (figures, tables) are current, then clean them.
Cells marked `#| eval: false` are skipped, as nbdev_test skips them.

    python tools/run_nbs.py                 # every notebook in nbs/
    python tools/run_nbs.py nbs/00_scalar.ipynb
"""
import os, re, sys, subprocess
from pathlib import Path
from execnb.shell import CaptureShell

ROOT = Path(__file__).resolve().parents[1]

if __name__ == '__main__':
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    paths = [Path(p).resolve() for p in sys.argv[1:]] or sorted((ROOT / 'nbs').glob('*.ipynb'))
    for p in paths:
        os.chdir(p.parent)
        print('executing', p.name, flush=True)
        # like nbdev_test, skip cells marked `#| eval: false` (their stored outputs, if any, are kept)
        skip = lambda cell: cell.cell_type == 'code' and re.search(r'^#\|\s*eval:\s*false', cell.source, re.M) is not None
        CaptureShell().execute(p, p, exc_stop=True, preproc=skip)
    for p in paths:   # only the notebooks run here: others may be open in an editor
        subprocess.run([Path(sys.executable).parent / 'nbdev_clean', '--fname', str(p)], cwd=ROOT, check=True)
