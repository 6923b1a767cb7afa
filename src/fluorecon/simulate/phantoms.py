"""Synthetic fluorescent samples (phantoms): filaments, beads, nuclei, membranes, mixtures.

Each generator returns the fluorophore density of a sample on the pixel grid: a float32
array of the requested shape (2D ``"YX"`` or 3D ``"ZYX"``), non-negative, scaled so that its
maximum is exactly 1 (the caller chooses photons per unit; see
:func:`fluorecon.simulate.pairs.simulate_pair`). Objects have a spread of brightness
(log-normal, as labelling density varies between objects) and intensity variation within
them. Geometry is in pixel units; object counts scale with the image area or volume,
sizes do not (a pixel is assumed to be roughly 0.1 µm laterally, and voxels isotropic).

All generators are seeded: the same ``seed`` (an int or a ``numpy.random.Generator``)
gives the same phantom.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from fluorecon.core.errors import ConfigError, message
from fluorecon.core.rng import SeedLike, make_rng

__all__ = ["PHANTOM_KINDS", "beads", "filaments", "make_phantom", "nuclei", "rings"]

PHANTOM_KINDS: tuple[str, ...] = ("filaments", "beads", "nuclei", "rings", "mixed")


# ---------------------------------------------------------------------------------------
# Filaments
# ---------------------------------------------------------------------------------------
def filaments(
    shape: Sequence[int],
    *,
    n_filaments: int | None = None,
    thickness: float = 1.0,
    seed: SeedLike = None,
    persistence: float = 40.0,
    brightness_spread: float = 0.35,
) -> np.ndarray:
    """Curved filaments (microtubule- or actin-like), drawn anti-aliased with sub-pixel steps.

    Parameters
    ----------
    shape : sequence of int
        ``(ny, nx)`` or ``(nz, ny, nx)``.
    n_filaments : int, optional
        Number of filaments. Default: one per 2048 pixels in 2D (32 in a 256 x 256 image),
        one per 32768 voxels in 3D, at least 2.
    thickness : float
        Approximate FWHM of the filament cross-section in pixels (not below about 1.1 px,
        the width of anti-aliased drawing itself).
    seed : int or numpy.random.Generator, optional
        Random seed.
    persistence : float
        Curvature correlation scale in pixels: the typical radius of curvature is about
        ``persistence`` pixels, and curvature changes smoothly over ``persistence / 2``.
    brightness_spread : float
        Standard deviation of the log of per-filament brightness.

    Returns
    -------
    numpy.ndarray
        float32 array of ``shape``, in ``[0, 1]`` with maximum 1.

    Notes
    -----
    Each filament is a smooth random curve: in 2D its direction angle is the integral of a
    smooth (Gaussian-filtered white noise) curvature of standard deviation ``1/persistence``;
    in 3D the polar and azimuthal angles of the tangent evolve the same way. The curve is
    sampled every 0.25 px, each sample is deposited on its 4 (8 in 3D) neighbouring pixels
    with multilinear weights (anti-aliasing, no staircase), and the line density is blurred
    by a Gaussian of the remaining width. Brightness varies between filaments (log-normal)
    and slowly along each one (labelling density); crossings add up.

    Examples
    --------
    >>> im = filaments((64, 64), seed=0)
    >>> im.dtype, float(im.max()), bool(im.min() >= 0)
    (dtype('float32'), 1.0, True)
    """
    shp = _check_shape(shape)
    rng = make_rng(seed)
    _check_positive(thickness=thickness, persistence=persistence)
    d = len(shp)
    n = _count(n_filaments, shp, 2048 if d == 2 else 32768, minimum=2, name="n_filaments")
    if n == 0:
        return np.zeros(shp, dtype=np.float32)
    diag = math.sqrt(sum(s * s for s in shp))
    ds = 0.25
    pts, wts = [], []
    for _ in range(n):
        length = rng.uniform(0.4, 1.0) * diag
        m = int(length / ds) + 2
        corr = 0.5 * persistence / ds
        if d == 2:
            theta = rng.uniform(0, 2 * math.pi) + np.cumsum(
                _smooth_noise(m, corr, rng) * ds / persistence)
            tangent = np.stack([np.sin(theta), np.cos(theta)], axis=1)
        else:
            polar = math.acos(rng.uniform(-1, 1)) + np.cumsum(
                _smooth_noise(m, corr, rng) * ds / persistence)
            sin_p = np.sin(polar)
            azim = rng.uniform(0, 2 * math.pi) + np.cumsum(
                _smooth_noise(m, corr, rng) * ds / persistence
                / np.maximum(np.abs(sin_p), 0.3))
            tangent = np.stack([np.cos(polar), sin_p * np.sin(azim), sin_p * np.cos(azim)],
                               axis=1)
        path = np.cumsum(tangent * ds, axis=0)
        start = rng.uniform(0, np.array(shp) - 1)
        path += start - path[m // 2]  # the filament passes through a point inside the image
        along = np.clip(1.0 + 0.25 * _smooth_noise(m, 12.0 / ds, rng), 0.2, None)
        bright = rng.lognormal(0.0, brightness_spread)
        pts.append(path)
        wts.append(bright * along * ds)
    density = _splat(np.concatenate(pts), np.concatenate(wts), shp)
    # The multilinear splat already has variance ~1/6 px^2 per axis (a tent).
    sigma = math.sqrt(max((thickness / 2.3548) ** 2 - 1.0 / 6.0, 0.25**2))
    img = ndimage.gaussian_filter(density, sigma, mode="constant")
    return _finalise(img)


# ---------------------------------------------------------------------------------------
# Beads
# ---------------------------------------------------------------------------------------
def beads(
    shape: Sequence[int],
    *,
    n_beads: int | None = None,
    radius: float | tuple[float, float] = (1.0, 3.0),
    seed: SeedLike = None,
    brightness_spread: float = 0.25,
) -> np.ndarray:
    """Solid fluorescent beads (discs in 2D, balls in 3D) with anti-aliased edges.

    Parameters
    ----------
    shape : sequence of int
        ``(ny, nx)`` or ``(nz, ny, nx)``.
    n_beads : int, optional
        Number of beads. Default: one per 400 pixels (2D) or 8000 voxels (3D), at least 3.
    radius : float or (float, float)
        Bead radius in pixels, or a ``(min, max)`` range sampled uniformly.
    seed : int or numpy.random.Generator, optional
        Random seed.
    brightness_spread : float
        Standard deviation of the log of per-bead brightness.

    Returns
    -------
    numpy.ndarray
        float32 array of ``shape``, in ``[0, 1]`` with maximum 1.

    Notes
    -----
    A pixel at distance ``d`` from a bead centre of radius ``R`` gets the approximate area
    (volume) fraction ``clip(R + 0.5 - d, 0, 1)`` of the pixel covered by the bead, so edges
    are anti-aliased and centres are sub-pixel. Overlapping beads add.

    Examples
    --------
    >>> im = beads((32, 32, 32), seed=1)
    >>> im.shape, float(im.max())
    ((32, 32, 32), 1.0)
    """
    shp = _check_shape(shape)
    rng = make_rng(seed)
    d = len(shp)
    lo, hi = _range(radius, "radius")
    n = _count(n_beads, shp, 400 if d == 2 else 8000, minimum=3, name="n_beads")
    img = np.zeros(shp, dtype=np.float32)
    radii = rng.uniform(lo, hi, n)
    centres = rng.uniform(0, np.array(shp) - 1, (n, d))
    bright = rng.lognormal(0.0, brightness_spread, n)
    for c, r, b in zip(centres, radii, bright):
        sl, grids = _patch(c, np.full(d, r + 1.0), shp)
        if sl is None:
            continue
        dist = np.sqrt(sum(g * g for g in grids))
        img[sl] += (b * np.clip(r + 0.5 - dist, 0.0, 1.0)).astype(np.float32)
    return _finalise(img)


# ---------------------------------------------------------------------------------------
# Nuclei
# ---------------------------------------------------------------------------------------
def nuclei(
    shape: Sequence[int],
    *,
    n_nuclei: int | None = None,
    seed: SeedLike = None,
    radius: tuple[float, float] | None = None,
    brightness_spread: float = 0.25,
) -> np.ndarray:
    """Nuclei: irregular ellipses/ellipsoids with chromatin-like texture (DAPI/Hoechst-like).

    Parameters
    ----------
    shape : sequence of int
        ``(ny, nx)`` or ``(nz, ny, nx)``.
    n_nuclei : int, optional
        Number of nuclei. Default: enough to cover about 30 % of the area (volume), at least 1.
    seed : int or numpy.random.Generator, optional
        Random seed.
    radius : (float, float), optional
        Range of the lateral semi-axes in pixels. Default ``(s/2, s)`` with
        ``s = min(32, min(ny, nx) / 4)``.
    brightness_spread : float
        Standard deviation of the log of per-nucleus brightness (DNA content and staining).

    Returns
    -------
    numpy.ndarray
        float32 array of ``shape``, in ``[0, 1]`` with maximum 1.

    Notes
    -----
    Each nucleus is an ellipse (2D) or a flattened ellipsoid (3D, axial semi-axis 0.6 of the
    lateral ones, rotated in the YX plane) with a boundary perturbed by low-order angular
    harmonics, an anti-aliased edge, and, inside, a texture made of two Gaussian-filtered
    noise fields (fine and coarse chromatin), a brighter periphery (heterochromatin at the
    lamina), bright chromocentres and dim nucleoli. Nuclei are placed with rejection so that
    they rarely overlap.

    Examples
    --------
    >>> im = nuclei((128, 128), seed=0)
    >>> 0.05 < float((im > 0.1).mean()) < 0.8
    True
    """
    shp = _check_shape(shape)
    rng = make_rng(seed)
    d = len(shp)
    lateral = min(shp[-2:])
    if radius is None:
        s = min(32.0, lateral / 4.0)
        lo, hi = max(2.0, s / 2.0), max(3.0, s)
    else:
        lo, hi = _range(radius, "radius")
    r_mean = 0.5 * (lo + hi)
    z_ratio = 0.6
    if n_nuclei is None:
        one = math.pi * r_mean**2 if d == 2 else 4.0 / 3.0 * math.pi * r_mean**3 * z_ratio
        n = max(1, int(round(0.3 * math.prod(shp) / one)))
    else:
        n = _count(n_nuclei, shp, 1, minimum=1, name="n_nuclei")

    texture = (0.6 * _texture(shp, 1.2, rng) + 0.4 * _texture(shp, 4.0, rng))
    texture = np.clip(1.0 + 0.3 * texture, 0.15, None).astype(np.float32)
    img = np.zeros(shp, dtype=np.float32)
    placed: list[tuple[np.ndarray, float]] = []
    for _ in range(n):
        a = rng.uniform(lo, hi)
        b = a * rng.uniform(0.65, 1.0)
        c = None
        for _try in range(30):
            c = rng.uniform(0, np.array(shp) - 1)
            if all(np.linalg.norm(c - pc) > 0.85 * (a + pr) for pc, pr in placed):
                break
        assert c is not None
        placed.append((c, a))
        semi = np.array([a, b] if d == 2 else [max(1.5, min(z_ratio * a, shp[0] / 2.5)), a, b])
        angle = rng.uniform(0, math.pi)
        sl, grids = _patch(c, semi.max() * 1.25 + 2.0, shp)
        if sl is None:
            continue
        y, x = grids[-2], grids[-1]
        u = np.cos(angle) * y + np.sin(angle) * x
        v = -np.sin(angle) * y + np.cos(angle) * x
        q2 = (u / semi[-2]) ** 2 + (v / semi[-1]) ** 2
        if d == 3:
            q2 = q2 + (grids[0] / semi[0]) ** 2
        q = np.sqrt(q2)
        phi = np.arctan2(v, u)
        wobble = np.ones_like(phi)
        for k in (2, 3, 4):
            wobble += rng.normal(0, 0.05 / (k - 1)) * np.cos(k * phi + rng.uniform(0, 2 * math.pi))
        depth_in = (1.0 - q / wobble) * semi[-2:].mean()  # approx. distance inside the edge, px
        mask = np.clip(0.5 + depth_in, 0.0, 1.0)
        rim = 1.0 + 0.3 * np.exp(-np.clip(depth_in, 0, None) / 2.0)
        inside = mask * rim
        # chromocentres (bright) and nucleoli (dim)
        for _k in range(rng.integers(2, 7)):
            inside = inside + _blob(grids, semi, rng, 0.4 * rng.uniform(0.5, 1.0),
                                    rng.uniform(1.2, 2.5)) * mask
        for _k in range(rng.integers(1, 3)):
            inside = inside * (1.0 - 0.5 * _blob(grids, semi, rng, 1.0, semi[-1] * 0.18))
        img[sl] += (rng.lognormal(0, brightness_spread) * inside * texture[sl]).astype(np.float32)
    return _finalise(img)


# ---------------------------------------------------------------------------------------
# Rings / shells
# ---------------------------------------------------------------------------------------
def rings(
    shape: Sequence[int],
    *,
    n_rings: int | None = None,
    seed: SeedLike = None,
    thickness: float = 1.2,
    cell_fraction: float = 0.15,
    brightness_spread: float = 0.3,
) -> np.ndarray:
    """Membranes: hollow vesicles and irregular cell outlines (rings in 2D, shells in 3D).

    Parameters
    ----------
    shape : sequence of int
        ``(ny, nx)`` or ``(nz, ny, nx)``.
    n_rings : int, optional
        Number of objects. Default: one per 1500 pixels (2D) or 20000 voxels (3D), at least 2.
    seed : int or numpy.random.Generator, optional
        Random seed.
    thickness : float
        FWHM of the membrane cross-section in pixels.
    cell_fraction : float
        Fraction of objects that are large cell outlines (radius 10-22 % of the smaller
        lateral size); the rest are vesicles of radius 2.5-8 px.
    brightness_spread : float
        Standard deviation of the log of per-object brightness.

    Returns
    -------
    numpy.ndarray
        float32 array of ``shape``, in ``[0, 1]`` with maximum 1.

    Notes
    -----
    Each object's membrane is ``exp(-delta^2 / (2 sigma^2))`` with ``delta`` the approximate
    signed distance in pixels to a closed surface ``|u| = R (1 + sum_k eps_k cos(k phi +
    psi_k))`` (an ellipse/ellipsoid with low-order angular harmonics; cells are flattened
    axially in 3D) and ``sigma = thickness / 2.3548`` (at least 0.5 px in 2D and 0.7 px in
    3D, so sampling at pixel centres does not alias). Brightness varies between objects
    (log-normal) and along the membrane (a smooth random field: uneven labelling).

    Examples
    --------
    >>> im = rings((64, 64), seed=3)
    >>> im.dtype, float(im.max())
    (dtype('float32'), 1.0)
    """
    shp = _check_shape(shape)
    rng = make_rng(seed)
    _check_positive(thickness=thickness)
    if not 0.0 <= cell_fraction <= 1.0:
        raise ConfigError(message(f"cell_fraction={cell_fraction}", "a value in [0, 1]",
                                  "Pass e.g. 0.15."))
    d = len(shp)
    n = _count(n_rings, shp, 1500 if d == 2 else 20000, minimum=2, name="n_rings")
    # At least 0.5 px (0.7 px in 3D, where shells cut the grid at grazing angles) so that
    # sampling the profile at pixel centres does not alias.
    sigma = max(thickness / 2.3548, 0.5 if d == 2 else 0.7)
    lateral = min(shp[-2:])
    labelling = np.clip(1.0 + 0.35 * _texture(shp, 3.0, rng), 0.2, None).astype(np.float32)
    img = np.zeros(shp, dtype=np.float32)
    for _ in range(n):
        is_cell = rng.uniform() < cell_fraction
        if is_cell:
            r0 = max(6.0, rng.uniform(0.10, 0.22) * lateral)
            eps = [rng.normal(0, 0.12 / (k - 1)) for k in (2, 3, 4, 5)]
            bright = 0.6 * rng.lognormal(0, brightness_spread)
            z_ratio = 0.5
        else:
            r0 = rng.uniform(2.5, 8.0)
            eps = [rng.normal(0, 0.05 / (k - 1)) for k in (2, 3, 4, 5)]
            bright = rng.lognormal(0, brightness_spread)
            z_ratio = 1.0
        c = rng.uniform(0, np.array(shp) - 1)
        phases = rng.uniform(0, 2 * math.pi, len(eps))
        reach = r0 * (1.0 + sum(abs(e) for e in eps)) + 4.0 * sigma + 1.0
        half = np.full(d, reach)
        if d == 3:
            half[0] = reach * z_ratio
        sl, grids = _patch(c, half, shp)
        if sl is None:
            continue
        y, x = grids[-2], grids[-1]
        rad2 = y * y + x * x
        if d == 3:
            rad2 = rad2 + (grids[0] / z_ratio) ** 2
        rad = np.sqrt(rad2)
        phi = np.arctan2(y, x)
        shape_r = np.ones_like(phi)
        for k, (e, p) in enumerate(zip(eps, phases), start=2):
            shape_r += e * np.cos(k * phi + p)
        delta = rad - r0 * shape_r
        shell = np.exp(-0.5 * (delta / sigma) ** 2)
        img[sl] += (bright * shell * labelling[sl]).astype(np.float32)
    return _finalise(img)


# ---------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------
def make_phantom(kind: str, shape: Sequence[int], *, seed: SeedLike = None,
                 **kwargs: Any) -> np.ndarray:
    """Make a phantom by name.

    Parameters
    ----------
    kind : {"filaments", "beads", "nuclei", "rings", "mixed"}
        Which generator. ``"mixed"`` sums filaments, membranes and beads (a cell-like
        scene), each at about half its default density, weighted 1 : 0.8 : 0.6.
    shape : sequence of int
        ``(ny, nx)`` or ``(nz, ny, nx)``.
    seed : int or numpy.random.Generator, optional
        Random seed.
    **kwargs
        Passed to the generator (none are accepted for ``"mixed"``).

    Returns
    -------
    numpy.ndarray
        float32 array of ``shape``, in ``[0, 1]`` with maximum 1.

    Raises
    ------
    ConfigError
        Unknown ``kind`` or arguments the generator does not take.

    Examples
    --------
    >>> make_phantom("mixed", (64, 64), seed=0).shape
    (64, 64)
    """
    gens = {"filaments": filaments, "beads": beads, "nuclei": nuclei, "rings": rings}
    if kind == "mixed":
        if kwargs:
            raise ConfigError(message(f"options {sorted(kwargs)} for phantom 'mixed'",
                                      "no options", "Call the single generators to tune them."))
        shp = _check_shape(shape)
        rng = make_rng(seed)
        d = len(shp)
        size = math.prod(shp)
        n_fil = max(2, round(size / (4096 if d == 2 else 65536)))
        n_ring = max(2, round(size / (3000 if d == 2 else 40000)))
        n_bead = max(3, round(size / (800 if d == 2 else 16000)))
        parts = (
            (1.0, filaments(shp, seed=rng, n_filaments=n_fil)),
            (0.8, rings(shp, seed=rng, n_rings=n_ring)),
            (0.6, beads(shp, seed=rng, n_beads=n_bead, radius=(0.8, 2.0))),
        )
        return _finalise(sum(w * p for w, p in parts))
    if kind not in gens:
        raise ConfigError(message(f"phantom kind {kind!r}", f"one of {', '.join(PHANTOM_KINDS)}",
                                  "Pick a listed phantom."))
    try:
        return gens[kind](shape, seed=seed, **kwargs)
    except TypeError as exc:
        raise ConfigError(message(f"options {sorted(kwargs)} for phantom {kind!r}",
                                  f"options of fluorecon.simulate.phantoms.{kind}",
                                  f"Check the spelling ({exc}).")) from None


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------
def _check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    try:
        shp = tuple(int(s) for s in shape)
    except TypeError:
        shp = ()
    if len(shp) not in (2, 3) or any(s < 4 for s in shp):
        raise ConfigError(message(f"phantom shape {shape!r}",
                                  "2 or 3 sizes of at least 4 pixels (YX or ZYX)",
                                  "Pass e.g. (256, 256) or (32, 128, 128)."))
    return shp


def _check_positive(**values: float) -> None:
    for name, v in values.items():
        if not (math.isfinite(v) and v > 0):
            raise ConfigError(message(f"{name}={v!r}", f"{name} > 0", f"Pass a positive {name}."))


def _count(n: int | None, shp: tuple[int, ...], per: int, *, minimum: int, name: str) -> int:
    if n is None:
        return max(minimum, int(round(math.prod(shp) / per)))
    if int(n) != n or n < 0:
        raise ConfigError(message(f"{name}={n!r}", "a non-negative integer",
                                  f"Pass {name}=10 or leave it out for the default density."))
    return int(n)


def _range(value: float | Sequence[float], name: str) -> tuple[float, float]:
    if np.ndim(value) == 0:
        lo = hi = float(value)  # type: ignore[arg-type]
    else:
        vals = [float(v) for v in value]  # type: ignore[union-attr]
        if len(vals) != 2:
            raise ConfigError(message(f"{name}={value!r}", "a number or a (min, max) pair",
                                      f"Pass e.g. {name}=(1.0, 3.0)."))
        lo, hi = vals
    if not (0 < lo <= hi and math.isfinite(hi)):
        raise ConfigError(message(f"{name}={value!r}", "0 < min <= max", "Fix the range."))
    return lo, hi


def _smooth_noise(n: int, corr: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-filtered white noise of length ``n``, unit standard deviation."""
    pad = int(3 * corr) + 1
    w = ndimage.gaussian_filter1d(rng.standard_normal(n + 2 * pad), corr, mode="wrap")[pad:pad + n]
    # Variance of filtered white noise: 1 / (2 sqrt(pi) corr) (exactly, for corr >> 1).
    return w * math.sqrt(2.0 * math.sqrt(math.pi) * max(corr, 0.5))


def _texture(shp: tuple[int, ...], corr: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth zero-mean, unit-variance random field with correlation length ``corr`` px."""
    f = ndimage.gaussian_filter(rng.standard_normal(shp).astype(np.float32), corr, mode="wrap")
    f -= f.mean()
    sd = f.std()
    return f / sd if sd > 0 else f


def _splat(points: np.ndarray, weights: np.ndarray, shp: tuple[int, ...]) -> np.ndarray:
    """Deposit weighted points on the grid with multilinear (tent) weights."""
    d = len(shp)
    base = np.floor(points).astype(np.int64)
    frac = points - base
    out = np.zeros(math.prod(shp), dtype=np.float64)
    dims = np.array(shp)
    for corner in range(1 << d):
        offs = np.array([(corner >> (d - 1 - i)) & 1 for i in range(d)])
        idx = base + offs
        w = weights * np.prod(np.where(offs == 1, frac, 1.0 - frac), axis=1)
        ok = np.all((idx >= 0) & (idx < dims), axis=1)
        flat = np.ravel_multi_index(tuple(idx[ok].T), shp)
        out += np.bincount(flat, weights=w[ok], minlength=out.size)
    return out.reshape(shp).astype(np.float32)


def _patch(centre: np.ndarray, half: float | np.ndarray, shp: tuple[int, ...]
           ) -> tuple[tuple[slice, ...] | None, list[np.ndarray]]:
    """Slices of the box ``centre +- half`` clipped to the image, and offsets from centre."""
    half = np.broadcast_to(np.asarray(half, dtype=np.float64), (len(shp),))
    lo = np.maximum(np.floor(centre - half).astype(int), 0)
    hi = np.minimum(np.ceil(centre + half).astype(int) + 1, np.array(shp))
    if np.any(hi <= lo):
        return None, []
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    axes = [np.arange(a, b, dtype=np.float64) - c for a, b, c in zip(lo, hi, centre)]
    grids = list(np.meshgrid(*axes, indexing="ij", sparse=True))
    return sl, grids


def _blob(grids: list[np.ndarray], semi: np.ndarray, rng: np.random.Generator,
          amplitude: float, sigma: float) -> np.ndarray:
    """A Gaussian spot at a random position inside the ellipsoid of semi-axes ``semi``."""
    while True:
        p = rng.uniform(-0.75, 0.75, len(grids))
        if np.sum(p * p) <= 0.75**2:
            break
    r2 = sum((g - pi * s) ** 2 for g, pi, s in zip(grids, p, semi))
    return amplitude * np.exp(-0.5 * r2 / sigma**2)


def _finalise(img: np.ndarray) -> np.ndarray:
    img = np.clip(np.asarray(img, dtype=np.float32), 0.0, None)
    peak = float(img.max())
    if peak > 0:
        img /= peak
    return img.astype(np.float32, copy=False)
