"""Model-FLOPs utilisation (MFU) of MaskGIT's stage-II transformer, trained at the paper's shape on random tokens.

    python bench/maskgit_mfu.py                       # on a GPU: 24 layers x 768, 16 heads, batch 256, eager and compiled
    python bench/maskgit_mfu.py --batch 64 --steps 20 --out mfu.json
    python bench/maskgit_mfu.py --tiny                # CPU smoke run: 2 layers, width 64, batch 4, 2 steps

The model is fsq_lit.transformer.Transformer (bidirectional) with MaskGIT's embeddings: 1024 image tokens plus a
[MASK] token, a class embedding, learned positions for 257 = 1 class + 256 image tokens, and a Linear head to 1024
logits over the image positions. A training step is AdamW (fused on CUDA) on the masked-token cross-entropy under
bf16 autocast (CUDA only), first eager, then under torch.compile (not with --no-compile; never on the CPU, where
inductor's C++ build would dominate a smoke run).

MFU = model FLOPs per step / step time / peak. Model FLOPs are matmul FLOPs: flops_per_token (6N + 12*L*d*T,
chapter 09) for each of the 257 tokens, plus 6*d*1024 per image token for the head; embeddings are lookups and
cost nothing. The peak is measured in the same run on the same device: the best rate of a large matmul in the
training dtype (bf16 n=8192 on CUDA, timed with CUDA events; fp32 on the CPU, so CPU MFU is against the CPU's
measured fp32 matmul rate). MFU against the spec-sheet bf16 peak (fsq_lit.train.peak_flops) is reported too when
the GPU is known. Speed is printed and written to JSON (--out), never asserted.
"""
import argparse, datetime, json, os, platform, statistics, time
from pathlib import Path
import torch
import torch.nn.functional as F
from torch import nn
from fsq_lit.transformer import Transformer, TransformerConfig, n_params, flops_per_token
from fsq_lit.train import peak_flops

VOCAB, CLASSES, GRID = 1024, 1000, 256      # MaskGIT on ImageNet 256x256: 16x16 tokens from a 1024-code tokenizer


class MaskGITStageII(nn.Module):
    "Token + class embeddings and learned positions -> bidirectional Transformer -> logits over the image tokens."
    def __init__(self, cfg: TransformerConfig, vocab: int = VOCAB, classes: int = CLASSES, tokens: int = GRID):
        super().__init__()
        d = cfg.d_model
        self.tok, self.cls = nn.Embedding(vocab + 1, d), nn.Embedding(classes, d)   # row `vocab` is [MASK]
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, d) * 0.02)
        for e in (self.tok, self.cls): nn.init.normal_(e.weight, 0.0, 0.02)
        self.tf, self.head = Transformer(cfg), nn.Linear(d, vocab)

    def forward(self, idx, label):
        x = torch.cat([self.cls(label)[:, None], self.tok(idx)], dim=1) + self.pos
        return self.head(self.tf(x)[:, 1:])


def synthetic_batch(batch: int, device, seed: int = 0):
    "Random tokens and labels, and a MaskGIT-style mask (a cosine-schedule ratio per sample) of fixed shape."
    g = torch.Generator().manual_seed(seed)
    idx, label = torch.randint(0, VOCAB, (batch, GRID), generator=g), torch.randint(0, CLASSES, (batch,), generator=g)
    ratio = torch.cos(torch.rand(batch, 1, generator=g) * torch.pi / 2)
    mask = torch.rand(batch, GRID, generator=g) < ratio.clamp(min=1 / GRID)
    return [t.to(device) for t in (idx, label, mask)]


def make_step(model, opt, batch, device):
    "One optimizer step on the masked-token cross-entropy; returns the loss tensor."
    idx, label, mask = batch
    inp = torch.where(mask, torch.full_like(idx, VOCAB), idx)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    def step():
        opt.zero_grad(set_to_none=True)
        with autocast:
            logits = model(inp, label)
            ce = F.cross_entropy(logits.float().flatten(0, 1), idx.flatten(), reduction="none")
            loss = (ce * mask.flatten()).sum() / mask.sum().clamp(min=1)
        loss.backward()
        opt.step()
        return loss.detach()
    return step


def sync(device):
    if device.type == "cuda": torch.cuda.synchronize(device)


def time_steps(step, device, warmup: int, steps: int) -> dict:
    "Seconds per step over `steps` timed steps, after `warmup` untimed ones (compilation happens there)."
    t0 = time.perf_counter()
    for _ in range(warmup): loss = step()
    sync(device); t1 = time.perf_counter()
    for _ in range(steps): loss = step()
    sync(device); t2 = time.perf_counter()
    return dict(warmup_s=round(t1 - t0, 3), step_s=(t2 - t1) / steps, loss=float(loss))


def matmul_peak(device, n: int, reps: int = 5, inner: int = 10) -> dict:
    "Best FLOP/s of an n x n x n matmul in the training dtype (bf16 on CUDA, timed with CUDA events; fp32 on the CPU)."
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3): a @ b
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(inner): a @ b
            end.record(); end.synchronize()
            times.append(start.elapsed_time(end) / 1e3 / inner)
        else:
            t = time.perf_counter()
            for _ in range(inner): a @ b
            times.append((time.perf_counter() - t) / inner)
    return dict(flops=2 * n**3 / min(times), median_flops=2 * n**3 / statistics.median(times), n=n, dtype=str(dtype).removeprefix("torch."))


def summarize(r: dict, flops_per_sample: float, batch: int, peak: float, spec: float | None) -> dict:
    "Throughput and MFU of one timed run."
    sps = batch / r["step_s"]
    achieved = flops_per_sample * sps
    return dict(step_ms=round(1e3 * r["step_s"], 3), samples_per_s=round(sps, 2), tokens_per_s=round(sps * (GRID + 1), 1),
                achieved_tflops=round(achieved / 1e12, 4), mfu_measured_peak=round(achieved / peak, 4),
                mfu_spec_peak=None if spec is None else round(achieved / spec, 4), warmup_s=r["warmup_s"], final_loss=round(r["loss"], 4))


def machine(device) -> dict:
    cpu = platform.processor() or platform.machine()
    try: cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration): pass
    m = dict(platform=platform.platform(), cpu=cpu, cores=os.cpu_count(), threads=torch.get_num_threads())
    if device.type == "cuda": m["gpu"] = torch.cuda.get_device_name(device)
    return m


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10, help="timed steps (after --warmup untimed ones)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--matmul", type=int, default=None, help="size n of the n^3 peak matmul (default 8192 on CUDA, 1024 on the CPU)")
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--no-compile", action="store_true", help="time eager only")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke size: 2 layers, width 64, 4 heads, batch 4, 1 + 2 steps, matmul 256")
    ap.add_argument("--out", default=None, help="write the result as JSON here")
    a = ap.parse_args(argv)
    if a.tiny: a.layers, a.width, a.heads, a.batch, a.steps, a.warmup, a.matmul = 2, 64, 4, 4, 2, 1, a.matmul or 256
    a.device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    a.matmul = a.matmul or (8192 if a.device.type == "cuda" else 1024)
    return a


def run(a) -> dict:
    cfg, dev = TransformerConfig(n_layer=a.layers, n_head=a.heads, d_model=a.width), a.device
    torch.manual_seed(0)
    if dev.type == "cuda": torch.backends.cuda.matmul.allow_tf32 = True
    model = MaskGITStageII(cfg).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.96), weight_decay=0.045, fused=dev.type == "cuda")
    T = GRID + 1
    fps = flops_per_token(cfg, T) * T + 6 * a.width * VOCAB * GRID        # transformer on 257 tokens + head on 256
    peak, spec = matmul_peak(dev, a.matmul), peak_flops(dev)
    batch = synthetic_batch(a.batch, dev)
    runs = {"eager": summarize(time_steps(make_step(model, opt, batch, dev), dev, a.warmup, a.steps), fps, a.batch, peak["flops"], spec)}
    compiled = not a.no_compile and dev.type == "cuda"
    if compiled:
        step = make_step(torch.compile(model), opt, batch, dev)
        runs["compiled"] = summarize(time_steps(step, dev, a.warmup + 2, a.steps), fps, a.batch, peak["flops"], spec)
    return dict(benchmark="bench/maskgit_mfu.py", device=str(dev), dtype="bf16 autocast" if dev.type == "cuda" else "float32",
                config=dict(n_layer=a.layers, d_model=a.width, n_head=a.heads, batch=a.batch, tokens=T, vocab=VOCAB, classes=CLASSES,
                            steps=a.steps, warmup=a.warmup),
                params=dict(transformer=n_params(cfg), matmul_weights=n_params(cfg, matmul_only=True),
                            total=sum(p.numel() for p in model.parameters())),
                flops_per_token=flops_per_token(cfg, T), flops_per_sample=fps,
                peak=dict(measured_flops=peak["flops"], measured_median_flops=peak["median_flops"], matmul_n=peak["n"],
                          matmul_dtype=peak["dtype"], spec_sheet_flops=spec),
                runs=runs, compile=("on" if compiled else "off (--no-compile)" if a.no_compile else "off (CPU)"),
                machine=machine(dev), torch=torch.__version__, date=datetime.date.today().isoformat())


def report(res: dict):
    c, p, m = res["config"], res["peak"], res["machine"]
    print(f"MaskGIT stage II: {c['n_layer']} layers x {c['d_model']}, {c['n_head']} heads, batch {c['batch']} x {c['tokens']} tokens, "
          f"{res['params']['total'] / 1e6:.1f}M parameters, {res['dtype']}, {m.get('gpu', m['cpu'])}, torch {res['torch']}")
    spec = f", spec sheet {p['spec_sheet_flops'] / 1e12:.0f}" if p["spec_sheet_flops"] else ""
    print(f"  model FLOPs per sample {res['flops_per_sample'] / 1e9:.2f} G; peak: measured {p['matmul_dtype']} matmul "
          f"(n={p['matmul_n']}) {p['measured_flops'] / 1e12:.3f} TFLOP/s{spec}")
    for k, r in res["runs"].items():
        mfu = f"MFU {100 * r['mfu_measured_peak']:.1f} % of measured peak"
        if r["mfu_spec_peak"] is not None: mfu += f", {100 * r['mfu_spec_peak']:.1f} % of spec sheet"
        print(f"  {k:<8} {r['step_ms']:10.1f} ms/step  {r['tokens_per_s']:12,.0f} tokens/s  {r['achieved_tflops']:8.3f} TFLOP/s  {mfu}")
    if "compiled" in res["runs"]:
        print(f"  compiled / eager speed-up: {res['runs']['eager']['step_ms'] / res['runs']['compiled']['step_ms']:.2f}x")
    else: print(f"  compile: {res['compile']}")


def main(argv=None):
    a = parse_args(argv)
    res = run(a)
    report(res)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
        print(f"  wrote {a.out}")
    return res


if __name__ == "__main__":
    main()
