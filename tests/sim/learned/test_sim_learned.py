"""Learned SIM (U-Net from raw frames), trained on tiny simulations."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.core.errors import ConfigError, InputFileError
from fluorecon.methods.classical.sim import RadialOTF, sim_reconstruct
from fluorecon.methods.learned.sim_net import (
    SIMNet,
    SIMNetConfig,
    sim_target,
    simulate_sim_training_data,
)
from fluorecon.metrics.fidelity import normalized_ssim
from fluorecon.simulate.camera import camera_inverse
from fluorecon.simulate.phantoms import filaments
from fluorecon.simulate.sim import simulate_sim

TINY = dict(n_images=2, image_size=32, patch_size=32, batch_size=2, base_filters=8, steps=6,
            validation_interval=3)


def test_config_validation():
    with pytest.raises(ConfigError, match="frames"):
        SIMNetConfig.build(frames=[0, 9])
    with pytest.raises(ConfigError, match="divisible"):
        SIMNetConfig.build(patch_size=30)
    with pytest.raises(ConfigError, match="range"):
        SIMNetConfig.build(photons=(100.0, 10.0))


def test_training_data_units():
    cfg = SIMNetConfig.build(**TINY, target="truth")
    xs, ys = simulate_sim_training_data(cfg)
    assert len(xs) == 2 and xs[0].shape == (9, 64, 64) and ys[0].shape == (1, 64, 64)
    assert xs[0].dtype == np.float32 and ys[0].dtype == np.float32
    # Inputs and target share one scale: the mean frame (flux per fine pixel) and the
    # truth blurred by the PSF have about the same mean.
    assert xs[0].mean() == pytest.approx(ys[0].mean(), rel=0.25)
    # The band-limited target keeps the flux.
    t = filaments((64, 64), seed=0)
    assert sim_target(t, pixel_size=0.0626, support=10.0).mean() == pytest.approx(t.mean(),
                                                                                  rel=1e-4)


def test_fit_predict_save_load(tmp_path):
    net = SIMNet(**TINY, frames=[0, 4, 8]).fit()
    assert net.result is not None and net.result.steps_done == 6
    sim = simulate_sim(filaments((64, 64), seed=5), rng=2)
    photons = camera_inverse(sim.frames, sim.camera)
    out = net.predict(photons, background=sim.background)
    assert out.shape == (64, 64) and out.dtype == np.float32 and np.all(np.isfinite(out))
    net.save(tmp_path / "m")
    again = SIMNet.load(tmp_path / "m")
    assert again.config.frames == [0, 4, 8]
    np.testing.assert_array_equal(again.predict(photons, background=sim.background), out)
    with pytest.raises(InputFileError):
        SIMNet.load(tmp_path / "missing")
    with pytest.raises(ConfigError, match="untrained"):
        SIMNet(**TINY).predict(photons)


def test_trained_network_agrees_with_wiener_sim():
    cfg = SIMNetConfig.build(n_images=4, image_size=64, patch_size=32, batch_size=4,
                             base_filters=8, steps=150, validation_interval=50,
                             photons=(100.0, 300.0), seed=1)
    net = SIMNet(cfg).fit()
    sim = simulate_sim(filaments((256, 256), seed=42, thickness=1.2), rng=7, photons=200)
    photons = camera_inverse(sim.frames, sim.camera)
    pred = net.predict(photons, background=sim.background)
    otf = RadialOTF.from_optics(na=sim.na, wavelength=sim.wavelength, pixel_size=sim.pixel_size)
    rec = sim_reconstruct(photons, pixel_size=sim.pixel_size, otf=otf, background=sim.background)
    target = sim_target(sim.truth, pixel_size=sim.pixel_size, support=rec.support)
    c = slice(24, -24)
    # Checked against the Wiener result: the two reconstructions agree ...
    assert np.corrcoef(pred[c, c].ravel(), rec.image[c, c].ravel())[0, 1] > 0.8
    # ... and the network is closer to the SIM-resolution truth than the widefield image.
    assert normalized_ssim(pred[c, c], target[c, c]) > normalized_ssim(rec.widefield[c, c],
                                                                       target[c, c])
    # Same units as the Wiener result (photons per output pixel); 150 steps leave a bias.
    assert pred[c, c].mean() == pytest.approx(rec.image[c, c].mean(), rel=0.35)
