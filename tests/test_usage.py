"""The usage investigation (nbs/08a_usage.ipynb): `fsq-usage --preset smoke` as a console script and the committed results the chapter shows."""
import subprocess
from pathlib import Path
from fsq_lit.usage import USAGE, FIGURES
from conftest import console_script, cli_env, preset_drift

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "nbs" / "results"
FIELDS = {"quantizer", "variant", "codebook_size", "complexity", "channels", "steps", "usage", "perplexity", "psnr", "by_tokens"}


def test_cli_smoke(tmp_path):
    "fsq-usage --preset smoke writes a record per key, data.json, the figures and plumbing verdicts, and prints the tables and verdicts (resuming is tested in chapters 05b and 08a)."
    out, env = tmp_path / "u", cli_env(tmp_path)
    p = subprocess.run([console_script("fsq-usage"), "--preset", "smoke", "--out", str(out), "--no_progress"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    st, cfg = USAGE.load(out), USAGE.preset("smoke")
    assert [USAGE.key(r) for r in st["records"]] == USAGE.plan(cfg)
    assert all(FIELDS <= set(r) for r in st["records"]) and sorted(st["data"]) == ["0", "2"]
    assert {f"{f}.png" for f in FIGURES} <= {f.name for f in out.iterdir()}
    lines = st["meta"]["verdicts"]
    assert lines[0].startswith("PLUMBING CHECK, NOT EVIDENCE") and all(l.startswith("[plumbing] ") for l in lines[1:])
    assert lines[1] in p.stdout and "| setting | tokenizer |" in p.stdout


def test_committed_results_are_the_preset():
    "The results chapter 08a shows were produced by the cpu preset as it is now, and the study finished."
    d = RESULTS / "usage-cpu"
    assert d.is_dir(), f"{d} missing: run fsq-usage --preset cpu --out {d}"
    st = USAGE.load(d)
    drift = preset_drift(st["meta"]["config"], USAGE.preset("cpu"))
    assert not drift, f"preset 'cpu' changed since {d} was measured ({drift}): rerun it"
    cfg = USAGE.config_of(st)
    assert [USAGE.key(r) for r in st["records"]] == USAGE.plan(cfg), "the study did not finish"
    assert all(FIELDS <= set(r) for r in st["records"]) and {f"{f}.png" for f in FIGURES} <= {f.name for f in d.iterdir()}
    assert "verdicts" in st["meta"] and "USAGE.load('results/usage-cpu')" in (ROOT / "nbs" / "08a_usage.ipynb").read_text()
