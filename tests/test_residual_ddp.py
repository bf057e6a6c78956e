"Quantize dropout under torch.distributed: two gloo ranks with different random seeds run the same number of stages."
import json, os, subprocess, sys, textwrap
from pathlib import Path

WORKER = textwrap.dedent("""
    import json, sys, torch, torch.distributed as dist
    torch.set_num_threads(1)
    rank, init = int(sys.argv[1]), sys.argv[2]
    dist.init_process_group('gloo', init_method=init, rank=rank, world_size=2)
    torch.manual_seed(100 + rank)                  # each rank's own draw differs; rank 0's must win
    from fsq_lit.residual import ResidualFSQ, GroupedResidualFSQ
    q = ResidualFSQ([5, 5, 5], 8, quantize_dropout=True).train()
    g = GroupedResidualFSQ([5, 5, 5], 8, groups=2, quantize_dropout=True).train()
    x = torch.randn(4, 3, requires_grad=True)
    n = [int((q(x)[1][0] >= 0).sum()) for _ in range(20)] + [int((g(x.repeat(1, 2))[1][0, 0] >= 0).sum()) for _ in range(10)]
    print(json.dumps(n)); dist.destroy_process_group()
""")


def test_dropout_stages_agree_across_ranks(tmp_path):
    init = f"file://{tmp_path / 'pg'}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(r), init], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env, cwd=Path(__file__).resolve().parents[1]) for r in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs): assert p.returncode == 0, err[-3000:]
    a, b = (json.loads(out.strip().splitlines()[-1]) for out, _ in outs)
    assert a == b                           # the same stages on both ranks, step after step
    assert len(set(a)) > 2                  # and they do vary
