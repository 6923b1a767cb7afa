"""Wiener / Tikhonov deconvolution on tiny seeded 2D/3D data."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.core.errors import ConfigError, DataError
from fluorecon.methods import create
from fluorecon.methods.classical.deconvolution import Wiener, wiener, wiener_result
from fluorecon.simulate.degrade import blur
from fluorecon.simulate.phantoms import beads
from fluorecon.simulate.psf import gaussian_psf

SHAPES = {"2d": (64, 64), "3d": (24, 48, 48)}
DIMS = pytest.mark.parametrize("dim", ["2d", "3d"])


def _case(dim: str, noise: float = 0.5, seed: int = 0) -> tuple[np.ndarray, ...]:
    shape = SHAPES[dim]
    truth = beads(shape, radius=(1.5, 3.0), seed=seed) * np.float32(100.0) + np.float32(10.0)
    psf = gaussian_psf((11,) * len(shape), 1.5)
    rng = np.random.default_rng(seed + 1)
    y = (blur(truth, psf, mode="reflect") + rng.normal(0, noise, shape)).astype(np.float32)
    return truth, psf, y


def _psnr(est: np.ndarray, truth: np.ndarray) -> float:
    mse = float(np.mean((est.astype(np.float64) - truth) ** 2))
    return 10 * np.log10(float(truth.max()) ** 2 / mse)


@DIMS
@pytest.mark.parametrize("regularizer", ["tikhonov", "laplacian"])
def test_wiener_beats_blurred_input_at_low_noise(dim: str, regularizer: str) -> None:
    truth, psf, y = _case(dim)
    before = y.copy()
    res = wiener_result(y, psf, regularizer=regularizer)
    np.testing.assert_array_equal(y, before)
    assert res.image.dtype == np.float32 and res.image.shape == y.shape
    assert res.info.automatic and res.info.balance > 0
    assert _psnr(res.image, truth) > _psnr(y, truth) + 1.0


def test_automatic_noise_estimate_tracks_true_noise() -> None:
    for sigma in (0.5, 2.0):
        _, psf, y = _case("2d", noise=sigma, seed=3)
        info = wiener_result(y, psf).info
        assert info.noise_power is not None
        assert 0.5 * sigma**2 < info.noise_power < 2.0 * sigma**2


def test_automatic_balance_is_near_the_best_fixed_one() -> None:
    truth, psf, y = _case("2d", noise=1.0, seed=5)
    auto = _psnr(wiener(y, psf), truth)
    best = max(_psnr(wiener(y, psf, balance=k), truth) for k in np.logspace(-5, 0, 11))
    assert auto > best - 1.5


def test_wiener_preserves_mean_and_removes_background() -> None:
    truth, psf, y = _case("2d", noise=0.1)
    out = wiener(y + np.float32(50.0), psf, background=50.0, boundary="periodic")
    assert abs(float(out.mean()) - float(y.mean())) < 1e-3 * float(y.mean())


def test_wiener_tiny_balance_inverts_noise_free_blur() -> None:
    truth, psf, _ = _case("2d")
    y = blur(truth, psf, mode="wrap")
    out = wiener(y, psf, balance=1e-7, boundary="periodic")
    assert _psnr(out, truth) > _psnr(y, truth) + 10


def test_backends_agree() -> None:
    _, psf, y = _case("3d")
    a = wiener(y, psf, fft_backend="pyfftw")
    b = wiener(y, psf, fft_backend="scipy")
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * float(np.abs(b).max()))


def test_bad_inputs() -> None:
    _, psf, y = _case("2d")
    for kwargs in ({"balance": 0.0}, {"balance": -1.0}, {"regularizer": "l1"},
                   {"boundary": "zero"}, {"background": -2.0}):
        with pytest.raises(ConfigError) as info:
            wiener(y, psf, **kwargs)
        assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="3D"):
        wiener(y, np.ones((3, 3, 3)))


def test_registered_wiener_method() -> None:
    truth, psf, y = _case("2d")
    method = create("wiener", psf=psf, regularizer="laplacian")
    assert isinstance(method, Wiener) and method.kind == "deconvolve"
    out = method.predict(y, axes="YX")
    np.testing.assert_allclose(out, wiener(y, psf, regularizer="laplacian"), rtol=1e-6)
    assert method.last_result_ is not None and method.last_result_.automatic
    fixed = create("wiener", psf=psf, balance=0.01)
    fixed.predict(y, axes="YX")
    assert fixed.last_result_ is not None and fixed.last_result_.balance == 0.01
    with pytest.raises(ConfigError):
        create("wiener", psf=psf, balance=0.0)
