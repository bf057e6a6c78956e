"""The FSQ-versus-VQ study (nbs/08_compare.ipynb): a damaged result file, and the committed results the chapter shows
(its smoke run as a console script, interrupted and resumed, and its usage errors: tests/test_commands.py)."""
import subprocess, sys
from pathlib import Path
import pytest
from fsq_lit.compare import COMPARE
from conftest import cli_env, preset_drift

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "nbs" / "results"
FIGURES = {"tradeoff.png", "ablation.png", "timing.png", "recon.png"}


def _main(tmp_path, *args):
    "Run fsq-compare's `main` as its console script does (`python -c` would skip fastcore's argument parsing)."
    script = tmp_path / "fsq_compare.py"
    script.write_text("import sys\nfrom fsq_lit.compare import main\nsys.exit(main())\n")
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=cli_env(tmp_path),
                          timeout=120, cwd=tmp_path)


def test_cli_names_a_damaged_result_file(tmp_path):
    "A study whose results.json is damaged stops with one line naming the file, no traceback."
    out = tmp_path / "study"
    COMPARE.open_dir(COMPARE.preset("smoke"), out).close()          # a study of these settings, begun
    (out / "results.json").write_text('[{"quant')
    p = _main(tmp_path, "--preset", "smoke", "--out", "study", "--no_progress")
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert p.stderr.startswith("fsq-compare: error: ") and "results.json is not valid JSON" in p.stderr, p.stderr


@pytest.mark.parametrize("name", ["gpu", "cpu-small", "cpu"])
def test_committed_results_are_the_presets(name):
    "The results the chapter shows were produced by the preset as it is now, with their figures (the chapter checks that the study finished)."
    d = RESULTS / f"compare-{name}"
    assert d.is_dir(), f"{d} missing: run fsq-compare --preset {name} --out {d}"
    drift = preset_drift(COMPARE.load(d)["meta"]["config"], COMPARE.preset(name))
    assert not drift, f"preset {name!r} changed since {d} was measured ({drift}): rerun it"
    cfg = COMPARE.config_of(COMPARE.load(d))
    assert FIGURES - (set() if cfg.ablates else {"ablation.png"}) <= {f.name for f in d.iterdir()}   # the cpu preset: the sweep alone, no ablation figure
    nb = (ROOT / "nbs" / "08_compare.ipynb").read_text()
    assert f"COMPARE.load('results/compare-{name}')" in nb
