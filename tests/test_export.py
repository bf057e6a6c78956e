"""torch.export of a small conv encoder + FSQ: the exported program (also after save/load) gives eager's indices exactly."""
import torch
from torch import nn
from torch.export import Dim
from fsq_lit import FSQ


def encoder_fsq():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.GELU(), nn.Conv2d(16, 8, 3, stride=2, padding=1),
                         FSQ([8, 5, 5, 5], dim=8, channel_first=True)).eval()


def test_export_conv_encoder_fsq_indices_exact(tmp_path):
    model = encoder_fsq()
    example = torch.randn(2, 3, 16, 16)
    ep = torch.export.export(model, (example,), dynamic_shapes=({0: Dim("batch", min=1, max=1024)},))
    torch.export.save(ep, tmp_path / "encoder_fsq.pt2")
    loaded = torch.export.load(tmp_path / "encoder_fsq.pt2").module()
    for b in (1, 2, 5):
        x = torch.randn(b, 3, 16, 16, generator=torch.Generator().manual_seed(b)) * 3
        with torch.no_grad(): codes, idx = model(x)
        for prog in (ep.module(), loaded):
            with torch.no_grad(): c, i = prog(x)
            assert i.shape == (b, 8, 8) and i.dtype == torch.int32
            assert torch.equal(i, idx)
            torch.testing.assert_close(c, codes, rtol=0, atol=1e-6)


def test_export_channel_last_fsq_with_projections():
    "Channel-last, grouped, with projections: a token sequence (B, T, 32) with a symbolic batch size."
    torch.manual_seed(0)
    q = FSQ([8, 5, 5, 5], dim=32, num_codebooks=2).eval()
    ep = torch.export.export(q, (torch.randn(2, 10, 32),), dynamic_shapes=({0: Dim("batch", min=1, max=1024)},))
    for b in (1, 3, 17):
        x = torch.randn(b, 10, 32) * 2
        with torch.no_grad(): (c, i), (ce, ie) = ep.module()(x), q(x)
        assert torch.equal(i, ie) and i.shape == (b, 10, 2)
        torch.testing.assert_close(c, ce, rtol=0, atol=1e-6)
