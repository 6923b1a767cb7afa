"""Known sample motion applied to images: time-lapses with translations (drift), rigid and
affine motion, and smooth non-rigid deformation fields, with their ground truth.

Conventions (shared with :mod:`fluorecon.methods.classical.registration`): coordinates are
pixel indices in ZYX order. Motion is recorded as the **registration** of each frame onto
the reference, the map from reference coordinates ``x`` to the frame coordinates that show
the same point of the sample::

    affine:     reference(x) = frame(M x)          M = [[A, t], [0, 1]], (d+1, d+1)
    non-rigid:  reference(x) = frame(x + u(x))     u: displacement field (d, *shape)

so correcting a frame is resampling it at ``M x`` (``scipy.ndimage.affine_transform(frame,
M)``) or at ``x + u(x)``. For drift, the translation ``t`` is the position of the sample
(content moved by ``+t`` pixels); ``u`` follows :func:`skimage.registration.optical_flow_tvl1`.
Matrices made by :func:`rigid_matrix` with a ``centre`` rotate about it.

Frames are made from a larger canvas and cropped, so no border of the field of view is
ever filled: moving content enters and leaves the view as in a real drifting sample.
Translations are applied exactly in Fourier space (band-limited images); other motions by
cubic-spline interpolation of a band-limited (blurred) sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from fluorecon.core.dtypes import as_float32
from fluorecon.core.errors import ConfigError, DataError, message
from fluorecon.core.rng import SeedLike, make_rng

__all__ = [
    "MotionSample",
    "affine_matrix",
    "random_drift",
    "rigid_matrix",
    "simulate_timelapse",
    "smooth_deformation",
    "translate",
    "invert_field",
    "warp_affine",
    "warp_field",
]


def rigid_matrix(ndim: int, *, angles: float | Sequence[float] = 0.0,
                 translation: Sequence[float] | None = None, scale: float = 1.0,
                 centre: Sequence[float] | None = None) -> np.ndarray:
    """Homogeneous ``(d+1, d+1)`` matrix of a rotation (+ scale) about ``centre`` and a
    translation, mapping output coordinates to input coordinates (ZYX order).

    Parameters
    ----------
    ndim : {2, 3}
    angles : float or sequence of 3 floats
        Radians. 2D: rotation in the YX plane. 3D: rotations about the Z, Y and X axes,
        applied in that order (``R = Rz Ry Rx``).
    translation : sequence of float, optional
        Added after the rotation, pixels.
    scale : float
        Isotropic scale (similarity transform when not 1).
    centre : sequence of float, optional
        Rotation centre; default the origin.
    """
    if ndim == 2:
        a = float(np.ravel(angles)[0]) if np.ndim(angles) else float(angles)
        c, s = math.cos(a), math.sin(a)
        rot = np.array([[c, -s], [s, c]])
    elif ndim == 3:
        az, ay, ax = (np.ravel(angles).tolist() + [0.0, 0.0, 0.0])[:3] if np.ndim(angles) \
            else (float(angles), 0.0, 0.0)
        rz = np.array([[1, 0, 0], [0, math.cos(az), -math.sin(az)],
                       [0, math.sin(az), math.cos(az)]])  # in the YX plane (about Z)
        ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0],
                       [-math.sin(ay), 0, math.cos(ay)]])  # in the ZX plane
        rx = np.array([[math.cos(ax), -math.sin(ax), 0], [math.sin(ax), math.cos(ax), 0],
                       [0, 0, 1]])  # in the ZY plane
        rot = rz @ ry @ rx
    else:
        raise ConfigError(message(f"ndim={ndim}", "2 or 3", "Use a 2D or 3D transform."))
    return affine_matrix(rot * scale, translation, centre=centre)


def affine_matrix(linear: Any, translation: Sequence[float] | None = None, *,
                  centre: Sequence[float] | None = None) -> np.ndarray:
    """Homogeneous matrix ``x -> L (x - c) + c + t`` from a ``(d, d)`` linear part."""
    lin = np.asarray(linear, dtype=np.float64)
    d = lin.shape[0]
    if lin.shape != (d, d) or d not in (2, 3):
        raise ConfigError(message(f"a linear part of shape {lin.shape}", "(2, 2) or (3, 3)",
                                  "Pass a square matrix."))
    c = np.zeros(d) if centre is None else np.asarray(centre, dtype=np.float64)
    t = np.zeros(d) if translation is None else np.asarray(translation, dtype=np.float64)
    out = np.eye(d + 1)
    out[:d, :d] = lin
    out[:d, d] = c - lin @ c + t
    return out


def translate(image: Any, shift: Sequence[float]) -> np.ndarray:
    """Translate ``image`` content by ``shift`` pixels exactly (Fourier shift, periodic).

    Exact for band-limited images; crop the borders (``shift`` wide) that wrap around.
    """
    img = as_float32(image).astype(np.float64)
    spec = ndimage.fourier_shift(np.fft.fftn(img), tuple(float(s) for s in shift))
    return np.real(np.fft.ifftn(spec)).astype(np.float32)


def warp_affine(image: Any, matrix: Any, *, order: int = 3, mode: str = "nearest",
                output_shape: Sequence[int] | None = None,
                offset: Sequence[float] | None = None) -> np.ndarray:
    """Sample ``image`` at ``A x + t`` for each output coordinate ``x`` (+ ``offset``).

    ``offset`` is added to output coordinates first (to cut a window from a canvas).
    """
    img = as_float32(image)
    mat = np.asarray(matrix, dtype=np.float64)
    d = img.ndim
    if offset is not None:
        shift = np.eye(d + 1)
        shift[:d, d] = np.asarray(offset, dtype=np.float64)
        mat = mat @ shift
    return ndimage.affine_transform(img, mat, order=order, mode=mode,
                                    output_shape=tuple(output_shape) if output_shape else None
                                    ).astype(np.float32)


def warp_field(image: Any, displacement: Any, *, order: int = 3,
               mode: str = "nearest") -> np.ndarray:
    """Sample ``image`` at ``x + u(x)``; ``displacement`` is ``(d, *image.shape)`` pixels."""
    img = as_float32(image)
    u = np.asarray(displacement, dtype=np.float64)
    if u.shape != (img.ndim,) + img.shape:
        raise DataError(message(f"a displacement of shape {u.shape} for an image of shape "
                                f"{img.shape}", f"shape {(img.ndim,) + img.shape}",
                                "Pass one component per spatial axis."))
    grid = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in img.shape], indexing="ij")
    coords = np.stack([g + du for g, du in zip(grid, u)])
    return ndimage.map_coordinates(img, coords, order=order, mode=mode).astype(np.float32)


def smooth_deformation(shape: Sequence[int], *, amplitude: float = 2.0,
                       length_scale: float = 16.0, seed: SeedLike = None) -> np.ndarray:
    """A random smooth displacement field ``(d, *shape)`` (pixels), like tissue deformation.

    Each component is white noise filtered by a Gaussian of ``length_scale`` pixels,
    scaled so that its largest magnitude is ``amplitude`` pixels. Keep ``amplitude`` well
    below ``length_scale`` for a one-to-one (folding-free) deformation.
    """
    shp = tuple(int(s) for s in shape)
    if len(shp) not in (2, 3) or amplitude < 0 or length_scale <= 0:
        raise ConfigError(message(f"shape {shp}, amplitude {amplitude}, length_scale "
                                  f"{length_scale}", "a 2D/3D shape, amplitude >= 0, "
                                  "length_scale > 0", "Fix the arguments."))
    g = make_rng(seed)
    comps = []
    for _ in shp:
        f = ndimage.gaussian_filter(g.standard_normal(shp), length_scale, mode="reflect")
        comps.append(f)
    u = np.stack(comps)
    peak = float(np.sqrt((u * u).sum(axis=0)).max())
    return (u * (amplitude / max(peak, 1e-30))).astype(np.float32)


def invert_field(displacement: Any, *, iterations: int = 20) -> np.ndarray:
    """Inverse ``v`` of a displacement field ``u``: ``x + u(x) + v(x + u(x)) = x``.

    Fixed-point iteration :math:`v(y) \\leftarrow -u(y + v(y))` (linear interpolation),
    which converges when the deformation is smooth (``|grad u| < 1``).
    """
    u = np.asarray(displacement, dtype=np.float64)
    d = u.shape[0]
    grid = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in u.shape[1:]], indexing="ij")
    v = -u.copy()
    for _ in range(iterations):
        coords = np.stack([g + dv for g, dv in zip(grid, v)])
        v = -np.stack([ndimage.map_coordinates(u[i], coords, order=1, mode="nearest")
                       for i in range(d)])
    return v.astype(np.float32)


def random_drift(n_frames: int, ndim: int, *, step: float = 0.5, bias: Sequence[float] | None
                 = None, seed: SeedLike = None) -> np.ndarray:
    """Stage drift: a random walk with ``step`` px rms per frame plus a constant ``bias``
    per frame; ``(T, d)`` positions (content displacement) with frame 0 at 0."""
    g = make_rng(seed)
    steps = g.normal(0.0, step / math.sqrt(ndim), (n_frames, ndim))
    if bias is not None:
        steps += np.asarray(bias, dtype=np.float64)
    steps[0] = 0.0
    return np.cumsum(steps, axis=0)


@dataclass(frozen=True)
class MotionSample:
    """A simulated time-lapse with known motion.

    Attributes
    ----------
    frames : ndarray, ``(T, *spatial)``
        float32 frames (axes ``"TYX"`` / ``"TZYX"``), noisy if noise was asked for.
    clean : ndarray, ``(T, *spatial)``
        The same without noise.
    reference : ndarray, ``(*spatial)``
        The unmoved sample in the field of view (frame 0 is the reference frame when its
        motion is the identity).
    matrices : ndarray, ``(T, d+1, d+1)`` or None
        True registration of each frame, ``reference(x) = frame_t(M_t x)`` (module notes).
    fields : ndarray, ``(T, d, *spatial)`` or None
        True displacement of each frame, ``reference(x) = frame_t(x + u_t(x))``.
    """

    frames: np.ndarray
    clean: np.ndarray
    reference: np.ndarray
    matrices: np.ndarray | None
    fields: np.ndarray | None

    @property
    def axes(self) -> str:
        return "T" + "ZYX"[3 - (self.frames.ndim - 1):]


def simulate_timelapse(sample: Any, *, matrices: Any = None, fields: Any = None,
                       shape: Sequence[int] | None = None, photons: float | None = None,
                       background: float = 0.0, bleaching: float = 0.0,
                       seed: SeedLike = None) -> MotionSample:
    """Apply known per-frame motion to a sample and crop a field of view from its centre.

    Parameters
    ----------
    sample : array_like
        Band-limited sample (2D/3D, e.g. a blurred phantom), larger than ``shape`` by at
        least the largest motion so the view never leaves it.
    matrices : array_like ``(T, d+1, d+1)``, optional
        Per-frame registration matrices in field-of-view coordinates (module notes): frame
        ``t`` shows ``reference(M_t^{-1} y)``. Pure translations are applied exactly
        (Fourier), others by cubic splines.
    fields : array_like ``(T, d, *shape)``, optional
        Per-frame displacement fields ``u_t`` (frame ``t`` is the reference warped by the
        inverse of ``x -> x + u_t(x)``), alone or on top of the matrices.
    shape : sequence of int, optional
        Field of view; default the sample's shape minus 1/4 on each side.
    photons : float, optional
        If given, frames are scaled so the sample's maximum is ``photons`` and Poisson
        noise is drawn (after ``background`` photons are added).
    background : float
        Photons added per pixel (with ``photons``).
    bleaching : float
        Fractional intensity loss per frame (exponential: frame ``t`` is scaled by
        ``(1 - bleaching)**t``), which registration must not mistake for motion.
    seed : int or Generator, optional

    Returns
    -------
    MotionSample
    """
    src = as_float32(sample).astype(np.float64)
    d = src.ndim
    if d not in (2, 3):
        raise DataError(message(f"a sample of shape {src.shape}", "a 2D or 3D sample",
                                "Pass YX or ZYX data."))
    if matrices is None and fields is None:
        raise ConfigError(message("no motion", "matrices or fields", "Pass one of them."))
    fov = tuple(int(s) for s in shape) if shape is not None else tuple(
        n - 2 * (n // 4) for n in src.shape)
    if len(fov) != d or any(f > n for f, n in zip(fov, src.shape)):
        raise ConfigError(message(f"field of view {fov} for a sample of shape {src.shape}",
                                  "a view no larger than the sample", "Use a larger sample."))
    off = np.array([(n - f) / 2.0 for n, f in zip(src.shape, fov)])
    mats = None if matrices is None else np.asarray(matrices, dtype=np.float64)
    flds = None if fields is None else np.asarray(fields, dtype=np.float64)
    n_t = mats.shape[0] if mats is not None else flds.shape[0]  # type: ignore[union-attr]
    if flds is not None and flds.shape != (n_t, d) + fov:
        raise DataError(message(f"fields of shape {flds.shape}", f"{(n_t, d) + fov}",
                                "One displacement field per frame on the field of view."))
    frames = np.empty((n_t,) + fov, np.float32)
    sl = tuple(slice(int(round(o)), int(round(o)) + f) for o, f in zip(off, fov))
    integral_off = all(abs(o - round(o)) < 1e-9 for o in off)
    for t in range(n_t):
        if mats is not None:
            m = mats[t]
            if np.allclose(m[:d, :d], np.eye(d)) and integral_off:
                img = translate(src, m[:d, d])[sl]
            else:
                img = _warp_view(src, np.linalg.inv(m), off, fov)
        else:
            img = src[sl]
        if flds is not None:
            img = warp_field(img, invert_field(flds[t]), order=3)
        frames[t] = img
    clean = frames.copy()
    scale = 1.0
    if photons is not None:
        scale = photons / max(float(src.max()), 1e-30)
    decay = (1.0 - bleaching) ** np.arange(n_t)
    clean = (clean * scale * decay.reshape((-1,) + (1,) * d)).astype(np.float32)
    reference = (src[sl] * scale).astype(np.float32)
    if photons is not None:
        g = make_rng(seed)
        frames = g.poisson(np.clip(clean + background, 0, None)).astype(np.float32)
    else:
        frames = clean.copy()
    return MotionSample(frames=frames, clean=clean, reference=reference, matrices=mats,
                        fields=flds)


def _warp_view(src: np.ndarray, m: np.ndarray, off: np.ndarray, fov: tuple[int, ...]
               ) -> np.ndarray:
    """Frame ``x -> src(A x + t + off)`` on the field of view (coordinates ``x`` of the
    view; ``off`` maps view to canvas coordinates)."""
    d = src.ndim
    to_canvas = np.eye(d + 1)
    to_canvas[:d, d] = off
    mat = to_canvas @ m
    return ndimage.affine_transform(src, mat, order=3, mode="nearest", output_shape=fov)
