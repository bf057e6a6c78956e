"""bench/gpu_suite.py runs end to end at its --smoke size on the CPU and writes the promised JSON and Markdown
(every section, every FSQ case timed or with a reason, exact index agreement with the eager path); speed is never asserted."""
import copy, importlib.util, json, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "bench" / "gpu_suite.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}   # a smoke run: no thread contention on 2 cores


def suite(*args, timeout=180):
    return subprocess.run([sys.executable, str(SUITE), *args], capture_output=True, text=True, env=ENV, timeout=timeout)


def check_fsq(r: dict):
    "Every case timed (with agreement) or skipped or failed with a reason; the eager path ran; indices agree."
    paths, dtypes, layouts = ("eager", "compile", "triton", "triton+nan", "peer"), ("float32", "bfloat16"), ("channel_last", "channel_first")
    assert [(c["dtype"], c["layout"], c["path"]) for c in r["cases"]] == [(d, l, p) for d in dtypes for l in layouts for p in paths]
    assert set(r["copy"]) == {f"{d}/{l}" for d in dtypes for l in layouts}
    for c in r["cases"]:
        assert "error" not in c, c
        if "skipped" in c:
            assert c["path"] != "eager" and c["skipped"]
            continue
        assert {"ms", "gbps", "ratio_to_copy", "bytes", "warmup_s"} <= set(c["forward"]) <= set(c["forward_backward"])
        assert c["forward_backward"]["bytes"] > c["forward"]["bytes"] > 0
        ag = c["agreement"]
        assert ag["index_mismatches"] == 0 and ag["codes_mismatches"] == 0, c
        assert ag["grad_max_abs_diff"] < (1e-4 if c["dtype"] == "float32" else 0.1), c   # bf16: a rounding step or two
    assert {c["path"] for c in r["cases"] if "forward" in c} >= {"eager", "peer"}
    assert all("inductor" in c["skipped"] for c in r["cases"] if c["path"] == "compile")   # skipped on the CPU in --smoke


def check_rendering(r: dict, folder: Path):
    "Chapter 02a's renderings of a suite's FSQ section: the figure the suite saved, the text, the figure's bars; smoke runs are not listed as GPU results."
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from fsq_lit.kernel import gpu_suites, suite_lines, plot_suite
    png = (folder / "cpu-smoke.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    cases = r["fsq"]["cases"]
    lines = suite_lines(r)
    assert len(lines) == 1 + len(cases) and "4,096 tokens of [8, 5, 5, 5]" in lines[0]
    assert sum("x copy" in l for l in lines) == sum("forward" in c for c in cases) and sum("inductor" in l for l in lines) == 4
    fig = plot_suite(r)
    assert [len(ax.patches) for ax in fig.axes] == [sum("forward" in c for c in cases)] * 2    # one bar per timed case and pass
    assert len(fig.axes[0].get_yticklabels()) == len(cases)
    plt.close(fig)
    assert gpu_suites(folder) == []
    # with the GPU's own times (a GPU run's gpu_ms, the copy's too), those over the copy's GPU time are the bars and the
    # lines, the as-called time a tick; a stored ratio of GPU time over the copy's time as called is never read
    g = copy.deepcopy(r)
    for cp in g["fsq"]["copy"].values(): cp["gpu_ms"] = cp["ms"] / 4
    for c in g["fsq"]["cases"]:
        for t in (c[k] for k in ("forward", "forward_backward") if k in c):
            t.update(gpu_ms=t["ms"] / 2, gpu_ratio_to_copy=-1.0)
    fig = plot_suite(g)
    timed = [c for c in g["fsq"]["cases"] if "forward" in c]
    like_for_like = [c["forward"]["gpu_ms"] / g["fsq"]["copy"][f"{c['dtype']}/{c['layout']}"]["gpu_ms"] for c in timed]
    assert [p.get_width() for p in fig.axes[0].patches] == like_for_like
    assert sum(l.get_marker() == "|" and len(l.get_xdata()) == 1 for l in fig.axes[0].lines) == len(timed)
    plt.close(fig)
    assert not any("as called" in l for l in suite_lines(g)) and sum("as called" in l for l in lines) == len(timed)


def test_gpu_suite_smoke(tmp_path):
    res = suite("--smoke", "--out", str(tmp_path))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    r = json.loads((tmp_path / "cpu-smoke.json").read_text())
    assert r["smoke"] and r["device"] == "cpu" and r["gpu"] is None and r["sections"] == ["limits", "fsq", "host", "tune", "vq", "maskgit"]
    assert r["versions"]["torch"] and isinstance(r["versions"]["modified"], list) and r["date"] and {"cpu", "cores"} <= set(r["machine"])
    lim = r["limits"]
    assert lim["copy_float32"]["bytes"] == 2 * lim["copy_bfloat16"]["bytes"] == 2 * 4096 * 4 * 4   # read + write, float32
    assert lim["matmul"]["tflops"] > 0 and lim["matmul"]["n"] == 256
    check_fsq(r["fsq"])
    ho = r["host"]["rows"]                                             # host time per call: every route measured or skipped
    assert all(ho[k]["us"] > 0 for k in ("x*2", "identity autograd function", "FSQ eager", "FSQ triton", "kernel, operator"))
    assert "inductor" in ho["FSQ triton, compiled fullgraph"]["skipped"] and not any("error" in x for x in ho.values())
    tu = r["tune"]                                                      # the kernel's tile sweep (interpreted here), four cases
    assert [(c["dtype"], c["layout"]) for c in tu["cases"]] == [(d, l) for d in ("float32", "bfloat16") for l in ("channel_last", "channel_first")]
    for c in tu["cases"]:
        assert [(x["elements"], x["num_warps"]) for x in c["rows"]] == [(2048, 4), (4096, 4)] and tu["default"]["elements"] > 0
        assert all(x["forward"]["ms"] > 0 and x["forward_backward"]["ratio_to_copy"] > 0 for x in c["rows"])
        best = min(c["rows"], key=lambda x: x["forward"]["ms"] + x["forward_backward"]["ms"])
        assert c["best"] == {"elements": best["elements"], "num_warps": best["num_warps"]}
    score = lambda e, w: sum((x["forward"]["ms"] + x["forward_backward"]["ms"]) / c["copy"]["ms"]
                             for c in tu["cases"] for x in c["rows"] if (x["elements"], x["num_warps"]) == (e, w))
    best = min([(2048, 4), (4096, 4)], key=lambda s: score(*s))
    assert (tu["best"]["elements"], tu["best"]["num_warps"]) == best and abs(tu["best"]["sum_over_copy"] - score(*best)) < 1e-3
    assert [x["codes"] for x in r["vq"]["rows"]] == [2**10, 2**11] and all(x["vq_ms"] > 0 for x in r["vq"]["rows"])
    assert r["maskgit"]["config"]["n_layer"] == 2 and r["maskgit"]["sampling"]["images_per_s"] > 0   # maskgit_mfu's --tiny
    md = (tmp_path / "cpu-smoke.md").read_text()
    for s in ("## limits", "## fsq", "## host", "## tune", "## vq", "## maskgit", "| path | dtype | layout |", "| eager | float32 | channel_last |"):
        assert s in md and s in res.stdout, s
    assert r["fsq"]["self_test"] == "not run on the CPU" and r["fsq"]["nan_check"] is False
    check_rendering(r, tmp_path)
    # a run of one section into the same folder keeps the others, each with the date and commit it was measured at
    again = suite("--smoke", "--only", "limits", "--out", str(tmp_path))
    assert again.returncode == 0, again.stderr[-3000:]
    r2 = json.loads((tmp_path / "cpu-smoke.json").read_text())
    assert r2["sections"] == r["sections"] and r2["fsq"] == r["fsq"] and r2["limits"] != r["limits"]
    assert r2["section_runs"]["fsq"] == r["section_runs"]["fsq"] and r2["section_runs"]["limits"]["date"] >= r["section_runs"]["fsq"]["date"]


def test_gpu_suite_usage_error(tmp_path):
    res = suite("--smoke", "--only", "fsq,nope", "--out", str(tmp_path), timeout=60)
    assert res.returncode == 2 and res.stdout == ""
    errors = [l for l in res.stderr.splitlines() if "error:" in l]
    assert len(errors) == 1 and "nope" in errors[0] and "limits, fsq, host, tune, vq, maskgit" in errors[0]
    assert not list(tmp_path.iterdir())


def test_gpu_times_recorded_and_preferred():
    "A GPU time (CUDA-graph replay) is recorded beside the time as called, and the tile sweep picks its best by it."
    spec = importlib.util.spec_from_file_location("gpu_suite", SUITE)
    gs = importlib.util.module_from_spec(spec); spec.loader.exec_module(gs)
    t = gs.rate(2.0, 4_000_000, copy=dict(ms=1.0, gpu_ms=0.5), gpu=dict(gpu_ms=1.5))   # like for like: 2.0 / 1.0 and 1.5 / 0.5
    assert (t["ms"], t["ratio_to_copy"], t["gpu_ms"], t["gpu_ratio_to_copy"], t["gbps"]) == (2.0, 2.0, 1.5, 3.0, 2.0)
    assert "gpu_ratio_to_copy" not in gs.rate(2.0, 1, copy=dict(ms=1.0), gpu=dict(gpu_ms=1.5))   # never GPU time over a time as called
    assert gs.rate(2.0, 1, gpu=dict(gpu_error="no graph"))["gpu_error"] == "no graph" and "gpu_ms" not in gs.rate(2.0, 1, gpu={})
    row = lambda e, ms, gpu: dict(elements=e, num_warps=4, forward=dict(ms=ms, gpu_ms=gpu), forward_backward=dict(ms=ms, gpu_ms=gpu))
    rows = [row(1024, 1.0, 3.0), row(2048, 2.0, 1.0), dict(elements=4096, num_warps=4, error="boom")]
    assert gs.best_setting(rows) == dict(elements=2048, num_warps=4)                 # the GPU's own time decides
    for x in rows[:2]:
        for k in ("forward", "forward_backward"): del x[k]["gpu_ms"]
    assert gs.best_setting(rows) == dict(elements=1024, num_warps=4)                 # without it, the time as called
