"""U-Net: shapes, variants, config validation and the exact receptive-field formula."""

import numpy as np
import pytest
import torch

from fluorecon.core import ConfigError
from fluorecon.methods.learned.unet import MaxBlurPool, UNet, UNetConfig


def _measured_half_width(cfg: UNetConfig, trials: int = 2) -> int:
    """Largest distance of an input pixel with a non-zero gradient for some output pixel
    near the centre (one output per parity class of the 2**depth grid)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = UNet(cfg).eval()
        n = 2 * cfg.receptive_field + 2 * cfg.divisible_by
        n += (-n) % cfg.divisible_by
        c = n // 2
        reach = 0
        for _ in range(trials):
            x = torch.randn((1, cfg.in_channels) + (n,) * cfg.ndim, requires_grad=True)
            y = net(x)
            for off in range(cfg.divisible_by):
                (g,) = torch.autograd.grad(y[(0, 0) + (c + off,) * cfg.ndim], x,
                                           retain_graph=True)
                nz = np.argwhere(g[0].abs().sum(0).numpy() > 0)
                reach = max(reach, int(np.abs(nz - (c + off)).max()))
    return reach


@pytest.mark.parametrize("ndim,depth,kernel,n2v2,taper,up", [
    (2, 1, 3, False, False, "nearest"), (2, 2, 3, False, False, "nearest"),
    (2, 2, 3, True, False, "nearest"), (2, 1, 5, True, False, "nearest"),
    (2, 3, 3, False, False, "nearest"), (2, 2, 3, False, True, "nearest"),
    (3, 1, 3, False, False, "nearest"), (3, 1, 3, True, True, "nearest"),
    (2, 2, 3, False, True, "linear"), (2, 3, 3, True, False, "linear"),
    (3, 2, 3, False, False, "linear"),
])
def test_receptive_field_formula_matches_impulse_response(ndim, depth, kernel, n2v2, taper,
                                                          up):
    cfg = UNetConfig(ndim=ndim, depth=depth, base_filters=4, kernel_size=kernel, n2v2=n2v2,
                     taper=taper, upsampling=up)
    assert _measured_half_width(cfg) == cfg.receptive_field
    assert cfg.divisible_by == 2 ** depth


def test_receptive_field_known_values():
    # depth 2, 3x3: 2*7 + 2*3 + 3 = 23; N2V2's blur pool adds 3
    assert UNetConfig(depth=2, kernel_size=3).receptive_field == 23
    assert UNetConfig(depth=2, kernel_size=3, n2v2=True).receptive_field == 26
    assert UNetConfig(depth=1, kernel_size=5).receptive_field == 17


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("norm", ["none", "batch", "group"])
def test_shapes_and_probabilistic_scale(ndim, norm):
    cfg = UNetConfig(ndim=ndim, in_channels=2, out_channels=3, depth=2, base_filters=8,
                     norm=norm, probabilistic=True)
    net = UNet(cfg).eval()
    x = torch.randn((2, 2) + (16,) * ndim)
    out = net(x)
    assert out.shape == (2, 6) + (16,) * ndim
    assert bool((out[:, 3:] > 0).all())


def test_residual_adds_input_and_relu_head():
    cfg = UNetConfig(depth=1, base_filters=4, residual=True)
    net = UNet(cfg).eval()
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.zero_()
        x = torch.randn(1, 1, 8, 8)
        assert torch.equal(net(x), x)
        net2 = UNet(cfg.model_copy(update={"final_activation": "relu"})).eval()
        net2.load_state_dict(net.state_dict())
        assert torch.equal(net2(x), torch.relu(x))


def test_n2v2_has_no_top_level_skip_and_blurs():
    net = UNet(UNetConfig(depth=2, base_filters=4, n2v2=True))
    assert isinstance(net.pools[0], MaxBlurPool)
    # the last decoder block sees only the upsampled features (8 channels), no skip (4)
    assert net.decoders[-1].layers[0].in_channels == 8
    plain = UNet(UNetConfig(depth=2, base_filters=4))
    assert plain.decoders[-1].layers[0].in_channels == 12
    pool = MaxBlurPool(2, 1)
    y = pool(torch.ones(1, 1, 8, 8))
    assert y.shape == (1, 1, 4, 4)
    assert torch.allclose(y[..., 1:, 1:], torch.ones(1, 1, 3, 3))  # blur preserves constants


@pytest.mark.parametrize("kwargs,match", [
    ({"kernel_size": 4}, "odd"),
    ({"residual": True, "in_channels": 1, "out_channels": 2}, "residual"),
    ({"norm": "group", "base_filters": 12, "groups": 8}, "divide"),
    ({"ndim": 4}, "ndim"),
])
def test_invalid_configs_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        UNetConfig.build(**kwargs)


def test_taper_is_the_csbdeep_careamics_layout():
    # depth 2, 32 filters, batch norm: CAREamics' default N2V U-Net has 333,185 parameters.
    full = UNet(UNetConfig(depth=2, base_filters=32, norm="batch"))
    tapered = UNet(UNetConfig(depth=2, base_filters=32, norm="batch", taper=True))
    assert sum(p.numel() for p in tapered.parameters()) == 333_185
    assert sum(p.numel() for p in full.parameters()) > 1.3 * 333_185
    # the bottleneck ends with the filters of the level above; the top level keeps its own
    assert tapered.bottleneck.layers[-3].out_channels == 64
    assert tapered.decoders[-1].layers[-3].out_channels == 32
    assert tapered(torch.zeros(1, 1, 16, 16)).shape == (1, 1, 16, 16)


@pytest.mark.parametrize("kw", [
    dict(ndim=2), dict(ndim=3), dict(ndim=2, n2v2=True), dict(ndim=3, n2v2=True),
    dict(ndim=2, upsampling="linear", taper=True), dict(ndim=3, upsampling="linear"),
    dict(ndim=2, taper=True, norm="batch", probabilistic=True, residual=True),
    dict(ndim=3, depth=3, taper=True, norm="group", groups=4),
])
def test_lean_prediction_path_equals_training_path(kw):
    """Without autograd the U-Net runs its memory-lean forward; the numbers must not move."""
    cfg = UNetConfig(**{"depth": 2, "base_filters": 8, **kw})
    torch.manual_seed(0)
    net = UNet(cfg).eval()
    x = torch.randn(2, 1, *([16] * cfg.ndim))
    with torch.enable_grad():
        ref = net(x)
    with torch.inference_mode():
        lean = net(x)
    assert torch.equal(ref, lean)
    if cfg.ndim == 2:
        net_cl = net.to(memory_format=torch.channels_last)
        with torch.inference_mode():
            lean_cl = net_cl(x.contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(lean_cl, ref, rtol=1e-5, atol=1e-5)
