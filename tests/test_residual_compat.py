"fsq_lit.residual against vector-quantize-pytorch's ResidualFSQ / GroupedResidualFSQ: same codes and indices in eval mode."
import pytest, torch
from fsq_lit.residual import ResidualFSQ, GroupedResidualFSQ

peer = pytest.importorskip("vector_quantize_pytorch")

CASES = [([8, 5, 5, 5], 4, None), ([5, 5, 5], 8, None), ([4, 4, 4], 6, 16), ([2, 3, 7], 3, None), ([3] * 6, 5, 32)]


@pytest.mark.parametrize("levels,Q,dim", CASES)
def test_same_codes_and_indices(levels, Q, dim):
    torch.manual_seed(0)
    theirs = peer.ResidualFSQ(levels=levels, num_quantizers=Q, dim=dim).eval()
    ours = ResidualFSQ(levels, Q, dim=dim).eval()
    ours.load_state_dict(theirs.state_dict())              # the projections, when there are some
    z = torch.randn(4, 512, dim or len(levels)) * 2         # the peer wants (batch, seq, dim)
    with torch.no_grad():
        (a, ia), (b, ib) = ours(z), theirs(z)
        assert torch.equal(ia, ib.to(ia.dtype)) and torch.equal(a, b)
        # decoding: ours is the forward bit for bit; the peer's sums the stages in another order (close)
        assert torch.equal(ours.indices_to_codes(ia), a)
        torch.testing.assert_close(ours.indices_to_codes(ia), theirs.get_output_from_indices(ib), rtol=0, atol=1e-6)


def test_channel_first_layouts():
    "Same numbers; the book puts the stage axis last ((B, H, W, Q)), the peer after the batch ((B, Q, H, W))."
    torch.manual_seed(0)
    theirs = peer.ResidualFSQ(levels=[8, 5, 5, 5], num_quantizers=3, is_channel_first=True).eval()
    ours = ResidualFSQ([8, 5, 5, 5], 3, channel_first=True).eval()
    z = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        (a, ia), (b, ib) = ours(z), theirs(z)
    assert torch.equal(a, b) and torch.equal(ia, ib.movedim(1, -1).to(ia.dtype))


def test_grouped():
    "Grouped: the peer stacks the groups first ((G, B, N, Q)), the book before the stage axis ((B, N, G, Q))."
    torch.manual_seed(0)
    theirs = peer.GroupedResidualFSQ(levels=[5, 5, 5], num_quantizers=4, dim=24, groups=2).eval()
    ours = GroupedResidualFSQ([5, 5, 5], 4, dim=24, groups=2).eval()
    ours.load_state_dict({k.replace('rvqs.', 'rfsqs.'): v for k, v in theirs.state_dict().items()})
    z = torch.randn(3, 100, 24)
    with torch.no_grad():
        (a, ia), (b, ib) = ours(z), theirs(z)
    assert torch.equal(a, b) and torch.equal(ia, ib.movedim(0, -2).to(ia.dtype))
