"""The MaskGIT study (nbs/11a_generation.ipynb): its usage errors and the committed results the chapter shows (its smoke
run as a console script: tests/test_commands.py)."""
from pathlib import Path
import pytest
from fsq_lit.generation import MASKGIT
from conftest import preset_drift, check_argument_errors

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "nbs" / "results"
FIGURES = {"samples.png", "sweeps.png", "decoding.png"}


CASES = [
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--preset", "smoke", "--steps", "0"], "steps must be >= 1"),
    (["--preset", "smoke", "--tokenizers", "lfq=x"], "expected KEY=PATH"),
    (["--preset", "smoke", "--tokenizers", "fsq=NOPE"], "is not a saved tokenizer"),
    (["--preset", "smoke", "--tokenizers", "fsq=VQ"], "--tokenizers fsq=VQ: VQ is another kind of tokenizer than the one asked for: quantizer 'vq' (needs 'fsq')"),
    (["--preset", "smoke", "--tokenizers", "fsq=MIXED"], "--tokenizers fsq=MIXED: MIXED/model.safetensors holds weights for another quantizer"),
    (["--preset", "smoke", "--seeds", "1,1"], "seeds must be non-empty and distinct"),
    (["--preset", "smoke", "--seeds", "one"], "expected a comma-separated list of int values"),
    (["--preset", "gpu-sizes", "--out", "NEW"], "is sized for a GPU and CUDA is not available here"),
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


@pytest.mark.parametrize("name, figures", [("cpu", FIGURES), ("cpu-sizes", {"samples.png", "sizes.png", "decoding.png"})])
def test_committed_results_are_the_preset(name, figures):
    "The results the chapter shows were produced by the preset as it is now, with their figures (the chapter checks that the study finished)."
    d = RESULTS / f"maskgit-{name}"
    assert d.is_dir(), f"{d} missing: run fsq-maskgit --preset {name} --out {d}"
    drift = preset_drift(MASKGIT.load(d)["meta"]["config"], MASKGIT.preset(name))
    assert not drift, f"preset {name!r} changed since {d} was measured ({drift}): rerun it"
    assert figures <= {f.name for f in d.iterdir()}
    assert f"MASKGIT.load('results/maskgit-{name}')" in (ROOT / "nbs" / "11a_generation.ipynb").read_text()
