"""Property tests (hypothesis) of the quantizer, the bijection and the error handling."""
import math
import pytest
import torch
from hypothesis import given, settings, strategies as st, HealthCheck
from fsq_lit.indices import APPENDIX_LEVELS
from fsq_lit import (FSQ, paper_listing_quantize, paper_listing_codes_to_indices, make_grid, quantize, bound, PAPER_LEVELS, levels_for, indices_to_codes, codes_to_indices,
                     level_indices_to_indices, indices_to_level_indices, implicit_codebook)

levels_st = st.lists(st.integers(2, 16), min_size=1, max_size=5)
variant_st = st.sampled_from([{}, {"paper_exact": True}, {"symmetric": True}])
SET = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# levels with L = 2 warn (chapter 03 tests the warning); here they are just one more case of the properties
pytestmark = pytest.mark.filterwarnings("ignore:levels .* L = 2 on the:UserWarning")


def rand(shape, seed, scale=3.0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * scale


@pytest.mark.parametrize("levels", list(PAPER_LEVELS.values()), ids=lambda l: "x".join(map(str, l)))
def test_index_code_index_every_index(levels):
    "index -> code -> index over every index of each Table-1 level set, through the module."
    q = FSQ(levels)
    idx = torch.arange(q.codebook_size, dtype=torch.int32)
    codes = q.indices_to_codes(idx)
    assert torch.equal(q.codes_to_indices(codes), idx)
    assert codes.unique(dim=0).shape[0] == q.codebook_size
    # and quantizing the codes' own preimages gives back the same indices
    shift, half_l, offset, center, scale = q.grid.tensors()
    z = torch.atanh((codes * scale - center + offset) / half_l) - shift
    assert torch.equal(q(z)[1], idx)


@SET
@given(levels=levels_st, variant=variant_st, n=st.integers(0, 300), seed=st.integers(0, 2**31 - 1))
def test_code_index_code_random(levels, variant, n, seed):
    "code -> index -> code for random inputs; and the module equals the chapter-00 reference."
    q = FSQ(levels, **variant)
    z = rand((n, len(levels)), seed)
    codes, idx = q(z)
    assert torch.equal(codes, quantize(z, q.grid))
    assert torch.equal(q.indices_to_codes(idx), codes)
    assert torch.equal(q.codes_to_indices(codes), idx)
    assert idx.dtype == torch.int32 and (n == 0 or (idx.min() >= 0 and idx.max() < q.codebook_size))


@SET
@given(levels=levels_st, variant=variant_st, seed=st.integers(0, 2**31 - 1))
def test_bound_range(levels, variant, seed):
    "f(z) stays inside the interval that rounds to the L levels; codes are on the grid and in [-1, 1]."
    g = make_grid(levels, **variant)
    z = torch.cat([rand((500, len(levels)), seed, 10.0), torch.full((2, len(levels)), 1e4) * torch.tensor([[1.], [-1.]])])
    f = bound(z, g)
    L = torch.tensor(levels, dtype=torch.float32)
    r = torch.round(f)
    assert (r >= -(L // 2)).all() and (r <= L - 1 - L // 2).all()
    codes = quantize(z, g)
    assert (codes >= -1).all() and (codes <= 1).all()
    for i, Li in enumerate(levels):
        assert codes[:, i].unique().numel() <= Li


@SET
@given(levels=levels_st, seed=st.integers(0, 2**31 - 1), dtype=st.sampled_from([torch.bfloat16, torch.float16]),
       channel_first=st.booleans())
def test_low_precision_indices_exact(levels, seed, dtype, channel_first):
    "The indices of a bf16/fp16 tensor are exactly those of its float32 upcast; the output keeps the dtype."
    q = FSQ(levels, channel_first=channel_first)
    z = rand((3, len(levels), 7) if channel_first else (3, 7, len(levels)), seed).to(dtype)
    codes, idx = q(z)
    ref_codes, ref_idx = q(z.float())
    assert codes.dtype == dtype and torch.equal(idx, ref_idx) and torch.equal(codes, ref_codes.to(dtype))


@SET
@given(levels=levels_st, variant=variant_st, seed=st.integers(0, 2**31 - 1), groups=st.integers(1, 3))
def test_gradient_is_bound_gradient_over_half_width(levels, variant, seed, groups):
    q = FSQ(levels, num_codebooks=groups, **variant)
    z = rand((64, len(levels) * groups), seed).requires_grad_()
    up = rand((64, len(levels) * groups), seed + 1, 1.0)
    torch.autograd.backward(q(z)[0], up)
    z2 = z.detach().clone().requires_grad_()
    g = q.grid
    zz = z2.view(64, groups, len(levels))
    ref = bound(zz, g) / torch.tensor(g.scale)
    torch.autograd.backward(ref.view(64, -1), up)
    assert torch.equal(z.grad, z2.grad)


@SET
@given(levels=levels_st, groups=st.integers(1, 3), channel_first=st.booleans(), seed=st.integers(0, 2**31 - 1),
       spatial=st.lists(st.integers(1, 5), min_size=0, max_size=3))
def test_layouts_and_groups_agree(levels, groups, channel_first, seed, spatial):
    "Channel-first and grouped quantization equal channel-last quantization of the same vectors."
    d = len(levels)
    q = FSQ(levels, num_codebooks=groups, channel_first=channel_first)
    B = 2
    if channel_first:
        z = rand((B, d * groups, *spatial), seed)
        last = z.movedim(1, -1)
    else:
        z = rand((B, *spatial, d * groups), seed)
        last = z
    codes, idx = q(z)
    flat_codes, flat_idx = FSQ(levels)(last.reshape(-1, d))
    codes_last = codes.movedim(1, -1) if channel_first else codes
    assert torch.equal(codes_last.reshape(-1, d), flat_codes)
    expected_idx_shape = (B, *spatial) + ((groups,) if groups > 1 else ())
    assert idx.shape == expected_idx_shape
    assert torch.equal(idx.reshape(-1), flat_idx)
    assert torch.equal(q.indices_to_codes(idx), codes)


@SET
@given(n=st.integers(2, 2**40), symmetric=st.booleans())
def test_levels_for(n, symmetric):
    if n == 2 and not symmetric:   # 2 codes need L = 2, which the default grid wastes
        with pytest.raises(ValueError, match="symmetric=True"): levels_for(n)
        return
    lv = levels_for(n, symmetric=symmetric)
    assert lv == sorted(lv, reverse=True)
    ratio = math.prod(lv) / n
    assert 0.8 <= ratio <= 1.25 and max(lv) <= 8
    assert symmetric or 2 not in lv
    if n in PAPER_LEVELS: assert lv == list(PAPER_LEVELS[n])
    elif n > 100 and n not in APPENDIX_LEVELS: assert min(lv) >= 5


def test_int64_indices_without_allocation():
    q = FSQ([16] * 8 + [2])                              # 2^33 codes
    assert q.index_dtype == torch.int64
    z = rand((100, 9), 0)
    codes, idx = q(z)
    assert idx.dtype == torch.int64 and torch.equal(q.codes_to_indices(codes), idx)
    top = torch.tensor([q.codebook_size - 1])
    assert torch.equal(q.codes_to_indices(q.indices_to_codes(top)), top)
    with pytest.raises(ValueError, match="max_rows"): q.codebook


@pytest.mark.parametrize("levels,exc,match", [
    ([], ValueError, "empty"), ([8, 5.5], TypeError, "integer"), ([8, 1], ValueError, ">= 2"),
    ([8, True], TypeError, "integer"), ("855", TypeError, "sequence"), (None, TypeError, "sequence"),
    ([0], ValueError, ">= 2"), ([-3, 5], ValueError, ">= 2")])
def test_bad_levels(levels, exc, match):
    with pytest.raises(exc, match=match): FSQ(levels)


def test_bad_inputs():
    q = FSQ([8, 5, 5, 5])
    with pytest.raises(ValueError, match="4 channels"): q(torch.randn(2, 3))
    with pytest.raises(ValueError, match="4 channels"): q(torch.randn(()))
    with pytest.raises(TypeError, match="floating-point"): q(torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.Tensor"): q(None)
    with pytest.raises(ValueError, match="NaN"): q(torch.tensor([[1., 2., float("nan"), 0.]]))
    with pytest.raises(ValueError, match="eps"): FSQ([8, 5], eps=0.5)
    with pytest.raises(ValueError, match=">= 1"): FSQ([8, 5], dim=0)
    with pytest.raises(IndexError, match="out of range"): q.indices_to_codes(torch.tensor([1000]))
    with pytest.raises(IndexError, match=">= 0"): q.indices_to_codes(torch.tensor([[-1]]))
    with pytest.raises(TypeError, match="integer"): q.indices_to_codes(torch.tensor([0.5]))
    with pytest.raises(ValueError, match="not on the FSQ grid"): q.codes_to_indices(torch.full((1, 4), 0.1))
    with pytest.raises(ValueError, match="num_codebooks"): FSQ([8, 5], num_codebooks=2).indices_to_codes(torch.tensor([1, 2, 3]))
    # +-inf saturate to the extreme codes; NaN checks can be turned off, leaving NaN codes (not silent zeros)
    codes, idx = q(torch.tensor([[float("inf"), -float("inf"), 0., 0.]]))
    assert codes.tolist() == [[0.75, -1.0, 0.0, 0.0]]
    codes, _ = FSQ([8, 5, 5, 5], nan_check=False)(torch.tensor([[float("nan"), 0., 0., 0.]]))
    assert torch.isnan(codes[0, 0])


def test_tiling_any_token_count():
    "The channel-last fast path tiles constants by the largest power of two dividing the token count."
    q = FSQ([7, 5, 5, 5, 5])
    for n in (0, 1, 2, 3, 15, 16, 17, 48, 1000, 4099):
        z = rand((n, 5), n)
        codes, idx = q(z)
        assert torch.equal(codes, quantize(z, q.grid)), n
        assert torch.equal(idx, codes_to_indices(codes, q.grid)), n


def test_non_contiguous_and_float64_inputs():
    q = FSQ([8, 5, 5, 5])
    z = rand((10, 4, 6), 3).transpose(1, 2)            # (10, 6, 4), not contiguous
    codes, idx = q(z)
    assert torch.equal(codes, quantize(z.contiguous(), q.grid))
    c64, i64 = q(z.double())
    assert c64.dtype == torch.float64 and i64.dtype == torch.int32


def test_device_move_and_state_dict():
    q = FSQ([8, 5, 5, 5], dim=16)
    sd = q.state_dict()
    assert set(sd) == {"grid_levels", "project_in.weight", "project_in.bias", "project_out.weight", "project_out.bias"}
    q2 = FSQ([8, 5, 5, 5], dim=16); q2.load_state_dict(sd)
    z = rand((5, 16), 1)
    assert torch.equal(q(z)[0], q2(z)[0])
    q.double()                                           # moving buffers refreshes the cached constant views
    c, i = q(z.double())
    assert c.dtype == torch.float64 and torch.equal(i, q2(z)[1])


@pytest.mark.parametrize("levels", list(PAPER_LEVELS.values()) + [[2, 3, 4], [16, 9]], ids=lambda l: "x".join(map(str, l)))
def test_paper_exact_module_is_the_listing_bit_for_bit(levels):
    z = rand((20_000, len(levels)), 7)
    codes, idx = FSQ(levels, paper_exact=True)(z)
    ref_codes = paper_listing_quantize(z, levels)
    ref_idx = paper_listing_codes_to_indices(ref_codes, levels)          # the listing's float sum: exact in fp32 here
    assert torch.equal(codes, ref_codes) and torch.equal(idx, ref_idx)
