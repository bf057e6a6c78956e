"""What chapter 06 cannot check in seconds: the tokenizer learns on scenes, compiles, and is reproducible from its seeds."""
import re
import pytest, torch
from torch import nn
from fsq_lit.tokenizer import (TokenizerConfig, Tokenizer, TokenizerLoss, evaluate_tokenizer, scene_images,
                               train_tokenizer, load_tokenizer)
from fsq_lit.train import TrainConfig, _Objective


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("FSQ_LIT_CACHE", str(tmp_path_factory.mktemp("cache")))   # never the user's cache
    yield scene_images(512, 32, seed=0, test=64, progress=False)
    mp.undo()


def test_tokenizer_learns_on_scenes(scenes, tmp_path):
    "80 small steps lift held-out PSNR well above the untrained model's (measured: 13.2 -> 21.9 dB)."
    tr, te = scenes
    cfg = TokenizerConfig(channels=16, ch_mult=(1, 2), train=TrainConfig(steps=80, batch_size=16, warmup=10, lr=3e-3, progress=False))
    torch.manual_seed(0)
    before = evaluate_tokenizer(Tokenizer(cfg), te)
    tok, s = train_tokenizer(cfg, out=tmp_path / "run", data=(tr, te))
    assert s["psnr"] > before["psnr"] + 5, (before["psnr"], s["psnr"])
    assert s["usage"] > 0.05 and s["perplexity"] > 20
    # the saved tokenizer is the evaluated one
    tok2 = load_tokenizer(tmp_path / "run" / "tokenizer")
    x = te[:8].permute(0, 3, 1, 2).float() / 255
    assert torch.equal(tok2.tokenize(x), tok.tokenize(x))
    assert (tmp_path / "run" / "recon.png").stat().st_size > 1000


def test_compiled_loss_matches_eager():
    "The GPU preset compiles tokenizer + loss: the loss must keep its graph and give eager's gradients."
    torch.manual_seed(0)
    cfg = TokenizerConfig(channels=8, ch_mult=(1, 2))
    step = _Objective(Tokenizer(cfg), TokenizerLoss(cfg))   # what fit wraps and compiles
    x = torch.rand(4, 3, 32, 32)
    (le, _), (lc, _) = step(x), torch.compile(step)(x)
    assert lc.grad_fn is not None, "compiled loss lost its graph"
    ps = [p for p in step.parameters()]
    ge, gc = torch.autograd.grad(le, ps), torch.autograd.grad(lc, ps)
    torch.testing.assert_close(lc, le, rtol=1e-5, atol=1e-6)
    for a, b in zip(gc, ge): torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_same_seed_same_tokenizer():
    "Initial weights and data order depend only on the seeds: two runs give identical weights; another seed does not."
    x = (torch.rand(48, 32, 32, 3, generator=torch.Generator().manual_seed(1)) * 255).byte()
    run = lambda seed: train_tokenizer(TokenizerConfig(channels=8, ch_mult=(1, 2), train=TrainConfig(
        steps=4, batch_size=8, warmup=1, progress=False, seed=seed)), data=(x, None))[0].state_dict()
    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def _cli(*args, cache):
    import os, subprocess, sys
    from pathlib import Path
    env = {**os.environ, "FSQ_LIT_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([str(Path(sys.executable).parent / "fsq-tokenizer"), "--preset", "smoke", "--no_progress", *args],
                          capture_output=True, text=True, env=env, timeout=300)


def test_cli_run_directory_promises(tmp_path):
    "fsq-tokenizer --preset smoke (the README's main job, small): every promised file, checkpoints by default, other settings refused by name, --allow steps, a broken checkpoint named."
    import json
    from fsq_lit.tokenizer import open_run, preset_config
    from fsq_lit.runs import RunError
    out, cache = tmp_path / "run", tmp_path / "cache"
    r = _cli("--out", str(out), cache=cache)
    assert r.returncode == 0, r.stderr[-2000:]
    for f in ["recon.png", "metrics.jsonl", "metrics.png", "summary.json", "tokenizer/config.json", "tokenizer/model.safetensors",
              "ckpt.pt", "ckpt.prev.pt"]:                                         # the smoke preset checkpointed at 5 and 10
        assert (out / f).is_file(), f"fsq-tokenizer did not write {f}"
    assert "psnr=" in r.stdout and all("step" in json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 10 and 0 < summary["usage"] <= 1 and summary["config"]["quantizer"] == "fsq"
    card = (out / "tokenizer" / "README.md").read_text()                              # the model card carries this run
    assert f"| PSNR | {summary['psnr']:.2f} dB |" in card and "128 procedural 3-D scenes" in card and "pushed to the Hub" not in card
    assert "codebook_size" not in summary["config"] and "vq" not in summary["config"]   # FSQ: no VQ settings recorded
    assert "bf16" not in summary["config"]["train"] and summary["device"] == "cpu"     # autocast does not apply on a CPU
    r = _cli("--out", str(out), "--seed", "5", cache=cache)                            # as a user meets it: one line, exit 2
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "train.seed: 0 -> 5" in r.stderr, r.stderr[-2000:]
    for kw, says in ((dict(batch_size=8), "train.batch_size: 16 -> 8"), (dict(n_train=64), "n_train: 128 -> 64"),
                     (dict(steps=12), "allow the change of steps explicitly (--allow steps)")):   # the same check, in process
        with pytest.raises(RunError, match=re.escape(says)): open_run(preset_config("smoke", progress=False, **kw), out)
    r = _cli("--out", str(out), "--steps", "12", "--allow", "steps", cache=cache)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((out / "summary.json").read_text())["steps"] == 12
    for f in ("ckpt.pt", "ckpt.prev.pt"): (out / f).write_bytes(b"\x00garbage")
    r = _cli("--out", str(out), "--steps", "12", "--allow", "steps", cache=cache)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "cannot read checkpoint" in r.stderr and "ckpt.pt:" in r.stderr \
        and "previous checkpoint is unreadable too" in r.stderr, r.stderr[-2000:]
