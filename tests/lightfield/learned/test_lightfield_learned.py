"""Learned light-field reconstruction (views -> volume U-Net), tiny simulations."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.core.errors import ConfigError, DataError
from fluorecon.methods.learned.lightfield_net import (
    LightFieldNet,
    LightFieldNetConfig,
    simulate_lightfield_training_data,
)
from fluorecon.metrics.fidelity import normalized_psnr
from fluorecon.simulate.camera import camera_inverse
from fluorecon.simulate.lightfield import LightFieldOptics, simulate_lightfield
from fluorecon.simulate.phantoms import beads

OPTICS = LightFieldOptics(n_views=5, kernel_size=9)


def _cfg(**kw):
    base = dict(optics=OPTICS, planes=5, lenslets=32, patch_size=16, n_volumes=3, steps=6,
                batch_size=2, base_filters=8, validation_interval=3)
    base.update(kw)
    return LightFieldNetConfig.build(**base)


def test_config_validation():
    with pytest.raises(ConfigError, match="64"):
        LightFieldNetConfig.build(optics=LightFieldOptics(n_views=9))
    with pytest.raises(ConfigError):
        _cfg(lenslets=24, patch_size=16)


def test_training_data_shapes():
    xs, ys = simulate_lightfield_training_data(_cfg())
    assert xs[0].shape == (25, 32, 32) and ys[0].shape == (5, 32, 32)
    assert np.percentile(xs[0], 99.9) == pytest.approx(1.0, rel=1e-3)


def test_fit_predict_save_load(tmp_path):
    cfg = _cfg(steps=6, n_volumes=3, validation_interval=3)
    net = LightFieldNet(cfg).fit()
    assert net.result is not None and net.result.steps_done == 6
    vol = beads((5, 24, 24), seed=11, n_beads=10, radius=(0.6, 1.2))
    lf = simulate_lightfield(vol, optics=OPTICS, depths=cfg.depths, photons=300, rng=3)
    views = camera_inverse(lf.views, lf.camera)
    pred = net.predict(views, background=lf.background)
    assert pred.shape == (5, 24, 24) and pred.dtype == np.float32 and pred.min() >= 0
    net.save(tmp_path / "lf")
    np.testing.assert_array_equal(LightFieldNet.load(tmp_path / "lf").predict(
        views, background=lf.background), pred)
    with pytest.raises(DataError):
        net.predict(views[:3, :3], background=lf.background)
    with pytest.raises(ConfigError, match="untrained"):
        LightFieldNet(cfg).predict(views)


@pytest.mark.slow
def test_trained_network_learns_depth():
    cfg = _cfg(steps=300, n_volumes=8, validation_interval=100, seed=2, batch_size=8,
               base_filters=16, learning_rate=1e-3,
               phantom_options={"n_beads": 25, "radius": (0.6, 1.2)})
    net = LightFieldNet(cfg).fit()
    assert net.result.best_val_loss < net.result.history[0]["val_loss"]
    vol = beads((5, 32, 32), seed=11, n_beads=25, radius=(0.6, 1.2))
    lf = simulate_lightfield(vol, optics=OPTICS, depths=cfg.depths, photons=300, rng=3)
    views = camera_inverse(lf.views, lf.camera)
    pred = net.predict(views, background=lf.background)
    # Better than the trivial estimate that spreads the light evenly over the planes ...
    flat = np.broadcast_to((views - lf.background).sum(axis=(0, 1)) / 5, pred.shape)
    assert normalized_psnr(pred, lf.truth) > normalized_psnr(flat, lf.truth) + 1.0
    # ... because it has learned depth from parallax: where a bead is, the brightest
    # predicted plane is its true plane far more often than chance (1 in 5).
    beads_xy = lf.truth.max(axis=0) > 0.5 * lf.truth.max()
    hits = np.mean(pred.argmax(axis=0)[beads_xy] == lf.truth.argmax(axis=0)[beads_xy])
    assert hits > 0.4
