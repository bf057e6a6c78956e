"""The FSQ-versus-VQ study (nbs/08_compare.ipynb): the console script on the smoke preset (and its usage errors),
an interrupted study that resumes, the committed results the chapter shows, and the claim checks."""
import subprocess, sys
from pathlib import Path
import pytest
import torch
import fsq_lit.compare as compare
from fsq_lit.compare import preset_config, check_claims, load_study, load_recons, run_study, CompareConfig, PRESETS
from conftest import console_script, cli_env, preset_drift, check_usage_errors

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "nbs" / "results"
FIELDS = {"quantizer", "variant", "codebook_size", "usage", "perplexity", "bits", "psnr", "mse"}
FIGURES = {"tradeoff.png", "ablation.png", "timing.png", "recon.png"}




def test_cli_smoke(tmp_path):
    "fsq-compare --preset smoke writes results.json (every run, the required fields), timing.json, study.json and the figures; its verdicts are headed as plumbing checks (issue 11 item 20)."
    out = tmp_path / "cmp"
    env = cli_env(tmp_path)
    p = subprocess.run([console_script("fsq-compare"), "--preset", "smoke", "--out", str(out), "--no_progress"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "| quantizer |" in p.stdout and "wrote" in p.stdout
    st = load_study(out)
    cfg = preset_config("smoke")
    assert [(r["quantizer"], r["variant"], r["target_size"]) for r in st["records"]] == cfg.runs()
    for r in st["records"]:
        assert FIELDS <= set(r) and r["quantizer"] in ("fsq", "vq", "lfq")
        assert 0 < r["usage"] <= 1 and r["psnr"] > 0 and r["mse"] > 0
    assert [t["target_size"] for t in st["timing"]] == list(cfg.sizes)
    assert FIGURES <= {f.name for f in out.iterdir()}
    claims = check_claims(st["records"])
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
    (["--preset", "smoke", "--out", "FILE"], "is a file"),
    (["--preset", "smoke", "--out", "OTHER"], "is not empty and is not a fsq-compare run"),
    (["--preset", "smoke", "--out", "FILE/sub"], "Not a directory")]


def test_cli_usage_errors(tmp_path):
    "Issue 11 item 14: a bad argument or an unusable --out gives one line `fsq-compare: error: ...`, exit 2, before any scene is rendered."
    check_usage_errors(tmp_path, "fsq-compare", "fsq_lit.compare", CASES)


TIMES = {"train_s", "images_per_s"}   # wall-clock fields: the only ones that differ between two identical runs


def _small_data(size=16):
    g = torch.Generator().manual_seed(0)
    return (torch.randint(0, 256, (16, size, size, 3), dtype=torch.uint8, generator=g),
            torch.randint(0, 256, (8, size, size, 3), dtype=torch.uint8, generator=g))


def test_interrupted_study_resumes(tmp_path, monkeypatch):
    "Issue 11 item 2: a study interrupted in its 3rd run keeps its first two records; the rerun trains only the missing runs and ends with an uninterrupted study's results."
    cfg = preset_config("smoke", progress=False, image_size=16, steps=2, batch_size=4, warmup=1, ablation_variants=("plain",))
    data = _small_data(cfg.image_size)
    full = run_study(cfg, tmp_path / "full", data=data)["records"]
    real, calls = compare.train_tokenizer, []
    def interrupted(tcfg, **kw):
        calls.append(tcfg)
        if len(calls) == 3: raise KeyboardInterrupt   # as Ctrl-C in the middle of the 3rd tokenizer
        return real(tcfg, **kw)
    monkeypatch.setattr(compare, "train_tokenizer", interrupted)
    out = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt): run_study(cfg, out, data=data)
    drop = lambda rs: [{k: v for k, v in r.items() if k not in TIMES} for r in rs]
    assert drop(load_study(out)["records"]) == drop(full[:2])
    calls.clear()
    monkeypatch.setattr(compare, "train_tokenizer", lambda tcfg, **kw: (calls.append(tcfg), real(tcfg, **kw))[1])
    res = run_study(cfg, out, data=data)
    assert len(calls) == len(cfg.runs()) - 2                       # the first two were not trained again
    assert drop(res["records"]) == drop(load_study(out)["records"]) == drop(full)
    a, b = load_recons(tmp_path / "full", full), load_recons(out, full)
    assert a.keys() == b.keys() == set(cfg.runs()) and all(torch.equal(a[k], b[k]) for k in a)
    assert FIGURES <= {f.name for f in out.iterdir()} and not list(out.glob(".*.tmp"))


@pytest.mark.parametrize("name", ["gpu", "cpu-small"])
def test_committed_results_are_the_presets(name):
    "The results the chapter shows were produced by the preset as it is now, and the study finished."
    d = RESULTS / f"compare-{name}"
    assert d.is_dir(), f"{d} missing: run fsq-compare --preset {name} --out {d}"
    st = load_study(d)
    drift = preset_drift(st["meta"]["config"], preset_config(name))
    assert not drift, f"preset {name!r} changed since {d} was measured ({drift}): rerun it"
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


def test_cli_names_a_damaged_result_file(tmp_path):
    "Issue 11 item 13: a study whose results.json is damaged stops with one line naming the file, no traceback."
    out = tmp_path / "study"
    compare.study_dir(preset_config("smoke"), out).open().close()          # a study of these settings, begun
    (out / "results.json").write_text('[{"quant')
    p = _main(tmp_path, "--preset", "smoke", "--out", "study", "--no_progress")
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert p.stderr.startswith("fsq-compare: error: ") and "results.json is not valid JSON" in p.stderr, p.stderr
