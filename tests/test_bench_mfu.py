"""bench/maskgit_mfu.py runs end to end at its CPU smoke size and writes the promised JSON (speed is never asserted)."""
import json, math, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_maskgit_mfu_tiny(tmp_path):
    out = tmp_path / "mfu.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}   # a smoke run: no thread contention on a shared 2-core machine
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "maskgit_mfu.py"), "--tiny", "--out", str(out)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "MFU" in res.stdout and "of measured peak" in res.stdout and "images/s" in res.stdout
    r = json.loads(out.read_text())
    assert r["config"] == dict(n_layer=2, d_model=64, n_head=4, batch=4, tokens=16, positions=17, vocab=1024, classes=1000, steps=2, warmup=1)
    assert r["device"] == "cpu" and r["dtype"] == "float32" and r["peak"]["matmul_dtype"] == "float32"
    assert r["peak"]["spec_sheet_flops"] is None and r["peak"]["measured_flops"] > 0
    assert r["params"]["matmul_weights"] == 2 * 12 * 64**2 < r["params"]["transformer"] < r["params"]["total"]
    # MaskGIT.flops_per_sample() is the benchmark's former hand formula: the transformer on 17 positions + the head on 16 tokens
    assert r["flops_per_sample"] == r["flops_per_token"] * 17 + 6 * 64 * 1024 * 16
    assert set(r["runs"]) == {"eager"} and r["compile"] == "off (CPU)"
    e = r["runs"]["eager"]
    assert {"step_ms", "samples_per_s", "tokens_per_s", "achieved_tflops", "mfu_measured_peak", "mfu_spec_peak", "final_loss"} <= set(e)
    assert e["mfu_measured_peak"] > 0 and e["mfu_spec_peak"] is None and math.isfinite(e["final_loss"])
    s = r["sampling"]
    assert (s["steps"], s["batch"], s["reps"], s["model"]) == (4, 4, 1, "eager") and s["guidance"] > 0
    assert s["images_per_s"] > 0 and s["guided_images_per_s"] > 0 and s["achieved_tflops"] >= 0
    d = s["decoder"]                                               # the tokenizer's decoder: 16 px from 4 x 4 tokens in --tiny
    assert (d["image_size"], d["channels"]) == (16, 8) and d["images_per_s"] > 0 and 0 < s["guided_decoder_share"] < s["decoder_share"] < 1
    assert math.isclose(s["decoder_share"], (1 / d["images_per_s"]) / (1 / s["images_per_s"] + 1 / d["images_per_s"]), rel_tol=1e-3)
    assert "decoding 16 px images" in res.stdout
    assert math.isclose(s["forward_flops_per_image"], 4 * (r["flops_per_token"] * 17 / 3 + 2 * 64 * 1024 * 16))   # forward: 1/3 of training
    assert {"platform", "cpu", "threads"} <= set(r["machine"]) and r["torch"] and r["date"]
