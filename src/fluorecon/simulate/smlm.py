"""Single-molecule localisation microscopy (SMLM) forward model: emitters, blinking, PSF, camera.

A PALM/STORM/DNA-PAINT movie is simulated in four steps:

1. **Labels** are placed on a ground-truth structure (filaments, rings, clusters or uniform),
   in 2D or 3D, as continuous coordinates in nanometres.
2. **Blinking**: each label is a three-state Markov chain (off, on, bleached) with per-frame
   switching probabilities ``k_on`` (off -> on), ``k_off`` (on -> off) and ``k_bleach``
   (on -> bleached); every on-frame emits a random number of photons.
3. **Imaging**: every active emitter is imaged with a Gaussian PSF (2D) or an astigmatic
   elliptical Gaussian whose widths depend on ``z`` (3D, Huang et al. 2008), *integrated over
   each camera pixel* (error functions, not point samples), plus a uniform background.
4. **Camera**: photons -> ADU with :func:`fluorecon.simulate.camera.camera_forward` (EMCCD,
   sCMOS with optional per-pixel maps, or an ideal photon counter).

The result is the frame stack and the **true localisation table** (one row per emitter and
on-frame: frame, x, y, z, photons), in :class:`Localizations`.

Coordinate convention (that of ThunderSTORM): pixel ``j`` along an axis covers
``[j * pixel_size, (j + 1) * pixel_size)`` nanometres, so its centre is at
``(j + 0.5) * pixel_size``. ``x`` runs along the image's X (last) axis, ``y`` along Y.
Frames are counted from 0 in memory (CSV files written by fluorecon count from 1, as
ThunderSTORM does).

References
----------
.. [1] B. Huang, W. Wang, M. Bates, X. Zhuang, "Three-dimensional super-resolution imaging by
   stochastic optical reconstruction microscopy", Science 319, 810-813 (2008).
.. [2] D. Sage et al., "Super-resolution fight club: assessment of 2D and 3D single-molecule
   localization microscopy software", Nat. Methods 16, 387-395 (2019) (SMLM challenge 2016).
.. [3] A. Speiser et al., "Deep learning enables fast and dense single-molecule localization
   with high accuracy", Nat. Methods 18, 1082-1090 (2021) (DECODE simulation).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator
from scipy.special import erf

from fluorecon.core.config import BaseConfig
from fluorecon.core.errors import ConfigError, DataError, message
from fluorecon.core.rng import SeedLike, make_rng
from fluorecon.simulate.camera import CameraModel, camera_forward

__all__ = [
    "AstigmaticCalibration",
    "Localizations",
    "PSFModel",
    "SMLMConfig",
    "SMLMSimulation",
    "blink",
    "expected_photons",
    "integrated_gaussian",
    "simulate_frames",
    "simulate_smlm",
    "structure_labels",
]

Progress = Callable[[int, int], None]
_SQRT2 = math.sqrt(2.0)


# ---------------------------------------------------------------------------------------
# Localisation table
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Localizations:
    """A table of localisations (or of true emitter positions), one row per molecule and frame.

    Attributes
    ----------
    frame : ndarray of int64, shape (n,)
        Frame index, counted from 0.
    x, y : ndarray of float64, shape (n,)
        Position in nanometres (pixel ``j`` centred at ``(j + 0.5) * pixel_size``).
    z : ndarray of float64, shape (n,), optional
        Axial position in nanometres (0 = focal plane), for 3D data.
    photons : ndarray of float64, shape (n,), optional
        Photons of the molecule in this frame (ThunderSTORM ``intensity [photon]``).
    background : ndarray of float64, shape (n,), optional
        Background photons per pixel (ThunderSTORM ``offset [photon]``).
    sigma : ndarray of float64, shape (n,), optional
        PSF standard deviation, nanometres.
    uncertainty : ndarray of float64, shape (n,), optional
        Lateral localisation uncertainty (one-axis standard deviation), nanometres.
    uncertainty_z : ndarray of float64, shape (n,), optional
        Axial uncertainty, nanometres.
    extra : dict of str to ndarray
        Further per-row columns (e.g. ``"detection_probability"``, ``"n_merged"``).

    Examples
    --------
    >>> locs = Localizations.build(frame=[0, 1], x=[100.0, 250.0], y=[80.0, 90.0])
    >>> len(locs), locs.is_3d
    (2, False)
    """

    frame: np.ndarray
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray | None = None
    photons: np.ndarray | None = None
    background: np.ndarray | None = None
    sigma: np.ndarray | None = None
    uncertainty: np.ndarray | None = None
    uncertainty_z: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def build(cls, *, frame: Any, x: Any, y: Any, **columns: Any) -> "Localizations":
        """Validate columns into a table (converting to int64 frames and float64 values)."""
        fr = np.asarray(frame)
        if fr.size and not np.all(np.asarray(fr, np.float64) == np.round(np.asarray(fr,
                                                                                  np.float64))):
            raise DataError(message("non-integer frame numbers", "integer frames",
                                    "Pass frame indices counted from 0."))
        out: dict[str, Any] = {"frame": fr.astype(np.int64).ravel()}
        n = out["frame"].size
        extra = {k: np.asarray(v, np.float64).ravel() for k, v in
                 dict(columns.pop("extra", None) or {}).items()}
        named = {f.name for f in fields(cls)} - {"frame", "extra"}
        unknown = sorted(set(columns) - named)
        if unknown:
            raise DataError(message(f"unknown localisation columns {unknown}",
                                    f"columns among {sorted(named)}", "Put them in extra."))
        for name, value in {"x": x, "y": y, **columns}.items():
            if value is None:
                out[name] = None
                continue
            arr = np.asarray(value, np.float64).ravel()
            if arr.size != n:
                raise DataError(message(f"column {name!r} with {arr.size} rows for {n} frames",
                                        "one value per row", "Pass columns of equal length."))
            if not np.all(np.isfinite(arr)):
                raise DataError(message(f"non-finite values in column {name!r}",
                                        "finite values", "Drop or fix those rows."))
            out[name] = arr
        for k, v in extra.items():
            if v.size != n:
                raise DataError(message(f"extra column {k!r} with {v.size} rows for {n}",
                                        "one value per row", "Pass columns of equal length."))
        return cls(extra=extra, **out)

    @classmethod
    def empty(cls, *, is_3d: bool = False) -> "Localizations":
        """A table without rows."""
        e = np.zeros(0)
        return cls.build(frame=np.zeros(0, np.int64), x=e, y=e, z=e if is_3d else None)

    def __len__(self) -> int:
        return int(self.frame.size)

    @property
    def is_3d(self) -> bool:
        """True when the table has a ``z`` column."""
        return self.z is not None

    @property
    def n_frames(self) -> int:
        """``max(frame) + 1`` (0 for an empty table)."""
        return int(self.frame.max()) + 1 if len(self) else 0

    def columns(self) -> dict[str, np.ndarray]:
        """The present columns by name (``extra`` columns included)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out = {k: v for k, v in out.items() if v is not None}
        out.update(self.extra)
        return out

    def select(self, index: Any) -> "Localizations":
        """Rows selected by a boolean mask or an index array."""
        def pick(v: np.ndarray | None) -> np.ndarray | None:
            return None if v is None else v[index]
        kw = {f.name: pick(getattr(self, f.name)) for f in fields(self) if f.name != "extra"}
        return Localizations(extra={k: v[index] for k, v in self.extra.items()}, **kw)

    def sorted(self) -> "Localizations":
        """Rows ordered by frame (stable)."""
        return self.select(np.argsort(self.frame, kind="stable"))

    def with_columns(self, **columns: Any) -> "Localizations":
        """A copy with columns replaced or added (``extra`` entries are merged)."""
        extra = dict(self.extra)
        extra.update({k: np.asarray(v, np.float64) for k, v in
                      dict(columns.pop("extra", None) or {}).items()})
        return replace(self, extra=extra, **{k: (None if v is None else np.asarray(
            v, np.int64 if k == "frame" else np.float64)) for k, v in columns.items()})

    def positions(self) -> np.ndarray:
        """``(n, 2)`` array of ``(x, y)`` or ``(n, 3)`` of ``(x, y, z)`` in nanometres."""
        cols = [self.x, self.y] + ([self.z] if self.z is not None else [])
        return np.stack(cols, axis=1) if len(self) else np.zeros((0, len(cols)))

    @staticmethod
    def concatenate(tables: Sequence["Localizations"]) -> "Localizations":
        """Stack tables row-wise; a column is kept only when every table has it."""
        if not tables:
            return Localizations.empty()
        names = [f.name for f in fields(Localizations) if f.name != "extra"]
        kw: dict[str, Any] = {}
        for name in names:
            vals = [getattr(t, name) for t in tables]
            kw[name] = None if any(v is None for v in vals) else np.concatenate(vals)
        keys = set.intersection(*(set(t.extra) for t in tables))
        extra = {k: np.concatenate([t.extra[k] for t in tables]) for k in sorted(keys)}
        return Localizations(extra=extra, **kw)


# ---------------------------------------------------------------------------------------
# PSF models
# ---------------------------------------------------------------------------------------
class AstigmaticCalibration(BaseConfig):
    """Widths of an astigmatic PSF as functions of ``z`` (Huang et al. 2008).

    Notes
    -----
    With :math:`u_x = (z - c)/d` and :math:`u_y = (z + c)/d`,

    .. math::

        \\sigma_x(z) = \\sigma_{0x}\\sqrt{1 + u_x^2 + A_x u_x^3 + B_x u_x^4},\\qquad
        \\sigma_y(z) = \\sigma_{0y}\\sqrt{1 + u_y^2 + A_y u_y^3 + B_y u_y^4}.

    The two foci are ``2c`` apart; ``d`` is the depth of focus. Units: nanometres.
    """

    version: int = Field(default=1, ge=1, le=1, description="Schema version.")
    sigma0_x: float = Field(default=130.0, gt=0, description="In-focus sigma along x, nm.")
    sigma0_y: float = Field(default=130.0, gt=0, description="In-focus sigma along y, nm.")
    c: float = Field(default=300.0, description="Half the distance between the x and y foci, "
                                                "nm (x focus at z = +c, y focus at z = -c).")
    d: float = Field(default=400.0, gt=0, description="Depth of focus, nm.")
    a_x: float = Field(default=0.0, description="Cubic coefficient A_x.")
    b_x: float = Field(default=0.0, description="Quartic coefficient B_x.")
    a_y: float = Field(default=0.0, description="Cubic coefficient A_y.")
    b_y: float = Field(default=0.0, description="Quartic coefficient B_y.")

    def sigmas(self, z: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(sigma_x(z), sigma_y(z))`` in nanometres for ``z`` in nanometres."""
        sx, _ = self._one(np.asarray(z, np.float64), self.sigma0_x, self.c, self.a_x, self.b_x)
        sy, _ = self._one(np.asarray(z, np.float64), self.sigma0_y, -self.c, self.a_y,
                          self.b_y)
        return sx, sy

    def sigmas_and_derivatives(self, z: Any
                               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(sigma_x, sigma_y, dsigma_x/dz, dsigma_y/dz)`` (nm and nm/nm)."""
        zz = np.asarray(z, np.float64)
        sx, dx = self._one(zz, self.sigma0_x, self.c, self.a_x, self.b_x)
        sy, dy = self._one(zz, self.sigma0_y, -self.c, self.a_y, self.b_y)
        return sx, sy, dx, dy

    def _one(self, z: np.ndarray, s0: float, c: float, a: float, b: float
             ) -> tuple[np.ndarray, np.ndarray]:
        u = (z - c) / self.d
        q = np.maximum(1.0 + u ** 2 + a * u ** 3 + b * u ** 4, 1e-6)
        s = s0 * np.sqrt(q)
        dq = (2 * u + 3 * a * u ** 2 + 4 * b * u ** 3) / self.d
        return s, s0 * dq / (2 * np.sqrt(q))


class PSFModel(BaseConfig):
    """PSF of the single-molecule images: Gaussian (2D) or astigmatic Gaussian (3D).

    The Gaussian is integrated over each pixel (the model of Smith et al. 2010 used by the
    fitters), so the sum of a PSF over an infinite sensor is exactly 1.
    """

    version: int = Field(default=1, ge=1, le=1, description="Schema version.")
    kind: Literal["gaussian", "astigmatic"] = Field(
        default="gaussian", description="gaussian: isotropic, z-independent (2D data); "
                                        "astigmatic: z from the elliptical widths (3D).")
    sigma: float = Field(default=130.0, gt=0, description="Gaussian sigma, nm (kind "
                                                          "'gaussian').")
    astigmatism: AstigmaticCalibration = Field(
        default_factory=AstigmaticCalibration, description="Calibration (kind 'astigmatic').")

    @property
    def is_3d(self) -> bool:
        """True for the astigmatic (z-resolving) PSF."""
        return self.kind == "astigmatic"

    def sigmas(self, z: Any | None) -> tuple[np.ndarray, np.ndarray]:
        """Per-emitter ``(sigma_x, sigma_y)`` in nm (``z`` ignored for a Gaussian PSF)."""
        if self.kind == "gaussian":
            n = 1 if z is None else np.asarray(z).shape
            full = np.full(n, self.sigma, np.float64)
            return full, full.copy()
        if z is None:
            raise DataError(message("an astigmatic PSF without z", "z per emitter",
                                    "Pass z or use a Gaussian PSF."))
        return self.astigmatism.sigmas(z)


def integrated_gaussian(centre: np.ndarray, sigma: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Fraction of a 1D Gaussian falling into unit pixels.

    Parameters
    ----------
    centre, sigma : ndarray, shape (n,)
        Centre and width in pixel units (pixel ``k`` spans ``[k, k + 1)``).
    pixels : ndarray of int, shape (n, w)
        Pixel indices per emitter.

    Returns
    -------
    ndarray, shape (n, w)
        ``0.5 * (erf((k + 1 - c) / (sqrt(2) s)) - erf((k - c) / (sqrt(2) s)))``.
    """
    c = centre[:, None]
    s = sigma[:, None] * _SQRT2
    return 0.5 * (erf((pixels + 1.0 - c) / s) - erf((pixels - c) / s))


def expected_photons(locs: Localizations, shape: Sequence[int], *, pixel_size: float,
                     psf: PSFModel, n_frames: int | None = None,
                     progress: Progress | None = None) -> np.ndarray:
    """Expected photons per pixel of the emitters in ``locs`` (no background, no noise).

    Parameters
    ----------
    locs : Localizations
        Emitters with ``photons`` (and ``z`` for an astigmatic PSF).
    shape : (Y, X)
        Frame shape in pixels.
    pixel_size : float
        Camera pixel size, nm.
    psf : PSFModel
    n_frames : int, optional
        Frames of the output (default ``locs.n_frames``).
    progress : callable, optional
        ``progress(done, total)`` over frames.

    Returns
    -------
    ndarray of float64, shape (n_frames, Y, X)

    Notes
    -----
    Each emitter covers a window of ``2 * ceil(4 sigma_max) + 2`` pixels per axis; its
    separable pixel-integrated profile is added with :func:`numpy.add.at` (edges clipped),
    so emitters partly outside the frame lose the photons that fall outside.
    """
    ny, nx = (int(s) for s in shape)
    nt = locs.n_frames if n_frames is None else int(n_frames)
    out = np.zeros((nt, ny, nx), np.float64)
    if len(locs) == 0:
        return out
    if locs.photons is None:
        raise DataError(message("emitters without photons", "a photons column",
                                "Set photons per emitter."))
    if psf.is_3d and locs.z is None:
        raise DataError(message("3D emitters without z for an astigmatic PSF", "a z column",
                                "Pass z or use a Gaussian PSF."))
    sx, sy = psf.sigmas(locs.z if psf.is_3d else np.zeros(len(locs)))
    sx = np.broadcast_to(sx, (len(locs),)) / pixel_size
    sy = np.broadcast_to(sy, (len(locs),)) / pixel_size
    cx, cy = locs.x / pixel_size, locs.y / pixel_size
    half = int(math.ceil(4 * max(float(sx.max()), float(sy.max())))) + 1
    order = np.argsort(locs.frame, kind="stable")
    bounds = np.searchsorted(locs.frame[order], np.arange(nt + 1))
    chunk = max(1, 200_000 // (2 * half + 1) ** 2)
    offs = np.arange(-half, half + 1)
    done = 0
    for start in range(0, len(locs), chunk):
        idx = order[start:start + chunk]
        kx = np.floor(cx[idx]).astype(np.int64)[:, None] + offs
        ky = np.floor(cy[idx]).astype(np.int64)[:, None] + offs
        gx = integrated_gaussian(cx[idx], sx[idx], kx)
        gy = integrated_gaussian(cy[idx], sy[idx], ky)
        vals = locs.photons[idx, None, None] * gy[:, :, None] * gx[:, None, :]
        fr = np.broadcast_to(locs.frame[idx, None, None], vals.shape)
        yy = np.broadcast_to(ky[:, :, None], vals.shape)
        xx = np.broadcast_to(kx[:, None, :], vals.shape)
        ok = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx) & (fr < nt)
        np.add.at(out, (fr[ok], yy[ok], xx[ok]), vals[ok])
        if progress is not None:
            done = int(np.searchsorted(bounds, locs.frame[idx[-1]], side="right")) - 1
            progress(min(done + 1, nt), nt)
    return out


# ---------------------------------------------------------------------------------------
# Structures and blinking
# ---------------------------------------------------------------------------------------
Structure = Literal["filaments", "rings", "clusters", "uniform"]


def structure_labels(kind: Structure, field_nm: tuple[float, float], n_labels: int, *,
                     z_range: tuple[float, float] | None = None, rng: SeedLike,
                     ring_radius: float = 60.0, cluster_sigma: float = 30.0,
                     labels_per_structure: int = 40) -> np.ndarray:
    """Positions of fluorescent labels on a ground-truth structure.

    Parameters
    ----------
    kind : {"filaments", "rings", "clusters", "uniform"}
        filaments: worm-like chains (persistence length about half the field) crossing
        the field; rings: circles of radius ``ring_radius`` (nuclear-pore-like, 8-fold
        symmetric label sites jittered by 5 nm); clusters: isotropic Gaussian clusters of
        standard deviation ``cluster_sigma``; uniform: uniformly random.
    field_nm : (height, width)
        Field of view in nanometres (y, x).
    n_labels : int
        Number of labels.
    z_range : (z_min, z_max), optional
        For 3D structures: z in nanometres varies smoothly along filaments and is uniform
        per ring/cluster centre (and per label for ``uniform``). None: 2D (no z column).
    rng : seed or Generator
    ring_radius, cluster_sigma : float
        Nanometres.
    labels_per_structure : int
        Mean labels per ring or cluster (filaments share labels in proportion to length).

    Returns
    -------
    ndarray, shape (n_labels, 2) or (n_labels, 3)
        ``(x, y[, z])`` in nanometres, inside the field.
    """
    gen = make_rng(rng)
    h, w = float(field_nm[0]), float(field_nm[1])
    if n_labels < 0 or h <= 0 or w <= 0:
        raise ConfigError(message(f"n_labels={n_labels}, field {field_nm}",
                                  "n_labels >= 0 and a positive field", "Fix the values."))
    n = int(n_labels)
    zlo, zhi = (0.0, 0.0) if z_range is None else (float(z_range[0]), float(z_range[1]))
    if kind == "uniform":
        pts = np.stack([gen.uniform(0, w, n), gen.uniform(0, h, n),
                        gen.uniform(zlo, zhi, n)], 1)
    elif kind in ("rings", "clusters"):
        n_struct = max(1, int(round(n / max(labels_per_structure, 1))))
        margin = ring_radius if kind == "rings" else 2 * cluster_sigma
        centres = np.stack([gen.uniform(margin, max(w - margin, margin + 1), n_struct),
                            gen.uniform(margin, max(h - margin, margin + 1), n_struct),
                            gen.uniform(zlo, zhi, n_struct)], 1)
        which = gen.integers(0, n_struct, n)
        if kind == "rings":
            site = gen.integers(0, 8, n)
            phase = gen.uniform(0, 2 * np.pi, n_struct)[which]
            ang = phase + site * (2 * np.pi / 8)
            off = np.stack([ring_radius * np.cos(ang), ring_radius * np.sin(ang),
                            np.zeros(n)], 1) + gen.normal(0, 5.0, (n, 3)) * [1, 1, 0]
        else:
            off = gen.normal(0, cluster_sigma, (n, 3))
            if z_range is None:
                off[:, 2] = 0
        pts = centres[which] + off
    elif kind == "filaments":
        n_fil = max(1, int(round(max(h, w) / 1500.0)) + 1)
        step = 10.0
        length = int(2 * (h + w) / step)
        curves = []
        for _ in range(n_fil):
            start = np.array([gen.uniform(0, w), gen.uniform(0, h)])
            angle = gen.uniform(0, 2 * np.pi)
            turns = np.cumsum(gen.normal(0, math.sqrt(2 * step / (0.5 * max(h, w))), length))
            dirs = np.stack([np.cos(angle + turns), np.sin(angle + turns)], 1)
            path = start + np.cumsum(dirs * step, axis=0)
            path = np.concatenate([start - np.cumsum(dirs[::-1] * step, axis=0)[::-1], path])
            zz = np.zeros(len(path))
            if z_range is not None:
                k = np.arange(len(path)) / len(path)
                zz = zlo + (zhi - zlo) * (0.5 + 0.5 * np.sin(2 * np.pi * (k * gen.uniform(
                    0.5, 1.5) + gen.uniform(0, 1))))
            inside = (path[:, 0] >= 0) & (path[:, 0] < w) & (path[:, 1] >= 0) & (path[:, 1] < h)
            if inside.any():
                curves.append(np.column_stack([path[inside], zz[inside]]))
        if not curves:
            curves.append(np.array([[w / 2, h / 2, (zlo + zhi) / 2]]))
        allpts = np.concatenate(curves)
        pick = gen.integers(0, len(allpts), n)
        pts = allpts[pick] + np.column_stack([gen.uniform(-step / 2, step / 2, (n, 2)),
                                              np.zeros(n)])
        pts[:, :2] += gen.normal(0, 4.0, (n, 2))  # label displacement from the filament axis
    else:
        raise ConfigError(message(f"structure {kind!r}", "filaments, rings, clusters or "
                                  "uniform", "Pick one of those."))
    pts[:, 0] = np.clip(pts[:, 0], 0, np.nextafter(w, 0))
    pts[:, 1] = np.clip(pts[:, 1], 0, np.nextafter(h, 0))
    if z_range is not None:
        pts[:, 2] = np.clip(pts[:, 2], zlo, zhi)
        return pts
    return pts[:, :2]


def blink(n_labels: int, n_frames: int, *, k_on: float, k_off: float, k_bleach: float,
          rng: SeedLike, progress: Progress | None = None) -> np.ndarray:
    """On/off/bleached Markov chain of every label over the frames.

    Parameters
    ----------
    n_labels, n_frames : int
    k_on, k_off, k_bleach : float
        Per-frame probabilities of switching off -> on, on -> off and on -> bleached
        (``k_off + k_bleach <= 1``).
    rng : seed or Generator
    progress : callable, optional

    Returns
    -------
    ndarray of bool, shape (n_frames, n_labels)
        True where the label is on.

    Notes
    -----
    The first frame is drawn from the stationary on-fraction of the unbleached chain,
    ``p_on = k_on / (k_on + k_off)``; mean on-time ``1 / (k_off + k_bleach)`` frames.
    """
    gen = make_rng(rng)
    if not (0 <= k_on <= 1 and 0 <= k_off <= 1 and 0 <= k_bleach <= 1
            and k_off + k_bleach <= 1):
        raise ConfigError(message(f"k_on={k_on}, k_off={k_off}, k_bleach={k_bleach}",
                                  "probabilities in [0, 1] with k_off + k_bleach <= 1",
                                  "Fix the rates."))
    on = np.zeros((n_frames, n_labels), bool)
    if n_frames == 0 or n_labels == 0:
        return on
    p_on = k_on / (k_on + k_off) if k_on + k_off > 0 else 0.0
    state = gen.random(n_labels) < p_on
    alive = np.ones(n_labels, bool)
    for t in range(n_frames):
        on[t] = state
        u = gen.random(n_labels)
        turn_on = ~state & alive & (u < k_on)
        bleach = state & (u < k_bleach)
        turn_off = state & ~bleach & (u < k_bleach + k_off)
        alive &= ~bleach
        state = (state & ~bleach & ~turn_off) | turn_on
        if progress is not None and (t % 64 == 63 or t == n_frames - 1):
            progress(t + 1, n_frames)
    return on


# ---------------------------------------------------------------------------------------
# Full simulation
# ---------------------------------------------------------------------------------------
class SMLMConfig(BaseConfig):
    """Settings of :func:`simulate_smlm` (a blinking movie) and :func:`simulate_frames`."""

    version: int = Field(default=1, ge=1, le=1, description="Schema version.")
    frames: int = Field(default=200, ge=1, le=1_000_000, description="Number of frames.")
    shape: tuple[int, int] = Field(default=(64, 64), description="Frame shape (Y, X), pixels.")
    pixel_size: float = Field(default=100.0, gt=0, description="Camera pixel size in the "
                                                               "sample, nm.")
    structure: Structure = Field(default="filaments", description="Ground-truth structure "
                                 "the labels sit on: filaments, rings, clusters, uniform.")
    density: float = Field(default=0.5, gt=0, le=50.0, description="Mean active emitters "
                           "per square micrometre per frame (stationary, before bleaching).")
    k_on: float = Field(default=0.02, gt=0, le=1, description="Per-frame off -> on "
                                                             "probability.")
    k_off: float = Field(default=0.5, gt=0, le=1, description="Per-frame on -> off "
                                                             "probability.")
    k_bleach: float = Field(default=0.01, ge=0, le=1, description="Per-frame on -> bleached "
                                                                 "probability.")
    photons: float = Field(default=2000.0, gt=0, description="Mean photons per emitter and "
                                                             "on-frame.")
    photons_cv: float = Field(default=0.3, ge=0, le=3.0, description="Coefficient of "
                              "variation of the photons per on-frame (Gamma distributed).")
    background: float = Field(default=20.0, ge=0, description="Background photons per pixel "
                                                              "and frame.")
    psf: PSFModel = Field(default_factory=PSFModel, description="PSF model.")
    z_range: tuple[float, float] = Field(default=(-500.0, 500.0), description="z range of the "
                                         "labels for an astigmatic PSF, nm.")
    camera: CameraModel = Field(default_factory=CameraModel.emccd, description="Camera model.")

    @model_validator(mode="after")
    def _check(self) -> "SMLMConfig":
        if min(self.shape) < 4:
            raise ValueError(f"shape must be at least 4x4 pixels, got {self.shape}")
        if self.z_range[0] > self.z_range[1]:
            raise ValueError(f"z_range must be (min, max), got {self.z_range}")
        if self.k_off + self.k_bleach > 1:
            raise ValueError(f"k_off + k_bleach must be <= 1, got {self.k_off + self.k_bleach}")
        return self

    @property
    def field_nm(self) -> tuple[float, float]:
        """Field of view ``(height, width)`` in nanometres."""
        return self.shape[0] * self.pixel_size, self.shape[1] * self.pixel_size

    @property
    def on_fraction(self) -> float:
        """Stationary fraction of unbleached labels that are on, ``k_on / (k_on + k_off)``."""
        return self.k_on / (self.k_on + self.k_off)

    def n_labels(self) -> int:
        """Labels needed for :attr:`density` active emitters per square micrometre."""
        area = self.field_nm[0] * self.field_nm[1] / 1e6
        return max(1, int(round(self.density * area / self.on_fraction)))


@dataclass(frozen=True)
class SMLMSimulation:
    """Result of :func:`simulate_smlm` / :func:`simulate_frames`.

    Attributes
    ----------
    frames : ndarray of float32, shape (T, Y, X)
        Camera frames, ADU.
    background : ndarray, shape (T,)
        Background photons per pixel of every frame.
    truth : Localizations
        One row per active emitter and frame: frame, x, y (, z), photons, background.
    labels : ndarray, shape (n, 2) or (n, 3)
        All label positions, nanometres (the ground-truth structure).
    config : SMLMConfig
    """

    frames: np.ndarray
    background: np.ndarray
    truth: Localizations
    labels: np.ndarray
    config: SMLMConfig


def _photons(gen: np.random.Generator, n: int, mean: float, cv: float) -> np.ndarray:
    if cv == 0:
        return np.full(n, mean)
    k = 1.0 / cv ** 2
    return gen.gamma(k, mean / k, n)


def _image(truth: Localizations, config: SMLMConfig, gen: np.random.Generator,
           progress: Progress | None, offset_map: Any, gain_map: Any, read_noise_map: Any,
           background: Any = None) -> np.ndarray:
    lam = expected_photons(truth, config.shape, pixel_size=config.pixel_size, psf=config.psf,
                           n_frames=config.frames, progress=progress)
    lam += config.background if background is None else background
    return camera_forward(lam, config.camera, rng=gen, offset_map=offset_map,
                          gain_map=gain_map, read_noise_map=read_noise_map)


def simulate_smlm(config: SMLMConfig | None = None, *, seed: SeedLike = 0,
                  offset_map: Any = None, gain_map: Any = None, read_noise_map: Any = None,
                  progress: Progress | None = None) -> SMLMSimulation:
    """Simulate a blinking SMLM movie of labels on a structure, and its true localisations.

    Parameters
    ----------
    config : SMLMConfig, optional
        Defaults: 200 frames of 64 x 64 pixels of 100 nm, filaments, 0.5 active emitters
        per square micrometre, 2000 photons per on-frame, 20 background photons per pixel,
        Gaussian PSF of 130 nm, EMCCD.
    seed : int or Generator
    offset_map, gain_map, read_noise_map : array_like, optional
        Per-pixel sCMOS maps (ADU, ADU/e-, e- rms), shape (Y, X); see
        :func:`~fluorecon.simulate.camera.camera_forward`.
    progress : callable, optional
        ``progress(done, total)`` over the blinking and the imaging of the frames.

    Returns
    -------
    SMLMSimulation

    Examples
    --------
    >>> sim = simulate_smlm(SMLMConfig(frames=5, shape=(16, 16)), seed=0)
    >>> sim.frames.shape, sim.frames.dtype
    ((5, 16, 16), dtype('float32'))
    """
    cfg = config or SMLMConfig()
    gen = make_rng(seed)
    z_range = cfg.z_range if cfg.psf.is_3d else None
    labels = structure_labels(cfg.structure, cfg.field_nm, cfg.n_labels(), z_range=z_range,
                              rng=gen)
    total = 2 * cfg.frames

    def blink_progress(done: int, _total: int) -> None:
        if progress is not None:
            progress(done, total)

    on = blink(len(labels), cfg.frames, k_on=cfg.k_on, k_off=cfg.k_off,
               k_bleach=cfg.k_bleach, rng=gen, progress=blink_progress)
    fr, lab = np.nonzero(on)
    truth = Localizations.build(
        frame=fr, x=labels[lab, 0], y=labels[lab, 1],
        z=labels[lab, 2] if z_range is not None else None,
        photons=_photons(gen, fr.size, cfg.photons, cfg.photons_cv),
        background=np.full(fr.size, cfg.background),
        extra={"label": lab.astype(np.float64)})

    def image_progress(done: int, _total: int) -> None:
        if progress is not None:
            progress(cfg.frames + done, total)

    frames = _image(truth, cfg, gen, image_progress, offset_map, gain_map, read_noise_map)
    return SMLMSimulation(frames=frames, background=np.full(cfg.frames, cfg.background),
                          truth=truth, labels=labels, config=cfg)


def simulate_frames(config: SMLMConfig | None = None, *, seed: SeedLike = 0,
                    density: float | tuple[float, float] | None = None,
                    background: float | tuple[float, float] | None = None,
                    offset_map: Any = None, gain_map: Any = None, read_noise_map: Any = None,
                    progress: Progress | None = None) -> SMLMSimulation:
    """Independent frames of uniformly placed emitters (training data, density benchmarks).

    Each frame holds ``Poisson(density * area)`` emitters at uniformly random positions
    (z uniform in ``z_range`` for an astigmatic PSF), no blinking correlation between
    frames; the structure and kinetics fields of ``config`` are ignored. This is the
    simulation of Deep-STORM and DECODE training and of the SMLM challenge's density
    series.

    Parameters
    ----------
    config : SMLMConfig, optional
        Frames, shape, pixel size, photons, background, PSF and camera.
    seed : int or Generator
    density : float or (low, high), optional
        Emitters per square micrometre per frame; a range draws one density per frame
        uniformly (a network then sees sparse and dense frames). Default ``config.density``.
    background : float or (low, high), optional
        Background photons per pixel; a range draws one level per frame uniformly.
        Default ``config.background``.
    offset_map, gain_map, read_noise_map : array_like, optional
        sCMOS maps.
    progress : callable, optional

    Returns
    -------
    SMLMSimulation
        ``labels`` holds the emitter positions (one per row of ``truth``).
    """
    cfg = config or SMLMConfig()
    gen = make_rng(seed)
    dens = cfg.density if density is None else density
    lo, hi = (float(dens), float(dens)) if np.isscalar(dens) else (float(dens[0]),
                                                                   float(dens[1]))
    if not 0 <= lo <= hi:
        raise ConfigError(message(f"density {dens}", "a non-negative density or range",
                                  "Pass e.g. density=(0.5, 4)."))
    bg_in = cfg.background if background is None else background
    blo, bhi = (float(bg_in), float(bg_in)) if np.isscalar(bg_in) else (float(bg_in[0]),
                                                                       float(bg_in[1]))
    if not 0 <= blo <= bhi:
        raise ConfigError(message(f"background {bg_in}", "a non-negative level or range",
                                  "Pass e.g. background=(10, 40)."))
    h, w = cfg.field_nm
    per_frame = gen.uniform(lo, hi, cfg.frames) * h * w / 1e6
    counts = gen.poisson(per_frame)
    n = int(counts.sum())
    fr = np.repeat(np.arange(cfg.frames), counts)
    x, y = gen.uniform(0, w, n), gen.uniform(0, h, n)
    z = gen.uniform(cfg.z_range[0], cfg.z_range[1], n) if cfg.psf.is_3d else None
    bg = gen.uniform(blo, bhi, cfg.frames)
    truth = Localizations.build(frame=fr, x=x, y=y, z=z,
                                photons=_photons(gen, n, cfg.photons, cfg.photons_cv),
                                background=bg[fr])
    frames = _image(truth, cfg, gen, progress, offset_map, gain_map, read_noise_map,
                    background=bg[:, None, None])
    labels = truth.positions()
    return SMLMSimulation(frames=frames, background=bg, truth=truth, labels=labels, config=cfg)
