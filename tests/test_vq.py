"""The vector quantizer of fsq_lit/vq.py (nbs/07_vq.ipynb): losses and gradients, chunked nearest neighbour, EMA codebook,
dead-code restarts, k-means init, cosine codes, entropy loss, metrics, input errors and the DDP reduction.
Run as a script, this file is the worker process of `test_ddp_two_ranks_match_one_process`."""
import json, math, os, subprocess, sys
from pathlib import Path
import pytest
import torch
from torch import nn
import torch.nn.functional as F
from fsq_lit.vq import VQ, nearest, kmeans, entropy_loss
from fsq_lit.fsq import code_stats

ROOT = Path(__file__).resolve().parents[1]


def _randn(*shape, seed=0, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def _fresh_vq(*args, seed=0, **kw):
    torch.manual_seed(seed)
    return VQ(*args, **kw)


def _buffers(vq):
    return {k: v.detach().clone() for k, v in vq.state_dict().items()}


# ---------------------------------------------------------------------------------------------------- 1. losses
@pytest.mark.parametrize("beta", [0.25, 0.7])
def test_losses_and_gradients(beta):
    "aux = ||sg(z) - c||² + beta ||z - sg(c)||²; the codebook learns only from its term, z gets STE + beta * commit grad."
    vq = _fresh_vq(16, 4, beta=beta, channel_first=False)
    z = _randn(40, 4, seed=1).requires_grad_()
    out = vq(z)
    cb = vq.codebook.detach().clone()                 # ema=False: training does not move the codebook in forward
    idx = torch.cdist(z.detach(), cb).argmin(1)
    assert torch.equal(out.indices, idx)
    q = cb[idx]
    mse = (z.detach() - q).square().mean()
    assert torch.allclose(out.aux_loss, mse + beta * mse, rtol=1e-6)
    assert torch.allclose(out.stats['commit'], mse) and torch.allclose(out.stats['codebook'], mse)
    # gradients: weights w on the output (straight through) plus the auxiliary loss
    w = _randn(40, 4, seed=2)
    ((out.quantized * w).sum() + out.aux_loss).backward()
    N = z.numel()
    cb_grad = torch.zeros_like(cb).index_add_(0, idx, 2 * (q - z.detach()) / N)   # codebook term only
    assert torch.allclose(vq.codebook.grad, cb_grad, atol=1e-7)
    assert torch.allclose(z.grad, w + beta * 2 * (z.detach() - q) / N, atol=1e-7)
    # aux_loss alone: z gets only the commitment gradient, the codebook only the codebook-term gradient
    z2 = z.detach().clone().requires_grad_(); vq.codebook.grad = None
    vq(z2).aux_loss.backward()
    assert torch.allclose(z2.grad, beta * 2 * (z.detach() - q) / N, atol=1e-7)
    assert torch.allclose(vq.codebook.grad, cb_grad, atol=1e-7)


def test_ema_loss_is_commitment_only():
    vq = _fresh_vq(16, 4, ema=True, channel_first=False)
    z = _randn(40, 4, seed=1).requires_grad_()
    cb = vq.codebook.clone()
    out = vq(z)
    q = cb[torch.cdist(z.detach(), cb).argmin(1)]
    commit = (z.detach() - q).square().mean()
    assert torch.allclose(out.aux_loss, 0.25 * commit, rtol=1e-6) and 'codebook' not in out.stats
    out.aux_loss.backward()
    assert torch.allclose(z.grad, 0.25 * 2 * (z.detach() - q) / z.numel(), atol=1e-7)
    assert not vq.codebook.requires_grad and vq.codebook.grad is None


# ---------------------------------------------------------------------------------------------------- 2. nearest
@pytest.mark.parametrize("n, K, d, chunk", [(257, 33, 5, 2**24), (257, 33, 5, 33 * 7), (257, 33, 5, 1), (100, 2**16, 8, 2**17)])
def test_nearest_matches_cdist(n, K, d, chunk, monkeypatch):
    x, cb = _randn(n, d, seed=1), _randn(K, d, seed=2)
    sizes = []
    real = torch.addmm
    def spy(*a, **kw):
        r = real(*a, **kw); sizes.append(r.numel()); return r
    monkeypatch.setattr(torch, "addmm", spy)
    idx = nearest(x, cb, chunk_elems=chunk)
    monkeypatch.undo()
    assert idx.dtype == torch.long and idx.shape == (n,)
    assert sizes and max(sizes) <= max(chunk, K)                          # memory bound: ≤ chunk_elems distances (≥ 1 row)
    assert len(sizes) == math.ceil(n / max(1, chunk // K))
    dist = torch.cdist(x.double(), cb.double())
    ref = dist.argmin(1)
    best = dist.gather(1, ref[:, None]).squeeze(1)
    assert (dist.gather(1, idx[:, None]).squeeze(1) - best).abs().max() < 1e-4   # ties within float error only
    two = dist.topk(2, dim=1, largest=False).values
    clear = two[:, 1] - two[:, 0] > 1e-4                                  # no near tie: the index itself must agree
    assert clear.float().mean() > 0.9 and torch.equal(idx[clear], ref[clear])


@pytest.mark.parametrize("kw", [dict(), dict(cosine=True), dict(ema=True, chunk_elems=64)])
def test_quantized_is_codebook_row_exactly(kw):
    vq = _fresh_vq(32, 6, **kw)
    z = _randn(3, 6, 5, 4, seed=3)                      # channel first
    for mode in (True, False):
        vq.train(mode)
        cb = vq.codes().detach().clone()
        out = vq(z)
        assert out.quantized.shape == z.shape and out.indices.shape == (3, 5, 4)
        assert torch.equal(out.quantized, cb[out.indices].movedim(-1, 1))
        flat = z.movedim(1, -1).reshape(-1, 6)
        assert torch.equal(out.indices.reshape(-1), nearest(F.normalize(flat, dim=1) if vq.cosine else flat, cb))


# ---------------------------------------------------------------------------------------------------- 3. EMA
def test_ema_update():
    K, d, decay, eps = 8, 3, 0.9, 0.5                   # a large eps, so Laplace smoothing is visible
    vq = _fresh_vq(K, d, ema=True, decay=decay, eps=eps, channel_first=False)
    assert not isinstance(vq.codebook, nn.Parameter) and list(vq.parameters()) == []
    assert {'codebook', 'cluster_size', 'embed_sum'} <= set(dict(vq.named_buffers()))
    x = _randn(20, d, seed=4, scale=0.2)
    cs0, es0, cb0 = vq.cluster_size.clone(), vq.embed_sum.clone(), vq.codebook.clone()
    out = vq(x)
    idx = torch.cdist(x, cb0).argmin(1)
    assert torch.equal(out.indices, idx)               # looked up with the old codebook
    counts = torch.bincount(idx, minlength=K).float()
    assert (counts == 0).any() and (counts > 0).sum() >= 2   # both empty and used codes are exercised
    sums = torch.stack([x[idx == k].sum(0) for k in range(K)])
    cs = decay * cs0 + (1 - decay) * counts
    es = decay * es0 + (1 - decay) * sums
    assert torch.allclose(vq.cluster_size, cs, atol=1e-6) and torch.allclose(vq.embed_sum, es, atol=1e-6)
    n = cs.sum()
    smoothed = (cs + eps) / (n + K * eps) * n
    assert torch.allclose(vq.codebook, es / smoothed[:, None], atol=1e-6)
    assert not torch.allclose(vq.codebook, es / cs[:, None], atol=1e-3)   # the smoothing matters here
    # eval: nothing moves
    vq.eval()
    before = _buffers(vq)
    out = vq(x)
    after = _buffers(vq)
    for k in before: assert torch.equal(before[k], after[k]), k
    assert torch.equal(out.quantized, vq.codebook[out.indices])


# ---------------------------------------------------------------------------------------------------- 4./5. restarts
def _force_dead(vq, dead, n_tokens, live_usage=5.0):
    fair = n_tokens / vq.codebook_size
    vq.usage_started.fill_(True)
    vq.usage.fill_(live_usage * fair)
    vq.usage[dead] = 0.0
    return fair


@pytest.mark.parametrize("ema", [False, True])
def test_reseed_moves_dead_codes_onto_batch(ema):
    K, d, N = 16, 4, 64
    vq = _fresh_vq(K, d, restart='reseed', ema=ema, channel_first=False)
    x = _randn(N, d, seed=5)
    dead = torch.tensor([3, 7, 11])
    fair = _force_dead(vq, dead, N)
    live = torch.ones(K, dtype=torch.bool); live[dead] = False
    cb0, u0 = vq.codebook.detach().clone(), vq.usage.clone()
    out = vq(x)
    assert out.stats['restarted'] == 3 and out.stats['dead'] == 3
    cb = vq.codebook.detach()
    for k in dead:
        assert (cb[k] == x).all(1).any(), f"code {k} is not a row of the batch"
    counts = torch.bincount(out.indices, minlength=K).float()
    if ema:   # live codes follow the EMA; the reseeded ones keep their new place in the EMA state
        assert torch.allclose(vq.embed_sum[dead] / vq.cluster_size[dead, None], cb[dead], atol=1e-6)
        assert torch.allclose(vq.cluster_size[dead], torch.full((3,), fair))
    else:
        assert torch.equal(cb[live], cb0[live])
    assert torch.allclose(vq.usage[dead], torch.full((3,), fair))            # reset to the fair share
    assert torch.allclose(vq.usage[live], u0[live].lerp(counts[live], 0.01))  # untouched by the restart
    # eval: no restart, no bookkeeping
    vq.eval()
    _force_dead(vq, dead, N)
    before = _buffers(vq)
    out = vq(x)
    assert 'restarted' not in out.stats
    for k, v in _buffers(vq).items(): assert torch.equal(v, before[k]), k


def test_no_restart_without_option():
    vq = _fresh_vq(16, 4, channel_first=False)
    x = _randn(64, 4, seed=5)
    _force_dead(vq, torch.tensor([3]), 64)
    cb0 = vq.codebook.detach().clone()
    out = vq(x)
    assert out.stats['dead'] >= 1 and 'restarted' not in out.stats and torch.equal(vq.codebook.detach(), cb0)


def test_split_copies_most_used_code():
    K, d, N, noise = 16, 4, 64, 0.01
    vq = _fresh_vq(K, d, restart='split', split_noise=noise, channel_first=False)
    x = _randn(N, d, seed=6)
    fair = _force_dead(vq, torch.tensor([5]), N)
    vq.usage[9] = 20 * fair                                 # the clear favourite
    cb0, u0 = vq.codebook.detach().clone(), vq.usage.clone()
    out = vq(x)
    counts = torch.bincount(out.indices, minlength=K).float()
    u = u0.lerp(counts, 0.01)
    dead = u < 0.1 * fair
    assert dead.nonzero().squeeze(1).tolist() == [5] and out.stats['restarted'] == 1
    src = int(u.masked_fill(dead, -1).argmax())
    assert src == 9
    cb = vq.codebook.detach()
    scale = noise * cb0[~dead].std()
    diff = (cb[5] - cb0[src]).abs()
    assert 0 < diff.max() < 5 * scale                        # a noisy copy, split_noise-scale away
    others = torch.cat([torch.arange(5), torch.arange(6, K)])
    assert others[torch.cdist(cb[5:6], cb[others]).argmin()] == src   # nearer the source than any other code
    assert torch.allclose(vq.usage[5], u[src] / 2) and torch.allclose(vq.usage[src], u[src] / 2)
    keep = torch.ones(K, dtype=torch.bool); keep[[5, src]] = False
    assert torch.allclose(vq.usage[keep], u[keep]) and torch.equal(cb[keep], cb0[keep])


def test_bad_restart_name():
    with pytest.raises(ValueError, match="restart must be one of"):
        VQ(8, 4, restart='respawn')


# ---------------------------------------------------------------------------------------------------- 6. k-means
def test_kmeans_init_on_first_training_forward():
    K = 8
    vq = _fresh_vq(K, 2, kmeans_init=True, channel_first=False)
    x = _randn(512, 2, seed=7, scale=0.5) + 10.0            # far from the default codebook at the origin
    assert not bool(vq.initted)
    cb0 = vq.codebook.detach().clone()
    vq.eval(); vq(x)                                         # eval does not initialise
    assert not bool(vq.initted) and torch.equal(vq.codebook.detach(), cb0)
    vq.train()
    plain = _fresh_vq(K, 2, channel_first=False)(x)
    assert plain.stats['batch_usage'] <= 0.25                # without k-means: nearly everything on one code
    out = vq(x)
    assert bool(vq.initted)
    assert out.stats['batch_usage'] == 1.0                    # every code is used by the batch
    assert torch.bincount(out.indices, minlength=K).min() >= 0.25 * len(x) / K
    assert torch.cdist(vq.codebook.detach(), x).min(1).values.max() < 0.5     # codes lie on the data
    assert out.stats['commit'] < 0.25 * x.var(0).sum() / 2
    cb1 = vq.codebook.detach().clone()
    vq(x + 100.0)                                             # not redone
    assert torch.equal(vq.codebook.detach(), cb1)


def test_kmeans_function():
    "Lloyd's fixed point: every centre is the mean of the rows nearest to it; k > N reuses rows."
    x = torch.cat([c + 0.1 * _randn(50, 2, seed=i) for i, c in enumerate(torch.tensor([[0., 0.], [5., 0.], [0., 5.]]))])
    torch.manual_seed(0)
    c = kmeans(x, 4, iters=10)
    idx = nearest(x, c)
    for k in idx.unique(): assert torch.allclose(c[k], x[idx == k].mean(0), atol=1e-5)
    inertia = lambda cc: (x - cc[nearest(x, cc)]).square().sum()
    assert inertia(c) < 0.5 * inertia(x[:4])
    c = kmeans(x[:3], 5, iters=2)
    assert all((row == x[:3]).all(1).any() for row in c)


# ---------------------------------------------------------------------------------------------------- 7. cosine
@pytest.mark.parametrize("ema", [False, True])
def test_cosine_codes_unit_norm(ema):
    vq = _fresh_vq(16, 4, cosine=True, ema=ema, restart='reseed')
    opt = None if ema else torch.optim.SGD(vq.parameters(), lr=10.0)   # moves the raw codebook off the sphere
    for step in range(3):
        z = _randn(2, 4, 3, 3, seed=10 + step, scale=5.0)
        codes = vq.codes().detach().clone()
        out = vq(z)
        if opt: opt.zero_grad(); out.aux_loss.backward(); opt.step()
        assert torch.allclose(out.quantized.norm(dim=1), torch.ones(2, 3, 3), atol=1e-5)
        assert torch.allclose(vq.codes().norm(dim=1), torch.ones(16), atol=1e-5)
        flat = F.normalize(z.movedim(1, -1).reshape(-1, 4), dim=1)
        assert torch.equal(out.indices.reshape(-1), (flat @ codes.T).argmax(1))   # nearest unit code == largest cosine
        q = codes[out.indices.reshape(-1)]
        assert torch.allclose(out.stats['commit'], (flat - q).square().mean(), atol=1e-6)   # the loss lives on the sphere
    if ema: assert torch.allclose(vq.codebook.norm(dim=1), torch.ones(16), atol=1e-5)
    else: assert not torch.allclose(vq.codebook.detach().norm(dim=1), torch.ones(16), atol=1e-3)
    vq.eval()
    out = vq(_randn(2, 4, 3, 3, seed=20, scale=5.0))
    assert torch.allclose(vq.decode_indices(out.indices), out.quantized)


# ---------------------------------------------------------------------------------------------------- 8. entropy loss
def test_entropy_loss_chunked_equals_unchunked():
    x0, cb0 = _randn(64, 4, seed=11), _randn(16, 4, seed=12)
    res = []
    for chunk in (2**24, 16 * 5, 16):        # one chunk; 13 chunks of 5 rows (last one short); one row per chunk
        x, cb = x0.clone().requires_grad_(), cb0.clone().requires_grad_()
        val = entropy_loss(x, cb, temperature=2.0, chunk_elems=chunk)
        val.backward()
        res.append((val.detach(), x.grad, cb.grad))
    for v, gx, gc in res[1:]:
        assert torch.allclose(v, res[0][0], atol=1e-6)
        assert torch.allclose(gx, res[0][1], atol=1e-6) and torch.allclose(gc, res[0][2], atol=1e-6)
    assert res[0][1].abs().sum() > 0 and res[0][2].abs().sum() > 0
    with torch.no_grad():
        assert torch.allclose(entropy_loss(x0, cb0, 2.0, chunk_elems=16), res[0][0], atol=1e-6)
    # reference: the formula written out
    x, cb = x0.clone().requires_grad_(), cb0.clone().requires_grad_()
    p = (-torch.cdist(x, cb).square() / 2.0).softmax(1)
    avg = p.mean(0)
    ref = -(p * p.log()).sum(1).mean() + (avg * avg.log()).sum()
    ref.backward()
    assert torch.allclose(res[0][0], ref.detach(), atol=1e-5)
    assert torch.allclose(res[0][1], x.grad, atol=1e-5) and torch.allclose(res[0][2], cb.grad, atol=1e-5)


def test_entropy_loss_known_values():
    cb = 3 * torch.eye(8)
    assert abs(entropy_loss(cb[[2] * 10], cb).item()) < 1e-5                      # all tokens one-hot on one code: 0
    assert math.isclose(entropy_loss(cb, cb).item(), -math.log(8), abs_tol=1e-5)    # n tokens on n distinct codes: -log n
    assert math.isclose(entropy_loss(cb[:3], cb).item(), -math.log(3), abs_tol=1e-5)
    assert math.isclose(entropy_loss(cb[[0, 0, 1, 1, 2, 2, 4, 4]], cb, chunk_elems=8).item(), -math.log(4), abs_tol=1e-5)


def test_vq_entropy_term():
    vq = _fresh_vq(16, 4, entropy_weight=0.3, entropy_temp=0.5, channel_first=False)
    z = _randn(40, 4, seed=13)
    cb = vq.codebook.detach().clone()
    out = vq(z)
    ent = entropy_loss(z, cb, 0.5)
    mse = (z - cb[out.indices]).square().mean()
    assert torch.allclose(out.stats['entropy'], ent, atol=1e-6)
    assert torch.allclose(out.aux_loss, 1.25 * mse + 0.3 * ent, atol=1e-6)


# ---------------------------------------------------------------------------------------------------- 9. metrics
def test_code_stats_values_and_errors():
    for k, K in [(1, 16), (4, 16), (16, 16), (5, 64)]:
        s = code_stats(torch.arange(k).repeat(7).reshape(7, k), K)
        assert math.isclose(s['usage'], k / K) and math.isclose(s['perplexity'], k, rel_tol=1e-9)
        assert math.isclose(s['bits'], math.log2(k), abs_tol=1e-9)
    s = code_stats(torch.tensor([0, 0, 0, 3], dtype=torch.int32), 4)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert math.isclose(s['usage'], 0.5) and math.isclose(s['perplexity'], math.exp(h)) and math.isclose(s['bits'], h / math.log(2))
    with pytest.raises(TypeError): code_stats(torch.tensor([0., 1.]), 4)
    with pytest.raises(IndexError): code_stats(torch.tensor([0, 4]), 4)
    with pytest.raises(IndexError): code_stats(torch.tensor([-1, 2]), 4)


def test_evaluate_tokenizer_vq():
    from fsq_lit.tokenizer import TokenizerConfig, Tokenizer, evaluate_tokenizer
    torch.manual_seed(0)
    tok = Tokenizer(TokenizerConfig(quantizer='vq', channels=8, ch_mult=(1, 2), codebook_size=64, vq_dim=4))
    assert isinstance(tok.quantizer, VQ)
    images = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    before = _buffers(tok.quantizer)
    s = evaluate_tokenizer(tok, images, batch_size=4)
    assert set(s) == {'psnr', 'ssim', 'mse', 'usage', 'perplexity', 'bits'}
    assert 0 < s['usage'] <= 1 and s['perplexity'] >= 1 and s['bits'] >= 0 and s['mse'] > 0 and math.isfinite(s['psnr'])
    assert tok.training                                                     # mode restored
    for k, v in _buffers(tok.quantizer).items(): assert torch.equal(v, before[k]), k   # evaluated in eval mode
    ref = code_stats(tok.tokenize(images), 64)
    assert math.isclose(s['usage'], ref['usage']) and math.isclose(s['perplexity'], ref['perplexity'], rel_tol=1e-9)


# ---------------------------------------------------------------------------------------------------- 10. bad input
def test_bad_input():
    vq = VQ(8, 4)
    with pytest.raises(ValueError, match=r"4 channels"): vq(torch.randn(2, 3, 5, 5))
    with pytest.raises(ValueError, match=r"4 channels"): VQ(8, 4, channel_first=False)(torch.randn(2, 5, 5, 3))
    with pytest.raises(TypeError, match="float tensor"): vq(torch.ones(2, 4, 5, 5, dtype=torch.long))
    with pytest.raises(TypeError): vq(torch.ones(2, 4, 5, 5, dtype=torch.int32))
    with pytest.raises(IndexError, match=r"\[0, 8\)"): vq.decode_indices(torch.tensor([[[0, 8]]]))
    with pytest.raises(IndexError): vq.decode_indices(torch.tensor([[[-1, 0]]]))
    with pytest.raises(TypeError): vq.decode_indices(torch.zeros(1, 2, 2))
    with pytest.raises(ValueError): nearest(torch.randn(3, 4), torch.randn(5, 3))
    with pytest.raises(ValueError, match="codebook_size"): VQ(1, 4)
    with pytest.raises(TypeError): VQ(8.0, 4)
    with pytest.raises(ValueError, match="decay"): VQ(8, 4, decay=1.0)
    assert vq.decode_indices(torch.tensor([[[0, 7]]])).shape == (1, 4, 1, 2)


# ---------------------------------------------------------------------------------------------------- 11. DDP
DDP_K, DDP_D, DDP_N, DDP_STEPS = 16, 3, 64, 3


def _ddp_batches():
    g = torch.Generator().manual_seed(1)
    return [torch.randn(DDP_N, DDP_D, generator=g) * (1 + s) for s in range(DDP_STEPS + 1)]


def _ddp_vq():
    torch.manual_seed(0)
    vq = VQ(DDP_K, DDP_D, ema=True, restart='reseed', decay=0.8, usage_decay=0.9, channel_first=False)
    vq.dead_threshold = 0.0                 # no restarts in the equality part
    return vq


def _state(vq):
    return {k: getattr(vq, k).detach().clone() for k in ('codebook', 'usage', 'cluster_size', 'embed_sum')}


def _ddp_worker(rank, world, init_file, out):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        res, vq, batches = {}, _ddp_vq(), _ddp_batches()
        half = DDP_N // world
        for s in range(DDP_STEPS):
            vq(batches[s][rank * half:(rank + 1) * half])
        res['steps'] = _state(vq)
        vq.dead_threshold = 0.1
        vq.usage[[2, 5]] = 0.0
        torch.manual_seed(100 + rank)                     # ranks draw different random rows: rank 0's must win
        o = vq(batches[DDP_STEPS][rank * half:(rank + 1) * half])
        res['restarted'] = float(o.stats.get('restarted', 0))
        res['reseed'] = _state(vq)
        torch.manual_seed(200 + rank)                     # k-means init from different halves: rank 0's wins too
        km = VQ(DDP_K, DDP_D, kmeans_init=True, channel_first=False)
        km(batches[0][rank * half:(rank + 1) * half])
        res['kmeans'] = km.codebook.detach().clone()
        torch.save(res, out)
    finally:
        dist.destroy_process_group()


def test_ddp_two_ranks_match_one_process(tmp_path):
    "Two gloo ranks with half the batch each == one process with the whole batch; reseeding keeps the ranks identical."
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    init = tmp_path / "pg_init"
    procs = [subprocess.Popen([sys.executable, __file__, json.dumps([r, 2, str(init), str(tmp_path / f"r{r}.pt")])],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    errs = []
    for p in procs:
        try: _, err = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            for q in procs: q.kill()
            raise AssertionError("DDP worker timed out")
        errs.append((p.returncode, err[-3000:]))
    for rc, err in errs: assert rc == 0, err
    r0, r1 = (torch.load(tmp_path / f"r{r}.pt") for r in range(2))
    # the ranks agree exactly, before and after a restart, and after k-means init
    for part in ('steps', 'reseed'):
        for k in r0[part]: assert torch.equal(r0[part][k], r1[part][k]), (part, k)
    assert torch.equal(r0['kmeans'], r1['kmeans'])
    # one process, the whole batch
    vq, batches = _ddp_vq(), _ddp_batches()
    for s in range(DDP_STEPS): vq(batches[s])
    ref = _state(vq)
    for k in ref:
        assert torch.allclose(r0['steps'][k], ref[k], rtol=0, atol=1e-5), f"{k}: max diff {(r0['steps'][k] - ref[k]).abs().max():.3g}"
    assert not torch.allclose(ref['codebook'], _ddp_vq().codebook, atol=1e-3)     # the EMA did move the codes
    # the restart: both dead codes reseeded onto rows of the global batch
    assert r0['restarted'] == 2 == r1['restarted']
    last = batches[DDP_STEPS]
    for k in (2, 5): assert (r0['reseed']['codebook'][k] == last).all(1).any()


if __name__ == "__main__":
    _ddp_worker(*json.loads(sys.argv[1]))


def test_empty_batch_is_a_no_op():
    "An empty batch returns empty outputs and a zero loss, and leaves the usage tracker alone (no reseeding storm after it)."
    torch.manual_seed(0)
    vq = VQ(8, 4, restart='reseed', channel_first=False)
    e = vq(torch.randn(0, 4))
    assert e.indices.shape == (0,) and e.quantized.shape == (0, 4) and e.aux_loss.item() == 0.0
    assert not bool(vq.usage_started)
    assert 'restarted' not in vq(torch.randn(64, 4)).stats
    with pytest.raises(ValueError, match='at least one'): entropy_loss(torch.randn(0, 4), torch.randn(8, 4))


def test_codebook_gradient_is_deterministic():
    "Two identical steps give bit-identical codebook gradients (cb[idx]'s backward on CPU summed in a varying order)."
    def grad():
        torch.manual_seed(0)
        vq = VQ(256, 16)
        z = torch.randn(32, 16, 64, 1, generator=torch.Generator().manual_seed(1))
        return torch.autograd.grad(vq(z).aux_loss, [vq.codebook])[0]
    first = grad()
    for _ in range(3): assert torch.equal(first, grad())
