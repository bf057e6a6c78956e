"""The FSQ-versus-VQ study (nbs/08_compare.ipynb): the console script on the smoke preset, the committed results
the chapter shows, and the claim checks."""
import json, shutil, subprocess, sys
from dataclasses import asdict
from pathlib import Path
import pytest
from fsq_lit.compare import preset_config, check_claims, load_study, CompareConfig, PRESETS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "nbs" / "results"
FIELDS = {"quantizer", "variant", "codebook_size", "usage", "perplexity", "bits", "psnr", "mse"}
FIGURES = {"tradeoff.png", "ablation.png", "timing.png", "recon.png"}


def _script(name):
    exe = Path(sys.executable).parent / name
    return str(exe) if exe.exists() else shutil.which(name)


def test_cli_smoke(tmp_path):
    "fsq-compare --preset smoke writes results.json (every run, the required fields), timing.json, study.json and the figures."
    out = tmp_path / "cmp"
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1", "FSQ_LIT_CACHE": str(tmp_path / "cache")}
    p = subprocess.run([_script("fsq-compare"), "--preset", "smoke", "--out", str(out), "--no_progress"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "| quantizer |" in p.stdout and "wrote" in p.stdout
    st = load_study(out)
    cfg = preset_config("smoke")
    assert [(r["quantizer"], r["variant"], r["target_size"]) for r in st["records"]] == cfg.runs()
    for r in st["records"]:
        assert FIELDS <= set(r) and r["quantizer"] in ("fsq", "vq")
        assert 0 < r["usage"] <= 1 and r["psnr"] > 0 and r["mse"] > 0
    assert [t["target_size"] for t in st["timing"]] == list(cfg.sizes)
    assert FIGURES <= {f.name for f in out.iterdir()}


@pytest.mark.parametrize("name", ["gpu", "cpu-small"])
def test_committed_results_are_the_presets(name):
    "The results the chapter shows were produced by the preset as it is now, and the study finished."
    d = RESULTS / f"compare-{name}"
    assert d.is_dir(), f"{d} missing: run fsq-compare --preset {name} --out {d}"
    st = load_study(d)
    ran = {k: v for k, v in st["meta"]["config"].items() if k not in ("device", "progress")}
    now = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(preset_config(name)).items() if k not in ("device", "progress")}
    assert ran == now, f"preset {name!r} changed since {d} was measured: rerun it"
    cfg = CompareConfig(**st["meta"]["config"])
    assert [(r["quantizer"], r["variant"], r["target_size"]) for r in st["records"]] == cfg.runs(), "the study did not finish"
    assert all(FIELDS <= set(r) for r in st["records"])
    assert FIGURES <= {f.name for f in d.iterdir()}
    nb = (ROOT / "nbs" / "08_compare.ipynb").read_text()
    assert f"load_study('results/compare-{name}')" in nb and f"results/compare-{name}/recon.png" in nb


def _rec(q, v, size, usage, psnr, bits, study="sweep", tokens=10**6):
    return dict(quantizer=q, variant=v, target_size=size, codebook_size=size, usage=usage, psnr=psnr, bits=bits,
                perplexity=2 ** bits, mse=10 ** (-psnr / 10), study=study, eval_tokens=tokens)


def test_check_claims():
    "Paper-shaped records make every claim hold; a full-usage VQ and a collapsing FSQ make the usage claims fail."
    sizes = [2**8, 2**12, 2**16]
    paper = [_rec("fsq", "fsq", s, 0.99, 30 + i, 8 + 3 * i) for i, s in enumerate(sizes)] + \
            [_rec("vq", "plain", s, u, p, 6) for s, u, p in zip(sizes, (0.9, 0.3, 0.01), (29.5, 30, 29))]
    assert all(check_claims(paper).values()), check_claims(paper)
    other = [_rec("fsq", "fsq", s, u, 30 - i, 8) for i, (s, u) in enumerate(zip(sizes, (1.0, 0.5, 0.2)))] + \
            [_rec("vq", "plain", s, 1.0, 31 + i, 9 + 4 * i) for i, s in enumerate(sizes)]
    c = check_claims(other)
    assert not any(v for v in c.values()), c
    # usage is judged against what the held-out tokens can reach: 0.5 of 2^16 codes from 2^15 tokens is all of it
    few = [_rec("fsq", "fsq", 2**16, 0.49, 30, 15, tokens=2**15)]
    assert check_claims(few)["FSQ uses almost all codes (>= 90% of what the held-out tokens can reach) at every size"]
    assert check_claims([])["FSQ reconstruction improves with every larger codebook"] is None


def test_bad_settings():
    with pytest.raises(ValueError, match="unknown preset"): preset_config("laptop")
    with pytest.raises(ValueError, match="unknown setting"): preset_config("smoke", epochs=3)
    with pytest.raises(ValueError, match="unknown VQ variant"): preset_config("smoke", ablation_variants=("magic",))
    with pytest.raises(ValueError, match="sizes"): preset_config("smoke", sizes=(1, 16))
    assert set(PRESETS) == {"smoke", "cpu-small", "gpu"}
