"""Registration: phase correlation, rigid/affine Gauss-Newton, optical flow, stabiliser."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from fluorecon.core.errors import AxesError, ConfigError
from fluorecon.methods.classical.registration import (
    StabilizeConfig,
    Stabilizer,
    apply_motion,
    estimate_motion,
    phase_correlation,
    register_affine,
)
from fluorecon.simulate.motion import (
    affine_matrix,
    random_drift,
    rigid_matrix,
    simulate_timelapse,
    smooth_deformation,
)
from fluorecon.simulate.phantoms import make_phantom


def _sample(shape):
    big = tuple(int(n * 1.6) for n in shape)
    return ndimage.gaussian_filter(make_phantom("mixed", big, seed=0), 1.5)


def _drift_matrices(drift):
    d = drift.shape[1]
    m = np.tile(np.eye(d + 1), (drift.shape[0], 1, 1))
    m[:, :d, d] = drift
    return m


@pytest.mark.parametrize("shape", [(80, 80), (24, 48, 48)])
def test_phase_correlation_subpixel(shape):
    d = len(shape)
    yx = np.array([[0.0, 0.0], [1.37, -2.61], [-3.2, 0.27]])
    drift = yx if d == 2 else np.hstack([[[0.0], [0.44], [0.9]], yx])
    s = simulate_timelapse(_sample(shape), matrices=_drift_matrices(drift), shape=shape)
    for t in (1, 2):
        res = phase_correlation(s.frames[0], s.frames[t], window="hann")
        # registration shift undoes the drift (3D: only 24 slices, the window's taper
        # along Z costs some precision; the refined stabiliser is tested below)
        assert np.abs(-res.shift - drift[t]).max() < (0.1 if d == 2 else 0.2)
        assert 0.5 < res.peak <= 1.0


@pytest.mark.parametrize("shape", [(80, 80), (24, 48, 48)])
def test_stabilizer_recovers_drift_under_0p1_px(shape):
    d = len(shape)
    drift = random_drift(4, d, step=2.0, seed=2)
    s = simulate_timelapse(_sample(shape), matrices=_drift_matrices(drift), shape=shape,
                           photons=300.0, background=5.0, bleaching=0.05, seed=1)
    est = estimate_motion(s.frames, s.axes, model="translation")
    assert np.abs(est.translations() - drift).max() < 0.1
    corrected = apply_motion(s.frames, s.axes, est, order=1)
    core = (slice(None),) + tuple(slice(6, n - 6) for n in shape)
    err_before = np.abs(s.frames[core] - s.frames[0][core[1:]]).mean()
    err_after = np.abs(corrected[core] - corrected[0][core[1:]]).mean()
    assert err_after < 0.7 * err_before


def test_skimage_would_be_biased_without_window():
    # the apodisation matters on non-periodic frames: check ours is better than none
    shape = (80, 80)
    drift = np.array([[0.0, 0.0], [2.3, -1.6]])
    s = simulate_timelapse(_sample(shape), matrices=_drift_matrices(drift), shape=shape)
    win = phase_correlation(s.frames[0], s.frames[1], window="hann")
    raw = phase_correlation(s.frames[0], s.frames[1], window="none")
    assert np.abs(-win.shift - drift[1]).max() < np.abs(-raw.shift - drift[1]).max()


@pytest.mark.parametrize("model", ["rigid", "affine"])
def test_rigid_and_affine_recover_known_transform(model):
    shape = (96, 96)
    c = (np.array(shape) - 1) / 2.0
    if model == "rigid":
        m = rigid_matrix(2, angles=0.06, translation=(2.2, -1.4), centre=c)
    else:
        m = affine_matrix([[1.03, 0.02], [-0.015, 0.98]], (1.1, 0.7), centre=c)
    s = simulate_timelapse(_sample(shape), matrices=np.stack([np.eye(3), m]), shape=shape)
    res = register_affine(s.frames[0], s.frames[1], model=model)
    assert res.converged
    # compare by the displacement of the image corners (pixels)
    corners = np.array([[0, 0, 1], [0, 95, 1], [95, 0, 1], [95, 95, 1]], float).T
    assert np.abs((res.matrix - m) @ corners).max() < 0.1


def test_rigid_3d():
    shape = (32, 48, 48)
    c = (np.array(shape) - 1) / 2.0
    m = rigid_matrix(3, angles=(0.05, 0.0, 0.0), translation=(0.6, 1.3, -0.9), centre=c)
    s = simulate_timelapse(_sample(shape), matrices=np.stack([np.eye(4), m]), shape=shape)
    res = register_affine(s.frames[0], s.frames[1], model="rigid")
    grid = np.array(np.meshgrid([0, 31], [0, 47], [0, 47], indexing="ij")).reshape(3, -1)
    pts = np.vstack([grid, np.ones((1, grid.shape[1]))])
    assert np.abs((res.matrix - m) @ pts).max() < 0.15


def test_flow_reduces_deformation_error():
    shape = (96, 96)
    u = smooth_deformation(shape, amplitude=3.0, length_scale=12.0, seed=4)
    s = simulate_timelapse(_sample(shape), fields=np.stack([np.zeros_like(u), u]), shape=shape)
    est = estimate_motion(s.frames, "TYX", model="flow")
    assert est.fields is not None
    core = (slice(None),) + tuple(slice(8, n - 8) for n in shape)
    err = np.sqrt(((est.fields[1] - u) ** 2).sum(0))[core[1:]].mean()
    base = np.sqrt((u ** 2).sum(0))[core[1:]].mean()
    assert err < 0.5 * base
    rigid = estimate_motion(s.frames, "TYX", model="rigid")
    corr_flow = apply_motion(s.frames, "TYX", est)[1][core[1:]]
    corr_rigid = apply_motion(s.frames, "TYX", rigid)[1][core[1:]]
    ref = s.frames[0][core[1:]]
    assert np.abs(corr_flow - ref).mean() < 0.6 * np.abs(corr_rigid - ref).mean()


def test_stabilizer_channels_references_and_outputs():
    shape = (64, 64)
    drift = random_drift(4, 2, step=1.5, seed=5)
    s = simulate_timelapse(_sample(shape), matrices=_drift_matrices(drift), shape=shape)
    stack = np.stack([s.frames, 2 * s.frames + 3], axis=1)  # TCYX
    before = stack.copy()
    for ref in ("first", "mean", "previous"):
        stab = Stabilizer(reference=ref, channel=0)
        out = stab.predict(stack, "TCYX")
        assert out.shape == stack.shape and out.dtype == np.float32
        tr = stab.motion_.translations()
        assert np.abs((tr - tr[0]) - (drift - drift[0])).max() < 0.15
    np.testing.assert_array_equal(stack, before)
    # identity motion keeps values exactly; linear interpolation never overshoots
    est = estimate_motion(stack, "TCYX")
    out = apply_motion(stack, "TCYX", est, order=1)
    np.testing.assert_array_equal(out[0], stack[0])
    assert out.max() <= stack.max() + 1e-4 and out.min() >= stack.min() - 1e-4
    est.pixel_size = {"Y": 0.1, "X": 0.1}
    lines = est.to_csv().strip().splitlines()
    assert lines[0] == "frame,dy_px,dx_px,dy_um,dx_um,quality" and len(lines) == 5
    assert json.loads(est.to_json())["model"] == "translation"


def test_stabilizer_errors():
    with pytest.raises(AxesError):
        estimate_motion(np.zeros((8, 8, 8), np.float32), "ZYX")
    with pytest.raises(ConfigError):
        StabilizeConfig.build(model="flow", reference="previous")
    with pytest.raises(ConfigError):
        StabilizeConfig.build(model="bspline")
