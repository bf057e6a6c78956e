"""The book's GPU performance in one run: the memory and matmul limits, FSQ's paths against them and the peer,
VQ's nearest neighbour, and MaskGIT's training MFU and sampling speed.

    python bench/gpu_suite.py                    # on a GPU, a few minutes: bench/results/<gpu>.json, .md and .png
    python bench/gpu_suite.py --only fsq,limits  # some sections
    python bench/gpu_suite.py --smoke --out DIR  # tiny sizes, on the CPU in seconds: the test's run

Sections, each in the same process, each guarded (an exception is recorded as {"error": ...} and the suite goes on);
after each one the JSON and the Markdown file are rewritten atomically (after fsq also its figure, chapter 02a's
plot_suite) and its table is printed:
  limits   copy time of FSQ's input (dst.copy_(src), bytes read + written), float32 and bf16, and the measured matmul
           peak (bench/maskgit_mfu.py's matmul_peak: bf16 n=8192 on CUDA)
  fsq      FSQ([8, 5, 5, 5]) on --tokens tokens (2^24), float32 and bf16, channel-last (1, N, 4) and channel-first
           (B, 4, H, W), forward (no grad) and forward + backward, for each path of the book (kernel='eager',
           'compile', 'triton') and vector-quantize-pytorch's FSQ (the peer). Each case: median ms (CUDA events around
           blocks of 10 calls on CUDA, perf_counter on the CPU) after untimed warm-up calls (compilation included; their seconds
           are recorded), GB/s of the bytes the path must move (forward: input + codes + int32 indices; forward +
           backward adds grad read, input read, grad written), the ratio to the copy time of the input, and exact
           agreement with the eager path on the same input (index and code mismatches, largest gradient difference).
  host     the host's time per forward + backward of 1,024 tokens, where the GPU's work is microseconds: median us per
           call over blocks of back-to-back calls (synchronised at each block's ends) for x*2, an identity autograd function,
           FSQ's paths, the kernel called through its autograd function and through its operator (chapter 02a's fsq_op), and
           FSQ(kernel='triton') compiled with fullgraph=True
  tune     the Triton kernel's tile (values per program) and warps per program: forward and forward + backward for
           each setting of a small grid, against the copy (fsq_lit.kernel.CONFIG is the default), in float32 and bf16,
           channel-last and channel-first; the fastest setting of each case, and over all four (least sum of forward and
           forward-and-backward time over each case's copy, the GPU's own where measured: the candidate for CONFIG)
  vq       fsq_lit.vq.time_quantizers at 2^10 ... 2^16 codes (chapter 08's timing figure), the tokens of chapter 08's gpu preset
  maskgit  bench/maskgit_mfu.py at the paper's size (--tiny with --smoke): training MFU, sampling images/s
A run of some sections (--only) into a folder that holds this GPU's results keeps the other sections there; each
section records the date, the commit and the files changed from it that it was measured at (section_runs). On CUDA each
FSQ and copy timing is taken twice: as called, the median over blocks of 10 back-to-back calls between two CUDA events
(the host's launch overhead overlaps the GPU's work, as in training, but where the host's work per call, Python and
autograd, exceeds the GPU's, this is the host's time); and the GPU's own ('gpu_ms'), the same 10 calls captured once in
a CUDA graph and replayed (no host work; a path that cannot be captured records 'gpu_error' instead). FSQ runs with
nan_check=False (the default check costs one host sync per call), and the kernel once more with it
('triton+nan'). Speed is never asserted. Exit status 1
(after writing the results) if a path of the book gives other indices than the eager path, if the Triton kernel's codes
or gradients differ from eager's or its self-test fails, or if anything raised; 2 on a usage error.
"""
import argparse, datetime, functools, importlib.util, json, platform, re, statistics, subprocess, sys, time, traceback
from importlib.metadata import version, PackageNotFoundError
from pathlib import Path
import torch
from fsq_lit.runs import atomic_write

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / 'results'
SECTIONS = ('limits', 'fsq', 'host', 'tune', 'vq', 'maskgit')
LEVELS = [8, 5, 5, 5]
PATHS = ('eager', 'compile', 'triton', 'triton+nan', 'peer')   # the book's kernels (the last with FSQ's default NaN check), the peer
DTYPES = {'float32': torch.float32, 'bfloat16': torch.bfloat16}
LAYOUTS = ('channel_last', 'channel_first')


@functools.cache
def bench_module(name: str):
    "bench/<name>.py as a module (bench/ is not a package)."
    spec = importlib.util.spec_from_file_location(f'bench_{name}', BENCH / f'{name}.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def guarded(fn, *args) -> dict:
    "fn(*args), or {'error': ...} if it raised (printed, and the suite goes on)."
    try: return fn(*args)
    except Exception as e:
        if torch.cuda.is_available(): torch.cuda.empty_cache()
        print(f"  ERROR in {getattr(fn, '__name__', fn)}: {type(e).__name__}: {e}", flush=True)
        traceback.print_exc(limit=-4)
        return dict(error=f'{type(e).__name__}: {e}')


# ---------------------------------------------------------------- timing

def sync(device):
    bench_module('maskgit_mfu').sync(device)


def warm(fn, device, n: int) -> float:
    "Seconds taken by `n` untimed calls of fn (compilation happens here)."
    t = time.perf_counter()
    for _ in range(n): fn()
    sync(device)
    return time.perf_counter() - t


BLOCK_CALLS = 10   # calls between two CUDA events: a lone call would time the host's launch overhead too


def median_ms(fn, device, reps: int) -> float:
    "Median milliseconds per call: on CUDA over blocks of BLOCK_CALLS back-to-back calls between two events, on the CPU per call."
    if device.type != 'cuda':
        ts = []
        for _ in range(reps):
            t = time.perf_counter(); fn(); ts.append(1e3 * (time.perf_counter() - t))
        return statistics.median(ts)
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(max(1, reps // BLOCK_CALLS))]
    for start, end in ev:
        start.record()
        for _ in range(BLOCK_CALLS): fn()
        end.record()
    sync(device)
    return statistics.median(s.elapsed_time(e) / BLOCK_CALLS for s, e in ev)


def graph_ms(fn, device, reps: int) -> float:
    "Median ms per call of fn replayed from a CUDA graph of BLOCK_CALLS calls: the GPU's own time, no host work in it."
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side): fn()                 # one call on a side stream before capturing, as CUDA graphs ask
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(BLOCK_CALLS): fn()
    return median_ms(graph.replay, device, reps) / BLOCK_CALLS


def gpu_time(fn, q, a) -> dict:
    "{'gpu_ms': graph_ms of fn} on CUDA, {'gpu_error': why not} if it cannot be captured, {} on the CPU."
    if a.device.type != 'cuda': return {}
    if getattr(q, 'nan_check', False): return dict(gpu_error='the NaN check waits for the GPU in every call: no CUDA graph')
    try: return dict(gpu_ms=graph_ms(fn, a.device, a.reps))
    except Exception as e: return dict(gpu_error=f'{type(e).__name__}: {e}'[:200])


def rate(ms: float, nbytes: int, copy: dict | None = None, warmup_s: float | None = None, gpu: dict | None = None) -> dict:
    """A timing as recorded: ms, the bytes counted, GB/s, gpu_time's result, and the ratios to the copy's record `copy`
    like for like: the time as called over the copy's as called, the GPU's own time over the copy's GPU time."""
    r = dict(ms=float(f'{ms:.5g}'), bytes=nbytes, gbps=float(f'{nbytes / ms / 1e6:.4g}'))
    if copy: r['ratio_to_copy'] = float(f"{ms / copy['ms']:.4g}")
    if warmup_s is not None: r['warmup_s'] = round(warmup_s, 3)
    if gpu and 'gpu_ms' in gpu:
        r['gpu_ms'] = float(f"{gpu['gpu_ms']:.5g}")
        if copy and copy.get('gpu_ms'): r['gpu_ratio_to_copy'] = float(f"{gpu['gpu_ms'] / copy['gpu_ms']:.4g}")
    elif gpu: r['gpu_error'] = gpu['gpu_error']
    return r


# ---------------------------------------------------------------- limits

def cf_shape(n: int, d: int) -> tuple:
    "(B, d, H, H) holding n tokens: H the largest power of two <= 512 whose square divides n (2^24: (64, d, 512, 512))."
    side = 512
    while n % (side * side): side //= 2
    return (n // side**2, d, side, side)


def fsq_input(a, dtype, layout: str, seed: int = 0) -> torch.Tensor:
    "Standard normal input of a.tokens tokens in the layout, drawn in float32 on the device, then cast."
    shape = (1, a.tokens, len(LEVELS)) if layout == 'channel_last' else cf_shape(a.tokens, len(LEVELS))
    g = torch.Generator(device=a.device).manual_seed(seed)
    return torch.randn(shape, generator=g, device=a.device).to(dtype)


def copy_case(x, a) -> dict:
    "Time of dst.copy_(x), counting the bytes read and written."
    dst = torch.empty_like(x)
    fn = lambda: dst.copy_(x)
    warm(fn, a.device, a.warmup)
    ms = median_ms(fn, a.device, a.reps)
    return rate(ms, 2 * x.nbytes, gpu=gpu_time(fn, None, a))   # the denominator of every other timing of this input


def matmul(a) -> dict:
    "bench/maskgit_mfu.py's measured matmul peak (bf16 on CUDA, float32 on the CPU)."
    p = bench_module('maskgit_mfu').matmul_peak(a.device, a.matmul)
    return dict(tflops=round(p['flops'] / 1e12, 3), median_tflops=round(p['median_flops'] / 1e12, 3), n=p['n'], dtype=p['dtype'])


def limits(a) -> dict:
    out = {f'copy_{k}': guarded(lambda dt: copy_case(fsq_input(a, dt, 'channel_last'), a), dt) for k, dt in DTYPES.items()}
    return dict(tokens=a.tokens, **out, matmul=guarded(matmul, a))


# ---------------------------------------------------------------- fsq

def skip_reason(path: str, a) -> str | None:
    "Why `path` is not measured here, or None."
    cpu = a.device.type == 'cpu'
    if path == 'compile' and cpu and a.smoke:
        return "torch.compile on the CPU: inductor's C++ build takes minutes (tests/test_fused.py checks this path)"
    if path.startswith('triton'):   # measured even if its self-test failed (that is reported as a problem)
        try: from fsq_lit.kernel import _cannot_launch
        except ImportError as e: return f'fsq_lit.kernel does not import: {e}'
        if why := _cannot_launch(a.device): return why
        if cpu and not a.smoke: return "Triton's interpreter on the CPU: too slow at this size (--smoke checks its indices)"
    if path == 'peer':
        try: import vector_quantize_pytorch  # noqa: F401
        except ImportError as e: return f'vector-quantize-pytorch is not installed: {e}'
    return None


def make_quantizer(path: str, channel_first: bool, device):
    "The quantizer of `path`: fsq_lit's FSQ with kernel=path, or the peer's FSQ."
    if path == 'peer':
        from vector_quantize_pytorch import FSQ as PeerFSQ
        return PeerFSQ(LEVELS, channel_first=channel_first).to(device)
    from fsq_lit.fsq import FSQ
    nan = path == 'triton+nan'              # FSQ's default: a NaN flag in the kernel, one host sync per call
    return FSQ(LEVELS, kernel=path.removesuffix('+nan'), channel_first=channel_first, nan_check=nan).to(device)


def reference(x, g, device) -> dict:
    "The eager path's codes, indices and input gradient (for upstream gradient g) on x."
    q = make_quantizer('eager', x.ndim > 3, device)
    with torch.no_grad(): codes, idx = q(x)
    xg = x.detach().clone().requires_grad_()
    torch.autograd.backward(q(xg)[0], g)
    return dict(codes=codes, idx=idx, grad=xg.grad, g=g)


def agreement(codes, idx, ref) -> dict:
    "Index and code mismatches against the eager reference (a shape mismatch counts every index)."
    ri, rc = ref['idx'], ref['codes']
    n = int((idx.reshape(-1).long() != ri.reshape(-1).long()).sum()) if idx.numel() == ri.numel() else ri.numel()
    c = codes.to(rc.dtype)
    same = c.shape == rc.shape
    return dict(index_mismatches=n, codes_mismatches=int((c != rc).sum()) if same else rc.numel(),
                codes_max_abs_diff=float((c.float() - rc.float()).abs().max()) if same else None,
                index_dtype=str(idx.dtype).removeprefix('torch.'))


def time_forward(q, x, ref, a, copy, first_s) -> dict:
    "Forward under no_grad: input read, codes and indices written."
    fn = lambda: q(x)
    with torch.no_grad():
        w = first_s + warm(fn, a.device, a.warmup)
        ms, gpu = median_ms(fn, a.device, a.reps), gpu_time(fn, q, a)
    return rate(ms, 2 * x.nbytes + ref['idx'].nbytes, copy, w, gpu)


def time_train(q, x, ref, a, copy) -> tuple[dict, float]:
    "Forward + backward (forward's bytes, then grad read, input read, grad written), and the largest gradient difference."
    xg = x.detach().clone().requires_grad_()
    def step():
        xg.grad = None
        torch.autograd.backward(q(xg)[0], ref['g'])
    w = warm(step, a.device, 1)
    diff = float((xg.grad.float() - ref['grad'].float()).abs().max())
    w += warm(step, a.device, a.warmup)
    ms, gpu = median_ms(step, a.device, a.reps), gpu_time(step, q, a)
    return rate(ms, 5 * x.nbytes + ref['idx'].nbytes, copy, w, gpu), diff


def run_case(path: str, x, ref, a, copy) -> dict:
    "One path on x: agreement with eager, forward and forward + backward; skipped where it cannot run."
    if why := skip_reason(path, a): return dict(skipped=why)
    try:
        t = time.perf_counter()
        q = make_quantizer(path, x.ndim > 3, a.device)
        with torch.no_grad(): codes, idx = q(x)
        sync(a.device)
    except (TypeError, ValueError) as e: return dict(skipped=f'{type(e).__name__}: {e}')
    res = dict(agreement=agreement(codes, idx, ref))
    del codes, idx
    res['forward'] = time_forward(q, x, ref, a, copy, time.perf_counter() - t)
    res['forward_backward'], res['agreement']['grad_max_abs_diff'] = time_train(q, x, ref, a, copy)
    return res


def case_line(c: dict) -> str:
    "One progress line for a finished case."
    what = f"  fsq {c['path']:<8} {c['dtype']:<9} {c['layout']:<14}"
    if 'forward' not in c: return f"{what} {'skipped' if 'skipped' in c else 'ERROR'}: {c.get('skipped') or c.get('error')}"
    f, fb, ag = c['forward'], c['forward_backward'], c['agreement']
    return (f"{what} forward {f['ms']:.4g} ms ({f.get('ratio_to_copy', 0):.3g}x copy; GPU {f.get('gpu_ms', '-')}), "
            f"forward+backward {fb['ms']:.4g} ms (GPU {fb.get('gpu_ms', '-')}), index mismatches {ag['index_mismatches']}")


def fsq_combo(dname: str, layout: str, a) -> dict:
    "Every path on one input (dtype, layout), with the copy time of that input."
    x, g = (fsq_input(a, DTYPES[dname], layout, seed) for seed in (0, 1))
    copy, ref, cases = copy_case(x, a), reference(x, g, a.device), []
    for path in PATHS:
        cases.append(dict(path=path, dtype=dname, layout=layout, shape=list(x.shape), **guarded(run_case, path, x, ref, a, copy)))
        print(case_line(cases[-1]), flush=True)
    return dict(copy=copy, cases=cases)


def self_test(a) -> str | None:
    "The kernel's self-test on this device (what FSQ(kernel='auto') runs before using it): None, or why it failed."
    from fsq_lit.kernel import unavailable
    return unavailable(a.device) if a.device.type == 'cuda' else 'not run on the CPU'


def fsq(a) -> dict:
    out = dict(levels=LEVELS, tokens=a.tokens, reps=a.reps, warmup=a.warmup, nan_check=False,
               self_test=guarded(self_test, a), copy={}, cases=[])
    for dname in DTYPES:
        for layout in LAYOUTS:
            r = guarded(fsq_combo, dname, layout, a)
            if 'error' in r: out['cases'] += [dict(path=p, dtype=dname, layout=layout, error=r['error']) for p in PATHS]
            else: out['copy'][f'{dname}/{layout}'] = r['copy']; out['cases'] += r['cases']
    return out


# ---------------------------------------------------------------- tune

# ---------------------------------------------------------------- host time

HOST_TOKENS, HOST_CALLS = 1024, 100   # per call; calls per block (3 in --smoke)


class _Identity(torch.autograd.Function):
    "An autograd function that does nothing: the host time any autograd function costs."
    @staticmethod
    def forward(ctx, x): return x.view_as(x)

    @staticmethod
    def backward(ctx, g): return g


def host_routes(a) -> dict:
    "name -> a function of x (HOST_TOKENS x 4) whose first output is differentiated, or the reason it is skipped here."
    from fsq_lit.fsq import FSQ
    from fsq_lit.kernel import fsq_kernel, kernel_constants
    from fsq_lit.scalar import make_grid
    fsq = lambda kernel, nan=False: FSQ(LEVELS, kernel=kernel, nan_check=nan).to(a.device)
    k = lambda: kernel_constants(make_grid(LEVELS), a.device)
    makers = {('x*2', ''): lambda: lambda x: x * 2, ('identity autograd function', ''): lambda: _Identity.apply,
              ('FSQ eager', 'eager'): lambda: fsq('eager'), ('FSQ compile', 'compile'): lambda: fsq('compile'),
              ('FSQ triton', 'triton'): lambda: fsq('triton'), ('FSQ triton, NaN check', 'triton'): lambda: fsq('triton', nan=True),
              ('kernel, autograd function', 'triton'): lambda: functools.partial(fsq_kernel, k=k(), op=False),
              ('kernel, operator', 'triton'): lambda: functools.partial(fsq_kernel, k=k(), op=True),
              ('FSQ triton, compiled fullgraph', 'compile'): lambda: torch.compile(fsq('triton'), fullgraph=True)}
    return {name: skip_reason(path, a) or make() for (name, path), make in makers.items()}


def host_us(fn, a) -> dict:
    "Median us per forward + backward of `fn`, over blocks of back-to-back calls synchronised at both ends, after warm-up."
    x = torch.randn(HOST_TOKENS, len(LEVELS), device=a.device, requires_grad=True)
    up = torch.randn(HOST_TOKENS, len(LEVELS), device=a.device)
    def step():
        y = fn(x)
        torch.autograd.grad(y[0] if isinstance(y, tuple) else y, x, up)
    calls = 3 if a.smoke else HOST_CALLS
    warmup_s = warm(step, a.device, a.warmup)
    ts = []
    for _ in range(a.reps if a.smoke else 20):
        sync(a.device); t = time.perf_counter()
        for _ in range(calls): step()
        sync(a.device); ts.append(1e6 * (time.perf_counter() - t) / calls)
    return dict(us=round(statistics.median(ts), 1), warmup_s=round(warmup_s, 2))


def host(a) -> dict:
    "The host section: each route's us per forward + backward at HOST_TOKENS tokens, or why it was skipped."
    rows = {}
    for name, fn in host_routes(a).items():
        rows[name] = dict(skipped=fn) if isinstance(fn, str) else guarded(host_us, fn, a)
        print(f"  {name:32} {rows[name].get('us', note(rows[name]))}", flush=True)
    return dict(tokens=HOST_TOKENS, calls=3 if a.smoke else HOST_CALLS, rows=rows)


def tune_grid(a) -> list[tuple[int, int]]:
    "(values per program, warps) settings to try; two with --smoke."
    return [(2048, 4), (4096, 4)] if a.smoke else [(e, w) for e in (1024, 2048, 4096, 8192, 16384) for w in (4, 8)]


def tune_one(q, x, ref, a, copy, elements: int, warps: int) -> dict:
    "The kernel's times with one tile setting (CONFIG restored afterwards)."
    from fsq_lit import kernel
    saved = dict(kernel.CONFIG)
    kernel.CONFIG.update(elements=elements, num_warps=warps)
    try:
        fwd = time_forward(q, x, ref, a, copy, 0.0)
        train, _ = time_train(q, x, ref, a, copy)
    finally: kernel.CONFIG.update(saved)
    return dict(elements=elements, num_warps=warps, forward=fwd, forward_backward=train)


def tune_case(a, dtype: str, layout: str) -> dict:
    "The tile sweep on one dtype and layout: each setting's times against the copy of the same input, and the fastest."
    x, g = (fsq_input(a, DTYPES[dtype], layout, seed) for seed in (0, 1))
    copy, ref = copy_case(x, a), reference(x, g, a.device)
    q = make_quantizer('triton', layout == 'channel_first', a.device)
    rows = [guarded(tune_one, q, x, ref, a, copy, e, w) for e, w in tune_grid(a)]
    return dict(dtype=dtype, layout=layout, copy=copy, rows=rows, best=best_setting(rows))


def tune(a) -> dict:
    "The Triton kernel's tile sweep on both dtypes and both layouts; skipped where the kernel cannot run."
    if why := skip_reason('triton', a): return dict(skipped=why)
    from fsq_lit import kernel
    cases = [guarded(tune_case, a, d, l) for d in DTYPES for l in LAYOUTS]
    return dict(default=dict(kernel.CONFIG), cases=cases, best=best_overall(cases))


def _key(rows: list[dict]) -> str:
    "'gpu_ms' where every timed row has the GPU's own time, else 'ms' (as called)."
    timed = [x for x in rows if 'forward' in x]
    return 'gpu_ms' if all('gpu_ms' in x['forward'] and 'gpu_ms' in x['forward_backward'] for x in timed) else 'ms'


def best_setting(rows: list[dict]) -> dict | None:
    "The setting with the least forward + (forward + backward) time (GPU alone where measured): one case's candidate."
    timed, key = [x for x in rows if 'forward' in x], _key(rows)
    if not timed: return None
    b = min(timed, key=lambda x: x['forward'][key] + x['forward_backward'][key])
    return dict(elements=b['elements'], num_warps=b['num_warps'])


def best_overall(cases: list[dict]) -> dict | None:
    """The setting timed in every case with the least sum over the cases of its forward and forward + backward times, each
    over that case's copy time (so that no dtype or layout weighs more for moving more bytes): the candidate for CONFIG."""
    cases = [c for c in cases if 'rows' in c]
    per = {}
    for c in cases:
        key = _key(c['rows'])
        key = key if key in c['copy'] else 'ms'                                  # like for like: the GPU's own, or both as called
        cp = c['copy'][key]
        for x in (x for x in c['rows'] if 'forward' in x):
            per.setdefault((x['elements'], x['num_warps']), []).append((x['forward'][key] + x['forward_backward'][key]) / cp)
    full = {k: sum(v) for k, v in per.items() if len(v) == len(cases)}
    if not full: return None
    (e, w), total = min(full.items(), key=lambda kv: kv[1])
    return dict(elements=e, num_warps=w, sum_over_copy=round(total, 3))


# ---------------------------------------------------------------- vq, maskgit

def vq(a) -> dict:
    "Chapter 08's timing of FSQ and VQ's nearest neighbour per codebook size, at its gpu preset's tokens and VQ dimension."
    from fsq_lit.vq import time_quantizers
    from fsq_lit.compare import COMPARE
    cfg = COMPARE.preset('smoke' if a.smoke else 'gpu')
    rows = time_quantizers(a.vq_sizes, vq_dim=cfg.vq_dim, tokens=cfg.timing_tokens, device=a.device)
    return dict(tokens=cfg.timing_tokens, vq_dim=cfg.vq_dim, rows=[
        dict(codes=r['target_size'], fsq_ms=round(1e3 * r['fsq_s'], 4), vq_ms=round(1e3 * r['vq_s'], 4),
             vq_over_fsq=round(r['vq_s'] / r['fsq_s'], 2)) for r in rows])


def maskgit(a) -> dict:
    "bench/maskgit_mfu.py's run (its --tiny configuration with --smoke); skipped if it does not import."
    try: m = bench_module('maskgit_mfu')
    except Exception as e: return dict(skipped=f'bench/maskgit_mfu.py does not import: {type(e).__name__}: {e}')
    return m.run(m.parse_args(['--device', str(a.device)] + (['--tiny'] if a.smoke else [])))


# ---------------------------------------------------------------- tables

def table(head, rows) -> list[str]:
    return ['| ' + ' | '.join(head) + ' |', '|' + ' --- |' * len(head)] + ['| ' + ' | '.join(map(str, r)) + ' |' for r in rows]


def note(r: dict) -> str:
    "A skip or error reason, short enough for a table cell."
    s = str(r.get('skipped') or r.get('error') or '')
    return (s if len(s) <= 100 else s[:97] + '...').replace('|', '/').replace('\n', ' ')


def limits_table(r: dict) -> list[str]:
    rows = [(k, f"{c['bytes'] / 2**20:.4g} MiB", c['ms'], c['gbps'], '') if 'ms' in c else (k, '', '', '', note(c))
            for k, c in r.items() if k.startswith('copy_')]
    m = r['matmul']
    rows.append(('matmul', f"{m['dtype']} n={m['n']}", '', f"{m['tflops']} TFLOP/s", '') if 'tflops' in m else ('matmul', '', '', '', note(m)))
    return table(('limit', 'read + written', 'ms', 'GB/s', 'note'), rows)


def times(t: dict) -> tuple:
    "A timing's table cells: ms and ratio to the copy as called, then the GPU's own (blank where not measured)."
    return t['ms'], t.get('ratio_to_copy', ''), t.get('gpu_ms', ''), t.get('gpu_ratio_to_copy', '')


def fsq_row(c: dict) -> tuple:
    key = (c['path'], c['dtype'], c['layout'])
    if 'forward' not in c: return key + ('',) * 11 + (note(c),)
    f, fb, ag = c['forward'], c['forward_backward'], c['agreement']
    return key + times(f) + times(fb) + (ag['index_mismatches'], ag['codes_mismatches'], round(f['warmup_s'] + fb['warmup_s'], 1),
                                         note(dict(error=f.get('gpu_error') or fb.get('gpu_error'))))


def fsq_table(r: dict) -> list[str]:
    rows = []
    cases = r.get('cases') or [dict(dtype='float32', layout='channel_last', **r)]    # a suite run before the sweep had cases
    for c in cases:
        cp = r['copy'].get(f"{c['dtype']}/{c['layout']}")
        if c['path'] == PATHS[0] and cp: rows.append(('copy', c['dtype'], c['layout']) + times(cp) + ('',) * 8)
        rows.append(fsq_row(c))
    head = ('path', 'dtype', 'layout', 'fwd ms', 'fwd/copy', 'fwd GPU ms', 'fwd GPU/copy', 'fwd+bwd ms', 'fwd+bwd/copy',
            'fwd+bwd GPU ms', 'fwd+bwd GPU/copy', 'index mismatches', 'code mismatches', 'warm-up s', 'note')
    return [f"levels {r['levels']}, {r['tokens']} tokens, median of {r['reps']} calls. {TIMES}"] + table(head, rows)


TIMES = ("'ms': as called from Python, 10 calls back to back between CUDA events (the host's work per call, Python and "
         "autograd, is the time where it exceeds the GPU's); 'GPU ms': replayed from a CUDA graph of 10 calls, the GPU's own time; "
         "ratios over the copy time of the same input (GB/s and bytes in the JSON).")


def tune_table(r: dict) -> list[str]:
    d, b = r['default'], r.get('best')
    over = 'over all four cases (forward + forward-and-backward time over the copy, summed)' if 'cases' in r else '(float32 channel-last)'
    best = f"; fastest {over}: {b['elements']} values, {b['num_warps']} warps" if b else ''
    rows = []
    cases = r.get('cases') or [dict(dtype='float32', layout='channel_last', **r)]    # a suite run before the sweep had cases
    for c in cases:
        if 'rows' not in c: rows.append(('', '') + ('',) * 10 + (note(c),)); continue
        for x in c['rows']:
            case = (c['dtype'], c['layout'])
            rows.append(case + ((x['elements'], x['num_warps']) + times(x['forward']) + times(x['forward_backward']) + ('',)
                                if 'forward' in x else ('',) * 10 + (note(x),)))
    return ([f"the library's default: {d['elements']} values, {d['num_warps']} warps{best}. {TIMES}"] +
            table(('dtype', 'layout', 'values per program', 'warps', 'fwd ms', 'fwd/copy', 'fwd GPU ms', 'fwd GPU/copy', 'fwd+bwd ms',
                   'fwd+bwd/copy', 'fwd+bwd GPU ms', 'fwd+bwd GPU/copy', 'note'), rows))


def host_table(r: dict) -> list[str]:
    floor = r['rows'].get('x*2', {}).get('us')
    rows = [(k, x['us'], round(x['us'] / floor, 2) if floor else '', '') if 'us' in x else (k, '', '', note(x)) for k, x in r['rows'].items()]
    return ([f"forward + backward of {r['tokens']} tokens, median us per call over blocks of {r['calls']} calls (host time: the GPU's work is microseconds)"] +
            table(('route', 'us per call', 'over x*2', 'note'), rows))


def vq_table(r: dict) -> list[str]:
    return ([f"{r['tokens']} tokens, VQ dimension {r['vq_dim']}"] +
            table(('codes', 'FSQ ms', 'VQ ms', 'VQ / FSQ'), [(x['codes'], x['fsq_ms'], x['vq_ms'], x['vq_over_fsq']) for x in r['rows']]))


def maskgit_table(r: dict) -> list[str]:
    c, s = r['config'], r['sampling']
    rows = [(k, x['step_ms'], x['tokens_per_s'], x['achieved_tflops'], x['mfu_measured_peak'], x['mfu_spec_peak'], '')
            if 'step_ms' in x else (k, '', '', '', '', '', note(x)) for k, x in r['runs'].items()]
    rows.append((f"sampling, {s['steps']} steps", '', '', s['achieved_tflops'], s['mfu_measured_peak'], '',
                 f"{s['images_per_s']} images/s ({s['guided_images_per_s']} guided)"
                 + (f"; the decoder {100 * s['decoder_share']:.1f}% of it ({100 * s['guided_decoder_share']:.1f}% guided)" if 'decoder' in s else '')))
    return ([f"{c['n_layer']} layers x {c['d_model']}, batch {c['batch']} x {c['positions']} positions, {r['dtype']}"] +
            table(('run', 'ms/step', 'tokens/s', 'TFLOP/s', 'MFU (measured peak)', 'MFU (spec sheet)', 'images/s'), rows))


TABLES = dict(limits=limits_table, fsq=fsq_table, host=host_table, tune=tune_table, vq=vq_table, maskgit=maskgit_table)


def section_md(name: str, r: dict) -> list[str]:
    "The section's heading and table (or its error or skip reason)."
    if 'error' in r or 'skipped' in r: return [f'## {name}', '', f"{'error' if 'error' in r else 'skipped'}: {note(r)}", '']
    try: return [f'## {name}', ''] + TABLES[name](r) + ['']
    except Exception as e: return [f'## {name}', '', f'(table failed: {type(e).__name__}: {e}; see the JSON)', '']


# ---------------------------------------------------------------- the run

def versions() -> dict:
    "torch, CUDA, Triton, the peer, Python, fsq_lit, the git commit and the tracked files that differ from it."
    def pkg(name):
        try: return version(name)
        except PackageNotFoundError: return None
    import fsq_lit
    return dict(torch=torch.__version__, cuda=torch.version.cuda, triton=pkg('triton'), python=platform.python_version(),
                vector_quantize_pytorch=pkg('vector-quantize-pytorch'), fsq_lit=fsq_lit.__version__, **git_state())


def git_state() -> dict:
    "HEAD's commit and the tracked files that differ from it (a copied working tree can carry an older .git): None without git."
    def git(*args):
        return subprocess.run(['git', *args], cwd=BENCH, capture_output=True, text=True, timeout=10, check=True).stdout
    try: return dict(commit=git('rev-parse', 'HEAD').strip() or None,
                     modified=sorted(l[3:] for l in git('status', '--porcelain', '--untracked-files=no').splitlines()))
    except (OSError, subprocess.SubprocessError): return dict(commit=None, modified=None)


def header(a) -> dict:
    gpu = torch.cuda.get_device_name(a.device) if a.device.type == 'cuda' else None
    return dict(benchmark='bench/gpu_suite.py', gpu=gpu, device=str(a.device), smoke=a.smoke, sections=list(a.only),
                date=datetime.datetime.now().isoformat(timespec='seconds'), versions=versions(), section_runs={},
                machine=guarded(lambda: bench_module('fsq_speed').machine(a.device.type)), seconds={})


def slug(res: dict) -> str:
    "The results' file name: the GPU's name in lower case and dashes ('nvidia-h200'), or 'cpu'; '-smoke' added for --smoke."
    name = re.sub(r'[^a-z0-9]+', '-', (res['gpu'] or res['device'].split(':')[0]).lower()).strip('-')
    return name + ('-smoke' if res['smoke'] else '')


def markdown(res: dict) -> str:
    v, m = res['versions'], res['machine']
    lines = [f"# bench/gpu_suite.py on {res['gpu'] or m.get('cpu')}{' (smoke)' if res['smoke'] else ''}", '',
             f"{res['date']}; torch {v['torch']}, CUDA {v['cuda']}, Triton {v['triton']}, vector-quantize-pytorch "
             f"{v['vector_quantize_pytorch']}, Python {v['python']}, commit {v['commit']}{changed(v)}; {m.get('platform')}, {m.get('cpu')}, "
             f"{m.get('cores')} cores", '']
    return '\n'.join(lines + [l for s in SECTIONS if s in res for l in section_md(s, res[s])])


def changed(v: dict) -> str:
    "' with N files changed (a, b, ...)' when the run's tree differed from its commit, else ''."
    n = v.get('modified') or []
    return f" with {len(n)} files changed ({', '.join(n[:6])}{', ...' if len(n) > 6 else ''})" if n else ''


def merged(res: dict, out: Path) -> dict:
    "res with the sections of an earlier run on the same GPU that this run did not repeat (each section keeps its date and commit)."
    path = out / f'{slug(res)}.json'
    old = json.loads(path.read_text()) if path.exists() else {}
    if old.get('benchmark') != res['benchmark']: return res
    keep = [s for s in SECTIONS if s in old and s not in res['sections']]
    return {**res, **{s: old[s] for s in keep}, 'sections': [s for s in SECTIONS if s in keep or s in res['sections']],
            'section_runs': {**{s: old.get('section_runs', {}).get(s) for s in keep}, **res['section_runs']}}


def figure(res: dict, path: Path):
    "The FSQ section's figure (chapter 02a's plot_suite) as a PNG, replaced atomically; reported, never fatal, if it fails."
    if 'cases' not in res.get('fsq', {}): return
    try:
        import matplotlib; matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        from fsq_lit.kernel import plot_suite
        fig = plot_suite(res)
        atomic_write(path, lambda f: fig.savefig(f, format='png', dpi=100))
        plt.close(fig)
    except Exception as e: print(f'  no figure: {type(e).__name__}: {e}', flush=True)


def write(res: dict, out: Path) -> Path:
    "The JSON and the Markdown file, each replaced atomically (a killed run keeps what finished)."
    path = out / f'{slug(res)}.json'
    atomic_write(path, json.dumps(res, indent=1) + '\n', mode='w')
    atomic_write(path.with_suffix('.md'), markdown(res) + '\n', mode='w')
    return path


def disagreements(c: dict) -> list[str]:
    "What of one case differs from eager: indices for every path of the book, codes and gradients for the Triton kernel too."
    ag, what = c.get('agreement', {}), f"{c['path']} {c['dtype']} {c['layout']}"
    if c['path'] == 'peer' or not ag: return []
    bad = [f"{what}: {ag['index_mismatches']} indices differ from eager"] if ag['index_mismatches'] else []
    if c['path'].startswith('triton') and ag['codes_mismatches']: bad.append(f"{what}: {ag['codes_mismatches']} codes differ from eager")
    if c['path'].startswith('triton') and ag.get('grad_max_abs_diff'): bad.append(f"{what}: gradients differ from eager by up to {ag['grad_max_abs_diff']}")
    return bad


def problems(res: dict) -> list[str]:
    "Disagreements with the eager path, a failed kernel self-test, and everything that raised."
    f = res.get('fsq', {})
    bad = [b for c in f.get('cases', []) for b in disagreements(c)]
    if isinstance(f.get('self_test'), str) and res['device'].startswith('cuda'): bad.append(f"kernel self-test: {f['self_test']}")
    def errors(r, where):
        if isinstance(r, dict):
            if 'error' in r: yield f"{where}: {r['error']}"
            for k, v in r.items(): yield from errors(v, f'{where}/{k}')
        elif isinstance(r, list):
            for i, v in enumerate(r): yield from errors(v, f'{where}/{i}')
    return bad + [e for s in ('machine',) + SECTIONS for e in errors(res.get(s), s)]


# ---------------------------------------------------------------- command line

def _sections(s: str) -> tuple:
    names = tuple(x.strip() for x in s.split(',') if x.strip())
    if not names or set(names) - set(SECTIONS):
        raise argparse.ArgumentTypeError(f"unknown section in {s!r}: choose from {', '.join(SECTIONS)}")
    return tuple(x for x in SECTIONS if x in names)


def _tokens(s: str) -> int:
    try: n = int(s)
    except ValueError: n = 0
    if n < 1: raise argparse.ArgumentTypeError(f'must be a positive integer, got {s!r}')
    return n


def _device(ap, a) -> torch.device:
    "The device asked for, or CUDA if there is one; the CPU without --smoke only when asked for by name."
    if a.device is None and not torch.cuda.is_available() and not a.smoke:
        ap.error('no CUDA device: use --smoke for the CPU smoke run, or --device cpu for the full sizes on the CPU (slow)')
    try: dev = torch.device(a.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    except RuntimeError as e: ap.error(f'--device: {e}')
    if dev.type == 'cuda' and not torch.cuda.is_available(): ap.error('--device cuda: no CUDA device is available')
    return dev


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--smoke', action='store_true', help='tiny sizes (CPU, seconds): 2^12 tokens, 3 timed calls, '
                                                         'matmul n=256, VQ at 2^10 and 2^11 codes, maskgit --tiny')
    ap.add_argument('--device', default=None, help='default: cuda if available (else cpu with --smoke)')
    ap.add_argument('--out', default=str(RESULTS), help='folder of <gpu>.json and <gpu>.md (default bench/results)')
    ap.add_argument('--only', type=_sections, default=SECTIONS, help=f"comma-separated sections of {','.join(SECTIONS)}")
    ap.add_argument('--tokens', type=_tokens, default=None, help='FSQ tokens (default 2^24; 2^12 with --smoke)')
    a = ap.parse_args(argv)
    a.device = _device(ap, a)
    cuda = a.device.type == 'cuda'
    a.tokens = a.tokens or (2**12 if a.smoke else 2**24)
    a.reps, a.warmup = (3, 1) if a.smoke else (50 if cuda else 5, 3)
    a.matmul = 256 if a.smoke else 8192 if cuda else 1024
    a.vq_sizes = [2**10, 2**11] if a.smoke else [2**k for k in range(10, 17)]
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    out, res = Path(a.out), header(a)
    print(f"bench/gpu_suite.py on {res['gpu'] or res['machine'].get('cpu')}, torch {res['versions']['torch']}, "
          f"CUDA {res['versions']['cuda']}, Triton {res['versions']['triton']}, sections {','.join(a.only)}", flush=True)
    fns = dict(limits=limits, fsq=fsq, host=host, tune=tune, vq=vq, maskgit=maskgit)
    for name in a.only:
        t = time.perf_counter()
        print(f'# {name} ({time.strftime("%H:%M:%S")})', flush=True)
        res[name] = guarded(fns[name], a)
        res['seconds'][name] = round(time.perf_counter() - t, 1)
        res['section_runs'][name] = dict(date=res['date'], commit=res['versions']['commit'], modified=res['versions']['modified'])
        path = write(merged(res, out), out)
        if name == 'fsq': figure(res, path.with_suffix('.png'))   # the only section the figure shows
        print('\n'.join(section_md(name, res[name])) + f'({res["seconds"][name]} s)\n', flush=True)
    print('wrote ' + ', '.join(str(f) for f in (path, path.with_suffix('.md'), path.with_suffix('.png')) if f.exists()))
    for p in (bad := problems(res)): print(f'PROBLEM: {p}')
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
