"""Speed of fsq_lit.FSQ against vector-quantize-pytorch's FSQ, on the same inputs, in one process.

    python bench/fsq_speed.py                                   # CPU: levels [8,5,5,5], 2^16 tokens
    python bench/fsq_speed.py --device cuda --tokens 16777216   # GPU: adds the fused path and a plain copy

Rounds alternate between the implementations so that noise from a shared machine hits both alike;
the table reports medians and the ratio peer / fsq_lit (higher is better for fsq_lit).
Pass --json PATH to also write the figures as JSON.
"""
import argparse, json, statistics, time
import torch
from fsq_lit.fsq import FSQ


def timer(fn, device, inner):
    "Seconds per call of `fn`, averaged over `inner` calls."
    sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
    sync(); t = time.perf_counter()
    for _ in range(inner): fn()
    sync()
    return (time.perf_counter() - t) / inner


def compare(cases, device, rounds, inner):
    "Median seconds per call for each named callable, measured in interleaved rounds."
    for fn in cases.values():  # warm-up (and compilation for the fused path)
        for _ in range(3): fn()
    times = {k: [] for k in cases}
    for _ in range(rounds):
        for k, fn in cases.items(): times[k].append(timer(fn, device, inner))
    return {k: statistics.median(v) for k, v in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--tokens', type=int, default=2**16)
    ap.add_argument('--levels', default='8,5,5,5')
    ap.add_argument('--rounds', type=int, default=15)
    ap.add_argument('--inner', type=int, default=20)
    ap.add_argument('--json', default=None)
    a = ap.parse_args()
    from vector_quantize_pytorch import FSQ as PeerFSQ   # dev extra: pip install -e ".[dev]"
    levels = [int(x) for x in a.levels.split(',')]
    dev = a.device
    torch.manual_seed(0)
    z = torch.randn(1, a.tokens, len(levels), device=dev)   # the peer wants (batch, seq, dim)
    ours, peer = FSQ(levels).to(dev), PeerFSQ(levels).to(dev)
    with torch.no_grad():   # both compute the same quantizer: check before timing
        (qa, ia), (qb, ib) = ours(z), peer(z)
        assert torch.equal(qa, qb) and torch.equal(ia, ib.to(ia.dtype)), "fsq_lit and the peer disagree"
    zg = z.clone().requires_grad_()
    g = torch.randn_like(z)

    def fwd(m): return lambda: m(z)
    def fwd_bwd(m):
        def f():
            zg.grad = None
            torch.autograd.backward(m(zg)[0], g)
        return f

    cases = {'fsq_lit forward': fwd(ours), 'peer forward': fwd(peer)}
    if dev == 'cuda':
        fused = FSQ(levels, fused=True, nan_check=False).to(dev)
        cases.update({'fsq_lit fused forward': fwd(fused), 'copy of the input': lambda: z.clone()})
    with torch.no_grad():
        res = compare(cases, dev, a.rounds, a.inner)
    res.update(compare({'fsq_lit forward+backward': fwd_bwd(ours), 'peer forward+backward': fwd_bwd(peer)},
                       dev, a.rounds, max(1, a.inner // 2)))
    name = torch.cuda.get_device_name() if dev == 'cuda' else f'CPU, {torch.get_num_threads()} threads'
    print(f"levels {levels}, {a.tokens} tokens, float32, {name}, torch {torch.__version__}")
    for k, v in res.items(): print(f"  {k:<28} {v * 1e3:9.3f} ms")
    ratios = {'forward': res['peer forward'] / res['fsq_lit forward'],
              'forward+backward': res['peer forward+backward'] / res['fsq_lit forward+backward']}
    print(f"  speed-up over the peer: forward {ratios['forward']:.2f}x, forward+backward {ratios['forward+backward']:.2f}x")
    if dev == 'cuda':
        ratios['fused / copy'] = res['fsq_lit fused forward'] / res['copy of the input']
        print(f"  fused forward / copy of the same bytes: {ratios['fused / copy']:.2f}x")
    if a.json:
        with open(a.json, 'w') as f: json.dump({'device': name, 'levels': levels, 'tokens': a.tokens,
                                                'seconds': res, 'ratios': ratios}, f, indent=1)


if __name__ == '__main__':
    main()
