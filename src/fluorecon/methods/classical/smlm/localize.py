"""Classical single-molecule localisation: detect, cut ROIs, fit by maximum likelihood.

:func:`localize` is the whole pipeline on a frame stack in ADU:

1. ADU -> photoelectrons with the camera model (``(ADU - offset) / (gain * em_gain)``,
   per-pixel sCMOS maps allowed). The fit is Poisson in photoelectrons, so photons are
   ``N_e / QE``; EMCCD excess noise doubles the variances (CRLB x 2).
2. Candidates: band-pass filter and local maxima (:mod:`.detection`).
3. ROIs of ``2 r + 1`` pixels around every candidate, pixels outside the frame masked.
4. Batched Levenberg-Marquardt maximum-likelihood fit (:func:`.fitting.fit_rois`) of a
   pixel-integrated Gaussian (2D), or of an elliptical Gaussian followed by the astigmatic
   model with ``z`` (3D); Cramér-Rao lower bounds as uncertainties.
5. Rejection of fits that did not converge, left their ROI, or duplicate a neighbour.

:func:`calibrate_astigmatism` fits the z-dependence of the widths from a bead z-stack.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import Field
from scipy.optimize import curve_fit
from scipy.spatial import cKDTree

from fluorecon.core.config import BaseConfig
from fluorecon.core.errors import DataError, message
from fluorecon.methods.classical.smlm.detection import DetectionFilter, detect_candidates
from fluorecon.methods.classical.smlm.fitting import fit_rois
from fluorecon.simulate.camera import CameraModel
from fluorecon.simulate.smlm import AstigmaticCalibration, Localizations, PSFModel

__all__ = ["LocalizeConfig", "calibrate_astigmatism", "camera_electrons", "localize"]

Progress = Callable[[int, int], None]


class LocalizeConfig(BaseConfig):
    """Settings of :func:`localize` (classical detection + MLE fitting)."""

    version: int = Field(default=1, ge=1, le=1, description="Schema version.")
    pixel_size: float = Field(default=100.0, gt=0, description="Camera pixel size in the "
                                                               "sample, nm.")
    psf: PSFModel = Field(default_factory=PSFModel, description="PSF: Gaussian sigma (nm) or "
                          "astigmatic calibration (3D).")
    filter: DetectionFilter = Field(default="wavelet", description="Detection band-pass: "
                                    "'wavelet' (B3-spline, ThunderSTORM) or 'dog'.")
    threshold: float = Field(default=1.5, gt=0, description="Detection threshold, multiples "
                             "of the noise of the filtered frame (sigma-clipped std(Wave.F1) "
                             "for wavelet).")
    roi_radius: int | None = Field(default=None, ge=2, le=20, description="ROI half-width, "
                                   "pixels; default ceil(3 sigma).")
    fit_sigma: bool = Field(default=False, description="2D: fit the PSF width per molecule "
                            "(5 parameters) instead of fixing it.")
    max_iterations: int = Field(default=40, ge=1, le=500, description="Levenberg-Marquardt "
                                "iterations at most.")
    frames_per_batch: int = Field(default=200, ge=1, description="Frames read and fitted "
                                  "together (capped at about 4 million pixels).")


def camera_electrons(frames: Any, camera: CameraModel, *, offset_map: Any = None,
                     gain_map: Any = None) -> np.ndarray:
    """Photoelectrons (after the EM register's mean gain) of camera frames in ADU, float64.

    ``(ADU - offset) / (gain * em_gain)``; dark electrons stay in (the fit's background
    absorbs them).
    """
    a = np.asarray(frames, np.float64)
    off = camera.offset if offset_map is None else np.asarray(offset_map, np.float64)
    gain = camera.gain if gain_map is None else np.asarray(gain_map, np.float64)
    return (a - off) / (gain * camera.em_gain)


def _readout_variance(camera: CameraModel, shape: tuple[int, int], gain_map: Any,
                      read_noise_map: Any) -> np.ndarray:
    gain = camera.gain if gain_map is None else np.asarray(gain_map, np.float64)
    read = camera.read_noise if read_noise_map is None else np.asarray(read_noise_map,
                                                                       np.float64)
    # electrons^2 at the readout, referred to the input of the EM register
    var = (read / camera.em_gain) ** 2 + 1.0 / 12.0 / (gain * camera.em_gain) ** 2
    return np.broadcast_to(np.asarray(var, np.float64), shape)


def _cut(stack: np.ndarray, t: np.ndarray, y: np.ndarray, x: np.ndarray, r: int
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """ROIs (n, 2r+1, 2r+1), validity weights, and the ROI origins (y0, x0)."""
    _, ny, nx = stack.shape
    offs = np.arange(-r, r + 1)
    rows = y[:, None] + offs
    cols = x[:, None] + offs
    wy = (rows >= 0) & (rows < ny)
    wx = (cols >= 0) & (cols < nx)
    rows_c = np.clip(rows, 0, ny - 1)
    cols_c = np.clip(cols, 0, nx - 1)
    rois = stack[t[:, None, None], rows_c[:, :, None], cols_c[:, None, :]]
    weights = (wy[:, :, None] & wx[:, None, :]).astype(np.float64)
    return rois, weights, y - r, x - r


def _initial(rois: np.ndarray, weights: np.ndarray, r: int) -> tuple[np.ndarray, ...]:
    n = rois.shape[0]
    edge = np.ones(rois.shape[1:], bool)
    edge[1:-1, 1:-1] = False
    vals = np.where(weights > 0, rois, np.nan)[:, edge]
    bg = np.nanmedian(vals, axis=1) if vals.size else np.zeros(n)
    bg = np.nan_to_num(bg, nan=0.0)
    bg = np.maximum(bg, 0.1)
    signal = np.clip(rois - bg[:, None, None], 0, None) * weights
    n_ph = np.maximum(signal.sum(axis=(1, 2)), 10.0)
    centre = np.full(n, r + 0.5)
    return centre, centre.copy(), n_ph, bg


def _z_lookup(calib: AstigmaticCalibration, sx: np.ndarray, sy: np.ndarray) -> np.ndarray:
    """z (nm) whose calibrated widths are closest to (sx, sy) (nm), on a 5 nm grid."""
    zmax = abs(calib.c) + calib.d
    grid = np.arange(-zmax, zmax + 5.0, 5.0)
    gx, gy = calib.sigmas(grid)
    cost = (np.sqrt(sx)[:, None] - np.sqrt(gx)[None]) ** 2 + \
        (np.sqrt(sy)[:, None] - np.sqrt(gy)[None]) ** 2
    return grid[np.argmin(cost, axis=1)]


def localize(frames: Any, *, camera: CameraModel, config: LocalizeConfig | None = None,
             offset_map: Any = None, gain_map: Any = None, read_noise_map: Any = None,
             progress: Progress | None = None) -> Localizations:
    """Localise single molecules in a frame stack by maximum-likelihood fitting.

    Parameters
    ----------
    frames : array_like, shape (T, Y, X) or (Y, X)
        Camera frames in ADU (any real dtype; converted by value). NumPy memmaps, dask and
        zarr arrays are read batch by batch (``frames_per_batch``, at most about 4
        million pixels), so a movie larger than memory can be localised.
    camera : CameraModel
        The camera that recorded them (``CameraModel.ideal()`` for data in photons).
    config : LocalizeConfig, optional
    offset_map, gain_map, read_noise_map : array_like, shape (Y, X), optional
        sCMOS per-pixel maps (ADU, ADU/e-, e- rms). The readout variance (the camera's
        scalar, or this map) enters the likelihood as in Huang et al. (2013).
    progress : callable, optional
        ``progress(done_frames, total_frames)``.

    Returns
    -------
    Localizations
        frame, x, y (nm), z (nm, astigmatic PSF), photons, background (photons/pixel),
        sigma (nm), uncertainty (nm, lateral CRLB), uncertainty_z (nm, 3D); extra columns
        ``log_likelihood_ratio`` and ``detection_score``.

    Notes
    -----
    The reported uncertainty is :math:`\\sqrt{(\\mathrm{CRLB}_x + \\mathrm{CRLB}_y)/2}` in
    nanometres at the fitted parameters, the precision an unbiased estimator reaches at best
    (the MLE reaches it at moderate photon counts, Smith et al. 2010). Two fits in one frame
    closer than half a PSF sigma are duplicates of one molecule; the one with more photons is
    kept. Fits whose centre left the ROI's central pixel by more than ``r`` pixels, with
    non-positive photons or a singular Fisher matrix are dropped.

    Examples
    --------
    >>> from fluorecon.simulate.smlm import SMLMConfig, simulate_frames
    >>> sim = simulate_frames(SMLMConfig(frames=3, shape=(24, 24), density=0.5), seed=0)
    >>> locs = localize(sim.frames, camera=sim.config.camera)
    >>> locs.uncertainty is not None
    True
    """
    cfg = config or LocalizeConfig()
    lazy = hasattr(frames, "shape") and hasattr(frames, "dtype") and \
        hasattr(frames, "__getitem__")
    arr = frames if lazy else np.asarray(frames)  # numpy, memmap, dask, zarr stay lazy
    shape = tuple(int(s) for s in arr.shape)
    if len(shape) == 2:
        arr = arr[None]
        shape = (1,) + shape
    if len(shape) != 3 or min(shape[1:]) < 3:
        raise DataError(message(f"frames of shape {np.shape(frames)}",
                                "a (T, Y, X) stack or one (Y, X) frame of at least 3x3",
                                "Pass the movie with frames first."))
    dtype = np.dtype(arr.dtype)
    if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        raise DataError(message(f"frames of dtype {dtype}", "real camera values",
                                "Pass the raw movie."))
    px = cfg.pixel_size
    psf = cfg.psf
    if psf.is_3d:
        cal = psf.astigmatism
        zlim = abs(cal.c) + cal.d
        sxs, sys_ = cal.sigmas(np.array([-zlim, 0.0, zlim]))
        s0 = float(np.sqrt(sxs[1] * sys_[1])) / px
        s_max = float(max(sxs.max(), sys_.max())) / px
    else:
        s0 = s_max = psf.sigma / px
    r = cfg.roi_radius or max(2, int(np.ceil(3.0 * min(s_max, 2.0 * s0))))
    nt = shape[0]
    var = _readout_variance(camera, shape[1:], gain_map, read_noise_map)
    tables = []
    step = max(1, min(cfg.frames_per_batch, 4_000_000 // (shape[1] * shape[2])))
    for start in range(0, nt, step):
        stop = min(nt, start + step)
        block = np.asarray(arr[start:stop])
        if not np.all(np.isfinite(block)):
            raise DataError(message(f"frames {start}-{stop - 1} with NaN or infinite values",
                                    "finite values", "Check the movie."))
        e = camera_electrons(block, camera, offset_map=offset_map, gain_map=gain_map)
        t, y, x, score = detect_candidates(e, filter=cfg.filter, sigma=s0,
                                           threshold=cfg.threshold)
        if t.size:
            tables.append(_fit_batch(e, t, y, x, score, r, s0, cfg, camera, var, start))
        if progress is not None:
            progress(stop, nt)
    if not tables:
        return _empty(psf.is_3d)
    locs = Localizations.concatenate(tables)
    return _deduplicate(locs, 0.5 * s0 * px)


def _empty(is_3d: bool) -> Localizations:
    e = np.zeros(0)
    return Localizations.build(frame=np.zeros(0, np.int64), x=e, y=e, z=e if is_3d else None,
                               photons=e, background=e, sigma=e, uncertainty=e,
                               uncertainty_z=e if is_3d else None,
                               extra={"log_likelihood_ratio": e, "detection_score": e})


def _fit_batch(e: np.ndarray, t: np.ndarray, y: np.ndarray, x: np.ndarray, score: np.ndarray,
               r: int, s0: float, cfg: LocalizeConfig, camera: CameraModel,
               var: np.ndarray | None, frame0: int) -> Localizations:
    px = cfg.pixel_size
    rois, weights, y0, x0 = _cut(e, t, y, x, r)
    gamma = None
    if var is not None:  # the fit adds gamma to data and mean (Huang et al. 2013)
        gamma, _, _, _ = _cut(var[None], np.zeros_like(t), y, x, r)
    cx, cy, n_ph, bg = _initial(rois, weights, r)
    excess = camera.excess_noise_factor
    common = dict(pixel_size=px, readout_variance=gamma, weights=weights,
                  excess_noise=excess, max_iterations=cfg.max_iterations)
    if cfg.psf.is_3d:
        calib = cfg.psf.astigmatism
        ell = fit_rois(rois, np.stack([cx, cy, n_ph, bg, np.full_like(cx, s0),
                                       np.full_like(cx, s0)], 1), model="elliptical",
                       sigma=s0, **common)
        z0 = _z_lookup(calib, ell.theta[:, 4] * px, ell.theta[:, 5] * px) / px
        th0 = np.stack([ell.theta[:, 0], ell.theta[:, 1], z0, ell.theta[:, 2],
                        ell.theta[:, 3]], 1)
        res = fit_rois(rois, th0, model="astigmatic", sigma=s0, calibration=calib, **common)
        xs, ys, zs, nn, bb = res.theta.T
        sxn, syn = calib.sigmas(zs * px)
        sig = np.sqrt(sxn * syn)
        unc_z = np.sqrt(res.crlb[:, 2]) * px
        i_n = 3
        zmax = (abs(calib.c) + calib.d) / px
        ok_z = np.abs(zs) <= zmax
    else:
        model = "gaussian_sigma" if cfg.fit_sigma else "gaussian"
        th0 = np.stack([cx, cy, n_ph, bg] + ([np.full_like(cx, s0)] if cfg.fit_sigma else []),
                       1)
        res = fit_rois(rois, th0, model=model, sigma=s0, **common)
        xs, ys, nn, bb = res.theta.T[:4]
        sig = (res.theta[:, 4] if cfg.fit_sigma else np.full_like(xs, s0)) * px
        zs = unc_z = None
        i_n = 2
        ok_z = np.ones(xs.shape, bool)
    crlb_xy = 0.5 * (res.crlb[:, 0] + res.crlb[:, 1])
    inside = (np.abs(xs - (r + 0.5)) <= r) & (np.abs(ys - (r + 0.5)) <= r)
    ok = res.converged & inside & ok_z & (res.theta[:, i_n] > 0) & np.isfinite(crlb_xy)
    qe = camera.quantum_efficiency
    xs_nm = (x0 + xs) * px
    ys_nm = (y0 + ys) * px
    loc = Localizations.build(
        frame=t + frame0, x=xs_nm, y=ys_nm,
        z=None if zs is None else zs * px,
        photons=nn / qe, background=np.maximum(bb - camera.dark_current, 0.0) / qe,
        sigma=sig, uncertainty=np.sqrt(np.where(np.isfinite(crlb_xy), crlb_xy, 0.0)) * px,
        uncertainty_z=None if unc_z is None else np.where(np.isfinite(unc_z), unc_z, 0.0),
        extra={"log_likelihood_ratio": res.log_likelihood_ratio, "detection_score": score})
    return loc.select(ok)


def _deduplicate(locs: Localizations, radius_nm: float) -> Localizations:
    if len(locs) < 2:
        return locs
    span = 10.0 * (max(float(locs.x.max()), float(locs.y.max())) + 1e6)
    pts = np.column_stack([locs.x, locs.y, locs.frame * span])
    pairs = cKDTree(pts).query_pairs(radius_nm, output_type="ndarray")
    if pairs.size == 0:
        return locs.sorted()
    keep = np.ones(len(locs), bool)
    assert locs.photons is not None
    order = np.argsort(-locs.photons)  # strongest first
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    weaker = np.where(rank[pairs[:, 0]] > rank[pairs[:, 1]], pairs[:, 0], pairs[:, 1])
    keep[weaker] = False
    return locs.select(keep).sorted()


def calibrate_astigmatism(stack: Any, z_positions: Any, *, camera: CameraModel,
                          pixel_size: float, sigma_guess: float = 130.0,
                          threshold: float = 3.0) -> AstigmaticCalibration:
    """Fit the astigmatic width curves from a z-stack of sparse beads.

    Parameters
    ----------
    stack : array_like, shape (Z, Y, X)
        Bead images (ADU) at stage positions ``z_positions``.
    z_positions : array_like, shape (Z,)
        Nanometres; the bead focus (where the widths are equal) is taken as ``z = 0`` after
        fitting, so the positions need only be correct relative to each other.
    camera : CameraModel
    pixel_size : float
        Nanometres.
    sigma_guess : float
        Approximate in-focus sigma, nm.
    threshold : float
        Detection threshold (multiples of the wavelet noise).

    Returns
    -------
    AstigmaticCalibration

    Notes
    -----
    Every bead in every plane is fitted with a free elliptical Gaussian (MLE); the widths
    ``sigma_x(z)``, ``sigma_y(z)`` of all beads are then fitted by least squares with the
    model of :class:`~fluorecon.simulate.smlm.AstigmaticCalibration` (shared ``d``, offset
    ``z_0`` removed so that the foci sit at ``+-c``).
    """
    e = camera_electrons(stack, camera)
    zs = np.asarray(z_positions, np.float64).ravel()
    if e.ndim != 3 or e.shape[0] != zs.size or zs.size < 7:
        raise DataError(message(f"a stack of shape {np.shape(stack)} with {zs.size} z "
                                "positions", "(Z, Y, X) with one z per plane, Z >= 7",
                                "Pass the bead z-stack and its stage positions."))
    s0 = sigma_guess / pixel_size
    t, y, x, score = detect_candidates(e, sigma=s0, threshold=threshold)
    if t.size == 0:
        raise DataError(message("a bead stack without detectable beads", "bright beads",
                                "Lower threshold or check the camera model."))
    r = max(3, int(np.ceil(4 * s0)))
    rois, weights, _, _ = _cut(e, t, y, x, r)
    cx, cy, n_ph, bg = _initial(rois, weights, r)
    res = fit_rois(rois, np.stack([cx, cy, n_ph, bg, np.full_like(cx, s0),
                                   np.full_like(cx, s0)], 1), model="elliptical", sigma=s0,
                   weights=weights, pixel_size=pixel_size)
    ok = res.converged & (res.theta[:, 2] > 0)
    z = zs[t[ok]]
    sx = res.theta[ok, 4] * pixel_size
    sy = res.theta[ok, 5] * pixel_size
    if z.size < 7:
        raise DataError(message(f"{z.size} good bead fits", "at least 7", "Record more "
                                "planes or brighter beads."))

    def both(zz: np.ndarray, s0x: float, s0y: float, c: float, d: float, z0: float,
             ax: float, bx: float, ay: float, by: float) -> np.ndarray:
        cal = AstigmaticCalibration(sigma0_x=abs(s0x), sigma0_y=abs(s0y), c=c, d=abs(d),
                                    a_x=ax, b_x=bx, a_y=ay, b_y=by)
        n = zz.size // 2
        gx, _ = cal.sigmas(zz[:n] - z0)
        _, gy = cal.sigmas(zz[n:] - z0)
        return np.concatenate([gx, gy])

    zmid = float(z[np.argmin(np.abs(sx - sy))])
    span = float(np.ptp(zs)) or 1.0
    p0 = [float(sx.min()), float(sy.min()), float(z[np.argmin(sx)] - z[np.argmin(sy)]) / 2,
          span / 3, zmid, 0.0, 0.0, 0.0, 0.0]
    try:
        popt, _ = curve_fit(both, np.concatenate([z, z]), np.concatenate([sx, sy]), p0=p0,
                            maxfev=20000)
    except (RuntimeError, ValueError):
        raise DataError(message("bead widths that the astigmatic model does not fit",
                                "an astigmatic bead stack spanning both foci",
                                "Record a wider z range.")) from None
    return AstigmaticCalibration(sigma0_x=abs(popt[0]), sigma0_y=abs(popt[1]), c=popt[2],
                                 d=abs(popt[3]), a_x=popt[5], b_x=popt[6], a_y=popt[7],
                                 b_y=popt[8])
