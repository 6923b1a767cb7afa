"""Multi-fluorophore samples: emission spectra, detector channels, mixing, autofluorescence.

The forward model of spectral (or multi-channel) fluorescence imaging, per pixel::

    photons[c] = sum_k M[c, k] * a[k]  +  M_af[c] * af  +  background[c]
    ADU[c]     = camera_forward(photons[c])

``a[k]`` is the abundance of fluorophore ``k``: the expected number of photons it emits
into the detection path at that pixel (all wavelengths). ``M[c, k]`` is the fraction of
those photons detected in channel ``c`` (the emission spectrum, area-normalised,
integrated over the channel's band and weighted by the detector's efficiency), so that a
column of ``M`` sums to at most 1. Unmixing (:mod:`fluorecon.methods.classical.unmixing`)
inverts the first line; the camera's mean model is inverted by
:func:`~fluorecon.simulate.camera.camera_inverse`.

Spectra are **parametric approximations**, not measured spectra: each fluorophore's
emission is the log-normal line shape of Siano and Metzler [1]_ (a skewed band with a
longer red tail), with its peak at the published emission maximum and a full width at half
maximum and skewness read approximately from published spectra (FPbase [2]_, supplier
data). They reproduce the overlap between common dyes well enough for simulation and for
training; for quantitative unmixing of real data use measured reference spectra
(single-labelled controls), or blind unmixing (:func:`~fluorecon.methods.classical.unmixing.nmf_unmix`).

References
----------
.. [1] D. B. Siano, D. E. Metzler, "Band shapes of the electronic spectra of complex
   molecules", J. Chem. Phys. 51, 1856-1861 (1969).
.. [2] T. J. Lambert, "FPbase: a community-editable fluorescent protein database",
   Nat. Methods 16, 277-278 (2019). https://www.fpbase.org
.. [3] T. Zimmermann, J. Rietdorf, R. Pepperkok, "Spectral imaging and its applications in
   live cell microscopy", FEBS Lett. 546, 87-92 (2003).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field
from scipy import ndimage

from fluorecon.core.config import BaseConfig
from fluorecon.core.errors import ConfigError, DataError, message
from fluorecon.core.rng import SeedLike, make_rng
from fluorecon.simulate.camera import CameraModel, camera_forward
from fluorecon.simulate.phantoms import make_phantom

__all__ = [
    "FLUOROPHORES",
    "Channel",
    "Fluorophore",
    "SpectralSample",
    "abundance_maps",
    "band_channels",
    "emission_spectrum",
    "fluorophore",
    "mixing_matrix",
    "perturb_fluorophore",
    "simulate_spectral",
    "spectral_detector",
]

#: Wavelength grid (nm) on which spectra are integrated.
WAVELENGTH_RANGE = (350.0, 900.0)


class Fluorophore(BaseConfig):
    """A fluorophore's emission band, as a Siano-Metzler log-normal line shape.

    Notes
    -----
    In wavenumbers :math:`\\nu = 10^7 / \\lambda` (cm^-1), with peak :math:`\\nu_0`, full
    width at half maximum :math:`H` (in wavenumbers, from the FWHM in nm at the peak) and
    skewness :math:`\\rho` (ratio of the red to the blue half-width, :math:`\\rho > 1` for
    a red tail),

    .. math::

        I(\\nu) = \\exp\\left(-\\frac{\\ln 2}{\\ln^2\\rho}
                  \\ln^2\\frac{a - \\nu}{a - \\nu_0}\\right), \\quad \\nu < a, \\qquad
        a = \\nu_0 + \\frac{H\\rho}{\\rho^2 - 1},

    and 0 for :math:`\\nu \\ge a`. ``skew = 1`` gives a Gaussian in wavenumbers.
    """

    name: str = Field(min_length=1, description="Name, e.g. 'EGFP'.")
    peak: float = Field(gt=300, lt=1000, description="Emission maximum, nm.")
    fwhm: float = Field(gt=2, lt=300, description="Emission full width at half maximum, nm.")
    skew: float = Field(default=1.3, ge=1.0, le=3.0,
                        description="Ratio of the red to the blue half width (1: symmetric).")
    excitation: float | None = Field(default=None, gt=200, lt=1000,
                                     description="Excitation maximum, nm (information only).")

    def spectrum(self, wavelengths: Any) -> np.ndarray:
        """Emission intensity at ``wavelengths`` (nm), peak value 1 (see Notes)."""
        return emission_spectrum(self, wavelengths)


# Approximations: peak from the supplier / FPbase, width and skew read from published
# spectra to about +-10%. Not measured spectra.
FLUOROPHORES: dict[str, Fluorophore] = {f.name.lower(): f for f in (
    Fluorophore(name="DAPI", peak=461, fwhm=85, skew=1.4, excitation=358),
    Fluorophore(name="Hoechst 33342", peak=461, fwhm=90, skew=1.4, excitation=350),
    Fluorophore(name="mTurquoise2", peak=474, fwhm=50, skew=1.5, excitation=434),
    Fluorophore(name="EGFP", peak=507, fwhm=36, skew=1.6, excitation=488),
    Fluorophore(name="Alexa Fluor 488", peak=519, fwhm=38, skew=1.5, excitation=495),
    Fluorophore(name="mVenus", peak=528, fwhm=32, skew=1.6, excitation=515),
    Fluorophore(name="Cy3", peak=566, fwhm=32, skew=1.6, excitation=550),
    Fluorophore(name="tdTomato", peak=581, fwhm=42, skew=1.6, excitation=554),
    Fluorophore(name="Alexa Fluor 568", peak=603, fwhm=42, skew=1.5, excitation=578),
    Fluorophore(name="mCherry", peak=610, fwhm=48, skew=1.5, excitation=587),
    Fluorophore(name="Alexa Fluor 594", peak=617, fwhm=42, skew=1.5, excitation=590),
    Fluorophore(name="Alexa Fluor 647", peak=668, fwhm=34, skew=1.6, excitation=650),
    Fluorophore(name="Cy5", peak=666, fwhm=34, skew=1.6, excitation=649),
    # Flavin-like cellular autofluorescence: a broad green band.
    Fluorophore(name="autofluorescence", peak=525, fwhm=120, skew=1.2, excitation=450),
)}


def fluorophore(name: str | Fluorophore) -> Fluorophore:
    """Look up a fluorophore of the built-in library by name (case-insensitive).

    Raises
    ------
    ConfigError
        Unknown name; the message lists the library.
    """
    if isinstance(name, Fluorophore):
        return name
    key = str(name).strip().lower()
    if key not in FLUOROPHORES:
        raise ConfigError(message(f"fluorophore {name!r}",
                                  f"one of {', '.join(f.name for f in FLUOROPHORES.values())}",
                                  "Pick a listed dye or build Fluorophore(name=, peak=, fwhm=)."))
    return FLUOROPHORES[key]


def emission_spectrum(fluor: Fluorophore | str, wavelengths: Any) -> np.ndarray:
    """Emission spectrum (peak-normalised to 1) of ``fluor`` at ``wavelengths`` in nm.

    Parameters
    ----------
    fluor : Fluorophore or str
        A fluorophore or a library name.
    wavelengths : array_like
        Wavelengths in nm (positive).

    Returns
    -------
    numpy.ndarray
        float64 intensities in ``[0, 1]``, 1 at ``fluor.peak``, 0.5 at the half-maximum
        points (see :class:`Fluorophore`).

    Examples
    --------
    >>> float(emission_spectrum("EGFP", [507.0])[0])
    1.0
    """
    f = fluorophore(fluor)
    lam = np.asarray(wavelengths, dtype=np.float64)
    if lam.size and lam.min() <= 0:
        raise DataError(message(f"wavelengths with minimum {lam.min()}", "positive nm",
                                "Pass wavelengths in nanometres."))
    nu = 1e7 / lam
    nu0 = 1e7 / f.peak
    # FWHM in wavenumbers from the nm half-width points around the peak.
    blue = f.fwhm / (1.0 + f.skew)
    red = f.fwhm - blue
    h = 1e7 / (f.peak - blue) - 1e7 / (f.peak + red)
    if f.skew == 1.0:
        return np.exp(-4.0 * math.log(2.0) * ((nu - nu0) / h) ** 2)
    rho = f.skew
    a = nu0 + h * rho / (rho ** 2 - 1.0)
    out = np.zeros_like(nu)
    ok = nu < a
    ratio = (a - nu[ok]) / (a - nu0)
    out[ok] = np.exp(-math.log(2.0) / math.log(rho) ** 2 * np.log(ratio) ** 2)
    return out


@dataclass(frozen=True)
class Channel:
    """A detection channel: a band ``[low, high]`` in nm with a relative efficiency."""

    low: float
    high: float
    efficiency: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.low < self.high:
            raise ConfigError(message(f"channel band [{self.low}, {self.high}] nm",
                                      "0 < low < high", "Give the band as low-high in nm."))
        if not 0 < self.efficiency <= 1:
            raise ConfigError(message(f"channel efficiency {self.efficiency}", "0 < eff <= 1",
                                      "Use a fraction of detected photons."))

    @property
    def centre(self) -> float:
        """Centre of the band, nm."""
        return 0.5 * (self.low + self.high)

    @property
    def label(self) -> str:
        """``"low-high"`` in nm, e.g. ``"500-550"``."""
        return f"{self.low:g}-{self.high:g}"


def spectral_detector(start: float = 410.0, stop: float = 695.0, n: int = 32, *,
                      efficiency: float = 1.0) -> list[Channel]:
    """Contiguous equal bands, like a spectral (lambda) detector.

    The default mimics a 32-channel GaAsP spectral detector: 410-695 nm in bins of
    about 8.9 nm.

    Examples
    --------
    >>> chans = spectral_detector(500, 700, 4)
    >>> [c.label for c in chans]
    ['500-550', '550-600', '600-650', '650-700']
    """
    if n < 1 or not 0 < start < stop:
        raise ConfigError(message(f"detector {start}-{stop} nm in {n} channels",
                                  "0 < start < stop and n >= 1", "Fix the detector range."))
    edges = np.linspace(start, stop, n + 1)
    return [Channel(float(lo), float(hi), efficiency) for lo, hi in zip(edges[:-1], edges[1:])]


def band_channels(bands: str | Sequence[tuple[float, float]]) -> list[Channel]:
    """Channels from bands, e.g. ``"500-550,570-620"`` or ``[(500, 550), (570, 620)]``.

    Filter-based multi-channel imaging uses such (possibly gapped, possibly overlapping)
    bands.
    """
    if isinstance(bands, str):
        pairs = []
        for part in bands.split(","):
            try:
                lo, hi = (float(v) for v in part.strip().split("-"))
            except ValueError:
                raise ConfigError(message(f"band {part.strip()!r}", "LOW-HIGH in nm, e.g. "
                                          "500-550", "Separate bands with commas.")) from None
            pairs.append((lo, hi))
        bands = pairs
    chans = [Channel(float(lo), float(hi)) for lo, hi in bands]
    if not chans:
        raise ConfigError(message("no channel bands", "at least one band", "Pass bands."))
    return chans


def mixing_matrix(fluorophores: Sequence[Fluorophore | str], channels: Sequence[Channel], *,
                  step: float = 0.5) -> np.ndarray:
    """Fraction of each fluorophore's emitted photons detected in each channel.

    Parameters
    ----------
    fluorophores : sequence of Fluorophore or str
        ``K`` fluorophores.
    channels : sequence of Channel
        ``C`` detection channels.
    step : float
        Integration step, nm.

    Returns
    -------
    numpy.ndarray
        ``(C, K)`` float64: ``M[c, k] = eff_c * int_{band c} s_k / int s_k`` with ``s_k``
        the emission spectrum over 350-900 nm. Columns sum to at most 1 (less where the
        channels miss part of the emission).

    Examples
    --------
    >>> m = mixing_matrix(["EGFP", "mCherry"], spectral_detector(400, 800, 8))
    >>> m.shape, bool(np.allclose(m.sum(0), 1, atol=1e-3))
    ((8, 2), True)
    """
    fl = [fluorophore(f) for f in fluorophores]
    if not fl or not channels:
        raise ConfigError(message(f"{len(fl)} fluorophores and {len(channels)} channels",
                                  "at least one of each", "Pass both."))
    lam = np.arange(WAVELENGTH_RANGE[0], WAVELENGTH_RANGE[1] + step, step)
    out = np.zeros((len(channels), len(fl)))
    for k, f in enumerate(fl):
        s = emission_spectrum(f, lam)
        total = np.trapezoid(s, lam)
        for c, ch in enumerate(channels):
            grid = np.linspace(ch.low, ch.high, max(3, int(math.ceil((ch.high - ch.low) / step))
                                                    + 1))
            out[c, k] = ch.efficiency * np.trapezoid(emission_spectrum(f, grid), grid) / total
    return out


def perturb_fluorophore(fluor: Fluorophore | str, rng: SeedLike, *, peak_shift: float = 3.0,
                        width_change: float = 0.08) -> Fluorophore:
    """A randomly perturbed copy of ``fluor``, as its spectrum varies between real samples.

    Emission maxima move with the environment (pH, binding, solvent polarity: a few nm),
    and widths with it; measured reference spectra differ from the sample's for the same
    reasons and because of the optics.

    Parameters
    ----------
    fluor : Fluorophore or str
    rng : int or Generator
    peak_shift : float
        Standard deviation of the peak shift, nm.
    width_change : float
        Standard deviation of the relative FWHM change.
    """
    f = fluorophore(fluor)
    g = make_rng(rng)
    peak = f.peak + peak_shift * float(g.standard_normal())
    fwhm = f.fwhm * float(np.exp(width_change * g.standard_normal()))
    return f.model_copy(update={"peak": peak, "fwhm": fwhm})


def abundance_maps(shape: Sequence[int], n_components: int, *, seed: SeedLike = None,
                   kinds: Sequence[str] | None = None, overlap: float = 0.3) -> np.ndarray:
    """Abundance maps of ``n_components`` fluorophores from phantoms, each in ``[0, 1]``.

    Parameters
    ----------
    shape : sequence of int
        ``(ny, nx)`` or ``(nz, ny, nx)``.
    n_components : int
        Number of maps ``K``.
    seed : int or Generator, optional
    kinds : sequence of str, optional
        Phantom kind of each map (see :func:`~fluorecon.simulate.phantoms.make_phantom`).
        Default cycles nuclei, filaments, rings, beads, mixed, as differently labelled
        structures of one cell.
    overlap : float
        In ``[0, 1]``: each map is multiplied by ``(1 - overlap) + overlap * u`` with
        ``u`` a shared smooth field, so that structures co-occur in the same regions (as
        in real samples, where unmixing is hard because signals overlap in space).

    Returns
    -------
    numpy.ndarray
        float32 ``(K, *shape)``, each map with maximum 1.
    """
    if n_components < 1:
        raise ConfigError(message(f"n_components={n_components}", "at least 1", "Fix it."))
    if not 0 <= overlap <= 1:
        raise ConfigError(message(f"overlap={overlap}", "0 <= overlap <= 1", "Fix it."))
    default = ("nuclei", "filaments", "rings", "beads", "mixed")
    kinds = list(kinds) if kinds is not None else [default[k % len(default)]
                                                   for k in range(n_components)]
    if len(kinds) != n_components:
        raise ConfigError(message(f"{len(kinds)} phantom kinds for {n_components} maps",
                                  "one kind per map", "Fix kinds."))
    g = make_rng(seed)
    shp = tuple(int(s) for s in shape)
    field = ndimage.gaussian_filter(g.standard_normal(shp), sigma=max(2.0, min(shp) / 6),
                                    mode="wrap")
    field = (field - field.min()) / max(float(np.ptp(field)), 1e-12)
    maps = []
    for kind in kinds:
        m = make_phantom(kind, shp, seed=g).astype(np.float64)
        m *= (1.0 - overlap) + overlap * field
        maps.append(m / max(float(m.max()), 1e-12))
    return np.stack(maps).astype(np.float32)


@dataclass(frozen=True)
class SpectralSample:
    """A simulated spectral image with its ground truth.

    Attributes
    ----------
    image : ndarray, ``(C, *spatial)``
        Camera image, ADU (float32), channels first (axes ``"CYX"`` / ``"CZYX"``).
    photons : ndarray, ``(C, *spatial)``
        The noise-free expected photons per channel.
    abundances : ndarray, ``(K, *spatial)``
        Ground truth: photons emitted into detection by each fluorophore per pixel.
    mixing : ndarray, ``(C, K)``
        Mixing matrix of the fluorophores (the reference spectra), see
        :func:`mixing_matrix`.
    fluorophores : tuple of Fluorophore
        The (possibly perturbed) fluorophores actually used.
    channels : tuple of Channel
    autofluorescence : ndarray, ``(*spatial)``
        Autofluorescence abundance (photons), zeros when none.
    autofluorescence_spectrum : ndarray, ``(C,)``
        Its column of the mixing matrix.
    background : ndarray, ``(C,)``
        Constant background photons per channel.
    camera : CameraModel
    """

    image: np.ndarray
    photons: np.ndarray
    abundances: np.ndarray
    mixing: np.ndarray
    fluorophores: tuple[Fluorophore, ...]
    channels: tuple[Channel, ...]
    autofluorescence: np.ndarray
    autofluorescence_spectrum: np.ndarray
    background: np.ndarray
    camera: CameraModel

    @property
    def axes(self) -> str:
        """``"CYX"`` or ``"CZYX"``."""
        return "C" + "ZYX"[3 - (self.image.ndim - 1):]


class SpectralConfig(BaseConfig):
    """Settings of :func:`simulate_spectral`."""

    version: int = Field(default=1, ge=1, description="Schema version.")
    photons: float = Field(default=200.0, gt=0, description="Photons emitted into detection "
                                                            "at the brightest point of each "
                                                            "fluorophore's map.")
    autofluorescence: float = Field(default=0.0, ge=0, description="Mean autofluorescence "
                                                                   "photons per pixel.")
    background: float = Field(default=0.0, ge=0, description="Constant background photons "
                                                              "per pixel and channel.")
    peak_shift: float = Field(default=0.0, ge=0, description="Std of a random shift of each "
                                                             "emission peak, nm (0: library).")
    width_change: float = Field(default=0.0, ge=0, description="Std of a random relative "
                                                               "FWHM change.")


def simulate_spectral(
    abundances: Any,
    fluorophores: Sequence[Fluorophore | str],
    channels: Sequence[Channel],
    *,
    photons: float = 200.0,
    camera: CameraModel | None = None,
    autofluorescence: float = 0.0,
    background: float = 0.0,
    peak_shift: float = 0.0,
    width_change: float = 0.0,
    seed: SeedLike = None,
) -> SpectralSample:
    """Simulate the camera image of a multi-fluorophore sample in several channels.

    Parameters
    ----------
    abundances : array_like, ``(K, *spatial)``
        Relative abundance maps (e.g. from :func:`abundance_maps`), non-negative; scaled so
        that each map's maximum emits ``photons`` photons.
    fluorophores : sequence of Fluorophore or str
        ``K`` fluorophores.
    channels : sequence of Channel
        ``C`` detection channels.
    photons : float
        Photons emitted into detection at each map's maximum.
    camera : CameraModel, optional
        Default: :meth:`CameraModel.scmos`.
    autofluorescence : float
        Mean autofluorescence photons per pixel (smooth, uneven field, broad flavin-like
        spectrum, see ``FLUOROPHORES["autofluorescence"]``).
    background : float
        Constant background photons per pixel in each channel (stray light, spectrally
        flat).
    peak_shift, width_change : float
        Perturb every fluorophore's spectrum in the sample (see
        :func:`perturb_fluorophore`); the returned ``mixing`` is the perturbed one (the
        truth), so unmixing with library spectra then measures robustness to mismatch.
    seed : int or Generator, optional

    Returns
    -------
    SpectralSample
        Camera image in ADU and its ground truth.

    Examples
    --------
    >>> a = abundance_maps((32, 32), 2, seed=0)
    >>> s = simulate_spectral(a, ["EGFP", "mCherry"], spectral_detector(480, 680, 8), seed=0)
    >>> s.image.shape, s.abundances.shape, s.axes
    ((8, 32, 32), (2, 32, 32), 'CYX')
    """
    a = np.asarray(abundances, dtype=np.float64)
    if a.ndim not in (3, 4) or a.shape[0] != len(fluorophores):
        raise DataError(message(f"abundances of shape {a.shape} for {len(fluorophores)} "
                                "fluorophores", "(K, Y, X) or (K, Z, Y, X) with K = number of "
                                "fluorophores", "Pass one map per fluorophore."))
    if not np.all(np.isfinite(a)) or a.min() < 0:
        raise DataError(message("abundances with negative or non-finite values",
                                "finite non-negative maps", "Clip the maps at 0."))
    g = make_rng(seed)
    cfg = SpectralConfig.build(photons=photons, autofluorescence=autofluorescence,
                               background=background, peak_shift=peak_shift,
                               width_change=width_change)
    fl = [fluorophore(f) for f in fluorophores]
    if cfg.peak_shift > 0 or cfg.width_change > 0:
        fl = [perturb_fluorophore(f, g, peak_shift=cfg.peak_shift,
                                  width_change=cfg.width_change) for f in fl]
    chans = list(channels)
    m = mixing_matrix(fl, chans)
    peaks = a.reshape(a.shape[0], -1).max(axis=1)
    truth = a / np.maximum(peaks, 1e-12).reshape((-1,) + (1,) * (a.ndim - 1)) * cfg.photons
    sp = a.shape[1:]
    expected = np.tensordot(m, truth, axes=(1, 0))
    af_map = np.zeros(sp)
    af_spec = mixing_matrix([FLUOROPHORES["autofluorescence"]], chans)[:, 0]
    if cfg.autofluorescence > 0:
        f = ndimage.gaussian_filter(g.standard_normal(sp), sigma=max(2.0, min(sp) / 4),
                                    mode="wrap")
        f = (f - f.min()) / max(float(np.ptp(f)), 1e-12)
        af_map = cfg.autofluorescence * (0.5 + f) / max(float((0.5 + f).mean()), 1e-12)
        expected += af_spec.reshape((-1,) + (1,) * len(sp)) * af_map
    bg = np.full(len(chans), cfg.background)
    expected += bg.reshape((-1,) + (1,) * len(sp))
    cam = camera if camera is not None else CameraModel.scmos()
    image = camera_forward(expected, cam, rng=g)
    return SpectralSample(image=image, photons=expected.astype(np.float32),
                          abundances=truth.astype(np.float32), mixing=m,
                          fluorophores=tuple(fl), channels=tuple(chans),
                          autofluorescence=af_map.astype(np.float32),
                          autofluorescence_spectrum=af_spec, background=bg, camera=cam)
