"""The MaskGIT study (nbs/11a_generation.ipynb): `fsq-maskgit --preset smoke` as a console script, its usage errors,
and the committed results the chapter shows."""
import subprocess
from pathlib import Path
import pytest
from fsq_lit.generation import MASKGIT
from conftest import console_script, cli_env, preset_drift, check_argument_errors

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
    st, cfg = MASKGIT.load(out), MASKGIT.preset("smoke")
    assert [MASKGIT.key(r) for r in st["records"]] == MASKGIT.plan(cfg)
    assert all(FIELDS <= set(r) for r in st["records"])
    assert FIGURES <= {f.name for f in out.iterdir()}
    claims = MASKGIT.claims(st["records"], cfg)
    verdicts = [l for l in p.stdout.splitlines() if any(l.endswith(": " + k) for k in claims)]
    assert len(verdicts) == len(claims) and all(l.startswith("[plumbing] ") for l in verdicts), verdicts
    assert st["meta"]["verdicts"][0].startswith("PLUMBING CHECK, NOT EVIDENCE") and st["meta"]["verdicts"][1:] == verdicts


CASES = [
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--preset", "smoke", "--steps", "0"], "steps must be >= 1"),
    (["--preset", "smoke", "--tokenizers", "lfq=x"], "expected KEY=PATH"),
    (["--preset", "smoke", "--tokenizers", "fsq=NOPE"], "is not a saved tokenizer"),
    (["--preset", "smoke", "--tokenizers", "fsq=VQ"], "--tokenizers fsq=VQ: VQ is another kind of tokenizer than the one asked for: quantizer 'vq' (needs 'fsq')"),
    (["--preset", "smoke", "--tokenizers", "fsq=MIXED"], "--tokenizers fsq=MIXED: MIXED/model.safetensors holds weights for another quantizer"),
    (["--preset", "smoke", "--out", "FILE"], "is a file"),
    (["--preset", "smoke", "--out", "OTHER"], "is not empty and is not a fsq-maskgit run"),
]


def test_cli_argument_errors(tmp_path):
    """A bad argument, a --tokenizers folder of the wrong kind or whose config and weights disagree, or an unusable --out:
    one line `fsq-maskgit: error: ...`, exit 2, before any work (all cases in one interpreter)."""
    import shutil
    from fsq_lit.tokenizer import Tokenizer, save_tokenizer
    cfg = MASKGIT.preset("smoke")
    save_tokenizer(Tokenizer(cfg.stage_one("vq")), tmp_path / "VQ"); save_tokenizer(Tokenizer(cfg.stage_one("fsq")), tmp_path / "MIXED")
    shutil.copy(tmp_path / "VQ" / "model.safetensors", tmp_path / "MIXED")   # an FSQ config with VQ weights
    check_argument_errors(tmp_path, "fsq-maskgit", "fsq_lit.generation", CASES)


@pytest.mark.parametrize("name", ["cpu"])
def test_committed_results_are_the_preset(name):
    "The results the chapter shows were produced by the preset as it is now, and the study finished."
    d = RESULTS / f"maskgit-{name}"
    assert d.is_dir(), f"{d} missing: run fsq-maskgit --preset {name} --out {d}"
    st = MASKGIT.load(d)
    drift = preset_drift(st["meta"]["config"], MASKGIT.preset(name))
    assert not drift, f"preset {name!r} changed since {d} was measured ({drift}): rerun it"
    assert [MASKGIT.key(r) for r in st["records"]] == MASKGIT.plan(MASKGIT.config_of(st)), "the study did not finish"
    assert all(FIELDS <= set(r) for r in st["records"]) and FIGURES <= {f.name for f in d.iterdir()}
    assert "verdicts" in st["meta"] and f"MASKGIT.load('results/maskgit-{name}')" in (ROOT / "nbs" / "11a_generation.ipynb").read_text()
