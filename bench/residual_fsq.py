"""Speed of fsq_lit.ResidualFSQ(levels, Q) against Q calls of fsq_lit.FSQ(levels) on the same input, in one process.

    python bench/residual_fsq.py                          # CPU: levels [8,5,5,5], 4 stages, 2^16 tokens
    python bench/residual_fsq.py --stages 8 --device cuda

The target is a ratio of at most 1.2 (a stage costs at most 1.2 FSQ calls). The two are timed in interleaved rounds
(medians), forward without a gradient and forward + backward; nothing is asserted about time. The result, with the
machine and date, is written to `bench/results/<device>-residual-fsq.json` (or `--json PATH`); chapter 03c quotes it.
"""
import argparse, datetime, json, statistics
from pathlib import Path
import torch
from fsq_lit.fsq import FSQ
from fsq_lit.residual import ResidualFSQ
from fsq_speed import compare, machine, RESULTS   # the interleaved timer of bench/fsq_speed.py


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--tokens', type=int, default=2**16)
    ap.add_argument('--levels', default='8,5,5,5')
    ap.add_argument('--stages', type=int, default=4)
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--rounds', type=int, default=7)
    ap.add_argument('--inner', type=int, default=10)
    ap.add_argument('--threads', type=int, default=None, help='torch.set_num_threads (default: leave as is)')
    ap.add_argument('--json', default=None, help='result file (default: bench/results/<device>-residual-fsq.json)')
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    levels, Q, dev = [int(x) for x in a.levels.split(',')], a.stages, a.device
    torch.manual_seed(0)
    z = torch.randn(a.tokens, len(levels), device=dev)
    rfsq, fsq = ResidualFSQ(levels, Q).to(dev), FSQ(levels).to(dev)
    zg, g = z.clone().requires_grad_(), torch.randn_like(z)
    def fwd_bwd(f):
        def run():
            zg.grad = None
            torch.autograd.backward(f(zg), g)
        return run
    def q_fsq(x):                                   # Q plain FSQ calls, their outputs summed as the stack sums its stages
        out = fsq(x)[0]
        for _ in range(Q - 1): out = out + fsq(x)[0]
        return out
    fwd = {'residual': lambda: rfsq(z), f'{Q} x FSQ': lambda: [fsq(z) for _ in range(Q)]}
    bwd = {'residual': fwd_bwd(lambda x: rfsq(x)[0]), f'{Q} x FSQ': fwd_bwd(q_fsq)}
    for fn in (*fwd.values(), *bwd.values()): fn(); fn()
    ratios = {'forward': [], 'forward+backward': []}
    for _ in range(a.runs):
        with torch.no_grad(): f = compare(fwd, dev, a.rounds, a.inner)
        b = compare(bwd, dev, a.rounds, max(1, a.inner // 2))
        ratios['forward'].append(f['residual'] / f[f'{Q} x FSQ'])
        ratios['forward+backward'].append(b['residual'] / b[f'{Q} x FSQ'])
    print(f"levels {levels}, {Q} stages, {a.tokens} tokens, float32, {dev}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"  last run: forward residual {1e3 * f['residual']:.3f} ms, {Q} x FSQ {1e3 * f[f'{Q} x FSQ']:.3f} ms; "
          f"forward+backward residual {1e3 * b['residual']:.3f} ms, {Q} x FSQ {1e3 * b[f'{Q} x FSQ']:.3f} ms")
    for k, v in ratios.items():
        print(f"  ResidualFSQ / ({Q} x FSQ), {k}: {statistics.median(v):.2f}x (runs: {', '.join(f'{x:.2f}' for x in v)}; target <= 1.2x)")
    res = dict(benchmark='bench/residual_fsq.py', device=dev, levels=levels, stages=Q, tokens=a.tokens, dtype='float32',
               runs=a.runs, rounds=a.rounds, inner=a.inner, target=1.2,
               ratios={k: round(statistics.median(v), 3) for k, v in ratios.items()},
               ranges={k: [round(min(v), 3), round(max(v), 3)] for k, v in ratios.items()},
               machine=machine(dev), torch=torch.__version__, date=datetime.date.today().isoformat())
    path = Path(a.json) if a.json else RESULTS / f"{dev}-residual-fsq.json"
    path.write_text(json.dumps(res, indent=1) + '\n')
    print(f"  wrote {path}")


if __name__ == '__main__':
    main()
