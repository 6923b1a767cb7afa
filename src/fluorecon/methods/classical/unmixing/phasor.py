"""Spectral phasor analysis: phasor coordinates and reference-point unmixing.

The spectral phasor of a pixel with channel intensities :math:`I_c`, :math:`c = 0..C-1`, at
harmonic :math:`n` is the normalised discrete Fourier coefficient of its spectrum [1]_:

.. math::

    G_n = \\frac{\\sum_c I_c \\cos(2\\pi n c / C)}{\\sum_c I_c}, \\qquad
    S_n = \\frac{\\sum_c I_c \\sin(2\\pi n c / C)}{\\sum_c I_c}.

Phasors add linearly: a mixture's phasor is the intensity-weighted mean of its
components' phasors, :math:`P = \\sum_k f_k P_k` with :math:`f_k = I_k / \\sum_j I_j`
(``I_k`` the channel-summed intensity of component ``k``). So with the reference phasors
of pure components the fractions follow from a small linear system: two components lie on
a line, three in a triangle (one harmonic), up to :math:`2H + 1` components with
:math:`H` harmonics.

References
----------
.. [1] F. Fereidouni, A. N. Bader, H. C. Gerritsen, "Spectral phasor analysis allows rapid
   and reliable unmixing of fluorescence microscopy spectral images", Opt. Express 20,
   12729-12741 (2012).
.. [2] F. Cutrale et al., "Hyperspectral phasor analysis enables multiplexed 5D in vivo
   imaging", Nat. Methods 14, 149-152 (2017).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import Field

from fluorecon.core.config import BaseConfig
from fluorecon.core.errors import ConfigError, DataError, message
from fluorecon.methods.classical.unmixing._common import (
    UnmixingResult,
    background_vector,
    channel_image,
    check_spectra,
    residual_rms,
)

__all__ = ["PhasorUnmixing", "PhasorUnmixingConfig", "phasor_coordinates", "phasor_unmix",
           "spectrum_phasor"]


def _basis(n_channels: int, harmonics: tuple[int, ...]) -> np.ndarray:
    """``(2H, C)`` rows cos(2 pi n c / C), sin(2 pi n c / C) for each harmonic n."""
    c = np.arange(n_channels)
    rows = []
    for n in harmonics:
        rows.append(np.cos(2 * math.pi * n * c / n_channels))
        rows.append(np.sin(2 * math.pi * n * c / n_channels))
    return np.array(rows)


def spectrum_phasor(spectrum: Any, harmonic: int = 1) -> tuple[float, float]:
    """Phasor ``(G, S)`` of one spectrum (``(C,)`` intensities per channel).

    Examples
    --------
    >>> spectrum_phasor([0, 1, 0, 0])          # all light in channel 1 of 4: angle 90 deg
    (0.0, 1.0)
    """
    s = np.asarray(spectrum, dtype=np.float64).ravel()
    total = s.sum()
    if s.size < 2 or not total > 0:
        raise DataError(message(f"a spectrum of {s.size} values summing to {total}",
                                "at least 2 channels with positive total", "Check it."))
    g, sn = _basis(s.size, (harmonic,)) @ s / total
    return round(float(g), 12) + 0.0, round(float(sn), 12) + 0.0


def phasor_coordinates(image: Any, axes: str, *, harmonic: int = 1, background: Any = None,
                       min_intensity: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spectral phasor coordinates of every pixel.

    Parameters
    ----------
    image : array_like
        Image with a ``C`` axis (channels in order of wavelength).
    axes : str
    harmonic : int
        Harmonic ``n`` (1 or 2 in practice).
    background : float or array_like ``(C,)``, optional
        Subtracted per channel first.
    min_intensity : float
        Pixels whose channel sum is at or below this get NaN coordinates.

    Returns
    -------
    g, s, intensity : ndarray
        float32 arrays of the image shape without C: ``G``, ``S`` (see the module notes)
        and the channel-summed intensity.
    """
    if harmonic < 1:
        raise ConfigError(message(f"harmonic={harmonic}", "a positive integer", "Use 1 or 2."))
    arr, lay = channel_image(image, axes)
    b = background_vector(background, lay.n_channels)
    y = lay.to_matrix(arr).astype(np.float64) - b[:, None]
    total = y.sum(axis=0)
    gs = _basis(lay.n_channels, (harmonic,)) @ y
    ok = total > min_intensity
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(ok, gs[0] / total, np.nan)
        s = np.where(ok, gs[1] / total, np.nan)
    return (lay.from_pixels(g.astype(np.float32)), lay.from_pixels(s.astype(np.float32)),
            lay.from_pixels(total.astype(np.float32)))


def phasor_unmix(image: Any, spectra: Any, axes: str, *, harmonics: int | None = None,
                 background: Any = None, clip: bool = True,
                 progress: Callable[[int, int], None] | None = None) -> UnmixingResult:
    """Unmix by reference points in phasor space (2 or 3 components with one harmonic).

    Parameters
    ----------
    image : array_like
        Image with a ``C`` axis.
    spectra : array_like, ``(C, K)``
        Reference spectra of the pure components (their phasors are the reference points;
        their channel sums convert intensity fractions to abundances in the units of
        :func:`~fluorecon.methods.classical.unmixing.linear_unmix`).
    axes : str
    harmonics : int, optional
        Number of harmonics ``H`` (1, 2, ...). Default: the fewest with
        ``2H + 1 >= K`` (one for 2-3 components).
    background : float or array_like ``(C,)``, optional
    clip : bool
        Clip fractions to ``[0, 1]`` and renormalise them to sum 1 (points outside the
        reference polygon, from noise, are projected back).
    progress : callable, optional
        ``progress(done, total)`` once at the end (the computation is one pass).

    Returns
    -------
    UnmixingResult
        ``abundances`` (K along C); ``info["reference_phasors"]`` the reference points.

    Notes
    -----
    With reference phasors :math:`P_k \\in \\mathbb{R}^{2H}`, the fractions :math:`f` of a
    pixel with phasor :math:`P` solve :math:`\\sum_k f_k P_k = P`, :math:`\\sum_k f_k = 1`
    (least squares when over-determined). Abundances are
    :math:`a_k = f_k \\sum_c I_c / \\sum_c M_{ck}`. Without clipping this equals
    unconstrained linear unmixing in the space of the first harmonics, which discards the
    higher Fourier components of the spectra: noise there no longer enters (an advantage
    with many channels), but neither does the information.
    """
    arr, lay = channel_image(image, axes)
    m = check_spectra(spectra, lay.n_channels)
    k = m.shape[1]
    if k < 2:
        raise DataError(message("one reference spectrum", "2 or more components",
                                "A single component needs no unmixing."))
    h = harmonics if harmonics is not None else max(1, math.ceil((k - 1) / 2))
    if h < 1 or 2 * h + 1 < k or h > lay.n_channels // 2:
        raise ConfigError(message(f"{h} harmonics for {k} components and {lay.n_channels} "
                                  "channels", "2*harmonics + 1 >= components and harmonics <= "
                                  "channels / 2", "Use more harmonics (or linear unmixing)."))
    basis = _basis(lay.n_channels, tuple(range(1, h + 1)))
    ref = basis @ m / m.sum(axis=0)                      # (2H, K) reference phasors
    system = np.vstack([ref, np.ones((1, k))])           # (2H+1, K)
    if np.linalg.matrix_rank(system) < k:
        raise DataError(message("reference phasors that do not span the components",
                                "distinct reference points", "Use spectra that differ."))
    solve = np.linalg.pinv(system)                       # (K, 2H+1)
    b = background_vector(background, lay.n_channels)
    y = lay.to_matrix(arr).astype(np.float64) - b[:, None]
    total = y.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ph = np.where(total != 0, (basis @ y) / total, 0.0)
    f = solve @ np.vstack([ph, np.ones((1, y.shape[1]))])
    if clip:
        f = np.clip(f, 0.0, 1.0)
        f /= np.maximum(f.sum(axis=0, keepdims=True), 1e-12)
    a = f * total / m.sum(axis=0)[:, None]
    if progress is not None:
        progress(1, 1)
    return UnmixingResult(abundances=lay.from_matrix(a.astype(np.float32)), axes=lay.axes,
                          spectra=m, residual=lay.from_pixels(residual_rms(y, m, a, 0 * b)
                                                              .astype(np.float32)),
                          info={"method": "phasor", "harmonics": h,
                                "reference_phasors": ref.T.tolist()})


class PhasorUnmixingConfig(BaseConfig):
    """Settings of :class:`PhasorUnmixing`."""

    version: int = Field(default=1, ge=1, description="Schema version.")
    harmonics: int | None = Field(default=None, ge=1, le=8, description="Harmonics used "
                                  "(default: fewest with 2H+1 >= components).")
    clip: bool = Field(default=True, description="Project fractions into [0, 1], sum 1.")


class PhasorUnmixing:
    """Reference-point phasor unmixing (see :func:`phasor_unmix`)."""

    name = "phasor"
    Config = PhasorUnmixingConfig

    def __init__(self, spectra: Any, *, background: Any = None,
                 config: PhasorUnmixingConfig | None = None, **kwargs: Any) -> None:
        self.config = config if config is not None else PhasorUnmixingConfig.build(**kwargs)
        self.spectra = check_spectra(spectra)
        self.background = background

    def fit(self, image: Any, axes: str) -> "PhasorUnmixing":
        """Nothing to learn: the reference spectra are given. Returns ``self``."""
        return self

    def predict(self, image: Any, axes: str, *,
                progress: Callable[[int, int], None] | None = None) -> UnmixingResult:
        """Unmix ``image`` (axes with ``C``)."""
        return phasor_unmix(image, self.spectra, axes, harmonics=self.config.harmonics,
                            background=self.background, clip=self.config.clip,
                            progress=progress)
