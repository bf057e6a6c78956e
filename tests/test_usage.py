"""The usage investigation (nbs/08a_usage.ipynb): the committed results the chapter shows are the preset's (its smoke run
as a console script: tests/test_commands.py)."""
from pathlib import Path
from fsq_lit.usage import USAGE, FIGURES
from conftest import preset_drift

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "nbs" / "results"


def test_committed_results_are_the_preset():
    "The results chapter 08a shows were produced by the cpu preset as it is now, with their figures (the chapter checks that the study finished)."
    d = RESULTS / "usage-cpu"
    assert d.is_dir(), f"{d} missing: run fsq-usage --preset cpu --out {d}"
    drift = preset_drift(USAGE.load(d)["meta"]["config"], USAGE.preset("cpu"))
    assert not drift, f"preset 'cpu' changed since {d} was measured ({drift}): rerun it"
    assert {f"{f}.png" for f in FIGURES} <= {f.name for f in d.iterdir()}
    assert "USAGE.load('results/usage-cpu')" in (ROOT / "nbs" / "08a_usage.ipynb").read_text()
