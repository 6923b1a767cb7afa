"""Post-processing of localisation tables: rendering, merging, drift correction, filters.

References
----------
.. [1] Y. Wang et al., "Localization events-based sample drift correction for localization
   microscopy with redundant cross-correlation algorithm", Opt. Express 22, 15982 (2014).
.. [2] M. Ovesný et al., "ThunderSTORM", Bioinformatics 30, 2389-2390 (2014) (merging,
   Gaussian rendering).
.. [3] R. P. J. Nieuwenhuizen et al., "Measuring image resolution in optical nanoscopy",
   Nat. Methods 10, 557-562 (2013) (FRC of renderings, see :mod:`fluorecon.metrics.smlm`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from fluorecon.core.errors import ConfigError, DataError, message
from fluorecon.simulate.smlm import Localizations, integrated_gaussian

__all__ = ["DriftResult", "apply_drift", "drift_rcc", "filter_localizations",
           "merge_localizations", "render_gaussian", "render_histogram"]

Progress = Callable[[int, int], None]


def _grid(locs: Localizations, pixel_size: float, shape: tuple[int, int] | None,
          field_nm: tuple[float, float] | None) -> tuple[int, int]:
    if pixel_size <= 0:
        raise ConfigError(message(f"render pixel size {pixel_size}", "a positive size in nm",
                                  "Use e.g. 10 nm."))
    if shape is not None:
        return int(shape[0]), int(shape[1])
    if field_nm is not None:
        return (int(math.ceil(field_nm[0] / pixel_size)),
                int(math.ceil(field_nm[1] / pixel_size)))
    if len(locs) == 0:
        raise DataError(message("an empty table and no field size", "localisations or "
                                "field_nm", "Pass field_nm=(height, width)."))
    return (int(math.ceil(locs.y.max() / pixel_size)) + 1,
            int(math.ceil(locs.x.max() / pixel_size)) + 1)


def render_histogram(locs: Localizations, *, pixel_size: float = 10.0,
                     field_nm: tuple[float, float] | None = None,
                     shape: tuple[int, int] | None = None) -> np.ndarray:
    """2D histogram of localisations: counts per render pixel.

    Parameters
    ----------
    locs : Localizations
    pixel_size : float
        Render pixel size, nm.
    field_nm : (height, width), optional
        Field in nm (default: the extent of the localisations).
    shape : (Y, X), optional
        Output shape (overrides ``field_nm``).

    Returns
    -------
    ndarray of float32, shape (Y, X)
        Render pixel ``(i, j)`` counts localisations with ``y`` in
        ``[i * pixel_size, (i + 1) * pixel_size)`` and ``x`` likewise.
    """
    ny, nx = _grid(locs, pixel_size, shape, field_nm)
    iy = np.floor(locs.y / pixel_size).astype(np.int64)
    ix = np.floor(locs.x / pixel_size).astype(np.int64)
    ok = (iy >= 0) & (iy < ny) & (ix >= 0) & (ix < nx)
    out = np.bincount(iy[ok] * nx + ix[ok], minlength=ny * nx).reshape(ny, nx)
    return out.astype(np.float32)


def render_gaussian(locs: Localizations, *, pixel_size: float = 10.0,
                    field_nm: tuple[float, float] | None = None,
                    shape: tuple[int, int] | None = None, sigma: float | None = None,
                    min_sigma: float | None = None) -> np.ndarray:
    """Render every localisation as a normalised Gaussian of its uncertainty.

    Parameters
    ----------
    locs : Localizations
    pixel_size : float
        Render pixel size, nm.
    field_nm, shape : optional
        As in :func:`render_histogram`.
    sigma : float, optional
        One width for all (nm); default each row's ``uncertainty``.
    min_sigma : float, optional
        Lower bound of the widths, nm (default half a render pixel), so that very precise
        localisations are not lost between pixels.

    Returns
    -------
    ndarray of float32, shape (Y, X)
        Sum of unit-mass Gaussians integrated over render pixels: the image sums to the
        number of localisations inside the field (minus the tails outside it).
    """
    ny, nx = _grid(locs, pixel_size, shape, field_nm)
    out = np.zeros((ny, nx), np.float64)
    if len(locs) == 0:
        return out.astype(np.float32)
    if sigma is None:
        if locs.uncertainty is None:
            raise DataError(message("a table without uncertainty", "an uncertainty column "
                                    "or a fixed sigma", "Pass sigma=... (nm)."))
        s = locs.uncertainty.copy()
    else:
        s = np.full(len(locs), float(sigma))
    s = np.maximum(s, 0.5 * pixel_size if min_sigma is None else min_sigma) / pixel_size
    cx, cy = locs.x / pixel_size, locs.y / pixel_size
    half = int(math.ceil(4 * float(np.percentile(s, 99)))) + 1
    s = np.minimum(s, half / 4.0)  # the widest 1 % are clipped to the 4-sigma window
    offs = np.arange(-half, half + 1)
    chunk = max(1, 400_000 // (2 * half + 1) ** 2)
    for start in range(0, len(locs), chunk):
        sl = slice(start, start + chunk)
        kx = np.floor(cx[sl]).astype(np.int64)[:, None] + offs
        ky = np.floor(cy[sl]).astype(np.int64)[:, None] + offs
        vals = integrated_gaussian(cy[sl], s[sl], ky)[:, :, None] * \
            integrated_gaussian(cx[sl], s[sl], kx)[:, None, :]
        yy = np.broadcast_to(ky[:, :, None], vals.shape)
        xx = np.broadcast_to(kx[:, None, :], vals.shape)
        ok = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
        out += np.bincount(yy[ok] * nx + xx[ok], vals[ok], minlength=ny * nx).reshape(ny, nx)
    return out.astype(np.float32)


def filter_localizations(locs: Localizations, *, min_photons: float | None = None,
                         max_photons: float | None = None,
                         max_uncertainty: float | None = None,
                         sigma_range: tuple[float, float] | None = None,
                         z_range: tuple[float, float] | None = None,
                         frames: tuple[int, int] | None = None) -> Localizations:
    """Keep the rows inside every given bound (inclusive); a missing column is an error.

    Parameters
    ----------
    min_photons, max_photons : float, optional
    max_uncertainty : float, optional
        Lateral uncertainty bound, nm.
    sigma_range : (low, high), optional
        PSF width bounds, nm (rejects out-of-focus or overlapping molecules).
    z_range : (low, high), optional
        nm.
    frames : (first, last), optional
        Frame range, counted from 0, inclusive.
    """
    keep = np.ones(len(locs), bool)

    def col(name: str) -> np.ndarray:
        v = getattr(locs, name)
        if v is None:
            raise DataError(message(f"a filter on {name!r} for a table without it",
                                    f"a {name} column", "Drop that filter."))
        return v

    if min_photons is not None:
        keep &= col("photons") >= min_photons
    if max_photons is not None:
        keep &= col("photons") <= max_photons
    if max_uncertainty is not None:
        keep &= col("uncertainty") <= max_uncertainty
    if sigma_range is not None:
        keep &= (col("sigma") >= sigma_range[0]) & (col("sigma") <= sigma_range[1])
    if z_range is not None:
        keep &= (col("z") >= z_range[0]) & (col("z") <= z_range[1])
    if frames is not None:
        keep &= (locs.frame >= frames[0]) & (locs.frame <= frames[1])
    return locs.select(keep)


def merge_localizations(locs: Localizations, *, radius: float = 50.0, max_gap: int = 1,
                        max_frames: int | None = None) -> Localizations:
    """Merge localisations of one molecule that stays on over consecutive frames.

    Parameters
    ----------
    locs : Localizations
    radius : float
        Largest distance (nm, lateral) between a localisation and its track's last one.
    max_gap : int
        Frames a track may skip (1: only consecutive frames link; ThunderSTORM's
        "off frames" + 1).
    max_frames : int, optional
        Longest track, in frames (None: unlimited).

    Returns
    -------
    Localizations
        One row per track: position the inverse-variance weighted mean (the plain mean
        without uncertainties), ``photons`` summed, ``background`` averaged, ``frame`` the
        first frame, ``uncertainty`` ``1 / sqrt(sum 1 / u^2)``, extra column ``n_merged``.

    Notes
    -----
    Greedy nearest-neighbour linking frame by frame (ThunderSTORM's merging): each
    localisation joins the nearest still-open track whose last localisation is within
    ``radius`` and at most ``max_gap`` frames earlier, each track taking at most one
    localisation per frame.
    """
    if max_gap < 1 or radius <= 0:
        raise ConfigError(message(f"radius={radius}, max_gap={max_gap}",
                                  "radius > 0 and max_gap >= 1", "Fix the values."))
    s = locs.sorted()
    n = len(s)
    if n == 0:
        return s.with_columns(extra={"n_merged": np.zeros(0)})
    track = np.full(n, -1, np.int64)
    last_pos = np.zeros((0, 2))
    last_frame = np.zeros(0, np.int64)
    first_frame = np.zeros(0, np.int64)
    bounds = np.flatnonzero(np.diff(s.frame)) + 1
    starts = np.concatenate([[0], bounds])
    stops = np.concatenate([bounds, [n]])
    n_tracks = 0
    open_ids = np.zeros(0, np.int64)
    for a, b in zip(starts, stops):
        f = int(s.frame[a])
        pts = np.column_stack([s.x[a:b], s.y[a:b]])
        alive = (f - last_frame[open_ids] <= max_gap)
        if max_frames is not None:
            alive &= (f - first_frame[open_ids] < max_frames)
        open_ids = open_ids[alive]
        assigned = np.full(b - a, -1, np.int64)
        if open_ids.size:
            d, j = cKDTree(last_pos[open_ids]).query(pts, k=1, distance_upper_bound=radius)
            order = np.argsort(d)
            used: set[int] = set()
            for i in order:
                if not np.isfinite(d[i]):
                    break
                tid = int(open_ids[j[i]])
                if tid not in used:
                    used.add(tid)
                    assigned[i] = tid
        new = assigned < 0
        k = int(new.sum())
        assigned[new] = np.arange(n_tracks, n_tracks + k)
        n_tracks += k
        last_pos = np.concatenate([last_pos, np.zeros((k, 2))])
        last_frame = np.concatenate([last_frame, np.zeros(k, np.int64)])
        first_frame = np.concatenate([first_frame, np.full(k, f, np.int64)])
        last_pos[assigned] = pts
        last_frame[assigned] = f
        track[a:b] = assigned
        open_ids = np.union1d(open_ids, assigned)
    w = np.ones(n) if s.uncertainty is None else 1.0 / np.maximum(s.uncertainty, 1e-6) ** 2
    wsum = np.bincount(track, w, n_tracks)
    count = np.bincount(track, minlength=n_tracks).astype(np.float64)

    def wmean(v: np.ndarray) -> np.ndarray:
        return np.bincount(track, w * v, n_tracks) / wsum

    first = np.full(n_tracks, np.iinfo(np.int64).max)
    np.minimum.at(first, track, s.frame)
    cols: dict[str, object] = {"frame": first, "x": wmean(s.x), "y": wmean(s.y)}
    if s.z is not None:
        wz = np.ones(n) if s.uncertainty_z is None else \
            1.0 / np.maximum(s.uncertainty_z, 1e-6) ** 2
        cols["z"] = np.bincount(track, wz * s.z, n_tracks) / np.bincount(track, wz, n_tracks)
        if s.uncertainty_z is not None:
            cols["uncertainty_z"] = 1.0 / np.sqrt(np.bincount(track, wz, n_tracks))
    if s.photons is not None:
        cols["photons"] = np.bincount(track, s.photons, n_tracks)
    if s.background is not None:
        cols["background"] = np.bincount(track, s.background, n_tracks) / count
    if s.sigma is not None:
        cols["sigma"] = np.bincount(track, s.sigma, n_tracks) / count
    if s.uncertainty is not None:
        cols["uncertainty"] = 1.0 / np.sqrt(wsum)
    out = Localizations.build(extra={"n_merged": count}, **cols)  # type: ignore[arg-type]
    return out.sorted()


@dataclass(frozen=True)
class DriftResult:
    """Drift estimated by :func:`drift_rcc`.

    Attributes
    ----------
    drift : ndarray, shape (n_frames, 2)
        ``(dx, dy)`` in nm of every frame relative to frame 0 (subtract to correct).
    segment_centres : ndarray, shape (n_segments,)
        Frame at the centre of each segment.
    segment_drift : ndarray, shape (n_segments, 2)
        Least-squares drift of each segment (nm), the first at 0.
    residual : float
        RMS residual (nm) of the pairwise shifts kept in the least-squares solution.
    """

    drift: np.ndarray
    segment_centres: np.ndarray
    segment_drift: np.ndarray
    residual: float


def _peak_shift(a: np.ndarray, b: np.ndarray, max_shift: int) -> np.ndarray:
    """Shift (dy, dx) in pixels of ``b`` relative to ``a`` from the cross-correlation peak."""
    fa = np.fft.rfft2(a - a.mean())
    fb = np.fft.rfft2(b - b.mean())
    cc = np.fft.fftshift(np.fft.irfft2(np.conj(fa) * fb, s=a.shape))
    cy, cx = a.shape[0] // 2, a.shape[1] // 2
    win = cc[cy - max_shift:cy + max_shift + 1, cx - max_shift:cx + max_shift + 1]
    iy, ix = np.unravel_index(int(np.argmax(win)), win.shape)
    # sub-pixel: centroid of the 5x5 neighbourhood above its minimum
    y0, x0 = max(iy - 2, 0), max(ix - 2, 0)
    nb = win[y0:iy + 3, x0:ix + 3]
    nb = nb - nb.min()
    tot = nb.sum()
    if tot <= 0:
        return np.array([iy - max_shift, ix - max_shift], np.float64)
    gy, gx = np.mgrid[y0:y0 + nb.shape[0], x0:x0 + nb.shape[1]]
    return np.array([(gy * nb).sum() / tot - max_shift, (gx * nb).sum() / tot - max_shift])


def drift_rcc(locs: Localizations, *, segments: int = 10, pixel_size: float = 20.0,
              max_drift: float = 1000.0, outlier: float | None = None,
              field_nm: tuple[float, float] | None = None, smooth: float = 20.0,
              n_frames: int | None = None, progress: Progress | None = None) -> DriftResult:
    """Lateral drift by redundant cross-correlation (RCC, Wang et al. 2014).

    Parameters
    ----------
    locs : Localizations
    segments : int
        Number of time segments (at least 3); each is rendered as a histogram.
    pixel_size : float
        Render pixel size of the cross-correlations, nm.
    max_drift : float
        Largest drift between any two segments searched, nm.
    outlier : float, optional
        Pairwise shifts whose least-squares residual exceeds this (nm) are dropped and the
        system solved again (default ``2 * pixel_size``).
    field_nm : (height, width), optional
    smooth : float
        Gaussian blur of the segment renderings (sigma, nm) before correlating; about the
        localisation precision (0: none).
    n_frames : int, optional
        Frames of the movie (default ``locs.n_frames``).
    progress : callable, optional
        ``progress(done_pairs, total_pairs)``.

    Returns
    -------
    DriftResult

    Notes
    -----
    All ``S (S - 1) / 2`` segment pairs are cross-correlated; the shifts ``r_ij`` are the
    overdetermined linear system ``r_ij = d_j - d_i`` (with ``d_0 = 0``), solved by least
    squares, once more without the pairs whose residual exceeds ``outlier``. The segment
    drifts are interpolated linearly (extrapolated flat) to every frame.
    """
    if segments < 3:
        raise ConfigError(message(f"segments={segments}", "at least 3", "Use more segments."))
    nt = locs.n_frames if n_frames is None else int(n_frames)
    if len(locs) == 0 or nt < segments:
        raise DataError(message(f"{len(locs)} localisations over {nt} frames",
                                f"localisations in at least {segments} frames",
                                "Use fewer segments."))
    edges = np.linspace(0, nt, segments + 1).round().astype(np.int64)
    fld = field_nm or (float(locs.y.max()) + pixel_size, float(locs.x.max()) + pixel_size)
    shape = _grid(locs, pixel_size, None, fld)
    # pad to a size with room for the largest shift (no wrap-around)
    ms = int(math.ceil(max_drift / pixel_size))
    pshape = (shape[0] + 2 * ms, shape[1] + 2 * ms)
    imgs = []
    for i in range(segments):
        sel = locs.select((locs.frame >= edges[i]) & (locs.frame < edges[i + 1]))
        img = np.zeros(pshape, np.float64)
        img[ms:ms + shape[0], ms:ms + shape[1]] = render_histogram(sel, pixel_size=pixel_size,
                                                                   shape=shape)
        imgs.append(ndimage.gaussian_filter(img, smooth / pixel_size) if smooth > 0 else img)
    pairs = [(i, j) for i in range(segments) for j in range(i + 1, segments)]
    rows = np.zeros((len(pairs), segments - 1))
    shifts = np.zeros((len(pairs), 2))
    for k, (i, j) in enumerate(pairs):
        dy, dx = _peak_shift(imgs[i], imgs[j], min(ms, min(pshape) // 2 - 3))
        shifts[k] = (dx * pixel_size, dy * pixel_size)
        if i > 0:
            rows[k, i - 1] = -1.0
        rows[k, j - 1] = 1.0
        if progress is not None:
            progress(k + 1, len(pairs))
    thr = 2.0 * pixel_size if outlier is None else float(outlier)
    keep = np.ones(len(pairs), bool)
    sol = np.zeros((segments - 1, 2))
    for _ in range(2):
        sol, *_ = np.linalg.lstsq(rows[keep], shifts[keep], rcond=None)
        err = np.linalg.norm(rows @ sol - shifts, axis=1)
        new_keep = err <= thr
        # never drop a segment entirely: keep its best pair
        for s_ in range(segments - 1):
            involved = rows[:, s_] != 0
            if not np.any(new_keep & involved):
                new_keep[np.flatnonzero(involved)[np.argmin(err[involved])]] = True
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    sol, *_ = np.linalg.lstsq(rows[keep], shifts[keep], rcond=None)
    resid = float(np.sqrt(np.mean(np.sum((rows[keep] @ sol - shifts[keep]) ** 2, 1))))
    seg = np.vstack([np.zeros((1, 2)), sol])
    centres = 0.5 * (edges[:-1] + edges[1:] - 1)
    frames = np.arange(nt)
    drift = np.column_stack([np.interp(frames, centres, seg[:, 0]),
                             np.interp(frames, centres, seg[:, 1])])
    drift -= drift[0]
    seg = seg - np.array([np.interp(0, centres, seg[:, 0]), np.interp(0, centres, seg[:, 1])])
    return DriftResult(drift=drift, segment_centres=centres, segment_drift=seg, residual=resid)


def apply_drift(locs: Localizations, drift: DriftResult | np.ndarray) -> Localizations:
    """Subtract the per-frame drift ``(dx, dy)`` (nm) from every localisation."""
    d = drift.drift if isinstance(drift, DriftResult) else np.asarray(drift, np.float64)
    if len(locs) and (d.ndim != 2 or d.shape[1] != 2 or d.shape[0] <= locs.frame.max()):
        raise DataError(message(f"a drift of shape {d.shape} for frames up to "
                                f"{locs.n_frames - 1}", "one (dx, dy) per frame",
                                "Estimate the drift on this table."))
    return locs.with_columns(x=locs.x - d[locs.frame, 0], y=locs.y - d[locs.frame, 1])
