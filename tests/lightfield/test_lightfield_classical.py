"""Light-field forward model, adjoint and Richardson-Lucy reconstruction."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.core.errors import ConfigError, DataError
from fluorecon.methods.classical.lightfield import (
    LightFieldOperator,
    LightFieldOptics,
    lenslet_to_views,
    lightfield_psf,
    lightfield_richardson_lucy,
    views_to_lenslet,
)
from fluorecon.simulate.camera import CameraModel, camera_inverse
from fluorecon.simulate.lightfield import simulate_lightfield
from fluorecon.simulate.phantoms import beads

OPTICS = LightFieldOptics(n_views=5, kernel_size=11, lenslet_pitch=1.5)
DEPTHS = np.linspace(-6, 6, 5)


@pytest.fixture(scope="module")
def kernels():
    return lightfield_psf(OPTICS, DEPTHS)


def test_psf_normalised_and_parallax(kernels):
    assert kernels.shape == (5, 5, 5, 11, 11) and kernels.dtype == np.float32
    np.testing.assert_allclose(kernels.sum(axis=(0, 1, 3, 4)), 1.0, rtol=1e-5)
    assert np.all(kernels >= 0)
    c = 5

    def centroid_x(k):
        return float((k.sum(axis=0) * np.arange(k.shape[1])).sum() / k.sum())

    # In focus every view sees the point at the centre; out of focus the left and right
    # views see it displaced in opposite directions, more so further from focus.
    mid = 2
    assert centroid_x(kernels[2, 0, mid]) == pytest.approx(c, abs=0.05)
    left_far, right_far = centroid_x(kernels[2, 0, 0]), centroid_x(kernels[2, 4, 0])
    left_near = centroid_x(kernels[2, 0, 1])
    assert (left_far - c) * (right_far - c) < 0
    assert abs(left_far - c) > abs(left_near - c) > 0.2


def test_operator_adjoint_dot_product(kernels):
    op = LightFieldOperator(kernels, (13, 17))
    rng = np.random.default_rng(0)
    x = rng.random(op.volume_shape).astype(np.float32)
    y = rng.random(op.views_shape).astype(np.float32)
    lhs = float(np.vdot(op.forward(x).astype(np.float64), y))
    rhs = float(np.vdot(x.astype(np.float64), op.adjoint(y)))
    assert lhs == pytest.approx(rhs, rel=1e-5)
    # Linear and flux preserving for a point far from the edges.
    point = np.zeros(op.volume_shape, np.float32)
    point[1, 6, 8] = 1.0
    assert op.forward(point).sum() == pytest.approx(1.0, rel=1e-4)


def test_lenslet_rearrangement_roundtrip():
    views = np.random.default_rng(1).random((5, 5, 4, 6)).astype(np.float32)
    image = views_to_lenslet(views)
    assert image.shape == (20, 30)
    assert image[1 * 5 + 2, 3 * 5 + 4] == views[2, 4, 1, 3]
    np.testing.assert_array_equal(lenslet_to_views(image, 5), views)
    with pytest.raises(DataError):
        lenslet_to_views(image[:-1], 5)


def test_rl_improves_with_iterations(kernels):
    vol = beads((5, 32, 32), n_beads=12, radius=(0.6, 1.2), seed=2)
    sim = simulate_lightfield(vol, optics=OPTICS, depths=DEPTHS, photons=500, rng=4,
                              camera=CameraModel.ideal(), background=2.0)
    op = LightFieldOperator(kernels, (32, 32))
    views = camera_inverse(sim.views, sim.camera)
    errors = []
    for n in (1, 5, 25):
        rec = lightfield_richardson_lucy(views, op, n_iter=n, background=2.0).volume
        assert rec.shape == sim.truth.shape and rec.dtype == np.float32 and rec.min() >= 0
        scale = float((rec * sim.truth).sum() / (rec * rec).sum())
        errors.append(float(np.linalg.norm(scale * rec - sim.truth)))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.8 * errors[0]
    # Depth is recovered: each bead's brightest plane is (mostly) its true plane.
    rec = lightfield_richardson_lucy(views, op, n_iter=25, background=2.0).volume
    peaks = sim.truth.max(axis=0) > 0.5 * sim.truth.max()
    agree = np.mean(rec.argmax(axis=0)[peaks] == sim.truth.argmax(axis=0)[peaks])
    assert agree > 0.6


def test_validation(kernels):
    with pytest.raises(ConfigError):
        LightFieldOptics.build(n_views=4)
    op = LightFieldOperator(kernels, (8, 8))
    with pytest.raises(DataError):
        op.forward(np.zeros((4, 8, 8), np.float32))
    with pytest.raises(ConfigError):
        lightfield_richardson_lucy(np.ones(op.views_shape, np.float32), op, n_iter=0)
