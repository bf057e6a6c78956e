"""Model-FLOPs utilisation (MFU) of MaskGIT's stage-II transformer trained at the paper's shape on random tokens,
and the images/s of its parallel decoder.

    python bench/maskgit_mfu.py                       # on a GPU: 24 layers x 768, 16 heads, batch 256, eager and compiled
    python bench/maskgit_mfu.py --batch 64 --steps 20 --out mfu.json
    python bench/maskgit_mfu.py --tiny                # CPU smoke run: 2 layers, width 64, batch 4, 16 tokens, 2 steps

The model is fsq_lit.maskgit.MaskGIT with the paper's stage-II shape: a codebook of 1024 tokens (+ [MASK]), 1000
classes (+ the null class), 256 = 16 x 16 image tokens and a class token (257 positions), a bidirectional 24 x 768
transformer with 16 heads, and a full head to 1024 logits per image token. A training step is AdamW (fused on CUDA)
on fsq_lit.maskgit.maskgit_loss (random masks from the cosine schedule, class dropout, label-smoothed cross-entropy
on the masked tokens) of a random token batch under bf16 autocast (CUDA only), first eager, then with the model and
the loss compiled as one graph (torch.compile, fullgraph=True: the step has no host sync, so nothing breaks it), then
the same replayed from CUDA graphs (mode='reduce-overhead'); not with --no-compile, and never on the CPU, where
inductor's C++ build would dominate a smoke run (tests/test_fused.py compiles the loss on the CPU, with fullgraph=True).

MFU = model FLOPs per step / step time / peak. Model FLOPs are MaskGIT.flops_per_sample(): matmul FLOPs only,
flops_per_token (6N + 12*L*d*T, chapter 09) for each of the 257 positions plus 6*d*1024 per image token for the head
(applied to all 256 tokens, masked or not); embeddings, LayerNorms, softmax and the loss are not counted. The peak is
measured in the same run on the same device: the best rate of a large matmul in the training dtype (bf16 n=8192 on
CUDA, timed with CUDA events; fp32 on the CPU, so CPU MFU is against the CPU's measured fp32 matmul rate). MFU against
the spec-sheet bf16 peak (fsq_lit.train.peak_flops) is reported too when the GPU is known.

Sampling: images/s of fsq_lit.maskgit.sample (the official decoder, 12 steps) on the eager model in eval mode under
the same autocast, for a batch of 256 class labels, without guidance and with classifier-free guidance (which runs
the conditional and the null rows in one doubled batch); one untimed warm-up call, then synchronised timing (CUDA
events on CUDA). Its speed does not depend on the weights (the number of steps is fixed), so random weights serve.
The images come from the tokens through a tokenizer's decoder, timed alone on the same batch (MaskGIT's VQGAN
size: 256 px from 16 x 16 tokens, base width 128, ch_mult 1,1,2,2,4, two residual blocks; random weights), and the
result splits an image's sampling time between the transformer's steps and the decoder.
Speed is printed and written to JSON (--out), never asserted.
"""
import argparse, datetime, json, math, os, platform, statistics, time
from pathlib import Path
import torch
from fsq_lit.transformer import TransformerConfig, n_params, flops_per_token
from fsq_lit.maskgit import MaskGITConfig, MaskGIT, maskgit_loss, sample
from fsq_lit.train import peak_flops
from fsq_lit.tokenizer import TokenizerConfig, Tokenizer

VOCAB, CLASSES = 1024, 1000      # MaskGIT on ImageNet 256x256: codes of a 1024-code tokenizer, 1000 classes


def autocast(device):
    "bf16 autocast on CUDA, nothing on the CPU."
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def sync(device):
    if device.type == "cuda": torch.cuda.synchronize(device)


def timed(fn, device, reps: int):
    "Seconds per call of fn() over `reps` calls (CUDA events on CUDA, perf_counter after a synchronize on the CPU), and its last result."
    if device.type == "cuda":
        stream = torch.cuda.current_stream(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(stream)
        for _ in range(reps): out = fn()
        end.record(stream); end.synchronize()
        return start.elapsed_time(end) / 1e3 / reps, out
    t = time.perf_counter()
    for _ in range(reps): out = fn()
    return (time.perf_counter() - t) / reps, out


def synthetic_batch(batch: int, tokens: int, device, seed: int = 0) -> dict:
    "maskgit_loss's batch of random token ids (B, tokens) and labels (B,); the loss draws the masks itself."
    g = torch.Generator().manual_seed(seed)
    b = dict(tokens=torch.randint(0, VOCAB, (batch, tokens), generator=g), label=torch.randint(0, CLASSES, (batch,), generator=g))
    return {k: v.to(device) for k, v in b.items()}


def make_step(model, opt, batch, device, loss_fn=None, graphs: bool = False):
    "One optimizer step on maskgit_loss (or `loss_fn(batch)`, the same loss compiled; `graphs`: replayed from CUDA graphs); returns the loss tensor."
    loss_fn = loss_fn or (lambda b: maskgit_loss(model, b))
    def step():
        if graphs: torch.compiler.cudagraph_mark_step_begin()      # the graphs' outputs of the last step may be overwritten
        opt.zero_grad(set_to_none=True)
        with autocast(device): loss, _ = loss_fn(batch)
        loss.backward()
        opt.step()
        return loss.detach().clone()
    return step


COMPILED = {'compiled': {}, 'compiled, CUDA graphs': dict(mode='reduce-overhead')}   # torch.compile's options of each compiled run


def time_steps(step, device, warmup: int, steps: int) -> dict:
    "Seconds per step over `steps` timed steps, after `warmup` untimed ones (compilation happens there)."
    t0 = time.perf_counter()
    for _ in range(warmup): step()
    sync(device)
    warmup_s = time.perf_counter() - t0
    step_s, loss = timed(step, device, steps)
    return dict(warmup_s=round(warmup_s, 3), step_s=step_s, loss=float(loss))


def matmul_peak(device, n: int, reps: int = 5, inner: int = 10) -> dict:
    "Best FLOP/s of an n x n x n matmul in the training dtype (bf16 on CUDA, timed with CUDA events; fp32 on the CPU)."
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3): a @ b
    sync(device)
    times = [timed(lambda: a @ b, device, inner)[0] for _ in range(reps)]
    return dict(flops=2 * n**3 / min(times), median_flops=2 * n**3 / statistics.median(times), n=n, dtype=str(dtype).removeprefix("torch."))


def summarize(r: dict, flops_per_sample: float, batch: int, positions: int, peak: float, spec: float | None) -> dict:
    "Throughput and MFU of one timed run."
    sps = batch / r["step_s"]
    achieved = flops_per_sample * sps
    return dict(step_ms=round(1e3 * r["step_s"], 3), samples_per_s=round(sps, 2), tokens_per_s=round(sps * positions, 1),
                achieved_tflops=round(achieved / 1e12, 4), mfu_measured_peak=round(achieved / peak, 4),
                mfu_spec_peak=None if spec is None else round(achieved / spec, 4), warmup_s=r["warmup_s"], final_loss=round(r["loss"], 4))


def images_per_s(model, labels, steps: int, guidance: float, device, reps: int) -> float:
    "Images/s of `sample(model, labels, steps, guidance=...)` under autocast: one untimed warm-up call, then `reps` timed calls."
    def call():
        with autocast(device): return sample(model, labels, steps=steps, guidance=guidance)
    call()
    sync(device)
    return labels.shape[0] / timed(call, device, reps)[0]


def decoder_config(a) -> TokenizerConfig:
    "The tokenizer whose decoder turns the sampled tokens into images: MaskGIT's at the paper's size (256 px from 16 x 16 tokens, base width 128, ch_mult 1,1,2,2,4, two residual blocks); --tiny: 16 px from 4 x 4, width 8."
    side = math.isqrt(a.tokens)
    if side * side != a.tokens: raise ValueError(f"--tokens {a.tokens} is not a square grid: no decoder to time")
    if a.tiny: return TokenizerConfig(image_size=4 * side, channels=8, ch_mult=(1, 2, 2), levels=(8, 5, 5, 5))
    return TokenizerConfig(image_size=16 * side, channels=128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, levels=(8, 5, 5, 5))


def decoding(a) -> dict:
    "Images/s of the tokenizer's decoder (chapter 06's `detokenize`) on a batch of random tokens, eval mode, under autocast."
    cfg = decoder_config(a)
    tok, side = Tokenizer(cfg).to(a.device).eval(), math.isqrt(a.tokens)
    idx = torch.randint(0, tok.quantizer.codebook_size, (a.sample_batch, side, side), generator=torch.Generator().manual_seed(2)).to(a.device)
    def call():
        with autocast(a.device): return tok.detokenize(idx)
    call()
    sync(a.device)
    return dict(image_size=cfg.image_size, channels=cfg.channels, ch_mult=list(cfg.ch_mult), num_res_blocks=cfg.num_res_blocks,
                images_per_s=round(a.sample_batch / timed(call, a.device, a.sample_reps)[0], 3))


def sampling(a, model, peak: float) -> dict:
    """Sampling throughput without and with guidance, the forward FLOP/s the transformer reaches (guidance doubles the
    forward batch), and the time split between the transformer's steps and the tokenizer's decoder (`decoding`)."""
    labels = torch.randint(0, CLASSES, (a.sample_batch,), generator=torch.Generator().manual_seed(1)).to(a.device)
    ips = images_per_s(model, labels, a.sample_steps, 0.0, a.device, a.sample_reps)
    gips = images_per_s(model, labels, a.sample_steps, a.guidance, a.device, a.sample_reps)
    fpi = a.sample_steps * model.flops_per_sample(training=False)     # forward FLOPs per image, unguided
    dec = decoding(a)
    share = lambda t_ips: round((1 / dec['images_per_s']) / (1 / t_ips + 1 / dec['images_per_s']), 4)   # the decoder's part of an image
    return dict(steps=a.sample_steps, batch=a.sample_batch, reps=a.sample_reps, guidance=a.guidance, model="eager",
                images_per_s=round(ips, 3), guided_images_per_s=round(gips, 3), forward_flops_per_image=fpi,
                achieved_tflops=round(fpi * ips / 1e12, 4), guided_achieved_tflops=round(2 * fpi * gips / 1e12, 4),
                mfu_measured_peak=round(fpi * ips / peak, 4), guided_mfu_measured_peak=round(2 * fpi * gips / peak, 4),
                decoder=dec, decoder_share=share(ips), guided_decoder_share=share(gips))


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
    ap.add_argument("--tokens", type=int, default=256, help="image tokens per sample (16 x 16); one class token is added")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10, help="timed steps (after --warmup untimed ones)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--matmul", type=int, default=None, help="size n of the n^3 peak matmul (default 8192 on CUDA, 1024 on the CPU)")
    ap.add_argument("--sample-batch", type=int, default=256, help="labels per sample() call")
    ap.add_argument("--sample-steps", type=int, default=12, help="decoding steps of sample()")
    ap.add_argument("--sample-reps", type=int, default=3, help="timed sample() calls (after one warm-up call)")
    ap.add_argument("--guidance", type=float, default=2.0, help="guidance scale of the guided timing (> 0; speed does not depend on it)")
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--no-compile", action="store_true", help="time eager only")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke size: 2 layers, width 64, 4 heads, 16 tokens, batch 4, 1 + 2 steps, "
                                                       "matmul 256; sampling: batch 4, 4 steps, 1 timed call")
    ap.add_argument("--out", default=None, help="write the result as JSON here")
    a = ap.parse_args(argv)
    if a.tiny:
        a.layers, a.width, a.heads, a.tokens, a.batch, a.steps, a.warmup, a.matmul = 2, 64, 4, 16, 4, 2, 1, a.matmul or 256
        a.sample_batch, a.sample_steps, a.sample_reps = 4, 4, 1
    for k in ("layers", "width", "heads", "tokens", "batch", "steps", "sample_batch", "sample_steps", "sample_reps"):
        if getattr(a, k) < 1: ap.error(f"--{k.replace('_', '-')} must be >= 1, got {getattr(a, k)}")
    if a.guidance <= 0: ap.error(f"--guidance must be > 0 (the unguided decoder is always timed), got {a.guidance}")
    a.device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    a.matmul = a.matmul or (8192 if a.device.type == "cuda" else 1024)
    return a


def build(a):
    "The MaskGIT of the given shape in training mode on the device, and its AdamW."
    tf = TransformerConfig(n_layer=a.layers, n_head=a.heads, d_model=a.width)
    model = MaskGIT(MaskGITConfig(codebook_size=VOCAB, num_tokens=a.tokens, num_classes=CLASSES, transformer=tf)).to(a.device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.96), weight_decay=0.045, fused=a.device.type == "cuda")
    return model, opt


def train_runs(a, model, opt, peak: float, spec: float | None) -> tuple[dict, bool]:
    "Timed training eager, then compiled (CUDA, unless --no-compile); the summaries and whether compile ran."
    dev, P, fps = a.device, a.tokens + 1, model.flops_per_sample()
    batch = synthetic_batch(a.batch, a.tokens, dev)
    runs = {"eager": summarize(time_steps(make_step(model, opt, batch, dev), dev, a.warmup, a.steps), fps, a.batch, P, peak, spec)}
    compiled = not a.no_compile and dev.type == "cuda"
    for name, opts in COMPILED.items() if compiled else ():
        loss_fn = torch.compile(lambda b: maskgit_loss(model, b), fullgraph=True, **opts)   # model and loss, one graph: no host sync
        try: runs[name] = summarize(time_steps(make_step(model, opt, batch, dev, loss_fn, 'mode' in opts), dev, a.warmup + 2, a.steps),
                                    fps, a.batch, P, peak, spec)
        except Exception as e: runs[name] = dict(error=f"{type(e).__name__}: {e}"[:300])
    return runs, compiled


def run(a) -> dict:
    dev = a.device
    torch.manual_seed(0)
    if dev.type == "cuda": torch.backends.cuda.matmul.allow_tf32 = True
    model, opt = build(a)
    tf, P = model.cfg.transformer, a.tokens + 1
    peak, spec = matmul_peak(dev, a.matmul), peak_flops(dev)
    runs, compiled = train_runs(a, model, opt, peak["flops"], spec)
    return dict(benchmark="bench/maskgit_mfu.py", device=str(dev), dtype="bf16 autocast" if dev.type == "cuda" else "float32",
                loss="fsq_lit.maskgit.maskgit_loss",
                config=dict(n_layer=a.layers, d_model=a.width, n_head=a.heads, batch=a.batch, tokens=a.tokens, positions=P,
                            vocab=VOCAB, classes=CLASSES, steps=a.steps, warmup=a.warmup),
                params=dict(transformer=n_params(tf), matmul_weights=n_params(tf, matmul_only=True),
                            total=sum(p.numel() for p in model.parameters())),
                flops_per_token=flops_per_token(tf, P), flops_per_sample=model.flops_per_sample(),
                peak=dict(measured_flops=peak["flops"], measured_median_flops=peak["median_flops"], matmul_n=peak["n"],
                          matmul_dtype=peak["dtype"], spec_sheet_flops=spec),
                runs=runs, compile=("on" if compiled else "off (--no-compile)" if a.no_compile else "off (CPU)"),
                sampling=sampling(a, model, peak["flops"]),
                machine=machine(dev), torch=torch.__version__, date=datetime.date.today().isoformat())


def report(res: dict):
    c, p, m, s = res["config"], res["peak"], res["machine"], res["sampling"]
    print(f"MaskGIT stage II: {c['n_layer']} layers x {c['d_model']}, {c['n_head']} heads, batch {c['batch']} x {c['positions']} positions, "
          f"{res['params']['total'] / 1e6:.1f}M parameters, {res['dtype']}, {m.get('gpu', m['cpu'])}, torch {res['torch']}")
    spec = f", spec sheet {p['spec_sheet_flops'] / 1e12:.0f}" if p["spec_sheet_flops"] else ""
    print(f"  model FLOPs per sample {res['flops_per_sample'] / 1e9:.2f} G; peak: measured {p['matmul_dtype']} matmul "
          f"(n={p['matmul_n']}) {p['measured_flops'] / 1e12:.3f} TFLOP/s{spec}")
    for k, r in res["runs"].items():
        if "error" in r: print(f"  {k:<8} {r['error']}"); continue
        mfu = f"MFU {100 * r['mfu_measured_peak']:.1f} % of measured peak"
        if r["mfu_spec_peak"] is not None: mfu += f", {100 * r['mfu_spec_peak']:.1f} % of spec sheet"
        print(f"  {k:<8} {r['step_ms']:10.1f} ms/step  {r['tokens_per_s']:12,.0f} tokens/s  {r['achieved_tflops']:8.3f} TFLOP/s  {mfu}")
    if "step_ms" in res["runs"].get("compiled", {}):
        print(f"  compiled / eager speed-up: {res['runs']['eager']['step_ms'] / res['runs']['compiled']['step_ms']:.2f}x")
    else: print(f"  compile: {res['compile']}")
    print(f"  sampling ({s['model']}, {s['steps']} steps, batch {s['batch']}): {s['images_per_s']:,.1f} images/s "
          f"({s['achieved_tflops']:.3f} TFLOP/s), guidance {s['guidance']:g}: {s['guided_images_per_s']:,.1f} images/s "
          f"({s['guided_achieved_tflops']:.3f} TFLOP/s)")
    d = s['decoder']
    print(f"  decoding {d['image_size']} px images (tokenizer width {d['channels']}): {d['images_per_s']:,.1f} images/s; of an image's "
          f"sampling time the decoder takes {100 * s['decoder_share']:.1f} % ({100 * s['guided_decoder_share']:.1f} % with guidance)")


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
