"""Speed of fsq_lit.FSQ against vector-quantize-pytorch's FSQ, on the same inputs, in one process.

    python bench/fsq_speed.py                                   # CPU: levels [8,5,5,5], 2^16 tokens
    python bench/fsq_speed.py --device cuda --tokens 16777216   # GPU: adds the fused path and a plain copy

One run alternates the implementations over `--rounds` rounds, so that noise from a shared machine hits both alike,
and takes each one's median; the benchmark repeats that `--runs` times and reports, per ratio peer / fsq_lit
(higher is better for fsq_lit), the median over runs and its range. The result, with the machine, torch version and
date, is written to `bench/results/<device>-fsq-speed.json` (or `--json PATH`); the tutorial quotes that file.
"""
import argparse, datetime, json, os, platform, statistics, time
from importlib.metadata import version
from pathlib import Path
import torch
from fsq_lit.fsq import FSQ

RESULTS = Path(__file__).resolve().parent / 'results'


def timer(fn, device, inner):
    "Seconds per call of `fn`, averaged over `inner` calls."
    sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
    sync(); t = time.perf_counter()
    for _ in range(inner): fn()
    sync()
    return (time.perf_counter() - t) / inner


def compare(cases, device, rounds, inner):
    "Median seconds per call for each named callable, measured in interleaved rounds."
    times = {k: [] for k in cases}
    for _ in range(rounds):
        for k, fn in cases.items(): times[k].append(timer(fn, device, inner))
    return {k: statistics.median(v) for k, v in times.items()}


def machine(device) -> dict:
    "Where the benchmark ran: platform, processor (or GPU), threads."
    cpu = platform.processor() or platform.machine()
    try: cpu = next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except (OSError, StopIteration): pass
    m = dict(platform=platform.platform(), cpu=cpu, cores=os.cpu_count(), threads=torch.get_num_threads())
    if device == 'cuda': m['gpu'] = torch.cuda.get_device_name()
    return m


def cases_for(levels, z, device):
    "The timed callables: forward (no grad) and forward + backward of both implementations (and, on a GPU, the fused path and a copy)."
    from vector_quantize_pytorch import FSQ as PeerFSQ   # dev extra: pip install -e ".[dev]"
    ours, peer = FSQ(levels).to(device), PeerFSQ(levels).to(device)
    with torch.no_grad():   # both compute the same quantizer: check before timing
        (qa, ia), (qb, ib) = ours(z), peer(z)
        assert torch.equal(qa, qb) and torch.equal(ia, ib.to(ia.dtype)), "fsq_lit and the peer disagree"
    zg, g = z.clone().requires_grad_(), torch.randn_like(z)
    def fwd(m): return lambda: m(z)
    def fwd_bwd(m):
        def f():
            zg.grad = None
            torch.autograd.backward(m(zg)[0], g)
        return f
    fwd_cases = {'fsq_lit forward': fwd(ours), 'peer forward': fwd(peer)}
    if device == 'cuda':
        fused = FSQ(levels, kernel='compile', nan_check=False).to(device)
        fwd_cases.update({'fsq_lit fused forward': fwd(fused), 'copy of the input': lambda: z.clone()})
    return fwd_cases, {'fsq_lit forward+backward': fwd_bwd(ours), 'peer forward+backward': fwd_bwd(peer)}


def one_run(fwd_cases, bwd_cases, device, rounds, inner) -> dict:
    "Median seconds per call of every case, for one run."
    with torch.no_grad(): res = compare(fwd_cases, device, rounds, inner)
    return {**res, **compare(bwd_cases, device, rounds, max(1, inner // 2))}


def ratios_of(s: dict) -> dict:
    r = {'forward': s['peer forward'] / s['fsq_lit forward'],
         'forward+backward': s['peer forward+backward'] / s['fsq_lit forward+backward']}
    if 'copy of the input' in s: r['fused / copy'] = s['fsq_lit fused forward'] / s['copy of the input']
    return r


def summarize(runs: list, a, levels, device) -> dict:
    "The result file's contents: medians over runs, ranges, every run's figures, the machine and the date."
    per_run = [ratios_of(s) for s in runs]
    med = lambda xs: round(statistics.median(xs), 3)
    return dict(benchmark='bench/fsq_speed.py', device=device, levels=levels, tokens=a.tokens, dtype='float32',
                runs=len(runs), rounds=a.rounds, inner=a.inner,
                ratios={k: med([r[k] for r in per_run]) for k in per_run[0]},
                ranges={k: [round(min(r[k] for r in per_run), 3), round(max(r[k] for r in per_run), 3)] for k in per_run[0]},
                median_ms={k: round(1e3 * statistics.median(s[k] for s in runs), 4) for k in runs[0]},
                run_ratios=[{k: round(v, 3) for k, v in r.items()} for r in per_run],
                machine=machine(device), torch=torch.__version__, peer=f"vector-quantize-pytorch {version('vector-quantize-pytorch')}",
                date=datetime.date.today().isoformat())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--tokens', type=int, default=2**16)
    ap.add_argument('--levels', default='8,5,5,5')
    ap.add_argument('--runs', type=int, default=7, help='repeats of the whole measurement (spread across runs is reported)')
    ap.add_argument('--rounds', type=int, default=15)
    ap.add_argument('--inner', type=int, default=20)
    ap.add_argument('--json', default=None, help='result file (default: bench/results/<device>-fsq-speed.json)')
    a = ap.parse_args()
    levels, dev = [int(x) for x in a.levels.split(',')], a.device
    torch.manual_seed(0)
    z = torch.randn(1, a.tokens, len(levels), device=dev)   # the peer wants (batch, seq, dim)
    fwd_cases, bwd_cases = cases_for(levels, z, dev)
    for fn in {**fwd_cases, **bwd_cases}.values():          # warm-up (and compilation for the fused path)
        for _ in range(3): fn()
    res = summarize([one_run(fwd_cases, bwd_cases, dev, a.rounds, a.inner) for _ in range(a.runs)], a, levels, dev)
    m = res['machine']
    print(f"levels {levels}, {a.tokens} tokens, float32, {m.get('gpu', m['cpu'])}, {m['threads']} threads, torch {res['torch']}")
    for k, v in res['median_ms'].items(): print(f"  {k:<28} {v:9.3f} ms")
    spread = lambda k: f"{res['ratios'][k]:.2f}x ({res['ranges'][k][0]:.2f}-{res['ranges'][k][1]:.2f}x)"
    print(f"  speed-up over the peer, median of {a.runs} runs (range): forward {spread('forward')}, "
          f"forward+backward {spread('forward+backward')}")
    if dev == 'cuda': print(f"  fused forward / copy of the same bytes: {spread('fused / copy')}")
    path = Path(a.json) if a.json else RESULTS / f"{dev}-fsq-speed.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1) + '\n')
    print(f"  wrote {path}")


if __name__ == '__main__':
    main()
