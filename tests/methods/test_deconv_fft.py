"""FFT backend: planned real FFTs, backends agree, wisdom cache, PSF embedding."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fluorecon.core.errors import ConfigError
from fluorecon.methods import fft_backend
from fluorecon.methods.classical.deconvolution.otf import embed_centred, fit_psf
from fluorecon.methods.fft_backend import RealFFT, cache_dir, fast_length, wisdom_path


@pytest.mark.parametrize("shape", [(16, 20), (6, 10, 9), (7, 5)])
@pytest.mark.parametrize("backend", ["pyfftw", "scipy"])
def test_real_fft_matches_numpy(shape: tuple[int, ...], backend: str) -> None:
    rng = np.random.default_rng(0)
    fft = RealFFT(shape, backend=backend)
    a = fft.empty_real()
    a[...] = rng.random(shape)
    ref = np.fft.rfftn(a.astype(np.float64))
    spec = fft.forward(a)
    assert spec.dtype == np.complex64 and spec.shape == fft.spectral_shape
    np.testing.assert_allclose(spec, ref, rtol=1e-5, atol=1e-4)
    out = fft.inverse(fft.empty_real())
    np.testing.assert_allclose(out * fft.scale, a, rtol=1e-5, atol=1e-5)
    # unaligned / non-owned arrays work too (copied through the internal buffer)
    b = np.ascontiguousarray(rng.random(shape), dtype=np.float32)
    np.testing.assert_allclose(fft.forward(b), np.fft.rfftn(b.astype(np.float64)),
                               rtol=1e-5, atol=1e-4)


def test_wisdom_cache_written_under_cache_dir(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FLUORECON_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(fft_backend, "_IMPORTED_WISDOM", set())
    assert cache_dir() == tmp_path
    RealFFT((12, 18), backend="pyfftw", effort="measure")
    path = wisdom_path()
    assert path.parent == tmp_path and path.is_file()
    data = json.loads(path.read_text())
    assert "fftw" in data["single"]
    # a corrupt cache never breaks planning
    path.write_text("{not json")
    monkeypatch.setattr(fft_backend, "_IMPORTED_WISDOM", set())
    fft = RealFFT((12, 18), backend="pyfftw", effort="measure")
    assert fft.forward(fft.empty_real()).shape == (12, 10)


def test_cache_dir_fallbacks(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("FLUORECON_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "fluorecon"


def test_effort_and_threads_policy() -> None:
    small = RealFFT((8, 8), backend="pyfftw")
    assert small.effort == "estimate" and small.threads == 1
    assert RealFFT((8, 8), backend="scipy", threads=2).threads == 2
    with pytest.raises(ConfigError):
        RealFFT((8, 8), backend="cufft")
    with pytest.raises(ConfigError):
        RealFFT((8, 8), effort="exhaustive")


def test_fast_length() -> None:
    for n in range(1, 400):
        m = fast_length(n)
        assert m >= n
        k = m
        for p in (2, 3, 5, 7):
            while k % p == 0:
                k //= p
        assert k == 1
        # nothing 7-smooth in between
        assert all(not _smooth(j) for j in range(n, m))
    assert fast_length(190) == 192 and fast_length(318) == 320


def _smooth(j: int) -> bool:
    for p in (2, 3, 5, 7):
        while j % p == 0:
            j //= p
    return j == 1


@pytest.mark.parametrize("shape", [(9, 9), (8, 10), (5, 6, 7)])
def test_embed_centred_is_ifftshift(shape: tuple[int, ...]) -> None:
    psf = np.random.default_rng(1).random(shape)
    out = np.empty(shape)
    np.testing.assert_array_equal(embed_centred(psf, shape, out), np.fft.ifftshift(psf))
    # zero-padded to a larger grid: the same as ifftshift of the PSF padded so that its
    # centre (index shape // 2) sits at index big // 2
    big = tuple(s + 5 for s in shape)
    padded = np.zeros(big)
    padded[tuple(slice(b // 2 - s // 2, b // 2 - s // 2 + s) for b, s in zip(big, shape))] = psf
    np.testing.assert_array_equal(embed_centred(psf, big, np.empty(big)),
                                  np.fft.ifftshift(padded))


def test_fit_psf_crops_centred() -> None:
    psf = np.zeros((11, 11))
    psf[5, 5] = 1.0
    psf[5, 6] = 1.0
    out = fit_psf(psf / psf.sum(), (5, 5))
    assert out.shape == (5, 5)
    assert out[2, 2] == pytest.approx(0.5) and out[2, 3] == pytest.approx(0.5)
