"""Lenslet-grid calibration and rectification of raw light-field images.

A raw light-field frame shows one small image of the objective pupil behind every lenslet,
on a lattice whose pitch in camera pixels is rarely an integer (``100 um / 6.5 um = 15.38``
pixels for a 100 um lenslet array imaged 1:1 onto a 6.5 um sCMOS) and which is slightly
rotated against the sensor. The forward model and the reconstructions in fluorecon work on
a *rectified* image: lenslets aligned with the pixel grid, ``N`` (odd) samples per lenslet
along each axis. This module

1. finds the lattice from a radiometry (flat-field) frame: the fundamental peaks of the
   periodic lenslet pattern in the Fourier transform (pitch and rotation to a fraction of a
   percent), the phases of those Fourier coefficients (the offset), then the centre of every
   lenslet image by a thresholded centroid and a least-squares lattice fit to all of them
   (:func:`calibrate_lenslet_grid`);
2. resamples raw frames onto the integer-pitch grid with cubic interpolation
   (:func:`scipy.ndimage.map_coordinates`), after dark subtraction and with flat-field
   normalisation by the radiometry frame (:func:`rectify_lightfield`).

Coordinates are camera pixel coordinates ``(y, x)`` with pixel centres at integers.

References
----------
.. [1] M. Levoy, R. Ng, A. Adams, M. Footer, M. Horowitz, "Light field microscopy",
   ACM Trans. Graph. 25(3), 924-934, 2006 (LFDisplay calibration).
.. [2] M. Broxton et al., "Wave optics theory and 3-D deconvolution for the light field
   microscope", Opt. Express 21(21), 25418-25439, 2013.
.. [3] napari-LF (Schlafly, Verma, Oldenbourg): radiometry and dark frames for calibration.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from fluorecon.core.dtypes import as_float32, check_image_array
from fluorecon.core.errors import ConfigError, DataError, message

__all__ = ["LensletGrid", "calibrate_lenslet_grid", "rectify_lightfield"]


@dataclass(frozen=True)
class LensletGrid:
    """A lenslet lattice in camera pixel coordinates.

    Lenslet ``(i, j)`` (row ``i``, column ``j``; ``0 <= i < shape[0]``,
    ``0 <= j < shape[1]``) is centred at ``offset + i * basis[0] + j * basis[1]``.

    Attributes
    ----------
    basis : ndarray, shape (2, 2)
        Rows: the lattice vectors ``(dy, dx)`` in camera pixels from one lenslet centre to
        the next one down (``basis[0]``) and to the right (``basis[1]``).
    offset : ndarray, shape (2,)
        Centre ``(y, x)`` of lenslet ``(0, 0)``, the top-left lenslet whose whole block
        (one pitch square around its centre) lies inside the image.
    shape : (int, int)
        Whole lenslets (rows, columns) inside ``image_shape``.
    image_shape : (int, int)
        Shape of the calibrated camera frames.
    residual : float
        RMS distance of the measured lenslet centres from the fitted lattice, pixels.
    n_fitted : int
        Number of lenslet centres used in the lattice fit.
    """

    basis: np.ndarray
    offset: np.ndarray
    shape: tuple[int, int]
    image_shape: tuple[int, int]
    residual: float = 0.0
    n_fitted: int = 0

    def __post_init__(self) -> None:
        b = np.asarray(self.basis, dtype=np.float64)
        o = np.asarray(self.offset, dtype=np.float64)
        if b.shape != (2, 2) or o.shape != (2,) or not np.all(np.isfinite(b)) \
                or not np.all(np.isfinite(o)) or abs(np.linalg.det(b)) < 1.0:
            raise ConfigError(message(f"a lenslet grid with basis {b.tolist()} and offset "
                                      f"{o.tolist()}", "a finite 2 x 2 basis of area >= 1 "
                                      "pixel and a finite (y, x) offset",
                                      "Recalibrate from the radiometry frame."))
        if len(self.shape) != 2 or min(self.shape) < 1 or len(self.image_shape) != 2:
            raise ConfigError(message(f"grid shape {self.shape}, image shape "
                                      f"{self.image_shape}", "at least one whole lenslet",
                                      "Recalibrate from a larger radiometry frame."))
        object.__setattr__(self, "basis", b)
        object.__setattr__(self, "offset", o)
        object.__setattr__(self, "shape", (int(self.shape[0]), int(self.shape[1])))
        object.__setattr__(self, "image_shape",
                           (int(self.image_shape[0]), int(self.image_shape[1])))

    @property
    def pitch(self) -> tuple[float, float]:
        """Lenslet pitch along the rows' and columns' lattice vectors, camera pixels."""
        return float(np.hypot(*self.basis[0])), float(np.hypot(*self.basis[1]))

    @property
    def rotation(self) -> float:
        """Angle of the lenslet rows against the camera x axis, degrees (counter-clockwise
        in ``(x, y)`` with y pointing down means positive ``dy`` along a row)."""
        return float(np.degrees(np.arctan2(self.basis[1, 0], self.basis[1, 1])))

    @property
    def shear(self) -> float:
        """Deviation of the angle between the two lattice vectors from 90 degrees."""
        a, b = self.basis
        cos = float(np.dot(a, b) / (np.hypot(*a) * np.hypot(*b)))
        return float(np.degrees(np.arccos(np.clip(cos, -1, 1)))) - 90.0

    def centres(self) -> np.ndarray:
        """Centres of all whole lenslets, shape ``(rows, cols, 2)``, ``(y, x)`` pixels."""
        i = np.arange(self.shape[0])[:, None, None]
        j = np.arange(self.shape[1])[None, :, None]
        return self.offset + i * self.basis[0] + j * self.basis[1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (round-trips through :meth:`from_dict`)."""
        return {"basis_px": self.basis.tolist(), "offset_px": self.offset.tolist(),
                "shape": list(self.shape), "image_shape": list(self.image_shape),
                "pitch_px": list(self.pitch), "rotation_deg": self.rotation,
                "shear_deg": self.shear, "residual_px": self.residual,
                "n_fitted": self.n_fitted}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LensletGrid":
        """Grid from :meth:`to_dict` output (derived fields are ignored)."""
        try:
            return cls(np.asarray(data["basis_px"], float), np.asarray(data["offset_px"], float),
                       tuple(data["shape"]), tuple(data["image_shape"]),  # type: ignore[arg-type]
                       float(data.get("residual_px", 0.0)), int(data.get("n_fitted", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(message(f"a grid description ({exc})",
                                      "basis_px, offset_px, shape and image_shape",
                                      "Use a file written by `fluorecon lightfield calibrate`.")
                              ) from None


def _as_frame(image: Any, name: str) -> np.ndarray:
    check_image_array(image, name=name)
    arr = as_float32(image).astype(np.float64)
    if arr.ndim != 2 or min(arr.shape) < 32:
        raise DataError(message(f"{name} of shape {arr.shape}", "a 2D frame of at least 32x32",
                                "Pass one camera frame (Y, X)."))
    return arr


def _subpixel(values: np.ndarray, iy: int, ix: int) -> tuple[float, float]:
    """Parabolic peak offset on the log values around an interior maximum."""
    out = []
    for lo, c, hi in ((values[iy - 1, ix], values[iy, ix], values[iy + 1, ix]),
                      (values[iy, ix - 1], values[iy, ix], values[iy, ix + 1])):
        lo, c, hi = (np.log(max(v, 1e-300)) for v in (lo, c, hi))
        den = lo - 2 * c + hi
        out.append(float(np.clip(0.5 * (lo - hi) / den, -0.5, 0.5)) if den < 0 else 0.0)
    return out[0], out[1]


def _fourier_lattice(img: np.ndarray, pitch_range: tuple[float, float]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Reciprocal lattice vectors ``g`` (rows, cycles/pixel, ``(gy, gx)``) from the two
    strongest, roughly perpendicular fundamental peaks of the windowed power spectrum, and
    the offset from the phases of the lattice's Fourier coefficients."""
    ny, nx = img.shape
    win = np.hanning(ny)[:, None] * np.hanning(nx)[None, :]
    x = (img - img.mean()) * win
    # Zero-pad 2x for finer peak sampling.
    spec = np.abs(np.fft.fft2(x, s=(2 * ny, 2 * nx)))
    fy = np.fft.fftfreq(2 * ny)[:, None]
    fx = np.fft.fftfreq(2 * nx)[None, :]
    fr = np.hypot(fy, fx)
    band = (fr >= 1.0 / pitch_range[1]) & (fr <= 1.0 / pitch_range[0])
    half = (fx > 0) | ((fx == 0) & (fy > 0))
    cand = np.where(band & half, spec, 0.0)
    if not np.any(cand > 0):
        raise DataError(message("no periodic lenslet pattern in the radiometry frame",
                                f"lenslet pitch between {pitch_range[0]} and {pitch_range[1]} "
                                "pixels", "Check the frame, or pass pitch_guess."))

    def peak(score: np.ndarray) -> np.ndarray:
        iy, ix = np.unravel_index(int(np.argmax(score)), score.shape)
        iy = min(max(int(iy), 1), 2 * ny - 2)
        ix = min(max(int(ix), 1), 2 * nx - 2)
        dy, dx = _subpixel(spec, iy, ix)
        sy = ((iy + ny) % (2 * ny) - ny + dy) / (2 * ny)
        sx = ((ix + nx) % (2 * nx) - nx + dx) / (2 * nx)
        return np.array([sy, sx])

    g1 = peak(cand)
    ang = np.arctan2(fy, fx)
    a1 = math.atan2(g1[0], g1[1])
    dang = np.abs(np.angle(np.exp(1j * (ang - a1 - np.pi / 2))))
    dang = np.minimum(dang, np.abs(np.angle(np.exp(1j * (ang - a1 + np.pi / 2)))))
    ratio = fr / np.hypot(*g1)
    g2 = peak(np.where(band & (dang < np.radians(15)) & (np.abs(ratio - 1) < 0.2), spec, 0.0))
    if abs(float(g1[0] * g2[1] - g1[1] * g2[0])) < 1e-9:
        raise DataError(message("one lattice direction only in the radiometry frame",
                                "a 2D lenslet array", "Check the radiometry frame."))
    # Order: g_row mostly along y, g_col mostly along x, both pointing positive.
    gs = sorted([g1, g2], key=lambda g: -abs(g[0]))
    g_row = gs[0] * np.sign(gs[0][0])
    g_col = gs[1] * np.sign(gs[1][1])
    g = np.stack([g_row, g_col])
    # Offset from the phases of the exact (DTFT) Fourier coefficients at g: a symmetric
    # lenslet image centred at r0 has coefficient |s(g)| exp(-2 pi i g.r0).
    yy = np.arange(ny)[:, None]
    xx = np.arange(nx)[None, :]
    phases = np.array([np.angle(np.sum(x * np.exp(-2j * np.pi * (gk[0] * yy + gk[1] * xx))))
                       for gk in g])
    r0 = np.linalg.solve(g, -phases / (2 * np.pi))
    return g, r0


def _centroids(img: np.ndarray, basis: np.ndarray, r0: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Thresholded-centroid centre of every lenslet image fully inside the frame.

    Returns lattice indices ``(n, 2)`` and measured centres ``(n, 2)``.
    """
    ny, nx = img.shape
    inv = np.linalg.inv(basis.T)
    corners = np.array([[0, 0], [0, nx - 1], [ny - 1, 0], [ny - 1, nx - 1]], float)
    ij = (corners - r0) @ inv.T
    lo = np.floor(ij.min(axis=0)).astype(int) - 1
    hi = np.ceil(ij.max(axis=0)).astype(int) + 1
    pitch = float(np.sqrt(abs(np.linalg.det(basis))))
    half = int(math.ceil(0.5 * pitch))
    rad = 0.5 * pitch
    idx, cen = [], []
    for i in range(lo[0], hi[0] + 1):
        for j in range(lo[1], hi[1] + 1):
            c = r0 + i * basis[0] + j * basis[1]
            for _ in range(3):
                cy, cx = int(round(c[0])), int(round(c[1]))
                if cy - half < 0 or cx - half < 0 or cy + half >= ny or cx + half >= nx:
                    break
                block = img[cy - half:cy + half + 1, cx - half:cx + half + 1]
                yy, xx = np.mgrid[cy - half:cy + half + 1, cx - half:cx + half + 1]
                inside = np.hypot(yy - c[0], xx - c[1]) <= rad
                vals = block[inside]
                thr = 0.5 * (float(vals.max()) + float(vals.min()))
                w = np.clip(block - thr, 0, None) * inside
                tot = float(w.sum())
                if tot <= 0:
                    break
                c = np.array([float((w * yy).sum()) / tot, float((w * xx).sum()) / tot])
            else:
                idx.append((i, j))
                cen.append(c)
    return np.asarray(idx, float).reshape(-1, 2), np.asarray(cen, float).reshape(-1, 2)


def _fit_lattice(idx: np.ndarray, cen: np.ndarray) -> tuple[np.ndarray, np.ndarray, float,
                                                             np.ndarray]:
    """Robust least-squares lattice ``c = r0 + i a_row + j a_col``."""
    keep = np.ones(len(idx), dtype=bool)
    for _ in range(3):
        design = np.column_stack([np.ones(keep.sum()), idx[keep]])
        coef, *_ = np.linalg.lstsq(design, cen[keep], rcond=None)
        pred = np.column_stack([np.ones(len(idx)), idx]) @ coef
        err = np.hypot(*(cen - pred).T)
        mad = 1.4826 * float(np.median(np.abs(err[keep] - np.median(err[keep]))))
        new = err <= max(np.median(err[keep]) + 4 * mad, 0.25)
        if np.array_equal(new, keep) or new.sum() < 6:
            break
        keep = new
    design = np.column_stack([np.ones(keep.sum()), idx[keep]])
    coef, *_ = np.linalg.lstsq(design, cen[keep], rcond=None)
    pred = design @ coef
    rms = float(np.sqrt(np.mean(np.sum((cen[keep] - pred) ** 2, axis=1))))
    return coef[1:], coef[0], rms, keep


def _whole_lenslets(basis: np.ndarray, r0: np.ndarray, image_shape: tuple[int, int]
                    ) -> tuple[np.ndarray, tuple[int, int]]:
    """Largest index rectangle of lenslets whose pitch square lies inside the image."""
    ny, nx = image_shape
    inv = np.linalg.inv(basis.T)
    corners = np.array([[0, 0], [0, nx - 1], [ny - 1, 0], [ny - 1, nx - 1]], float)
    ij = (corners - r0) @ inv.T
    i_lo, j_lo = np.floor(ij.min(axis=0)).astype(int) - 1
    i_hi, j_hi = np.ceil(ij.max(axis=0)).astype(int) + 1
    ii, jj = np.mgrid[i_lo:i_hi + 1, j_lo:j_hi + 1]
    c = r0 + ii[..., None] * basis[0] + jj[..., None] * basis[1]
    ok = np.ones(ii.shape, dtype=bool)
    for sy in (-0.5, 0.5):
        for sx in (-0.5, 0.5):
            p = c + sy * basis[0] + sx * basis[1]
            ok &= (p[..., 0] >= -0.5) & (p[..., 0] <= ny - 0.5) & (p[..., 1] >= -0.5) \
                & (p[..., 1] <= nx - 0.5)
    rows = np.nonzero(ok.any(axis=1))[0]
    cols = np.nonzero(ok.any(axis=0))[0]
    if rows.size == 0:
        raise DataError(message("no whole lenslet inside the frame", "at least one",
                                "Check the frame and the calibration."))
    r_lo, r_hi, c_lo, c_hi = rows[0], rows[-1], cols[0], cols[-1]
    while not ok[r_lo:r_hi + 1, c_lo:c_hi + 1].all():
        # Drop the border row/column with the most lenslets outside.
        sub = ok[r_lo:r_hi + 1, c_lo:c_hi + 1]
        bad = {"top": (~sub[0]).sum(), "bottom": (~sub[-1]).sum(),
               "left": (~sub[:, 0]).sum(), "right": (~sub[:, -1]).sum()}
        side = max(bad, key=lambda k: bad[k])
        if side == "top":
            r_lo += 1
        elif side == "bottom":
            r_hi -= 1
        elif side == "left":
            c_lo += 1
        else:
            c_hi -= 1
        if r_lo > r_hi or c_lo > c_hi:
            raise DataError(message("no whole lenslet inside the frame", "at least one",
                                    "Check the frame and the calibration."))
    origin = r0 + ii[r_lo, 0] * basis[0] + jj[0, c_lo] * basis[1]
    return origin, (int(r_hi - r_lo + 1), int(c_hi - c_lo + 1))


def calibrate_lenslet_grid(radiometry: Any, dark: Any = None, *,
                           pitch_guess: float | None = None) -> LensletGrid:
    """Find the lenslet lattice (pitch, rotation, offset) from a radiometry frame.

    Parameters
    ----------
    radiometry : array_like, shape (ny, nx)
        Light-field frame of a uniformly fluorescent slide (every lenslet shows the bright
        image of the pupil), camera ADU.
    dark : array_like, shape (ny, nx), optional
        Dark frame (camera offset / bias), subtracted first.
    pitch_guess : float, optional
        Rough pitch in camera pixels (lenslet pitch / camera pixel size x relay
        magnification); the Fourier search is restricted to +-20 % around it. Default:
        any pitch between 4 pixels and a quarter of the frame.

    Returns
    -------
    LensletGrid

    Notes
    -----
    The lenslet images form a lattice ``I(r) = sum_n s(r - r0 - A n)``; its Fourier transform
    has peaks on the reciprocal lattice ``G = A^{-T}``. The two strongest, roughly
    perpendicular fundamental peaks (Hann window, 2x zero-padding, parabolic interpolation
    of the log power) give ``G``; a symmetric lenslet image makes the Fourier coefficient at
    ``g_k`` equal to ``|s(g_k)| exp(-2 pi i g_k . r0)``, so the phases give ``r0``. Every
    lenslet image fully inside the frame is then located by the centroid of its pixels above
    half of its range within one pitch diameter (three re-centring passes), and
    ``(r0, A)`` are refitted to all centres by least squares with outlier rejection
    (4 MAD). With ``n`` lenslets per side the pitch error scales as
    ``sigma_centre / (pitch n^{3/2})``.
    """
    img = _as_frame(radiometry, "radiometry frame")
    if dark is not None:
        d = _as_frame(dark, "dark frame")
        if d.shape != img.shape:
            raise DataError(message(f"a dark frame of shape {d.shape}",
                                    f"the radiometry frame's shape {img.shape}",
                                    "Pass the matching dark frame."))
        img = img - d
    if pitch_guess is not None:
        if not pitch_guess > 2:
            raise ConfigError(message(f"pitch_guess={pitch_guess}", "a pitch above 2 pixels",
                                      "Pass lenslet pitch / camera pixel size."))
        prange = (0.8 * pitch_guess, 1.2 * pitch_guess)
    else:
        prange = (4.0, min(img.shape) / 4.0)
    g, r0 = _fourier_lattice(img, prange)
    basis = np.linalg.inv(g).T  # rows: lattice vectors (dy, dx)
    idx, cen = _centroids(img, basis, r0)
    if len(idx) < 6:
        raise DataError(message(f"{len(idx)} lenslet images found",
                                "at least 6 whole lenslets in the frame",
                                "Use a larger radiometry frame."))
    basis, r0, rms, keep = _fit_lattice(idx, cen)
    origin, shape = _whole_lenslets(basis, r0, img.shape)
    return LensletGrid(basis, origin, shape, img.shape, rms, int(keep.sum()))


def rectify_lightfield(raw: Any, grid: LensletGrid, *, samples_per_lenslet: int = 15,
                       dark: Any = None, flat: Any = None, flat_floor: float = 0.2,
                       order: int = 3,
                       progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Resample a raw light-field frame onto an integer-pitch lenslet grid.

    Parameters
    ----------
    raw : array_like, shape (ny, nx)
        Raw light-field frame (camera ADU), the shape the grid was calibrated on.
    grid : LensletGrid
        From :func:`calibrate_lenslet_grid`.
    samples_per_lenslet : int
        ``N``, odd: samples per lenslet along each axis (the number of views per axis of the
        forward model); the central sample lies on the lenslet centre.
    dark : array_like, optional
        Dark frame subtracted first.
    flat : array_like, optional
        Radiometry frame (same dark applies): the output is divided by its resampled,
        mean-normalised version (pixel and vignetting sensitivity). Samples where the
        relative flat is below ``flat_floor`` (outside the pupil images) are set to 0.
    flat_floor : float
        Relative flat-field level below which samples are zeroed.
    order : int
        Spline order of the interpolation (1 linear, 3 cubic).
    progress : callable, optional
        ``progress(done, total)`` per lenslet row.

    Returns
    -------
    ndarray, shape (rows * N, cols * N)
        float32 rectified image: pixel ``(i N + u, j N + v)`` samples lenslet ``(i, j)`` at
        ``centre + ((u - (N - 1) / 2) / N) a_row + ((v - (N - 1) / 2) / N) a_col``. Values
        are input units per output sample: the interpolated value times the camera area one
        sample covers, ``|det A| / N^2`` pixels, so a lenslet's total signal is conserved.
    """
    if samples_per_lenslet < 1 or samples_per_lenslet % 2 == 0 or order not in (0, 1, 3, 5) \
            or not 0 <= flat_floor < 1:
        raise ConfigError(message(
            f"samples_per_lenslet={samples_per_lenslet}, order={order}, "
            f"flat_floor={flat_floor}", "an odd N >= 1, order in 0, 1, 3, 5, 0 <= floor < 1",
            "Use e.g. samples_per_lenslet=15 (about the pitch in pixels)."))
    img = _as_frame(raw, "light-field frame")
    if img.shape != grid.image_shape:
        raise DataError(message(f"a frame of shape {img.shape}",
                                f"the calibrated shape {grid.image_shape}",
                                "Calibrate on a radiometry frame of the same camera crop."))
    d = None
    if dark is not None:
        d = _as_frame(dark, "dark frame")
        if d.shape != img.shape:
            raise DataError(message(f"a dark frame of shape {d.shape}",
                                    f"the frame's shape {img.shape}",
                                    "Pass the matching dark frame."))
        img = img - d
    n = samples_per_lenslet
    rows, cols = grid.shape
    sub = (np.arange(n) - (n - 1) / 2) / n
    area = abs(float(np.linalg.det(grid.basis))) / n**2
    coeff_img = ndimage.spline_filter(img, order=order) if order > 1 else img
    fl = None
    if flat is not None:
        f = _as_frame(flat, "flat (radiometry) frame")
        if f.shape != img.shape:
            raise DataError(message(f"a flat frame of shape {f.shape}",
                                    f"the frame's shape {img.shape}",
                                    "Pass the radiometry frame of the same camera crop."))
        f = f - d if d is not None else f
        fl = ndimage.spline_filter(f, order=order) if order > 1 else f
    out = np.zeros((rows * n, cols * n), dtype=np.float64)
    flat_out = np.zeros_like(out) if fl is not None else None
    u = sub[:, None, None, None]
    v = sub[None, None, :, None]
    for i in range(rows):
        c = grid.offset + i * grid.basis[0] + np.arange(cols)[:, None] * grid.basis[1]
        # positions (n, cols, n, 2): sample u of the row, lenslet j, sample v
        pos = c[None, :, None, :] + u * grid.basis[0] + v * grid.basis[1]
        coords = pos.reshape(-1, 2).T
        kw = {"order": order, "mode": "nearest", "prefilter": False}
        out[i * n:(i + 1) * n] = ndimage.map_coordinates(coeff_img, coords,
                                                         **kw).reshape(n, cols * n)
        if fl is not None and flat_out is not None:
            flat_out[i * n:(i + 1) * n] = ndimage.map_coordinates(fl, coords,
                                                                  **kw).reshape(n, cols * n)
        if progress is not None:
            progress(i + 1, rows)
    out *= area
    if flat_out is not None:
        ref = float(np.mean(flat_out[flat_out > 0])) if np.any(flat_out > 0) else 0.0
        if ref <= 0:
            raise DataError(message("a flat frame without signal", "a radiometry frame",
                                    "Pass the radiometry frame as flat."))
        rel = flat_out / ref
        good = rel >= flat_floor
        out = np.where(good, out / np.where(good, rel, 1.0), 0.0)
    return out.astype(np.float32)
