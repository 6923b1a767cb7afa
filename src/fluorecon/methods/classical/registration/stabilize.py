"""Drift correction and stabilisation of 2D/3D time-lapses: estimate the motion of every
frame against a reference, then resample the frames (intensities kept, never rescaled).

``estimate_motion`` returns a :class:`MotionEstimate` (per-frame matrices, or displacement
fields for ``model="flow"``) that can be inspected, saved beside the output
(:meth:`MotionEstimate.to_json`, :meth:`MotionEstimate.to_csv`) and applied to other
channels or to the raw data with ``apply_motion``. Conventions as in
:mod:`fluorecon.simulate.motion`: ``reference(x) = frame_t(M_t x)`` resp.
``frame_t(x + u_t(x))``; for drift the translation of ``M_t`` is the sample's position.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator
from scipy import ndimage

from fluorecon.core.axes import check_axes, spatial_axes
from fluorecon.core.config import BaseConfig
from fluorecon.core.dtypes import as_float32, check_image_array
from fluorecon.core.errors import AxesError, ConfigError, DataError, message
from fluorecon.methods.classical.registration.affine import register_affine
from fluorecon.methods.classical.registration.flow import matrix_field, register_flow
from fluorecon.methods.classical.registration.phase import phase_correlation

__all__ = ["MotionEstimate", "StabilizeConfig", "Stabilizer", "apply_motion",
           "estimate_motion"]

Progress = Callable[[int, int], None]


class StabilizeConfig(BaseConfig):
    """Settings of :func:`estimate_motion` / :class:`Stabilizer`."""

    version: int = Field(default=1, ge=1, description="Schema version.")
    model: Literal["translation", "rigid", "similarity", "affine", "flow"] = Field(
        default="translation", description="translation (phase correlation, sub-pixel), "
        "rigid / similarity / affine (intensity-based Gauss-Newton), flow (non-rigid TV-L1 "
        "optical flow after a rigid pre-alignment).")
    reference: Literal["first", "mean", "previous"] | int = Field(
        default="first", description="first frame; mean (register to the first, average "
        "the corrected frames, register again to that average); previous (each frame to "
        "the one before, motions chained: follows slowly changing samples); or a frame "
        "index.")
    channel: int | None = Field(default=None, ge=0, description="Channel that drives the "
                                "estimate when the data has a C axis (default: the sum of "
                                "all channels). Every channel is corrected alike.")
    refine: bool = Field(default=True, description="Refine the phase-correlation "
                         "translation by Gauss-Newton on intensities (several times more "
                         "accurate in noise; model=translation only).")
    upsample_factor: int = Field(default=100, ge=1, le=1000, description="Phase "
                                 "correlation precision, 1/factor pixel.")
    max_shift: float | None = Field(default=None, gt=0, description="Largest plausible "
                                    "translation between a frame and its reference, pixels.")
    flow_method: Literal["tvl1", "ilk"] = Field(default="tvl1", description="Optical flow "
                                                "solver of model=flow.")
    attachment: float = Field(default=15.0, gt=0, description="TV-L1 data weight (larger: "
                              "less smoothing of the flow).")
    order: int = Field(default=3, ge=0, le=5, description="Interpolation order when "
                       "resampling frames (1: linear, never overshoots; 3: cubic spline).")
    fill: Literal["nearest", "constant", "reflect"] = Field(
        default="nearest", description="Values outside the moved frame: nearest edge value, "
        "constant 0, or mirror.")

    @model_validator(mode="after")
    def _check(self) -> "StabilizeConfig":
        if self.model == "flow" and self.reference == "previous":
            raise ValueError("reference='previous' chains matrices only; use first, mean or "
                             "an index with model='flow'")
        if isinstance(self.reference, int) and self.reference < 0:
            raise ValueError(f"reference index must be >= 0, got {self.reference}")
        return self


@dataclass
class MotionEstimate:
    """Estimated motion of a time-lapse.

    Attributes
    ----------
    model : str
    spatial_axes : str
        ``"YX"`` or ``"ZYX"``.
    matrices : ndarray ``(T, d+1, d+1)`` or None
        Registration of each frame (``reference(x) = frame_t(M_t x)``), pixels.
    fields : ndarray ``(T, d, *spatial)`` or None
        Displacements for ``model="flow"``.
    quality : ndarray ``(T,)``
        Per-frame match quality: phase-correlation peak (translation) or ``1 - error``
        (other models), in ``[0, 1]``; low values flag frames to check.
    reference : str or int
    shape : tuple of int
        Spatial shape of the frames.
    pixel_size : dict
        Micrometres per pixel along spatial axes, when known (for the CSV).
    time_interval : float or None
        Seconds between frames, when known.
    """

    model: str
    spatial_axes: str
    matrices: np.ndarray | None
    fields: np.ndarray | None
    quality: np.ndarray
    reference: str | int
    shape: tuple[int, ...] = ()
    pixel_size: dict[str, float] = field(default_factory=dict)
    time_interval: float | None = None

    @property
    def n_frames(self) -> int:
        return int(self.quality.shape[0])

    def translations(self) -> np.ndarray:
        """``(T, d)`` displacement of the field-of-view centre, pixels (ZYX order).

        For matrices ``M_t c - c`` at the centre ``c`` (the drift); for fields the mean
        displacement.
        """
        d = len(self.spatial_axes)
        if self.matrices is not None:
            c = (np.array(self.shape, dtype=np.float64) - 1) / 2.0 if self.shape else np.zeros(d)
            return np.array([m[:d, :d] @ c + m[:d, d] - c for m in self.matrices])
        assert self.fields is not None
        return self.fields.reshape(self.n_frames, d, -1).mean(axis=2)

    def to_json(self) -> str:
        """JSON with model, axes, reference, per-frame matrices (not fields) and quality."""
        return json.dumps({
            "format": "fluorecon-motion", "version": 1, "model": self.model,
            "spatial_axes": self.spatial_axes, "shape": list(self.shape),
            "reference": self.reference,
            "convention": "reference(x) = frame_t(M_t x), pixel coordinates in "
                          f"{self.spatial_axes} order" if self.matrices is not None else
                          "reference(x) = frame_t(x + u_t(x)); fields stored as an image",
            "pixel_size_um": self.pixel_size, "time_interval_s": self.time_interval,
            "matrices": None if self.matrices is None else self.matrices.tolist(),
            "quality": self.quality.tolist(),
        }, indent=2)

    def to_csv(self) -> str:
        """One row per frame: displacement of the view centre in pixels (and micrometres
        when the pixel size is known), and the quality. For the full transform use
        :meth:`to_json`."""
        buf = io.StringIO()
        sp = self.spatial_axes
        tr = self.translations()
        cols = ["frame"] + (["time_s"] if self.time_interval else []) + \
            [f"d{a.lower()}_px" for a in sp]
        sizes = [self.pixel_size.get(a) for a in sp]
        if all(s is not None for s in sizes):
            cols += [f"d{a.lower()}_um" for a in sp]
        cols.append("quality")
        buf.write(",".join(cols) + "\n")
        for t in range(self.n_frames):
            row = [str(t)]
            if self.time_interval:
                row.append(f"{t * self.time_interval:.6g}")
            row += [f"{v:.5f}" for v in tr[t]]
            if all(s is not None for s in sizes):
                row += [f"{v * s:.6f}" for v, s in zip(tr[t], sizes)]  # type: ignore[operator]
            row.append(f"{self.quality[t]:.4f}")
            buf.write(",".join(row) + "\n")
        return buf.getvalue()


def _frames(stack: Any, axes: str, channel: int | None) -> tuple[np.ndarray, str]:
    """Frames ``(T, *spatial)`` float32 driving the estimate, and the spatial axes."""
    check_image_array(stack, name="time-lapse")
    up = check_axes(axes, ndim=len(stack.shape))
    if "T" not in up:
        raise AxesError(message(f"axes {up!r} without T", "a time axis T",
                                "Pass e.g. axes='TYX' or 'TZYX'."))
    if "S" in up:
        raise AxesError(message(f"axes {up!r} with S", "one time-lapse (T, optional C, "
                                "spatial)", "Process each sample separately."))
    sp = spatial_axes(up)
    arr = as_float32(stack)
    order = [up.index("T")] + ([up.index("C")] if "C" in up else []) + [up.index(a) for a in sp]
    arr = np.transpose(arr, order)
    if "C" in up:
        if channel is not None:
            if channel >= arr.shape[1]:
                raise ConfigError(message(f"channel={channel} for {arr.shape[1]} channels",
                                          f"0 <= channel < {arr.shape[1]}", "Fix --channel."))
            arr = arr[:, channel]
        else:
            arr = arr.sum(axis=1)
    if arr.shape[0] < 2:
        raise DataError(message(f"a time-lapse with {arr.shape[0]} frame", "at least 2 frames",
                                "Check the T axis."))
    return np.ascontiguousarray(arr), sp


def _pair(ref: np.ndarray, mov: np.ndarray, cfg: StabilizeConfig
          ) -> tuple[np.ndarray | None, np.ndarray | None, float]:
    d = ref.ndim
    pc = phase_correlation(ref, mov, upsample_factor=cfg.upsample_factor,
                           max_shift=cfg.max_shift)
    m0 = np.eye(d + 1)
    m0[:d, d] = -pc.shift  # ndimage.shift(mov, s) ~ ref  <=>  ref(x) = mov(x - s)
    if cfg.model == "translation" and not cfg.refine:
        return m0, None, pc.peak
    model = "rigid" if cfg.model == "flow" else cfg.model
    # the phase-correlation start is within a pixel: a pure translation needs no pyramid
    res = register_affine(ref, mov, model=model, init=m0,  # type: ignore[arg-type]
                          levels=1 if model == "translation" else None)
    q = float(np.clip(1.0 - res.error, 0.0, 1.0))
    if cfg.model != "flow":
        return res.matrix, None, q
    u = register_flow(ref, mov, method=cfg.flow_method, init=res.matrix,
                      attachment=cfg.attachment)
    return None, u, q


def estimate_motion(stack: Any, axes: str, *, config: StabilizeConfig | None = None,
                    progress: Progress | None = None, **kwargs: Any) -> MotionEstimate:
    """Estimate per-frame motion of a time-lapse against a reference frame.

    Parameters
    ----------
    stack : array_like
        Time-lapse with a ``T`` axis (``"TYX"``, ``"TZYX"``, ``"TCYX"``, ...). Not modified.
    axes : str
    config : StabilizeConfig, optional
        Settings (or pass its fields as keywords).
    progress : callable, optional
        ``progress(done, total)`` per registered frame.

    Returns
    -------
    MotionEstimate
        The reference frame's own motion is the identity (except with ``"mean"``).

    Notes
    -----
    Translation: windowed phase correlation with upsampled-DFT refinement
    (:func:`~fluorecon.methods.classical.registration.phase_correlation`), then (with
    ``refine``) a translation-only Gauss-Newton fit on intensities: phase correlation
    whitens the spectrum, which amplifies noise at high frequencies, while the
    least-squares fit weighs every pixel alike. Rigid,
    similarity, affine: Gauss-Newton on intensities with a fitted gain and offset
    (:func:`~fluorecon.methods.classical.registration.register_affine`), started from the
    phase-correlation translation. Flow: rigid, then TV-L1 optical flow on the rigidly
    aligned frame (:func:`~fluorecon.methods.classical.registration.register_flow`).
    ``"previous"`` chains ``M_t = N_t M_{t-1}`` where ``N_t`` registers frame ``t`` onto
    ``t-1``: errors accumulate as a random walk, but a sample that changes over time
    stays matched.
    """
    if config is not None and kwargs:
        raise TypeError("pass either a config or keyword fields, not both")
    cfg = config if config is not None else StabilizeConfig.build(**kwargs)
    assert isinstance(cfg, StabilizeConfig)
    frames, sp = _frames(stack, axes, cfg.channel)
    n_t = frames.shape[0]
    d = len(sp)
    ref_idx = cfg.reference if isinstance(cfg.reference, int) else 0
    if ref_idx >= n_t:
        raise ConfigError(message(f"reference frame {ref_idx} of {n_t} frames",
                                  f"an index below {n_t}", "Fix --reference."))
    total = n_t * (2 if cfg.reference == "mean" else 1)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    mats = np.tile(np.eye(d + 1), (n_t, 1, 1)) if cfg.model != "flow" else None
    flds = np.zeros((n_t, d) + frames.shape[1:], np.float32) if cfg.model == "flow" else None
    qual = np.ones(n_t)

    def register_all(reference: np.ndarray, skip: int | None) -> None:
        for t in range(n_t):
            if t == skip:
                tick()
                continue
            m, u, q = _pair(reference, frames[t], cfg)
            if mats is not None and m is not None:
                mats[t] = m
            if flds is not None and u is not None:
                flds[t] = u
            qual[t] = q
            tick()

    if cfg.reference == "previous":
        for t in range(1, n_t):
            m, _, q = _pair(frames[t - 1], frames[t], cfg)
            assert mats is not None and m is not None
            mats[t] = m @ mats[t - 1]
            qual[t] = q
            tick()
        tick()
    else:
        register_all(frames[ref_idx], ref_idx)
        if cfg.reference == "mean":
            est = MotionEstimate(cfg.model, sp, mats, flds, qual, cfg.reference,
                                 tuple(frames.shape[1:]))
            mean = _resample(frames, est, cfg.order, cfg.fill).mean(axis=0)
            register_all(mean, None)
    return MotionEstimate(model=cfg.model, spatial_axes=sp, matrices=mats, fields=flds,
                          quality=qual, reference=cfg.reference,
                          shape=tuple(int(n) for n in frames.shape[1:]))


def _resample(frames: np.ndarray, motion: MotionEstimate, order: int, fill: str,
              progress: Progress | None = None, offset: int = 0, total: int = 0
              ) -> np.ndarray:
    """Correct ``(T, *spatial)`` frames with ``motion``."""
    out = np.empty(frames.shape, np.float32)
    mode = "constant" if fill == "constant" else ("mirror" if fill == "reflect" else "nearest")
    d = frames.ndim - 1
    for t in range(frames.shape[0]):
        if motion.fields is not None:
            grid = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in frames.shape[1:]],
                               indexing="ij")
            coords = np.stack([g + u for g, u in zip(grid, motion.fields[t])])
            out[t] = ndimage.map_coordinates(frames[t], coords, order=order, mode=mode)
        else:
            assert motion.matrices is not None
            m = motion.matrices[t]
            if np.allclose(m, np.eye(d + 1)):
                out[t] = frames[t]
            else:
                out[t] = ndimage.affine_transform(frames[t], m, order=order, mode=mode)
        if progress is not None:
            progress(offset + t + 1, total or frames.shape[0])
    return out


def apply_motion(stack: Any, axes: str, motion: MotionEstimate, *, order: int = 3,
                 fill: Literal["nearest", "constant", "reflect"] = "nearest",
                 progress: Progress | None = None) -> np.ndarray:
    """Resample every frame (and every channel alike) to undo ``motion``.

    Parameters
    ----------
    stack : array_like
        Time-lapse with the frames ``motion`` was estimated on (same T and spatial shape);
        any channels. Not modified.
    axes : str
    motion : MotionEstimate
    order : int
        Spline order (0-5). 1 never overshoots: corrected values stay within the range of
        their neighbours. 3 preserves fine detail better but can ring by a few percent at
        sharp edges. Values are never rescaled.
    fill : {"nearest", "constant", "reflect"}
        Pixels that come from outside the frame.
    progress : callable, optional

    Returns
    -------
    ndarray
        float32, same shape and axes as ``stack``.
    """
    check_image_array(stack, name="time-lapse")
    up = check_axes(axes, ndim=len(stack.shape))
    sp = spatial_axes(up)
    if "T" not in up or sp != motion.spatial_axes:
        raise AxesError(message(f"axes {up!r} for motion over {motion.spatial_axes!r}",
                                f"T and spatial axes {motion.spatial_axes!r}",
                                "Apply the motion to the data it was estimated on."))
    arr = as_float32(stack)
    t_ax = up.index("T")
    if arr.shape[t_ax] != motion.n_frames:
        raise DataError(message(f"{arr.shape[t_ax]} frames for a motion of {motion.n_frames}",
                                "the same number of frames", "Use the matching time-lapse."))
    others = [i for i, a in enumerate(up) if a not in sp and i != t_ax]
    order_ax = others + [t_ax] + [up.index(a) for a in sp]
    moved = np.transpose(arr, order_ax)
    out = np.empty(moved.shape, np.float32)
    lead = moved.shape[:len(others)]
    n_lead = int(np.prod(lead)) if lead else 1
    total = n_lead * motion.n_frames
    for i, idx in enumerate(np.ndindex(*lead) if lead else [()]):
        out[idx] = _resample(np.ascontiguousarray(moved[idx]), motion, order, fill, progress,
                             i * motion.n_frames, total)
    return np.transpose(out, np.argsort(order_ax))


class Stabilizer:
    """Drift correction / stabilisation: :meth:`estimate` then :meth:`apply` (or
    :meth:`predict` for both). Same settings as :class:`StabilizeConfig`."""

    name = "stabilize"
    Config = StabilizeConfig

    def __init__(self, config: StabilizeConfig | None = None, **kwargs: Any) -> None:
        self.config = config if config is not None else StabilizeConfig.build(**kwargs)
        self.motion_: MotionEstimate | None = None

    def estimate(self, stack: Any, axes: str, *, progress: Progress | None = None
                 ) -> MotionEstimate:
        """Estimate and keep (in :attr:`motion_`) the motion of ``stack``."""
        self.motion_ = estimate_motion(stack, axes, config=self.config, progress=progress)
        return self.motion_

    def apply(self, stack: Any, axes: str, motion: MotionEstimate | None = None, *,
              progress: Progress | None = None) -> np.ndarray:
        """Correct ``stack`` with ``motion`` (default: the last estimate)."""
        mot = motion if motion is not None else self.motion_
        if mot is None:
            raise ConfigError(message("no motion estimate", "estimate() first or a motion",
                                      "Call estimate(stack, axes)."))
        return apply_motion(stack, axes, mot, order=self.config.order, fill=self.config.fill,
                            progress=progress)

    def predict(self, stack: Any, axes: str, *, progress: Progress | None = None
                ) -> np.ndarray:
        """Estimate the motion of ``stack`` and return it corrected."""
        self.estimate(stack, axes)
        return self.apply(stack, axes, progress=progress)


def field_from_motion(motion: MotionEstimate, shape: tuple[int, ...]) -> np.ndarray:
    """Displacement fields ``(T, d, *shape)`` of any motion (matrices converted)."""
    if motion.fields is not None:
        return motion.fields
    assert motion.matrices is not None
    return np.stack([matrix_field(m, shape) for m in motion.matrices])
