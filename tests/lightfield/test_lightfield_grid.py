"""Lenslet-grid calibration and rectification of raw light-field frames."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fluorecon.core.errors import ConfigError, DataError
from fluorecon.methods.classical.lightfield import (
    LensletGrid,
    calibrate_lenslet_grid,
    lenslet_to_views,
    rectify_lightfield,
)
from fluorecon.metrics.fidelity import psnr

SHAPE = (300, 316)


def _lattice(pitch=(15.38, 15.41), rotation_deg=0.5, offset=(6.3, 9.7)):
    t = np.radians(rotation_deg)
    a_col = pitch[1] * np.array([np.sin(t), np.cos(t)])  # along a lenslet row (x)
    a_row = pitch[0] * np.array([np.cos(t), -np.sin(t)])  # down a column (y)
    return np.stack([a_row, a_col]), np.asarray(offset, float)


def _spot(s, t):
    """Smooth pupil image in lenslet units (zero at the block edge)."""
    rho = np.hypot(s, t)
    return np.where(rho < 0.47, np.cos(0.5 * np.pi * rho / 0.47) ** 2, 0.0)


def _content(i, j, s, t):
    """Light-field-like content: per-lenslet brightness and a parallax-like gradient."""
    return (1.0 + 0.6 * np.sin(0.45 * i) * np.cos(0.3 * j)) * (1.0 + 0.5 * s - 0.3 * t)


def _render(basis, offset, shape, content=None, vignetting=0.0):
    """Camera frame sampled at pixel centres from a function of lattice coordinates."""
    yy, xx = np.mgrid[:shape[0], :shape[1]].astype(float)
    r = np.stack([yy - offset[0], xx - offset[1]], axis=-1)
    q = r @ np.linalg.inv(basis)  # r = q_i a_row + q_j a_col
    i, j = np.rint(q[..., 0]), np.rint(q[..., 1])
    s, t = q[..., 0] - i, q[..., 1] - j
    val = _spot(s, t)
    if content is not None:
        val = val * content(i, j, s, t)
    if vignetting:
        c = np.array(shape) / 2
        val = val * (1 - vignetting * ((yy - c[0]) ** 2 + (xx - c[1]) ** 2) / (c @ c))
    return val


@pytest.fixture(scope="module")
def radiometry():
    rng = np.random.default_rng(0)
    basis, offset = _lattice()
    dark = 100.0 + rng.normal(0, 2.0, SHAPE)
    frame = 20000.0 * _render(basis, offset, SHAPE, vignetting=0.3) + dark
    frame = frame + rng.normal(0, 1.0, SHAPE) * np.sqrt(np.clip(frame, 1, None))
    return basis, offset, frame, dark


def test_calibration_recovers_pitch_rotation_offset(radiometry):
    basis, offset, frame, dark = radiometry
    grid = calibrate_lenslet_grid(frame, dark)
    np.testing.assert_allclose(grid.pitch, (15.38, 15.41), rtol=1e-3)
    assert grid.rotation == pytest.approx(0.5, abs=0.05)
    assert abs(grid.shear) < 0.05
    # grid.offset is the centre of a whole lenslet of the true lattice, within 0.1 px.
    q = np.linalg.solve(basis.T, grid.offset - offset)
    true_centre = offset + np.rint(q) @ basis
    assert np.hypot(*(grid.offset - true_centre)) < 0.1
    # Every lenslet centre of the fitted lattice, not only the first.
    centres = grid.centres().reshape(-1, 2)
    qs = np.linalg.solve(basis.T, (centres - offset).T).T
    err = np.hypot(*(centres - (offset + np.rint(qs) @ basis)).T)
    assert err.max() < 0.1 and grid.residual < 0.1
    # Whole lenslets only: every block lies inside the frame.
    corners = centres[:, None, :] + np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5],
                                              [0.5, 0.5]]) @ grid.basis
    assert corners.min() >= -0.5 and np.all(corners.max(axis=(0, 1)) <= np.array(SHAPE) - 0.5)
    assert grid.shape == (19, 20) or min(grid.shape) >= 18
    # The pitch guess restricts the Fourier search and gives the same lattice.
    guided = calibrate_lenslet_grid(frame, dark, pitch_guess=15.0)
    np.testing.assert_allclose(guided.basis, grid.basis, atol=1e-6)


@pytest.mark.parametrize("n", [15, 17])
def test_rectification_reproduces_integer_pitch_image(radiometry, n):
    basis, offset, _, _ = radiometry
    grid = calibrate_lenslet_grid(_render(basis, offset, SHAPE))
    raw = 500.0 * _render(basis, offset, SHAPE, content=_content)
    rect = rectify_lightfield(raw, grid, samples_per_lenslet=n)
    rows, cols = grid.shape
    assert rect.shape == (rows * n, cols * n) and rect.dtype == np.float32
    # The integer-pitch image the rectification should produce, from the same function.
    q0 = np.rint(np.linalg.solve(basis.T, grid.offset - offset))
    sub = (np.arange(n) - (n - 1) / 2) / n
    i = (q0[0] + np.arange(rows))[:, None, None, None]
    j = (q0[1] + np.arange(cols))[None, None, :, None]
    s, t = sub[None, :, None, None], sub[None, None, None, :]
    truth = 500.0 * _spot(s, t) * _content(i, j, s, t)
    truth = np.broadcast_to(truth, (rows, n, cols, n)).reshape(rows * n, cols * n)
    area = abs(np.linalg.det(basis)) / n**2
    assert psnr(rect / area, truth, data_range=float(truth.max())) > 35
    # A grid that is off by a fifth of a pitch is far worse (the test can fail).
    shifted = LensletGrid(grid.basis, grid.offset + 0.2 * grid.basis[1], grid.shape,
                          grid.image_shape)
    bad = rectify_lightfield(raw, shifted, samples_per_lenslet=n)
    assert psnr(bad / area, truth, data_range=float(truth.max())) < 25
    # Flux: the lenslet sums of the rectified image equal those of the camera frame.
    blocks = rect.reshape(rows, n, cols, n).sum(axis=(1, 3))
    assert blocks.sum() == pytest.approx(raw.sum() * blocks.size / np.prod(grid.shape) *
                                         1.0, rel=0.25)
    views = lenslet_to_views(rect, n)
    assert views.shape == (n, n, rows, cols)


def test_dark_and_flat_field(radiometry):
    basis, offset, frame, dark = radiometry
    grid = calibrate_lenslet_grid(frame, dark)
    # A uniform object seen through the same optics as the flat is flat after correction.
    raw = 0.01 * (frame - dark) + dark
    rect = rectify_lightfield(raw, grid, dark=dark, flat=frame)
    vals = rect[rect != 0]
    assert vals.size > 0.3 * rect.size  # the pupil images, not the gaps between them
    assert np.std(vals) / np.mean(vals) < 0.05
    plain = rectify_lightfield(raw, grid, dark=dark)
    assert np.std(plain[plain > 0]) / np.mean(plain[plain > 0]) > 0.3


def test_grid_roundtrip_and_validation(radiometry, tmp_path):
    _, _, frame, dark = radiometry
    grid = calibrate_lenslet_grid(frame, dark)
    back = LensletGrid.from_dict(json.loads(json.dumps(grid.to_dict())))
    np.testing.assert_allclose(back.basis, grid.basis)
    assert back.shape == grid.shape and back.image_shape == grid.image_shape
    with pytest.raises(ConfigError):
        LensletGrid.from_dict({"basis_px": [[1, 0], [0, 1]]})
    with pytest.raises(ConfigError):
        rectify_lightfield(frame, grid, samples_per_lenslet=16)
    with pytest.raises(DataError, match="calibrated shape"):
        rectify_lightfield(frame[:-1], grid)
    with pytest.raises(DataError):
        calibrate_lenslet_grid(np.full(SHAPE, 7.0))  # no lenslet pattern
    with pytest.raises(DataError):
        calibrate_lenslet_grid(frame, dark[:10])


@pytest.mark.realdata
def test_real_radiometry_calibration_and_rl(shared_data):
    """napari-LF GUV data: 100 um lenslets imaged 1:1 onto 6.5 um pixels."""
    import tifffile

    from fluorecon.methods.classical.lightfield import (
        LightFieldOperator,
        LightFieldOptics,
        lightfield_psf,
        lightfield_richardson_lucy,
    )

    folder = shared_data / "lightfield_napari_lf_guv"
    if not folder.is_dir():
        pytest.skip("lightfield_napari_lf_guv absent")
    rad = tifffile.imread(folder / "Radiometry_GUVExperim1.tif")
    dark = tifffile.imread(folder / "DarkFrame_GUVExperim1.tif")
    raw = tifffile.imread(folder / "Lightfield_GUVExperim1.tif")
    grid = calibrate_lenslet_grid(rad, dark)
    expected = 100.0 / 6.5  # lenslet pitch / camera pixel, 1:1 relay
    np.testing.assert_allclose(grid.pitch, expected, rtol=0.01)
    assert abs(grid.shear) < 0.5 and grid.residual < 0.2 and grid.n_fitted > 500
    # Rectified radiometry: every lenslet image is centred in its block (measured).
    n = 15
    rect = rectify_lightfield(rad, grid, samples_per_lenslet=n, dark=dark)
    b = rect.reshape(grid.shape[0], n, grid.shape[1], n).transpose(0, 2, 1, 3)
    thr = 0.5 * (b.max(axis=(2, 3), keepdims=True) + b.min(axis=(2, 3), keepdims=True))
    w = np.clip(b - thr, 0, None)
    yy, xx = np.mgrid[:n, :n]
    cy = (w * yy).sum(axis=(2, 3)) / w.sum(axis=(2, 3)) - (n - 1) / 2
    cx = (w * xx).sum(axis=(2, 3)) / w.sum(axis=(2, 3)) - (n - 1) / 2
    assert abs(cy.mean()) < 0.1 and abs(cx.mean()) < 0.1  # samples (1/15 lenslet)
    assert np.sqrt(np.mean(cy**2 + cx**2)) < 0.3
    # RL of the rectified, flat-fielded GUV frame runs and yields a finite volume.
    lf = np.clip(rectify_lightfield(raw, grid, samples_per_lenslet=n, dark=dark, flat=rad),
                 0, None)
    optics = LightFieldOptics(na=1.2, wavelength=0.593, n_immersion=1.35,
                              lenslet_pitch=100.0 / 60.0, n_views=n, kernel_size=11)
    views = lenslet_to_views(lf, n)
    op = LightFieldOperator(lightfield_psf(optics, [-3.0, 0.0, 3.0]), views.shape[2:])
    vol = lightfield_richardson_lucy(views, op, n_iter=3).volume
    assert vol.shape == (3, *grid.shape) and np.all(np.isfinite(vol)) and vol.min() >= 0


def test_cli_calibrate_rectify_reconstruct(radiometry, tmp_path):
    from typer.testing import CliRunner

    from fluorecon.cli.app import app
    from fluorecon.core.meta import ImageMeta
    from fluorecon.io import read_image, write_image

    basis, offset, frame, dark = radiometry
    meta = ImageMeta(axes="YX")
    paths = {}
    for name, arr in (("rad", frame), ("dark", dark),
                      ("raw", 300.0 * _render(basis, offset, SHAPE, content=_content) + dark)):
        paths[name] = tmp_path / f"{name}.tif"
        write_image(paths[name], arr.astype(np.float32), meta)
    runner = CliRunner()
    res = runner.invoke(app, ["lightfield", "calibrate", str(paths["rad"]), "--dark",
                              str(paths["dark"]), "-o", str(tmp_path / "grid.json")])
    assert res.exit_code == 0, res.output
    info = json.loads((tmp_path / "grid.json").read_text())
    np.testing.assert_allclose(info["grid"]["pitch_px"], (15.38, 15.41), rtol=1e-3)
    res = runner.invoke(app, ["lightfield", "rectify", str(paths["raw"]), "--grid",
                              str(tmp_path / "grid.json"), "--dark", str(paths["dark"]),
                              "--flat", str(paths["rad"]), "--samples", "9", "-o",
                              str(tmp_path / "rect.tif"), "-q"])
    assert res.exit_code == 0, res.output
    rect, _ = read_image(tmp_path / "rect.tif")
    rows, cols = info["grid"]["shape"]
    assert rect.shape == (rows * 9, cols * 9)
    res = runner.invoke(app, ["lightfield", "reconstruct", str(paths["raw"]), "--grid",
                              str(tmp_path / "grid.json"), "--dark", str(paths["dark"]),
                              "--views", "9", "--kernel", "5", "--planes", "3",
                              "--iterations", "2", "-o", str(tmp_path / "vol.tif"), "-q"])
    assert res.exit_code == 0, res.output
    vol, _ = read_image(tmp_path / "vol.tif")
    assert vol.shape == (3, rows, cols)
    # Bad input: one-line error, exit code 2; the grid file must not be overwritten.
    res = runner.invoke(app, ["lightfield", "rectify", str(paths["raw"]), "--grid",
                              str(paths["rad"]), "-o", str(tmp_path / "x.tif")])
    assert res.exit_code == 2 and "error:" in res.output
    res = runner.invoke(app, ["lightfield", "calibrate", str(paths["rad"]), "-o",
                              str(tmp_path / "grid.json")])
    assert res.exit_code == 2 and "error:" in res.output
