"""The MaskGIT study (nbs/11a_generation.ipynb): `fsq-maskgit --preset smoke` as a console script, its usage errors,
and the committed results the chapter shows."""
import subprocess
from pathlib import Path
import pytest
from fsq_lit.generation import preset_config, load_study, measurements, record_key, check_claims, GenerationConfig
from conftest import console_script, cli_env, preset_drift, check_usage_errors

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "nbs" / "results"
FIELDS = {"model", "quantizer", "codebook_size", "usage", "fid", "precision", "recall", "class_accuracy", "rfid", "steps", "guidance"}
FIGURES = {"samples.png", "sweeps.png", "decoding.png"}




def test_cli_smoke(tmp_path):
    "fsq-maskgit --preset smoke writes every record (with the issue's fields), study.json with plumbing verdicts and the figures (resuming is tested in chapter 11a)."
    out, env = tmp_path / "mg", cli_env(tmp_path)
    run = lambda: subprocess.run([console_script("fsq-maskgit"), "--preset", "smoke", "--out", str(out), "--no_progress"],
                                 capture_output=True, text=True, env=env, timeout=600)
    p = run()
    assert p.returncode == 0, p.stderr[-3000:]
    st, cfg = load_study(out), preset_config("smoke")
    assert [record_key(r) for r in st["records"]] == measurements(cfg)
    assert all(FIELDS <= set(r) for r in st["records"])
    assert FIGURES <= {f.name for f in out.iterdir()}
    claims = check_claims(st["records"], cfg)
    verdicts = [l for l in p.stdout.splitlines() if any(l.endswith(": " + k) for k in claims)]
    assert len(verdicts) == len(claims) and all(l.startswith("[plumbing] ") for l in verdicts), verdicts
    assert st["meta"]["verdicts"][0].startswith("PLUMBING CHECK, NOT EVIDENCE") and st["meta"]["verdicts"][1:] == verdicts


CASES = [
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--preset", "smoke", "--steps", "0"], "steps must be >= 1"),
    (["--preset", "smoke", "--tokenizers", "lfq=x"], "expected KEY=PATH"),
    (["--preset", "smoke", "--tokenizers", "fsq=NOPE"], "is not a saved tokenizer"),
    (["--preset", "smoke", "--out", "FILE"], "is a file"),
    (["--preset", "smoke", "--out", "OTHER"], "is not empty and is not a fsq-maskgit run"),
]


def test_cli_usage_errors(tmp_path):
    "A bad argument or an unusable --out: one line `fsq-maskgit: error: ...`, exit 2, before any work (all cases in one interpreter)."
    check_usage_errors(tmp_path, "fsq-maskgit", "fsq_lit.generation", CASES)


@pytest.mark.parametrize("name", ["cpu"])
def test_committed_results_are_the_preset(name):
    "The results the chapter shows were produced by the preset as it is now, and the study finished."
    d = RESULTS / f"maskgit-{name}"
    assert d.is_dir(), f"{d} missing: run fsq-maskgit --preset {name} --out {d}"
    st = load_study(d)
    drift = preset_drift(st["meta"]["config"], preset_config(name))
    assert not drift, f"preset {name!r} changed since {d} was measured ({drift}): rerun it"
    cfg = GenerationConfig(**st["meta"]["config"])
    assert [record_key(r) for r in st["records"]] == measurements(cfg), "the study did not finish"
    assert all(FIELDS <= set(r) for r in st["records"]) and FIGURES <= {f.name for f in d.iterdir()}
    assert "verdicts" in st["meta"] and f"load_study('results/maskgit-{name}')" in (ROOT / "nbs" / "11a_generation.ipynb").read_text()
