"""Execute notebooks in place so that their stored outputs (figures, tables) are current, then clean them.
Cells marked `#| eval: false` are skipped, as nbdev_test skips them; with --keep-notest, cells marked `#| notest`
are skipped too (they re-measure committed results: chapter 10a's feature network), keeping their stored outputs.

    python tools/run_nbs.py                 # every notebook in nbs/
    python tools/run_nbs.py nbs/00_scalar.ipynb
    python tools/run_nbs.py --keep-notest nbs/10a_features.ipynb
"""
import os, re, sys, subprocess
from pathlib import Path
from execnb.shell import CaptureShell

ROOT = Path(__file__).resolve().parents[1]


def skip(cell, flags: str) -> bool:
    """Like nbdev_test, skip code cells marked `#| eval: false` (or `flags`): their stored outputs, if any, are kept.
    Every other code cell starts with no outputs: execnb keeps a cell's old outputs when it now prints nothing."""
    if cell.cell_type != 'code': return False
    if re.search(rf'^#\|\s*({flags})', cell.source, re.M): return True
    cell.outputs = []
    return False

if __name__ == '__main__':
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    args = sys.argv[1:]
    flags = r'eval:\s*false|notest' if '--keep-notest' in args else r'eval:\s*false'
    paths = [Path(p).resolve() for p in args if p != '--keep-notest'] or sorted((ROOT / 'nbs').glob('*.ipynb'))
    for p in paths:
        os.chdir(p.parent)
        print('executing', p.name, flush=True)
        CaptureShell().execute(p, p, exc_stop=True, preproc=lambda cell: skip(cell, flags))
    for p in paths:   # only the notebooks run here: others may be open in an editor
        subprocess.run([Path(sys.executable).parent / 'nbdev_clean', '--fname', str(p)], cwd=ROOT, check=True)
