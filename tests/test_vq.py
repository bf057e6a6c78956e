"""What chapter 07 (nbs/07_vq.ipynb) cannot check in a notebook: two gloo ranks in subprocesses must keep the same VQ
codebook as one process with the whole batch, for `VQ` and for UViM's `UViMVQ`, which shares its rank synchronisation. Every plain unit check of `fsq_lit.vq` lives in the chapter, next to its
code. Run as a script, this file is the worker process of `test_ddp_two_ranks_match_one_process`."""
import json, math, os, subprocess, sys
from pathlib import Path
import pytest
import torch
from fsq_lit.vq import VQ, UViMVQ

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------- DDP
DDP_K, DDP_D, DDP_N, DDP_STEPS = 16, 3, 64, 3


def _ddp_batches():
    g = torch.Generator().manual_seed(1)
    return [torch.randn(DDP_N, DDP_D, generator=g) * (1 + s) for s in range(DDP_STEPS + 1)]


def _ddp_vq():
    torch.manual_seed(0)
    vq = VQ(DDP_K, DDP_D, ema=True, restart='reseed', decay=0.8, usage_decay=0.9, channel_first=False)
    vq.dead_threshold = 0.0                 # no restarts in the equality part
    return vq


def _uvim_run(batches, part=slice(None), seed=300):
    "UViM's VQ (momentum 0.5: codes die and split within the steps) on the batches twice over; split noise seeded by `seed`."
    torch.manual_seed(0)
    u, splits = UViMVQ(DDP_K, DDP_D, momentum=0.5), 0.0
    for b in batches + batches:
        torch.manual_seed(seed)
        splits += u(b[part][:, :, None, None]).stats['splits']
    return {k: getattr(u, k).clone() for k in ('codebook', 'cluster_size', 'embed_sum')}, splits


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
        res['uvim'], res['uvim_splits'] = _uvim_run(batches, slice(rank * half, (rank + 1) * half), seed=300 + rank)   # rank 0's splits win
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
    for k in r0['uvim']: assert torch.equal(r0['uvim'][k], r1['uvim'][k]), ('uvim', k)
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
    # UViM's VQ: the ranks' split state is rank 0's, and equals one process's with rank 0's random numbers
    ref, splits = _uvim_run(batches)
    assert splits == r0['uvim_splits'] == r1['uvim_splits'] and splits >= 4, (splits, r0['uvim_splits'])
    for k in ref: assert torch.allclose(r0['uvim'][k], ref[k], rtol=0, atol=1e-5), f"uvim {k}: max diff {(r0['uvim'][k] - ref[k]).abs().max():.3g}"


if __name__ == "__main__":
    _ddp_worker(*json.loads(sys.argv[1]))
