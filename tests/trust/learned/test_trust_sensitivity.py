"""Gradient-based perturbation sensitivity bounded by the noise level."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.core.errors import AxesError, ConfigError
from fluorecon.methods.classical.denoising.noise import NoiseModel
from fluorecon.methods.learned import CARE
from fluorecon.methods.learned.sensitivity import perturbation_sensitivity
from fluorecon.simulate.pairs import simulate_pair

TINY = dict(steps=40, depth=1, base_filters=8, batch_size=4, validation_interval=20)


@pytest.mark.parametrize("shape, patch", [((48, 48), 16), ((8, 40, 40), (4, 16, 16))])
def test_worst_case_beats_random_and_respects_the_box(shape, patch):
    pair = simulate_pair("denoise", shape, photons=20, seed=1)
    axes = "YX" if len(shape) == 2 else "ZYX"
    m = CARE(**TINY, patch_size=patch).fit(pair.input, pair.target, axes)
    block = pair.input[..., :40, :40]
    before = block.copy()
    noise = NoiseModel(a=2.0, b=4.0)
    res = perturbation_sensitivity(m, block, axes, noise=noise, epsilon=1.0, steps=4,
                                   n_random=2)
    np.testing.assert_array_equal(block, before)
    sigma = np.sqrt(noise.variance(block))
    assert np.all(np.abs(res.delta) <= sigma * (1 + 1e-4) + 1e-4)
    assert res.change.shape == block.shape and res.change.dtype == np.float32
    assert res.rms_change > 0 and res.fragility >= 1.0
    # the returned change is what the perturbation really does
    out0 = m.predict_block(block, axes)
    out1 = m.predict_block(block + res.delta, axes)
    np.testing.assert_allclose(np.abs(out1 - out0), res.change, rtol=1e-3, atol=1e-3)
    half = perturbation_sensitivity(m, block, axes, noise=noise, epsilon=0.25, steps=4,
                                    n_random=1)
    assert half.rms_change < res.rms_change


def test_errors():
    pair = simulate_pair("denoise", (32, 32), photons=20, seed=2)
    m = CARE(**TINY, patch_size=16).fit(pair.input, pair.target, "YX")
    with pytest.raises(ConfigError):
        perturbation_sensitivity(m, pair.input, "YX", epsilon=0)
    with pytest.raises(AxesError):
        perturbation_sensitivity(m, pair.input[None], "CYX")
