"""Helper process for tests/test_train.py: trains a tiny MLP with `fsq_lit.train.fit` (alone or under torchrun),
or exercises `save_checkpoint` so that the test can kill it. Usage: python _train_worker.py '<json spec>'."""
import contextlib, faulthandler, io, json, os, signal, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch
from torch import nn
import torch.distributed as dist
from fsq_lit.train import TrainConfig, fit, process_group, save_checkpoint



def tiny_data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return x, x[:, :1] * x[:, 1:2] + torch.sin(x[:, 2:3]) + 0.1 * torch.randn(n, 1, generator=g)


def tiny_model(dropout=0.0):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Dropout(dropout), nn.Linear(32, 1))


def make_loss(kill_at=None, grad_accum=1):
    calls = [0]
    def loss_fn(model, batch):
        calls[0] += 1
        if kill_at is not None and calls[0] > (kill_at - 1) * grad_accum:
            os.kill(os.getpid(), signal.SIGKILL)          # a hard kill in the middle of step `kill_at`
        x, y = batch
        return ((model(x) - y) ** 2).mean(), {"abs_y": y.abs().mean()}
    return loss_fn


def comm_threads():
    "Names of this process's gloo and NCCL threads (Linux)."
    return sorted(n for n in (Path(t, "comm").read_text().strip() for t in Path("/proc/self/task").iterdir()) if "gloo" in n or "nccl" in n)


def train(spec):
    results, multi = [], int(os.environ.get("WORLD_SIZE", 1)) > 1
    with contextlib.ExitStack() as own:
        for i, run in enumerate(spec["runs"]):
            if spec.get("init_pg_from", 10**9) <= i and multi and not dist.is_initialized():
                own.enter_context(process_group("cpu"))       # the script's own group, destroyed at the end of `with`
            was_init = dist.is_initialized()
            run = dict(run); kill_at = run.pop("kill_at", None); dropout = run.pop("dropout", 0.0)
            cfg = TrainConfig(**{"progress": False, "device": "cpu", "log_every": 1, "warmup": 3, "lr": 1e-2, **run})
            res = fit(tiny_model(dropout), tiny_data(), make_loss(kill_at, cfg.grad_accum), cfg)
            if was_init: assert dist.is_initialized(), "fit destroyed a process group it did not create"
            elif multi: assert not dist.is_initialized(), "fit left its process group behind"
            results.append(dict(params=res.model.state_dict(), ema=None if res.ema is None else res.ema.state_dict(),
                                step=res.step, history=res.history))
        rank = dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", 0))
    if multi: assert not comm_threads(), f"threads of a destroyed process group still run: {comm_threads()}"
    if rank == 0 and spec.get("result"): torch.save(results, spec["result"])


def save_loop(spec):
    "Save ever newer consistent checkpoints (tensor full of n) to one path until killed."
    path, n = spec["path"], 0
    while True:
        n += 1
        save_checkpoint(path, {"n": n, "x": torch.full((spec.get("numel", 2_000_000),), float(n))})
        print(n, flush=True)


def die_mid_write(spec):
    "Write a good checkpoint, then start a second save that is SIGKILLed after half its bytes are on disk."
    path = spec["path"]
    save_checkpoint(path, {"n": 1, "x": torch.full((1000,), 1.0)})
    real_save = torch.save
    def half_then_die(obj, f):
        buf = io.BytesIO(); real_save(obj, buf); data = buf.getvalue()
        f.write(data[: len(data) // 2]); f.flush(); os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
    torch.save = half_then_die
    save_checkpoint(path, {"n": 2, "x": torch.full((1000,), 2.0)})


if __name__ == "__main__":
    torch.set_num_threads(1)   # same arithmetic in every process
    faulthandler.enable()      # a C++ abort prints the Python stack it happened under
    faulthandler.dump_traceback_later(float(os.environ.get("TRAIN_WORKER_TIMEOUT", 100)), exit=True)  # a hang dies loudly
    spec = json.loads(sys.argv[1])
    {"train": train, "save_loop": save_loop, "die_mid_write": die_mid_write}[spec.get("mode", "train")](spec)
