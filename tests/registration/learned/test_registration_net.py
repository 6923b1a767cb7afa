"""Learned registration net: differentiable warp, unsupervised training, model folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from fluorecon.core.errors import ConfigError
from fluorecon.methods.classical.registration import apply_motion
from fluorecon.methods.learned.registration_net import (
    RegistrationNet,
    RegistrationNetConfig,
    warp_torch,
)
from fluorecon.simulate.motion import random_drift, simulate_timelapse
from fluorecon.simulate.phantoms import make_phantom


@pytest.mark.parametrize("shape", [(20, 24), (8, 12, 16)])
def test_warp_torch_matches_ndimage(shape, rng):
    img = ndimage.gaussian_filter(rng.random(shape), 1.0).astype(np.float32)
    d = len(shape)
    flow = (rng.random((d,) + shape) * 2 - 1).astype(np.float32)
    out = warp_torch(torch.from_numpy(img)[None, None], torch.from_numpy(flow)[None])[0, 0]
    grid = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    ref = ndimage.map_coordinates(img, [g + f for g, f in zip(grid, flow)], order=1,
                                  mode="nearest")
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5)
    zero = warp_torch(torch.from_numpy(img)[None, None], torch.zeros((1, d) + shape))
    np.testing.assert_allclose(zero[0, 0].numpy(), img, atol=1e-6)


def test_unsupervised_training_reduces_loss_and_roundtrips(tmp_path):
    big = ndimage.gaussian_filter(make_phantom("mixed", (80, 80), seed=0), 1.5)
    drift = random_drift(4, 2, step=1.0, seed=1)
    mats = np.tile(np.eye(3), (4, 1, 1))
    mats[:, :2, 2] = drift
    s = simulate_timelapse(big, matrices=mats, shape=(32, 32))
    net = RegistrationNet(steps=80, patch_size=32, depth=2, base_filters=8,
                          batch_size=4).fit(s.frames, "TYX")
    assert len(net.history) == 10
    est = net.estimate(s.frames, "TYX")
    assert est.fields is not None and est.fields.shape == (4, 2, 32, 32)
    assert np.all(est.fields[0] == 0)
    out = apply_motion(s.frames, "TYX", est, order=1)
    assert out.shape == s.frames.shape and out.dtype == np.float32
    # the learned fields bring the frames closer to the reference (interior pixels)
    core = (slice(1, None), slice(4, -4), slice(4, -4))
    before = np.mean((s.frames[core] - s.frames[0][core[1:]]) ** 2)
    after = np.mean((out[core] - s.frames[0][core[1:]]) ** 2)
    assert after < 0.9 * before
    net.save(tmp_path / "reg")
    again = RegistrationNet.load(tmp_path / "reg")
    np.testing.assert_array_equal(again.estimate(s.frames, "TYX").fields, est.fields)
    with pytest.raises(ConfigError):
        net.estimate(s.frames, "TYX", reference="previous")


def test_config_errors():
    with pytest.raises(ConfigError):
        RegistrationNetConfig.build(patch_size=60, depth=3)
    with pytest.raises(ConfigError):
        RegistrationNetConfig.build(reference="mean")


def test_cli_stabilize_learned(tmp_path):
    from typer.testing import CliRunner

    from fluorecon.cli.app import app
    from fluorecon.core.meta import ImageMeta
    from fluorecon.io import read_image, write_image

    big = ndimage.gaussian_filter(make_phantom("mixed", (64, 64), seed=1), 1.5)
    mats = np.tile(np.eye(3), (3, 1, 1))
    mats[1:, :2, 2] = [[0.5, -0.4], [1.0, 0.3]]
    s = simulate_timelapse(big, matrices=mats, shape=(32, 32))
    src = tmp_path / "tl.tif"
    write_image(src, s.frames, ImageMeta(axes="TYX"))
    r = CliRunner().invoke(app, ["stabilize-train", str(src), "-o", str(tmp_path / "reg"),
                                 "--steps", "4", "--patch-size", "32", "--depth", "2", "-q"])
    assert r.exit_code == 0, r.output
    assert RegistrationNet.load(tmp_path / "reg").config.steps == 4
    out = tmp_path / "out.tif"
    r = CliRunner().invoke(app, ["stabilize", str(src), "-o", str(out), "-m", "learned",
                                 "--net", str(tmp_path / "reg"), "-q"])
    assert r.exit_code == 0, r.output
    flow, meta = read_image(tmp_path / "out.flow.ome.tif")
    assert meta.axes == "TCYX" and flow.shape == (3, 2, 32, 32)
    r = CliRunner().invoke(app, ["stabilize", str(src), "-o", str(tmp_path / "o2.tif"), "-m",
                                 "learned"])
    assert r.exit_code == 2 and "--net" in r.output
