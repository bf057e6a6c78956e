"""The FSQ-versus-VQ study (nbs/08_compare.ipynb): the console script on the smoke preset, its usage errors and a
damaged result file, and the committed results the chapter shows."""
import subprocess, sys
from pathlib import Path
import pytest
from fsq_lit.compare import COMPARE
from conftest import console_script, cli_env, preset_drift, check_usage_errors

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "nbs" / "results"
FIELDS = {"quantizer", "variant", "codebook_size", "usage", "perplexity", "bits", "psnr", "mse"}
FIGURES = {"tradeoff.png", "ablation.png", "timing.png", "recon.png"}


def test_cli_smoke(tmp_path):
    "fsq-compare --preset smoke writes results.json (every key of the plan, the required fields), timing.json, study.json and the figures; its verdicts are headed as plumbing checks."
    out = tmp_path / "cmp"
    p = subprocess.run([console_script("fsq-compare"), "--preset", "smoke", "--out", str(out), "--no_progress"],
                       capture_output=True, text=True, env=cli_env(tmp_path), timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "| quantizer |" in p.stdout and "wrote" in p.stdout
    st, cfg = COMPARE.load(out), COMPARE.preset("smoke")
    assert [COMPARE.key(r) for r in st["records"]] == COMPARE.plan(cfg)
    for r in st["records"]:
        assert FIELDS <= set(r) and r["quantizer"] in ("fsq", "vq", "lfq")
        assert 0 < r["usage"] <= 1 and r["psnr"] > 0 and r["mse"] > 0
    assert [t["target_size"] for t in st["timing"]] == list(cfg.sizes)
    assert FIGURES <= {f.name for f in out.iterdir()}
    claims = COMPARE.claims(st["records"], cfg)
    verdicts = [l for l in p.stdout.splitlines() if any(l.endswith(": " + k) for k in claims)]
    assert len(verdicts) == len(claims) and all(l.startswith("[plumbing] ") for l in verdicts), verdicts
    assert "PLUMBING CHECK, NOT EVIDENCE" in p.stdout
    assert st["meta"]["verdicts"][0].startswith("PLUMBING CHECK, NOT EVIDENCE") and st["meta"]["verdicts"][1:] == verdicts


def _main(tmp_path, *args):
    "Run fsq-compare's `main` as its console script does (`python -c` would skip fastcore's argument parsing)."
    script = tmp_path / "fsq_compare.py"
    script.write_text("import sys\nfrom fsq_lit.compare import main\nsys.exit(main())\n")
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=cli_env(tmp_path),
                          timeout=120, cwd=tmp_path)


CASES = [
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--preset", "smoke", "--steps", "0"], "steps must be >= 1"),
    (["--preset", "smoke", "--device", "tpu"], "unknown device 'tpu'"),
    (["--preset", "smoke", "--out", "FILE"], "is a file"),
    (["--preset", "smoke", "--out", "OTHER"], "is not empty and is not a fsq-compare run"),
    (["--preset", "smoke", "--out", "FILE/sub"], "Not a directory")]


def test_cli_usage_errors(tmp_path):
    "A bad argument or an unusable --out gives one line `fsq-compare: error: ...`, exit 2, before any scene is rendered."
    check_usage_errors(tmp_path, "fsq-compare", "fsq_lit.compare", CASES)


def test_cli_names_a_damaged_result_file(tmp_path):
    "A study whose results.json is damaged stops with one line naming the file, no traceback."
    out = tmp_path / "study"
    COMPARE.open_dir(COMPARE.preset("smoke"), out).close()          # a study of these settings, begun
    (out / "results.json").write_text('[{"quant')
    p = _main(tmp_path, "--preset", "smoke", "--out", "study", "--no_progress")
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert p.stderr.startswith("fsq-compare: error: ") and "results.json is not valid JSON" in p.stderr, p.stderr


@pytest.mark.parametrize("name", ["gpu", "cpu-small"])
def test_committed_results_are_the_presets(name):
    "The results the chapter shows were produced by the preset as it is now, and the study finished."
    d = RESULTS / f"compare-{name}"
    assert d.is_dir(), f"{d} missing: run fsq-compare --preset {name} --out {d}"
    st = COMPARE.load(d)
    drift = preset_drift(st["meta"]["config"], COMPARE.preset(name))
    assert not drift, f"preset {name!r} changed since {d} was measured ({drift}): rerun it"
    assert [COMPARE.key(r) for r in st["records"]] == COMPARE.plan(COMPARE.config_of(st)), "the study did not finish"
    assert all(FIELDS <= set(r) for r in st["records"])
    assert FIGURES <= {f.name for f in d.iterdir()}
    nb = (ROOT / "nbs" / "08_compare.ipynb").read_text()
    assert f"COMPARE.load('results/compare-{name}')" in nb and f"results/compare-{name}/recon.png" in nb
