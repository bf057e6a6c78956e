"""The training loop's promises (fsq_lit/train.py, nbs/05_train.ipynb): DDP == one process, exact resume after a
kill, atomic checkpoints, NaN detection. Select with -k ddp / resume / atomic / nan."""
import json, math, os, random, signal, subprocess, sys, time, warnings
from pathlib import Path
import pytest
import torch
from torch import nn
from fsq_lit.train import (TrainConfig, EMA, fit, lr_factor, make_optimizer, make_schedule, save_checkpoint,
                           load_checkpoint, read_metrics, NonFiniteLossError, SampleStream, plot_metrics)

WORKER = Path(__file__).with_name("_train_worker.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(WORKER.parents[1])}


def _spec(**kw): return json.dumps(kw)


def _run_worker(spec, torchrun=0):
    pre = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(torchrun)] if torchrun else [sys.executable]
    return subprocess.Popen(pre + [str(WORKER), spec], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(p, timeout=150):
    try: out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill(); out, err = p.communicate()
        raise AssertionError(f"worker timed out after {timeout} s:\n{err[-3000:]}")
    return p.returncode, out, err


def _same(a, b, exact=True, atol=1e-6):
    assert a.keys() == b.keys()
    for k in a:
        ok = torch.equal(a[k], b[k]) if exact else torch.allclose(a[k], b[k], rtol=0, atol=atol)
        assert ok, f"{k} differs: max |diff| {(a[k] - b[k]).abs().max().item():.3g}"


def test_ddp_two_processes_match_single_process(tmp_path):
    "Two gloo ranks with half the batch each (with and without accumulation) == one process with the whole batch."
    runs = [dict(steps=6, batch_size=8, grad_accum=1, ema=0.9), dict(steps=6, batch_size=8, grad_accum=2, ema=0.9)]
    # launch 1: fit creates (and destroys) the process group; launch 2: the script owns it and fit must leave it alone.
    # (Two launches, since re-creating a process group inside one torchrun launch is not reliable.)
    ddp = [_run_worker(_spec(runs=runs[:1], result=str(tmp_path / "ddp0.pt")), torchrun=2),
           _run_worker(_spec(runs=runs[1:], result=str(tmp_path / "ddp1.pt"), init_pg_from=0), torchrun=2)]
    single = _run_worker(_spec(runs=runs + [dict(steps=6, batch_size=8, grad_accum=4, ema=0.9)], result=str(tmp_path / "one.pt")))
    for p in (*ddp, single):
        rc, out, err = _finish(p)
        assert rc == 0, err[-3000:]
    d, s = torch.load(tmp_path / "ddp0.pt") + torch.load(tmp_path / "ddp1.pt"), torch.load(tmp_path / "one.pt")
    ref = s[0]
    for res in (d[0], d[1], s[1], s[2]):        # W=2 A=1, W=2 A=2, W=1 A=2, W=1 A=4 against W=1 A=1
        assert res["step"] == 6
        _same(res["params"], ref["params"], exact=False)
        _same(res["ema"], ref["ema"], exact=False)
        # logged metrics are means over ranks and micro-steps: the same numbers as one process
        for h, r in zip(res["history"], ref["history"]):
            assert h["step"] == r["step"] and math.isclose(h["loss"], r["loss"], rel_tol=1e-5)
            assert math.isclose(h["abs_y"], r["abs_y"], rel_tol=1e-5)
            assert math.isclose(h["grad_norm"], r["grad_norm"], rel_tol=1e-4)   # Adam hides a wrong gradient scale, the norm does not
    moved = max((ref["params"][k] - p).abs().max().item() for k, p in tiny_init().items())
    assert moved > 1e-3                      # training did something, so the comparison means something


def tiny_init():
    sys.path.insert(0, str(WORKER.parent))
    from _train_worker import tiny_model
    return tiny_model().state_dict()


def test_resume_after_kill_matches_uninterrupted(tmp_path):
    "SIGKILL in step 8 (checkpoint at 6), restart: bit-identical params, EMA, step and metrics log to an uninterrupted run."
    # dropout makes the result depend on the RNG streams, which the checkpoint must restore
    run = dict(steps=12, batch_size=16, grad_accum=2, ema=0.8, ckpt_every=3, deterministic=True, weight_decay=0.01, dropout=0.3)
    full = _run_worker(_spec(runs=[dict(run, out=str(tmp_path / "full"))], result=str(tmp_path / "full.pt")))
    killed = _run_worker(_spec(runs=[dict(run, out=str(tmp_path / "cut"), kill_at=8)], result=str(tmp_path / "cut.pt")))
    rc, _, err = _finish(killed)
    assert rc == -signal.SIGKILL, f"the worker was not killed: rc={rc}\n{err[-2000:]}"
    assert load_checkpoint(tmp_path / "cut" / "ckpt.pt")["step"] == 6 and not (tmp_path / "cut.pt").exists()
    assert [r["step"] for r in read_metrics(tmp_path / "cut")] == list(range(1, 8))   # lines past the checkpoint exist ...
    rc, _, err = _finish(_run_worker(_spec(runs=[dict(run, out=str(tmp_path / "cut"))], result=str(tmp_path / "cut.pt"))))
    assert rc == 0, err[-3000:]
    rc, _, err = _finish(full)
    assert rc == 0, err[-3000:]
    a, b = torch.load(tmp_path / "full.pt")[0], torch.load(tmp_path / "cut.pt")[0]
    assert a["step"] == b["step"] == 12
    _same(a["params"], b["params"]); _same(a["ema"], b["ema"])
    la, lb = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "cut")
    assert [r["step"] for r in lb] == list(range(1, 13))                                # ... and are dropped on resume
    assert [r["loss"] for r in la] == [r["loss"] for r in lb]
    ca, cb = load_checkpoint(tmp_path / "full" / "ckpt.pt"), load_checkpoint(tmp_path / "cut" / "ckpt.pt")
    assert ca["data_position"] == cb["data_position"] == 12 * 16
    sa, sb = ca["optimizer"]["state"], cb["optimizer"]["state"]
    for i in sa: _same(sa[i], sb[i])


def test_atomic_checkpoint_kill_during_save_keeps_previous(tmp_path):
    "A SIGKILL half way through writing leaves the previous checkpoint, whole, at the final name."
    path = tmp_path / "ckpt.pt"
    rc, _, err = _finish(_run_worker(_spec(mode="die_mid_write", path=str(path))))
    assert rc == -signal.SIGKILL, err[-2000:]
    ck = load_checkpoint(path)
    assert ck["n"] == 1 and torch.equal(ck["x"], torch.full((1000,), 1.0))
    debris = [p.name for p in tmp_path.iterdir() if p.name != "ckpt.pt"]
    assert debris and all(n.startswith(".ckpt.pt.") and n.endswith(".tmp") for n in debris)   # the torn file is a temp file
    # kills at random moments of a loop of 8 MB saves: the final name always holds a complete, consistent checkpoint
    rng = random.Random(0)
    for trial in range(3):
        p = _run_worker(_spec(mode="save_loop", path=str(path)))
        first = p.stdout.readline()                      # one complete save done
        assert first.strip(), p.stderr.read()[-2000:]
        time.sleep(rng.uniform(0.0, 0.3))
        p.send_signal(signal.SIGKILL); p.wait(timeout=30)
        ck = load_checkpoint(path)
        assert ck["n"] >= 1 and torch.equal(ck["x"], torch.full_like(ck["x"], float(ck["n"])))
        assert ck["x"].numel() == 2_000_000
    # fit clears the debris of killed saves from its run dir
    out = tmp_path / "run"; out.mkdir(); (out / ".ckpt.pt.abc.tmp").write_bytes(b"torn")
    fit(nn.Linear(2, 1), torch.randn(8, 2), lambda m, b: m(b).pow(2).mean(),
        TrainConfig(steps=1, batch_size=4, warmup=0, out=str(out), progress=False))
    assert not (out / ".ckpt.pt.abc.tmp").exists() and load_checkpoint(out / "ckpt.pt")["step"] == 1


def test_nan_loss_stops_with_step(tmp_path):
    "A loss that turns NaN in step 5 raises naming step 5, before the optimizer touches the weights."
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    x = torch.randn(64, 4)
    seen = []
    def loss_fn(m, batch):
        seen.append({k: v.detach().clone() for k, v in m.state_dict().items()})
        loss = m(batch).pow(2).mean()
        return loss * float("nan") if len(seen) == 10 else loss    # grad_accum=2: call 10 is in step 5
    cfg = TrainConfig(steps=20, batch_size=16, grad_accum=2, lr=1e-2, warmup=2, ema=0.9, out=str(tmp_path), progress=False, log_every=3)
    with pytest.raises(FloatingPointError, match=r"non-finite loss nan at step 5\b") as e:
        fit(model, x, loss_fn, cfg)
    assert isinstance(e.value, NonFiniteLossError)
    _same(model.state_dict(), seen[8])                           # weights after step 4, untouched by step 5
    assert not torch.equal(seen[8]["0.weight"], seen[0]["0.weight"])
    last = read_metrics(tmp_path)[-1]
    assert last["step"] == 5 and last["nonfinite"] and math.isnan(last["loss"])
    # an infinite gradient with a finite loss is caught too
    def inf_grad(m, batch):
        out = m(batch)
        out.register_hook(lambda g: g * float("inf"))
        return out.mean()
    with pytest.raises(NonFiniteLossError, match=r"non-finite gradient norm (nan|inf) at step 1 \(loss -?\d"):
        fit(nn.Linear(4, 1), x, inf_grad, TrainConfig(steps=3, batch_size=16, warmup=0, progress=False, clip=None))


def test_schedule_values():
    cfg = TrainConfig(steps=100, warmup=10, min_lr_ratio=0.1, lr=2.0)
    f = lambda s: lr_factor(s, cfg.warmup, cfg.steps, cfg.min_lr_ratio)
    assert math.isclose(f(0), 0.1) and f(9) == 1.0 and f(10) == 1.0 and math.isclose(f(100), 0.1)
    assert all(f(s) >= f(s + 1) for s in range(10, 100)) and all(f(s) < f(s + 1) for s in range(9))
    opt = make_optimizer(nn.Linear(2, 2), cfg); sch = make_schedule(opt, cfg)
    lrs = []
    for _ in range(100): lrs.append(opt.param_groups[0]["lr"]); opt.step(); sch.step()
    assert math.isclose(lrs[0], 0.2) and math.isclose(max(lrs), 2.0) and math.isclose(opt.param_groups[0]["lr"], 0.2)


def test_ema_math():
    m = nn.Linear(2, 2, bias=False)
    e = EMA(m, 0.75)
    w0 = m.weight.detach().clone()
    ws = []
    for t in range(5):
        with torch.no_grad(): m.weight.add_(t + 1.0)
        ws.append(m.weight.detach().clone()); e.update(m)
    ref = w0
    for w in ws: ref = 0.75 * ref + 0.25 * w
    assert torch.allclose(e.module.weight, ref, atol=1e-6) and e.num_updates == 5
    # inside fit: the EMA after one step is decay * init + (1 - decay) * weights
    torch.manual_seed(0); lin = nn.Linear(3, 1); init = lin.weight.detach().clone()
    res = fit(lin, torch.randn(8, 3), lambda mm, b: mm(b).pow(2).mean(), TrainConfig(steps=1, batch_size=8, warmup=0, ema=0.6, progress=False))
    assert torch.allclose(res.ema.weight, 0.6 * init + 0.4 * res.model.weight, atol=1e-7)


@pytest.mark.parametrize("kw, msg", [
    (dict(batch_size=10, grad_accum=3), "divisible by grad_accum"), (dict(steps=0), "steps must be >= 1"),
    (dict(lr=0.0), "lr must be a positive"), (dict(ema=1.0), "ema must be in [0, 1)"), (dict(clip=-1.0), "clip must be > 0"),
    (dict(betas=(0.9, 1.0)), "betas must be"), (dict(min_lr_ratio=2.0), "min_lr_ratio"), (dict(log_every=0), "log_every must be >= 1"),
    (dict(ckpt_every=-1), "ckpt_every must be >= 0"), (dict(device="gpu7"), "unknown device")])
def test_config_validation(kw, msg):
    with pytest.raises(ValueError) as e: TrainConfig(**kw)
    assert msg in str(e.value)


def test_config_and_input_errors(monkeypatch):
    with pytest.raises(TypeError, match="steps must be an int"): TrainConfig(steps=10.0)
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ValueError, match=r"divisible by world_size \* grad_accum"):
        fit(nn.Linear(2, 1), torch.randn(8, 2), lambda m, b: m(b).mean(), TrainConfig(steps=1, batch_size=8, warmup=0, progress=False))
    monkeypatch.delenv("WORLD_SIZE")
    with pytest.raises(TypeError, match="model must be an nn.Module"): fit(lambda x: x, torch.randn(8, 2), lambda m, b: 0, TrainConfig(steps=1))
    with pytest.raises(ValueError, match="scalar loss"):
        fit(nn.Linear(2, 1), torch.randn(8, 2), lambda m, b: m(b), TrainConfig(steps=1, batch_size=4, warmup=0, progress=False))
    with pytest.raises(TypeError, match="must support len"):
        fit(nn.Linear(2, 1), 5, lambda m, b: m(b).mean(), TrainConfig(steps=1, warmup=0, progress=False))


def test_data_formats_and_stream():
    "Every supported data type trains; ranks' slices of a micro-step tile the global batch."
    import datasets
    x = torch.randn(12, 2); y = torch.randn(12, 1)
    class DS(torch.utils.data.Dataset):
        def __len__(self): return 12
        def __getitem__(self, i): return {"x": x[i], "y": y[i]}
    get = lambda b: (b["x"], b["y"]) if isinstance(b, dict) else b
    sources = [(x, y), [x, y], {"x": x, "y": y}, DS(), datasets.Dataset.from_dict({"x": x.tolist(), "y": y.tolist()}),
               datasets.Dataset.from_dict({"x": x.tolist(), "y": y.tolist()}).with_format("torch")]
    finals = []
    for data in sources:
        torch.manual_seed(0)
        m = nn.Linear(2, 1)
        res = fit(m, data, lambda mm, b: ((mm(get(b)[0].float()) - get(b)[1].float()) ** 2).mean(),
                  TrainConfig(steps=5, batch_size=4, warmup=0, progress=False))
        finals.append(res.model.weight.detach())
    for f in finals[1:]: assert torch.allclose(f, finals[0], atol=1e-6)   # same samples in the same order
    s = SampleStream(7, seed=3)
    assert sorted(s.indices(7, 7).tolist()) == list(range(7))
    assert torch.equal(torch.cat([s.indices(5 + r * 3, 3) for r in range(4)]), s.indices(5, 12))


def test_metrics_log_and_plot(tmp_path):
    res = fit(nn.Linear(2, 1), torch.randn(32, 2), lambda m, b: (m(b).pow(2).mean(), {"extra": 1.5}),
              TrainConfig(steps=7, batch_size=8, warmup=0, log_every=3, out=str(tmp_path), progress=False),
              eval_fn=lambda m: {"score": 2.0}, eval_every=2)
    recs = read_metrics(tmp_path)
    assert recs == res.history and [r["step"] for r in recs] == [2, 3, 4, 6, 7]
    assert all(k in recs[0] for k in ("loss", "lr", "grad_norm", "samples_per_s", "extra", "eval_score"))
    assert recs[1].get("eval_score") is None and recs[-1]["eval_score"] == 2.0 and recs[0]["extra"] == 1.5
    assert (tmp_path / "metrics.png").stat().st_size > 1000
    fig = plot_metrics(tmp_path, keys=["loss", "lr"])
    assert len([a for a in fig.axes if a.get_visible()]) == 2
