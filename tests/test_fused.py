"""FSQ under torch.compile: the `kernel="compile"` path agrees with the eager path, and a model holding FSQ compiles as one graph."""
import pytest
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


class _Model(torch.nn.Module):
    "A linear layer, FSQ, another linear layer: what a tokenizer's bottleneck looks like."
    def __init__(self, kernel):
        super().__init__()
        self.inp, self.q, self.out = torch.nn.Linear(8, 16), FSQ([8, 5, 5, 5], dim=16, kernel=kernel), torch.nn.Linear(16, 8)

    def forward(self, x):
        codes, idx = self.q(self.inp(x))
        return self.out(codes), idx


def test_fullgraph_with_nan_check():
    """A model holding FSQ with its default NaN check compiles as one graph (fullgraph=True) for 'auto' (the eager
    operations, fused) and 'triton' (chapter 02a's operator, here interpreted): the indices equal eager's, 'triton's
    codes and gradients bit for bit, and a NaN raises FSQ's error from the compiled model, with and without autograd."""
    for kernel in ("auto", "triton"):
        torch._dynamo.reset()
        torch.manual_seed(0)
        m = _Model(kernel)
        x = torch.randn(4, 6, 8)
        (y, i), (ye, ie) = torch.compile(m, fullgraph=True)(x), m(x)
        assert torch.equal(i, ie)
        g = torch.autograd.grad(y.square().sum(), m.inp.weight)[0]
        ge = torch.autograd.grad(ye.square().sum(), m.inp.weight)[0]
        torch.testing.assert_close(y, ye, rtol=0, atol=1e-6); torch.testing.assert_close(g, ge, rtol=1e-5, atol=1e-6)
        if kernel == "triton":                   # FSQ alone: the operator's codes and gradient are the kernel's, exactly
            z = torch.randn(4, 6, 16, requires_grad=True)
            (c, _), (ce, _) = torch.compile(m.q, fullgraph=True)(z), m.q(z)
            assert torch.equal(c, ce) and torch.equal(*(torch.autograd.grad(t.square().sum(), z)[0] for t in (c, ce)))
        bad = x.clone(); bad[1, 2, 3] = float("nan")
        for grad in (True, False):
            with torch.set_grad_enabled(grad), pytest.raises(ValueError, match="contains NaN"): torch.compile(m, fullgraph=True)(bad)


def test_maskgit_loss_is_one_graph():
    """MaskGIT's training loss (chapter 11), model included, compiles with fullgraph=True for both heads: no host sync in
    the step (the masked tokens weighted, not indexed; the training schedule and the id checks without a read-back),
    which bench/maskgit_mfu.py's compiled runs on a GPU rely on; and it trains (a finite loss, gradients in every weight)."""
    from fsq_lit.maskgit import MaskGIT, MaskGITConfig, maskgit_loss
    from fsq_lit.transformer import TransformerConfig
    for head, levels in (("full", None), ("factorized", (8, 5, 5, 5))):
        torch._dynamo.reset()
        torch.manual_seed(0)
        m = MaskGIT(MaskGITConfig(codebook_size=1000, num_tokens=16, num_classes=3, head=head, levels=levels,
                                  transformer=TransformerConfig(n_layer=1, n_head=2, d_model=32)))
        batch = {"tokens": torch.randint(1000, (6, 4, 4)), "label": torch.tensor([0, 1, 2, 0, 1, 2])}
        loss, metrics = torch.compile(lambda b: maskgit_loss(m, b), fullgraph=True)(batch)
        loss.backward()
        assert torch.isfinite(loss) and 0 < metrics["mask_frac"] <= 1
        assert all(p.grad is not None for p in m.parameters() if p.requires_grad)


def test_compiled_decoders_check_their_indices():
    "Compiled, the index range check is an assertion in the graph (no host sync): an index out of range raises, not garbage."
    from fsq_lit.indices import indices_to_codes
    from fsq_lit.scalar import make_grid
    torch._dynamo.reset()
    grid = make_grid([8, 5, 5, 5])
    decode = torch.compile(lambda i: indices_to_codes(i, grid), fullgraph=True)
    torch.testing.assert_close(decode(torch.tensor([0, 999])), indices_to_codes(torch.tensor([0, 999]), grid))
    for bad in (1000, -1):
        with pytest.raises(RuntimeError, match=r"indices must lie in \[0, 1000\)"): decode(torch.tensor([0, bad]))
