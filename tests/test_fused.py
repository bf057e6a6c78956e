"""The torch.compile path (`kernel="compile"`) agrees with the eager path. Compiles once (about half a minute on CPU)."""
import torch
from fsq_lit import FSQ


def test_fused_matches_eager():
    torch.manual_seed(0)
    for kw, shape in (({}, (3, 100, 4)), ({"channel_first": True}, (2, 4, 8, 8)),
                      ({"num_codebooks": 2}, (5, 8)), ({"symmetric": True}, (7, 4))):
        eager, fused = FSQ([8, 5, 5, 5], **kw), FSQ([8, 5, 5, 5], kernel="compile", **kw)
        z = (torch.randn(shape) * 2).requires_grad_()
        (ce, ie), (cf, i_f) = eager(z), fused(z)
        assert torch.equal(ie, i_f) and ie.dtype == i_f.dtype
        torch.testing.assert_close(cf, ce, rtol=0, atol=1e-6)
        up = torch.randn(shape)
        ge, = torch.autograd.grad(ce, z, up)
        gf, = torch.autograd.grad(cf, z, up)
        torch.testing.assert_close(gf, ge, rtol=1e-5, atol=1e-6)


def test_module_inside_torch_compile():
    "A model that contains FSQ compiles (nan_check=False: no graph break) and matches eager, gradients included."
    torch.manual_seed(0)
    q = FSQ([8, 5, 5, 5], dim=16, nan_check=False)
    z = torch.randn(4, 10, 16, requires_grad=True)
    (c, i), (ce, ie) = torch.compile(q)(z), q(z)
    assert torch.equal(i, ie)
    torch.testing.assert_close(c, ce, rtol=0, atol=1e-6)
    g, = torch.autograd.grad(c.sum(), z)
    ge, = torch.autograd.grad(ce.sum(), z)
    torch.testing.assert_close(g, ge, rtol=1e-5, atol=1e-6)
