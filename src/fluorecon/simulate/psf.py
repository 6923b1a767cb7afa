"""Point spread functions: Gaussian, scalar-diffraction widefield and confocal, and FWHM.

Every PSF returned here is a float32 array, non-negative, normalised to sum 1 and centred
at index ``shape // 2`` along each axis (the convention :func:`fluorecon.simulate.degrade.blur`
expects). Axes are ``"YX"`` for 2D shapes and ``"ZYX"`` for 3D shapes. Lengths (wavelengths,
pixel sizes, depths, thicknesses) are in micrometres.

The widefield models are scalar: the field at lateral radius ``r`` and defocus ``z`` is the
Hankel transform of the pupil function (Born and Wolf 1999, section 8.8; Gibson and Lanni
1992), evaluated on a fine radial grid with Gauss-Legendre quadrature over the normalised
pupil radius, then interpolated onto the (oversampled) pixel grid and averaged over each
pixel's area. Polarisation and the aplanatic apodisation factor are ignored; this is
accurate for the widths and shapes that matter to deconvolution and simulation, and is
what the common PSF generators (PSF Generator, MicroscPSF) compute.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy import special

from fluorecon.core.errors import ConfigError, DataError, message

__all__ = [
    "abbe_lateral_fwhm",
    "confocal_psf",
    "gaussian_psf",
    "psf_fwhm",
    "rayleigh_resolution",
    "widefield_axial_fwhm",
    "widefield_psf",
]

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))  # 2.3548...

#: FWHM of the Airy intensity pattern (2 J1(v)/v)^2 in units of lambda/NA.
AIRY_FWHM_FACTOR = 0.5145
#: Half width at half maximum of sinc^2(x) (sin(x)/x)^2: x = 1.39156.
_SINC2_HWHM = 1.3915573782515103


# ---------------------------------------------------------------------------------------
# Theory helpers
# ---------------------------------------------------------------------------------------
def abbe_lateral_fwhm(wavelength: float, na: float) -> float:
    """Theoretical lateral FWHM of the widefield (Airy) PSF, ``0.5145 * wavelength / na``.

    This is the full width at half maximum of the Airy intensity ``(2 J1(v) / v)**2``,
    ``v = 2 pi NA r / wavelength``; it is within 3 % of Abbe's limit ``wavelength / (2 NA)``.

    Parameters
    ----------
    wavelength : float
        Emission wavelength in micrometres.
    na : float
        Numerical aperture.

    Returns
    -------
    float
        FWHM in micrometres.

    Examples
    --------
    >>> round(abbe_lateral_fwhm(0.52, 1.2), 4)
    0.223
    """
    _check_positive(wavelength=wavelength, na=na)
    return AIRY_FWHM_FACTOR * wavelength / na


def rayleigh_resolution(wavelength: float, na: float) -> float:
    """Rayleigh two-point resolution ``0.61 * wavelength / na`` (first Airy zero), in µm."""
    _check_positive(wavelength=wavelength, na=na)
    return 0.6098 * wavelength / na


def widefield_axial_fwhm(wavelength: float, na: float, n_immersion: float = 1.515, *,
                         paraxial: bool = False) -> float:
    """Approximate axial FWHM of the widefield PSF, in micrometres.

    Parameters
    ----------
    wavelength : float
        Emission wavelength in micrometres.
    na : float
        Numerical aperture (``na < n_immersion``).
    n_immersion : float
        Refractive index of the immersion medium.
    paraxial : bool
        If True, return the paraxial value ``1.772 n lambda / NA**2`` (exact for the
        paraxial Born-Wolf model). Otherwise return ``0.886 lambda / (n - sqrt(n**2 - NA**2))``,
        the usual high-aperture estimate.

    Notes
    -----
    With a uniform pupil the paraxial on-axis intensity is ``sinc^2(k z NA^2 / (4 n))``,
    whose FWHM is ``4 * 1.3916 n / (k NA^2) = 1.772 n lambda / NA^2``. Without the paraxial
    approximation the defocus phase is ``k z sqrt(n^2 - NA^2 rho^2)`` and the pupil spans
    ``n - sqrt(n^2 - NA^2)`` in axial spatial frequency, giving the second form.
    """
    _check_positive(wavelength=wavelength, na=na, n_immersion=n_immersion)
    if na >= n_immersion:
        raise ConfigError(message(f"na={na} with n_immersion={n_immersion}",
                                  "na < n_immersion", "Lower na or raise n_immersion."))
    if paraxial:
        return 8.0 * _SINC2_HWHM / (2.0 * math.pi) * n_immersion * wavelength / na**2
    return 2.0 * _SINC2_HWHM / math.pi * wavelength / (
        n_immersion - math.sqrt(n_immersion**2 - na**2))


# ---------------------------------------------------------------------------------------
# Gaussian
# ---------------------------------------------------------------------------------------
def gaussian_psf(shape: Sequence[int], sigma: float | Sequence[float]) -> np.ndarray:
    """Gaussian PSF sampled at pixel centres, centred at ``shape // 2``, summing to 1.

    Parameters
    ----------
    shape : sequence of int
        ``(ny, nx)`` or ``(nz, ny, nx)``.
    sigma : float or sequence of float
        Standard deviation in pixels, one value for all axes or one per axis. ``0`` along
        an axis gives a delta along it.

    Returns
    -------
    numpy.ndarray
        float32 array of ``shape``.

    Notes
    -----
    ``h(x) = prod_i exp(-x_i^2 / (2 sigma_i^2))``, normalised to sum 1 over the array; its
    FWHM is ``2 sqrt(2 ln 2) sigma = 2.3548 sigma`` along each axis.

    Examples
    --------
    >>> p = gaussian_psf((15, 15), 2.0)
    >>> p.shape, p.dtype, round(float(p.sum()), 5), p.argmax() == 7 * 15 + 7
    ((15, 15), dtype('float32'), 1.0, np.True_)
    """
    shape = _check_shape(shape)
    sig = _per_axis(sigma, len(shape), "sigma")
    if any(s < 0 for s in sig):
        raise ConfigError(message(f"sigma={sigma}", "sigma >= 0 pixels", "Pass a positive sigma."))
    out = np.ones((), dtype=np.float64)
    for n, s in zip(shape, sig):
        x = np.arange(n, dtype=np.float64) - n // 2
        if s == 0:
            g = (x == 0).astype(np.float64)
        else:
            g = np.exp(-0.5 * (x / s) ** 2)
        out = np.multiply.outer(out, g)
    out /= out.sum()
    return out.astype(np.float32)


# ---------------------------------------------------------------------------------------
# Widefield (scalar diffraction)
# ---------------------------------------------------------------------------------------
def widefield_psf(
    shape: Sequence[int],
    *,
    na: float,
    wavelength: float,
    n_immersion: float = 1.515,
    pixel_size: float | Sequence[float],
    z_step: float | None = None,
    model: Literal["born-wolf", "gibson-lanni"] = "born-wolf",
    n_sample: float | None = None,
    depth: float = 0.0,
    oversample: int = 3,
    paraxial: bool = False,
    ti0: float = 150.0,
    ni0: float | None = None,
    ng: float = 1.515,
    ng0: float | None = None,
    tg: float = 170.0,
    tg0: float | None = None,
) -> np.ndarray:
    """Scalar-diffraction widefield PSF (Born-Wolf or Gibson-Lanni), 2D in focus or 3D.

    Parameters
    ----------
    shape : sequence of int
        ``(ny, nx)`` for the in-focus plane, or ``(nz, ny, nx)`` for a stack.
    na : float
        Numerical aperture of the objective.
    wavelength : float
        Emission wavelength in vacuum, micrometres.
    n_immersion : float
        Refractive index of the immersion medium (``ni``), default oil 1.515.
    pixel_size : float or (float, float)
        Lateral pixel size in the sample plane, micrometres (one value or ``(py, px)``).
    z_step : float, optional
        Axial step between planes, micrometres. Required for 3D shapes.
    model : {"born-wolf", "gibson-lanni"}
        ``"born-wolf"``: aberration-free defocused pupil. ``"gibson-lanni"``: adds the optical
        path difference of a sample of index ``n_sample`` imaged at ``depth`` below the
        coverslip, a coverslip of index/thickness ``ng``/``tg`` and an immersion layer, relative
        to the design values ``ni0``, ``ng0``, ``tg0``, ``ti0``.
    n_sample : float, optional
        Refractive index of the sample (``ns``; Gibson-Lanni only). Default: ``n_immersion``
        (index-matched).
    depth : float
        Depth of the emitter below the coverslip (``pz``), micrometres (Gibson-Lanni only).
    oversample : int
        Sub-pixel samples per lateral pixel axis; the PSF is averaged over each pixel area.
    paraxial : bool
        Born-Wolf only: use the paraxial defocus phase ``-k z NA^2 rho^2 / (2 n)`` (as in the
        classic Born & Wolf model of PSF Generator) instead of the exact
        ``k z sqrt(n^2 - NA^2 rho^2)``.
    ti0 : float
        Design working distance (immersion thickness), micrometres. Default 150.
    ni0 : float, optional
        Design immersion index. Default ``n_immersion``.
    ng : float
        Actual coverslip index. Default 1.515.
    ng0 : float, optional
        Design coverslip index. Default ``ng``.
    tg : float
        Actual coverslip thickness, micrometres. Default 170.
    tg0 : float, optional
        Design coverslip thickness, micrometres. Default ``tg``.

    Returns
    -------
    numpy.ndarray
        float32 PSF of ``shape``, non-negative, summing to 1, with the nominal focus at
        lateral index ``(ny // 2, nx // 2)`` and plane ``nz // 2``.

    Raises
    ------
    ConfigError
        Non-positive lengths, ``na >= n_immersion``, a 3D shape without ``z_step``, or an
        unknown model.

    Notes
    -----
    The intensity at lateral radius ``r`` and defocus ``z`` is

    .. math:: h(r, z) = \\left| \\int_0^1 J_0(k\\,\\mathrm{NA}\\,r\\,\\rho)\\,
              e^{i W(\\rho, z)}\\,\\rho\\,d\\rho \\right|^2, \\qquad k = 2\\pi/\\lambda.

    Born-Wolf: ``W = k z sqrt(ni^2 - NA^2 rho^2)`` (or its paraxial form). Gibson-Lanni (in the
    form of Li, Xue and Blu 2017, with immersion thickness ``ti = ti0 - pz + z``)::

        W = k [ pz sqrt(ns^2 - (NA rho)^2) + (ti0 - pz + z) sqrt(ni^2 - (NA rho)^2)
                - ti0 sqrt(ni0^2 - (NA rho)^2) + tg sqrt(ng^2 - (NA rho)^2)
                - tg0 sqrt(ng0^2 - (NA rho)^2) ]

    Here ``z`` is the displacement of the focal plane from the *nominal* focus on the emitter,
    i.e. the stage position at which an emitter at depth ``pz`` would be in focus in an
    index-matched sample (Li et al. use the coverslip as origin: their ``z`` is ours minus
    ``pz``). Positive ``z`` thickens the immersion layer, moving the focal plane towards the
    objective. With matched indices and thicknesses ``W = k z sqrt(ni^2 - NA^2 rho^2)`` at any
    depth, which is Born-Wolf. Square roots of
    negative arguments (``NA > ns``: light beyond the critical angle) are taken on the
    positive imaginary branch, which makes those pupil zones evanescent with depth. With
    ``ns != ni`` the intensity maximum moves away from the nominal focus (focal shift) and
    the axial profile becomes asymmetric; the array is not re-centred on the maximum. For an
    oil objective imaging into water (``ns < ni``) the maximum lies at negative ``z``: one
    must focus nominally deeper than the emitter.

    ``h`` is computed on a 1D radius grid per plane (quadrature over ``rho``, one matrix
    product for all planes), interpolated linearly onto ``oversample**2`` points per pixel
    and averaged over them (pixel-area integration). Planes are point-sampled in ``z``.

    References
    ----------
    .. [1] M. Born, E. Wolf, *Principles of Optics*, 7th ed., Cambridge University Press,
       1999, section 8.8.
    .. [2] S. F. Gibson, F. Lanni, "Experimental test of an analytical model of aberration in
       an oil-immersion objective lens used in three-dimensional light microscopy",
       J. Opt. Soc. Am. A 9(1), 154-166, 1992.
    .. [3] J. Li, F. Xue, T. Blu, "Fast and accurate three-dimensional point spread function
       computation for fluorescence microscopy", J. Opt. Soc. Am. A 34(6), 1029-1034, 2017.

    Examples
    --------
    >>> p = widefield_psf((33, 33), na=1.2, wavelength=0.52, pixel_size=0.05)
    >>> p.dtype, round(float(p.sum()), 5), int(p.argmax()) == 16 * 33 + 16
    (dtype('float32'), 1.0, True)
    """
    fine, os_ = _widefield_fine(
        shape, na=na, wavelength=wavelength, n_immersion=n_immersion, pixel_size=pixel_size,
        z_step=z_step, model=model, n_sample=n_sample, depth=depth, oversample=oversample,
        paraxial=paraxial, ti0=ti0, ni0=ni0, ng=ng, ng0=ng0, tg=tg, tg0=tg0)
    return _finish(_bin_lateral(fine, os_), len(_check_shape(shape)))


def confocal_psf(
    shape: Sequence[int],
    *,
    na: float,
    excitation_wavelength: float,
    emission_wavelength: float,
    n_immersion: float = 1.515,
    pixel_size: float | Sequence[float],
    z_step: float | None = None,
    pinhole: float | None = None,
    model: Literal["born-wolf", "gibson-lanni"] = "born-wolf",
    n_sample: float | None = None,
    depth: float = 0.0,
    oversample: int = 3,
    paraxial: bool = False,
    ti0: float = 150.0,
    ni0: float | None = None,
    ng: float = 1.515,
    ng0: float | None = None,
    tg: float = 170.0,
    tg0: float | None = None,
) -> np.ndarray:
    """Point-scanning confocal PSF: excitation PSF times (pinhole-filtered) emission PSF.

    Parameters
    ----------
    shape : sequence of int
        ``(ny, nx)`` or ``(nz, ny, nx)``.
    na : float
        Numerical aperture (same objective for excitation and detection).
    excitation_wavelength, emission_wavelength : float
        Vacuum wavelengths in micrometres.
    pinhole : float, optional
        Pinhole diameter in Airy units (1 AU = ``1.22 * emission_wavelength / na`` in the
        sample plane). ``None`` or ``0``: an ideal point pinhole.
    n_immersion, pixel_size, z_step, model, n_sample, depth, oversample, paraxial, ti0, ni0, \
ng, ng0, tg, tg0
        As for :func:`widefield_psf`.

    Returns
    -------
    numpy.ndarray
        float32 PSF of ``shape``, summing to 1, centred at ``shape // 2``.

    Notes
    -----
    ``h_conf(r, z) = h_ex(r, z) * [h_em(., z) conv D](r)`` where ``D`` is the pinhole disc
    projected into the sample plane (Wilson and Sheppard 1984). Both factors are evaluated on
    the oversampled grid before pixel averaging, so the product is integrated over each pixel
    correctly. With an ideal pinhole and equal wavelengths the lateral FWHM is about
    ``1/sqrt(2)`` of the widefield one (0.37 vs 0.51 lambda/NA).

    References
    ----------
    .. [1] T. Wilson, C. Sheppard, *Theory and Practice of Scanning Optical Microscopy*,
       Academic Press, 1984.
    """
    common = dict(na=na, n_immersion=n_immersion, pixel_size=pixel_size, z_step=z_step,
                  model=model, n_sample=n_sample, depth=depth, oversample=oversample,
                  paraxial=paraxial, ti0=ti0, ni0=ni0, ng=ng, ng0=ng0, tg=tg, tg0=tg0)
    ex, os_ = _widefield_fine(shape, wavelength=excitation_wavelength,
                              **common)  # type: ignore[arg-type]
    em, _ = _widefield_fine(shape, wavelength=emission_wavelength,
                            **common)  # type: ignore[arg-type]
    if pinhole is not None and pinhole < 0:
        raise ConfigError(message(f"pinhole={pinhole}", "a pinhole diameter >= 0 Airy units",
                                  "Pass e.g. pinhole=1.0, or None for an ideal pinhole."))
    if pinhole:
        py, px = _per_axis(pixel_size, 2, "pixel_size")
        radius = 0.5 * pinhole * 1.22 * emission_wavelength / na
        disc = _disc_kernel(radius, py / os_, px / os_, os_)
        from scipy.signal import fftconvolve

        em = np.clip(fftconvolve(em, disc[None], mode="same", axes=(1, 2)), 0.0, None)
    return _finish(_bin_lateral(ex * em, os_), len(_check_shape(shape)))


# ---------------------------------------------------------------------------------------
# FWHM measurement
# ---------------------------------------------------------------------------------------
def psf_fwhm(psf: np.ndarray, spacing: float | Sequence[float] | None = None) -> tuple[float, ...]:
    """Full width at half maximum of a PSF along each axis, through its maximum.

    Parameters
    ----------
    psf : numpy.ndarray
        2D or 3D PSF (any non-negative peaked array).
    spacing : float or sequence of float, optional
        Pixel size per axis. If given, widths are returned in those units, else in pixels.

    Returns
    -------
    tuple of float
        One FWHM per axis, in array-axis order.

    Raises
    ------
    DataError
        If the profile along an axis does not fall below half its maximum on both sides
        of the peak inside the array.

    Notes
    -----
    The 1D profile through the brightest pixel is taken along each axis; the half-maximum
    crossings on either side of the peak are located by linear interpolation between the
    two samples that bracket half the peak value.

    Examples
    --------
    >>> [round(w, 2) for w in psf_fwhm(gaussian_psf((41, 41), 4.0))]  # 2.3548 * 4 = 9.42
    [9.43, 9.43]
    """
    arr = np.asarray(psf, dtype=np.float64)
    if arr.ndim < 1 or arr.size == 0:
        raise DataError(message(f"a PSF of shape {arr.shape}", "a non-empty array",
                                "Pass a 2D or 3D PSF."))
    sp = (1.0,) * arr.ndim if spacing is None else _per_axis(spacing, arr.ndim, "spacing")
    peak = np.unravel_index(int(np.argmax(arr)), arr.shape)
    out = []
    for ax in range(arr.ndim):
        idx = list(peak)
        idx[ax] = slice(None)
        prof = arr[tuple(idx)]
        c = peak[ax]
        half = 0.5 * prof[c]
        right = _crossing(prof[c:], half)
        left = _crossing(prof[c::-1], half)
        if right is None or left is None:
            raise DataError(message(
                f"a PSF whose profile along axis {ax} stays above half maximum to the array edge",
                "a profile that falls below half maximum on both sides of the peak",
                "Enlarge the PSF array along that axis or use a coarser sampling."))
        out.append(float((left + right) * sp[ax]))
    return tuple(out)


def _crossing(prof: np.ndarray, half: float) -> float | None:
    below = np.nonzero(prof < half)[0]
    if below.size == 0:
        return None
    j = int(below[0])  # first sample below half; j >= 1 since prof[0] is the peak
    a, b = prof[j - 1], prof[j]
    return (j - 1) + (a - half) / (a - b)


# ---------------------------------------------------------------------------------------
# Internals
# ---------------------------------------------------------------------------------------
def _check_positive(**values: float) -> None:
    for name, v in values.items():
        if not (isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(v)
                and v > 0):
            raise ConfigError(message(f"{name}={v!r}", f"{name} > 0", f"Pass a positive {name}."))


def _check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    try:
        out = tuple(int(s) for s in shape)
    except TypeError:
        raise ConfigError(message(f"shape {shape!r}", "a sequence of 2 or 3 positive ints",
                                  "Pass e.g. (64, 64) or (32, 64, 64).")) from None
    if len(out) not in (2, 3) or any(s < 1 for s in out):
        raise ConfigError(message(f"shape {shape!r}", "2 or 3 positive sizes (YX or ZYX)",
                                  "Pass e.g. (64, 64) or (32, 64, 64)."))
    return out


def _per_axis(value: float | Sequence[float], n: int, name: str) -> tuple[float, ...]:
    if np.ndim(value) == 0:
        return (float(value),) * n  # type: ignore[arg-type]
    vals = tuple(float(v) for v in value)  # type: ignore[union-attr]
    if len(vals) != n:
        raise ConfigError(message(f"{name}={value!r} ({len(vals)} values)",
                                  f"one value or {n} values (one per axis)",
                                  f"Pass a single {name} or one per axis."))
    return vals


def _widefield_fine(
    shape: Sequence[int], *, na: float, wavelength: float, n_immersion: float,
    pixel_size: float | Sequence[float], z_step: float | None, model: str,
    n_sample: float | None, depth: float, oversample: int, paraxial: bool, ti0: float,
    ni0: float | None, ng: float, ng0: float | None, tg: float, tg0: float | None,
) -> tuple[np.ndarray, int]:
    """Unnormalised intensity on the laterally oversampled grid, shape (nz, ny*os, nx*os)."""
    shp = _check_shape(shape)
    _check_positive(na=na, wavelength=wavelength, n_immersion=n_immersion)
    py, px = _per_axis(pixel_size, 2, "pixel_size")
    _check_positive(pixel_size=min(py, px))
    if na >= n_immersion:
        raise ConfigError(message(f"na={na} with n_immersion={n_immersion}",
                                  "na < n_immersion (NA cannot exceed the immersion index)",
                                  "Lower na or raise n_immersion."))
    if model not in ("born-wolf", "gibson-lanni"):
        raise ConfigError(message(f"model={model!r}", "'born-wolf' or 'gibson-lanni'",
                                  "Pick one of the two scalar models."))
    if not (isinstance(oversample, (int, np.integer)) and 1 <= oversample <= 15):
        raise ConfigError(message(f"oversample={oversample!r}", "an int from 1 to 15",
                                  "Use 3 (default) or more for coarse pixels."))
    if len(shp) == 3:
        if z_step is None:
            raise ConfigError(message("a 3D PSF shape without z_step",
                                      "z_step (axial step in micrometres) for 3D PSFs",
                                      "Pass z_step=..., e.g. 0.2."))
        _check_positive(z_step=z_step)
        nz, ny, nx = shp
        z = (np.arange(nz) - nz // 2) * float(z_step)
    else:
        ny, nx = shp
        z = np.zeros(1)
    if depth < 0:
        raise ConfigError(message(f"depth={depth}", "depth >= 0 micrometres below the coverslip",
                                  "Pass a non-negative depth."))
    os_ = int(oversample)

    # Sub-pixel sample coordinates (micrometres), symmetric about each pixel centre.
    sub = (np.arange(os_) + 0.5) / os_ - 0.5
    yy = ((np.arange(ny) - ny // 2)[:, None] + sub[None, :]).ravel() * py
    xx = ((np.arange(nx) - nx // 2)[:, None] + sub[None, :]).ravel() * px
    r2 = yy[:, None] ** 2 + xx[None, :] ** 2
    r_max = float(np.sqrt(r2.max()))

    k = 2.0 * math.pi / wavelength
    # Radial grid fine enough for linear interpolation of the intensity profile.
    dr = min(min(py, px) / os_ / 2.0, wavelength / na / 50.0)
    nr = int(math.ceil(r_max / dr)) + 2
    r = np.arange(nr) * dr

    # Pupil phase W(rho, z) as a function handle of the quadrature nodes.
    ni = float(n_immersion)

    def phase(rho: np.ndarray) -> np.ndarray:
        s = (na * rho) ** 2
        if model == "born-wolf":
            if paraxial:
                return -k * z[:, None] * s[None, :] / (2.0 * ni)
            return k * z[:, None] * np.sqrt(ni**2 - s)[None, :]
        ns = ni if n_sample is None else float(n_sample)
        ni0_ = ni if ni0 is None else float(ni0)
        ng0_ = ng if ng0 is None else float(ng0)
        tg0_ = tg if tg0 is None else float(tg0)
        _check_positive(n_sample=ns, ni0=ni0_, ng=ng, ng0=ng0_, tg=tg, tg0=tg0_, ti0=ti0)

        def root(n: float) -> np.ndarray:
            return np.sqrt((n**2 - s).astype(np.complex128))

        const = (depth * root(ns) - ti0 * root(ni0_) + tg * root(ng) - tg0_ * root(ng0_))
        return k * ((ti0 - depth + z[:, None]) * root(ni)[None, :] + const[None, :])

    # Number of Gauss-Legendre nodes from the largest phase excursion over the pupil.
    probe = np.linspace(0.0, 1.0, 257)
    w_probe = phase(probe)
    w_span = float(np.max(np.abs(np.diff(np.real(w_probe), axis=1)).sum(axis=1)))
    n_nodes = int(min(6000, 64 + 1.5 * (k * na * r_max + w_span) / 2.0))
    nodes, weights = special.roots_legendre(n_nodes)
    rho = 0.5 * (nodes + 1.0)
    wq = 0.5 * weights * rho

    pupil = np.exp(1j * phase(rho)) * wq[None, :]  # (nz, n_nodes)
    j0 = special.j0(k * na * r[:, None] * rho[None, :])  # (nr, n_nodes)
    amp = pupil @ j0.T  # (nz, nr)
    prof = (amp.real**2 + amp.imag**2).astype(np.float32)

    # Linear interpolation of each plane's profile at every sub-pixel radius.
    t = np.sqrt(r2).ravel() / dr
    i0 = np.minimum(t.astype(np.int64), nr - 2)
    frac = (t - i0).astype(np.float32)
    out = np.empty((len(z), ny * os_, nx * os_), dtype=np.float32)
    chunk = max(1, (1 << 22) // max(1, i0.size))
    for a in range(0, len(z), chunk):
        p = prof[a:a + chunk]
        lo = p[:, i0]
        out[a:a + chunk] = (lo + (p[:, i0 + 1] - lo) * frac).reshape(-1, ny * os_, nx * os_)
    return out, os_


def _bin_lateral(fine: np.ndarray, os_: int) -> np.ndarray:
    nz, fy, fx = fine.shape
    return fine.reshape(nz, fy // os_, os_, fx // os_, os_).mean(axis=(2, 4), dtype=np.float64)


def _finish(vol: np.ndarray, ndim: int) -> np.ndarray:
    vol = np.clip(vol, 0.0, None)
    total = vol.sum()
    if not total > 0:
        raise ConfigError(message("a PSF that is zero everywhere on the requested grid",
                                  "a grid that contains the PSF",
                                  "Check pixel_size, z_step and depth (units are micrometres)."))
    vol = vol / total
    if ndim == 2:
        vol = vol[0]
    return vol.astype(np.float32)


def _disc_kernel(radius: float, dy: float, dx: float, os_: int) -> np.ndarray:
    """Normalised disc of ``radius`` (µm) on a grid of steps ``dy``, ``dx``, anti-aliased."""
    ry = int(math.ceil(radius / dy)) + 1
    rx = int(math.ceil(radius / dx)) + 1
    sub = (np.arange(4) + 0.5) / 4 - 0.5
    y = ((np.arange(-ry, ry + 1))[:, None] + sub[None, :]).ravel() * dy
    x = ((np.arange(-rx, rx + 1))[:, None] + sub[None, :]).ravel() * dx
    inside = (y[:, None] ** 2 + x[None, :] ** 2 <= radius**2).astype(np.float64)
    disc = inside.reshape(2 * ry + 1, 4, 2 * rx + 1, 4).mean(axis=(1, 3))
    if disc.sum() == 0:  # pinhole smaller than a fine sample: a delta
        disc[ry, rx] = 1.0
    return disc / disc.sum()
