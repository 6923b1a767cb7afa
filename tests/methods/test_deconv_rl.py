"""Richardson-Lucy (plain, TV, accelerated, stopping rules) on tiny seeded 2D/3D data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
from skimage.restoration import richardson_lucy as sk_richardson_lucy

from fluorecon.core.errors import ConfigError, DataError
from fluorecon.methods import create
from fluorecon.methods.classical.deconvolution import (
    RichardsonLucy,
    richardson_lucy,
    richardson_lucy_result,
)
from fluorecon.methods.classical.deconvolution.otf import convolve_fft
from fluorecon.simulate.degrade import blur
from fluorecon.simulate.phantoms import beads
from fluorecon.simulate.psf import gaussian_psf

SHAPES = {"2d": (64, 64), "3d": (24, 48, 48)}
DIMS = pytest.mark.parametrize("dim", ["2d", "3d"])


def _psf(dim: str, sigma: float = 1.5) -> np.ndarray:
    return gaussian_psf((9,) * len(SHAPES[dim]), sigma)


def _margin_beads(dim: str, seed: int = 0, peak: float = 200.0) -> np.ndarray:
    """Beads (photons) with an empty margin wider than the PSF: periodic == zero boundary."""
    shape = SHAPES[dim]
    inner = tuple(s - 2 * (s // 4) for s in shape)
    truth = np.zeros(shape, np.float32)
    truth[tuple(slice(s // 4, s // 4 + n) for s, n in zip(shape, inner))] = \
        beads(inner, radius=(1.0, 2.0), seed=seed)
    return truth * np.float32(peak)


def _noisy(truth: np.ndarray, psf: np.ndarray, seed: int = 1,
           background: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mean = np.maximum(blur(truth, psf, mode="wrap"), 0) + background  # FFT round-off < 0
    return rng.poisson(mean).astype(np.float32)


def _psnr(est: np.ndarray, truth: np.ndarray) -> float:
    mse = float(np.mean((est.astype(np.float64) - truth) ** 2))
    return 10 * np.log10(float(truth.max()) ** 2 / mse)


def _deviance(y: np.ndarray, x: np.ndarray, psf: np.ndarray) -> float:
    mu = np.maximum(convolve_fft(x, psf).astype(np.float64), 1e-12)
    yy = y.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(yy > 0, yy * np.log(yy / mu), 0.0)
    return float(2 * np.sum(term - yy + mu))


@DIMS
def test_rl_raises_psnr_over_blurred_input(dim: str) -> None:
    psf = _psf(dim)
    truth = _margin_beads(dim)
    y = _noisy(truth, psf)
    est = richardson_lucy(y, psf, iterations=30)
    assert _psnr(est, truth) > _psnr(y, truth) + 1.5


@DIMS
@pytest.mark.parametrize("boundary", ["periodic", "pad"])
def test_rl_matches_scikit_image(dim: str, boundary: str) -> None:
    # Empty margins: scikit-image's zero-padded 'same' convolution, our circular one and our
    # padded one describe the same forward model, so the iterates must agree.
    psf = _psf(dim, 1.0)
    y = _noisy(_margin_beads(dim, seed=3), psf, seed=4)
    ours = richardson_lucy(y, psf, iterations=20, boundary=boundary)
    ref = sk_richardson_lucy(y, psf, num_iter=20, clip=False)
    assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) < 1e-5


@DIMS
def test_rl_non_symmetric_psf_matches_scikit_image(dim: str) -> None:
    # A skewed PSF: the adjoint must be the correlation (conjugate OTF), not H again.
    psf = _psf(dim, 1.0)
    psf = ndi.shift(psf, [0.0] * (psf.ndim - 1) + [1.3], order=1)
    psf[..., : psf.shape[-1] // 2] *= 0.3
    assert not np.allclose(psf, np.flip(psf))
    y = _noisy(_margin_beads(dim, seed=5), psf / psf.sum(), seed=6)
    ours = richardson_lucy(y, psf, iterations=15, boundary="periodic")
    ref = sk_richardson_lucy(y, psf / psf.sum(), num_iter=15, clip=False)
    assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) < 1e-5


@DIMS
def test_forward_and_adjoint_operators(dim: str) -> None:
    rng = np.random.default_rng(7)
    shape = SHAPES[dim]
    psf = rng.random((5, 7, 3)[-len(shape):] if len(shape) == 3 else (5, 7))
    psf /= psf.sum()
    x = rng.random(shape).astype(np.float32)
    z = rng.random(shape).astype(np.float32)
    hx = convolve_fft(x, psf)
    htz = convolve_fft(z, psf, adjoint=True)
    lhs, rhs = float(np.vdot(hx, z)), float(np.vdot(x, htz))
    assert abs(lhs - rhs) <= 1e-5 * abs(lhs)
    # H is the circular convolution centred at shape // 2 (scipy.ndimage's convention)
    ref = ndi.convolve(x.astype(np.float64), psf, mode="wrap")
    np.testing.assert_allclose(hx, ref, rtol=1e-4, atol=1e-5)


@DIMS
def test_rl_flux_and_non_negativity(dim: str) -> None:
    psf = _psf(dim)
    y = _noisy(_margin_beads(dim), psf)
    est = richardson_lucy(y, psf, iterations=10, boundary="periodic")
    assert est.dtype == np.float32 and est.shape == y.shape
    assert est.min() >= 0
    np.testing.assert_allclose(est.sum(dtype=np.float64), y.sum(dtype=np.float64), rtol=1e-4)


def test_rl_flux_with_background() -> None:
    psf = _psf("2d")
    truth = _margin_beads("2d") + 5.0
    y = _noisy(truth, psf, background=20.0)
    est = richardson_lucy(y, psf, iterations=50, background=20.0, boundary="periodic")
    expected = float(y.sum() - 20.0 * y.size)
    # Not exact with b > 0 (positivity biases dark pixels up) but within a few percent;
    # ignoring the background would give y.sum(), about 4.6x too much here.
    assert abs(float(est.sum()) - expected) < 0.05 * expected
    assert est.min() >= 0


def test_rl_background_array_equals_scalar() -> None:
    psf = _psf("2d")
    y = _noisy(_margin_beads("2d"), psf, background=10.0)
    a = richardson_lucy(y, psf, iterations=5, background=10.0)
    b = richardson_lucy(y, psf, iterations=5, background=np.full(y.shape, 10.0))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@DIMS
def test_input_not_modified_and_integer_input(dim: str) -> None:
    psf = _psf(dim)
    y = _noisy(_margin_beads(dim), psf)
    y16 = y.astype(np.uint16)
    before, before16, psf_before = y.copy(), y16.copy(), psf.copy()
    a = richardson_lucy(y, psf, iterations=3)
    b = richardson_lucy(y16, psf, iterations=3, acceleration=True)
    np.testing.assert_array_equal(y, before)
    np.testing.assert_array_equal(y16, before16)
    np.testing.assert_array_equal(psf, psf_before)
    assert a.dtype == np.float32 and b.dtype == np.float32


@DIMS
def test_acceleration_reaches_likelihood_in_fewer_iterations(dim: str) -> None:
    psf = _psf(dim, 2.0)
    y = _noisy(_margin_beads(dim, seed=2, peak=500.0), psf, seed=3)
    plain = richardson_lucy(y, psf, iterations=40, boundary="periodic")
    fast = richardson_lucy(y, psf, iterations=20, boundary="periodic", acceleration=True)
    assert _deviance(y, fast, psf) < _deviance(y, plain, psf)
    assert fast.min() >= 0


def test_rl_tv_limits_noise_amplification() -> None:
    psf = _psf("2d", 2.0)
    truth = _margin_beads("2d", seed=8, peak=60.0) + 10.0
    y = _noisy(truth, psf, seed=9)
    rl = richardson_lucy(y, psf, iterations=300, boundary="periodic")
    rltv = richardson_lucy(y, psf, iterations=300, boundary="periodic", tv_weight=0.02)
    err = lambda e: float(np.sqrt(np.mean((e - truth) ** 2)))  # noqa: E731
    assert err(rltv) < 0.9 * err(rl)
    flat = truth == truth.min()  # background: any structure there is amplified noise
    assert rltv[flat].std() < 0.7 * rl[flat].std()


@pytest.mark.parametrize("rule", ["rel-change", "likelihood", "discrepancy"])
def test_stop_rules_stop_early(rule: str) -> None:
    psf = _psf("2d")
    y = _noisy(_margin_beads("2d", peak=100.0) + 20.0, psf)
    res = richardson_lucy_result(y, psf, iterations=500, stop=rule, tol=1e-2)
    info = res.info
    assert info.stop_reason == rule
    assert 1 <= info.iterations < 500
    if rule == "rel-change":
        assert info.relative_change < 1e-2
    if rule == "discrepancy":
        assert info.deviance_per_pixel is not None and info.deviance_per_pixel <= 1.01
    assert res.image.dtype == np.float32 and res.image.min() >= 0


def test_no_stop_rule_runs_all_iterations() -> None:
    psf = _psf("2d")
    y = _noisy(_margin_beads("2d"), psf)
    calls: list[tuple[int, int]] = []
    info = richardson_lucy_result(y, psf, iterations=7,
                                  progress=lambda d, t: calls.append((d, t))).info
    assert info.iterations == 7 and info.stop_reason == "max-iterations"
    assert calls == [(i, 7) for i in range(1, 8)]
    assert np.isfinite(info.relative_change) and info.relative_change > 0
    assert info.deviance_per_pixel is None


def test_pad_boundary_avoids_wraparound() -> None:
    # A bright object on the left edge: periodic RL leaks it into the right edge.
    psf = _psf("2d", 2.0)
    truth = np.full((64, 64), 1.0, np.float32)
    truth[20:44, 0:4] = 400.0
    mean = np.maximum(blur(truth, psf, mode="reflect"), 0)
    y = np.random.default_rng(0).poisson(mean).astype(np.float32)
    per = richardson_lucy(y, psf, iterations=30, boundary="periodic")
    pad = richardson_lucy(y, psf, iterations=30, boundary="pad")
    right = (slice(20, 44), slice(-4, None))
    assert abs(pad[right].mean() - 1.0) < abs(per[right].mean() - 1.0)


@DIMS
def test_psf_larger_and_smaller_than_image(dim: str) -> None:
    shape = SHAPES[dim]
    big = gaussian_psf(tuple(s + 10 for s in shape), 1.5)
    crop = tuple(slice(5, 5 + s) for s in shape)
    y = _noisy(_margin_beads(dim), gaussian_psf((9,) * len(shape), 1.5))
    a = richardson_lucy(y, big, iterations=5, boundary="periodic")
    b = richardson_lucy(y, big[crop], iterations=5, boundary="periodic")
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_backends_agree() -> None:
    psf = _psf("3d")
    y = _noisy(_margin_beads("3d"), psf)
    for kwargs in ({}, {"acceleration": True, "tv_weight": 0.002}):
        a = richardson_lucy(y, psf, iterations=8, fft_backend="pyfftw", **kwargs)
        b = richardson_lucy(y, psf, iterations=8, fft_backend="scipy", **kwargs)
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3 * float(b.max()))


@pytest.mark.parametrize(
    ("psf", "exc", "text"),
    [
        (None, ConfigError, "PSF"),
        (np.ones((3, 3, 3)), DataError, "3D"),
        (-np.ones((5, 5)), DataError, "negative"),
        (np.full((5, 5), np.nan), DataError, "NaN"),
        (np.zeros((5, 5)), DataError, "sum"),
        (np.ones((0, 5)), DataError, "non-empty"),
        ("psf", ConfigError, "dtype"),
    ],
)
def test_bad_psf_gives_one_line_error(psf: object, exc: type, text: str) -> None:
    y = np.ones((16, 16), np.float32)
    with pytest.raises(exc, match=text) as info:
        richardson_lucy(y, psf, iterations=2)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [{"iterations": 0}, {"tv_weight": 0.3}, {"stop": "ncc"}, {"tol": 0.0},
     {"boundary": "mirror"}, {"background": -1.0}, {"fft_backend": "cufft"}],
)
def test_bad_parameters_give_config_errors(kwargs: dict) -> None:
    with pytest.raises(ConfigError) as info:
        richardson_lucy(np.ones((16, 16), np.float32), _psf("2d"), **kwargs)
    assert "\n" not in str(info.value)


def test_negative_image_is_rejected() -> None:
    y = np.ones((16, 16), np.float32)
    y[0, 0] = -5
    with pytest.raises(DataError, match="negative"):
        richardson_lucy(y, _psf("2d"), iterations=2)


def test_registered_methods_and_last_result() -> None:
    psf = _psf("2d")
    y = _noisy(_margin_beads("2d"), psf)
    rl = create("rl", psf=psf, iterations=20)
    assert isinstance(rl, RichardsonLucy) and rl.kind == "deconvolve"
    out = rl.predict(np.stack([y, y]), axes="CYX")
    assert out.shape == (2, *y.shape) and out.dtype == np.float32
    np.testing.assert_allclose(out[1], richardson_lucy(y, psf, iterations=20), rtol=1e-6)
    assert rl.last_result_ is not None and rl.last_result_.iterations == 20
    assert rl.last_result_.stop_reason == "max-iterations"
    cfg = type(rl.config).model_validate_json(rl.config.to_json())
    assert cfg == rl.config and "psf" not in rl.config.to_json()
    tv = create("rl-tv", psf=psf)
    assert tv.config.tv_weight > 0
    with pytest.raises(DataError):
        rl.predict(np.ones((8, 16, 16), np.float32), axes="ZYX")
    with pytest.raises(ConfigError):
        create("rl", iterations=5)
    with pytest.raises(ConfigError):
        create("rl", psf=psf, iterations=0)


@pytest.mark.parametrize("ndim", [2, 3])
def test_auto_boundary_pads_only_when_a_border_holds_signal(ndim):
    from fluorecon.methods.classical.deconvolution.otf import resolve_boundary

    shape = (24, 40, 40)[-ndim:]
    rng = np.random.default_rng(0)
    dark = rng.poisson(2.0, size=shape).astype(np.float32)
    centre = tuple(slice(s // 2 - 4, s // 2 + 4) for s in shape)
    dark[centre] += 500.0  # an object well inside
    psf_shape = (9,) * ndim
    assert resolve_boundary("auto", dark, psf_shape) == "periodic"
    touching = dark.copy()
    touching[(slice(0, 3),) * ndim] += 500.0  # a bright object in a corner
    assert resolve_boundary("auto", touching, psf_shape) == "pad"
    covered = dark + 50.0 * rng.random(shape).astype(np.float32)  # cells everywhere
    assert resolve_boundary("auto", covered, psf_shape) == "pad"
    assert resolve_boundary("pad", dark, psf_shape) == "pad"
    result = richardson_lucy_result(dark, gaussian_psf(psf_shape, 1.5), iterations=3)
    assert result.info.boundary == "periodic"
