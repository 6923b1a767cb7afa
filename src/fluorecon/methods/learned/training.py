"""One training engine for every learned method: patches, augmentation, loss, schedule,
early stopping, seeded determinism, checkpoints that resume, progress and history.

A learned method supplies three things: the network (an ``nn.Module``), the data as
lists of normalised ``(C, *spatial)`` float32 arrays (inputs and targets of the same
spatial shape), and an :class:`Objective` that turns a batch of patches into the network
input, the target and a per-pixel loss weight (CARE: the pair itself, weight 1;
Noise2Void: masked input, the unmasked patch, weight 1 at the masked pixels only).
Everything else lives here, once.

Determinism: every random choice (patch positions, augmentations, masks) comes from one
NumPy ``Generator`` seeded from :attr:`TrainingConfig.seed`, whose state is part of each
checkpoint; the initial weights come from ``torch.manual_seed`` (set by the caller before
building the network). On the CPU, with the same number of threads, the same seed gives
bit-identical weights, and an interrupted-then-resumed run gives the same weights as an
uninterrupted one. (CUDA convolutions are not guaranteed bit-reproducible.)
"""

from __future__ import annotations

import contextvars
import csv
import dataclasses
import hashlib
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from pydantic import Field, model_validator
from safetensors.torch import load_file, save_file
from torch import nn

from fluorecon.core.config import BaseConfig
from fluorecon.core.errors import ConfigError, DataError, InputFileError, OutputExistsError, message
from fluorecon.core.heap import heap_reuse
from fluorecon.methods.learned.inference import autocast_context

ProgressFn = Callable[[int, int, dict[str, float]], None]

CHECKPOINT_JSON = "checkpoint.json"
#: Multi-process hook: set (per process) by :mod:`fluorecon.methods.learned.ddp` to an
#: object whose ``prepare(net, sampler, config, device)`` returns the
#: DistributedDataParallel-wrapped net, this rank's share of the sampler, the per-rank
#: config and the device, and whose ``writes_checkpoints`` is true on rank 0 only. None
#: (the default) is ordinary single-process training.
PARALLEL: contextvars.ContextVar[Any] = contextvars.ContextVar("fluorecon_parallel",
                                                               default=None)
CHECKPOINT_FORMAT = "fluorecon-checkpoint"
CHECKPOINT_VERSION = 1
HISTORY_COLUMNS = ("step", "train_loss", "val_loss", "lr", "time_s")


#: Adam's peak learning rate at and below :data:`REFERENCE_BATCH` patches per step.
BASE_LEARNING_RATE = 1e-3
#: Batch size above which the default learning rate grows (square-root rule).
REFERENCE_BATCH = 32


def default_learning_rate(batch_size: int) -> float:
    """The default peak learning rate of Adam for ``batch_size`` patches per step.

    ``1e-3`` (Adam's own default, as in CAREamics) up to :data:`REFERENCE_BATCH` patches,
    then the square-root scaling rule for adaptive optimisers [1]_,
    ``1e-3 * sqrt(batch_size / 32)``: 2e-3 at 128 patches. A larger batch averages out
    more gradient noise, so the same number of steps can take larger ones; the rule keeps
    the noise of the updates about constant. Below 32 patches the rate is not lowered:
    short runs on small batches would converge more slowly.

    On the W2S data (N2V, 90 steps of 128 patches, 3 seeds; ``docs/benchmarks.md``) 1e-3
    gave 29.94 dB, 2e-3 30.17 dB and 2.8e-3 (``sqrt(batch / 16)``) 30.08 dB.

    References
    ----------
    .. [1] S. Malladi, K. Lyu, A. Panigrahi, S. Arora, "On the SDEs and scaling rules for
       adaptive gradient algorithms", NeurIPS 2022.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return BASE_LEARNING_RATE * math.sqrt(max(batch_size, REFERENCE_BATCH) / REFERENCE_BATCH)


class TrainingConfig(BaseConfig):
    """Settings of :func:`train` (shared by every learned method's config).

    ``steps`` counts optimiser updates of ``batch_size`` patches each. Validation runs
    every ``validation_interval`` steps (and after the last) on a fixed set of
    ``validation_patches`` patches from the held-out part of every image; the learning
    rate schedule, early stopping and the choice of the best weights use its loss.
    """

    patch_size: int | tuple[int, ...] = Field(
        default=64, description="Patch size: one int for all spatial axes, or one per axis "
                                "(ZYX order). Must be divisible by 2**depth.")
    batch_size: int = Field(default=16, ge=1, le=4096, description="Patches per step.")
    steps: int = Field(default=2000, ge=1, description="Optimiser steps (updates).")
    learning_rate: float = Field(
        default=None, gt=0, le=1.0, validate_default=False,  # type: ignore[assignment]
        description="Adam (peak) learning rate; default (None) "
                    "default_learning_rate(batch_size): 1e-3 up to 32 patches per step, "
                    "1e-3 * sqrt(batch_size / 32) above.")
    lr_schedule: Literal["plateau", "cosine", "constant"] = Field(
        default="cosine", description="plateau: multiply by lr_factor after lr_patience "
                                       "validations without improvement; cosine: anneal to "
                                       "min_lr over all steps; constant.")
    lr_factor: float = Field(default=0.5, gt=0, lt=1, description="Plateau reduction factor.")
    lr_patience: int = Field(default=10, ge=1, description="Validations without improvement "
                                                           "before the plateau reduction.")
    min_lr: float = Field(default=0.0, ge=0, description="Lower bound of the learning rate.")
    validation_fraction: float = Field(
        default=0.1, ge=0.0, lt=1.0, description="Fraction of every image (along its longest "
                                                 "spatial axis, at its end) held out.")
    validation_interval: int = Field(default=100, ge=1, description="Steps between "
                                                                    "validations.")
    validation_patches: int = Field(default=32, ge=1, description="Fixed validation patches.")
    early_stopping_patience: int | None = Field(
        default=None, ge=1, description="Stop after this many validations without "
                                        "improvement; None trains all steps.")
    keep_best: bool = Field(default=True, description="Return the weights of the best "
                                                      "validation loss, not the last.")
    augment: bool = Field(default=True, description="Random flips and 90-degree rotations "
                                                    "in the YX plane (8-fold).")
    rotate: bool = Field(default=True, description="With augment: also 90-degree turns in "
                                                   "the YX plane; False: the 4 mirror "
                                                   "images only (noise, optics or sampling "
                                                   "that differ between Y and X).")
    foreground_weight: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Fraction of patches drawn with probability "
                                                 "proportional to their mean target "
                                                 "intensity (0: uniform).")
    checkpoint_interval: int = Field(default=500, ge=1, description="Steps between "
                                                                    "checkpoints.")
    seed: int = Field(default=0, ge=0, description="Seed of weights, patches, masks.")
    precision: Literal["fp32", "bf16", "auto"] = Field(
        default="fp32", description="Arithmetic of the forward pass: fp32, or bf16 "
                                    "autocast (weights, gradients, optimiser and loss stay "
                                    "fp32; about 2.5x faster on CPUs with AMX, 0.1 dB lower "
                                    "N2V PSNR on W2S); auto: bf16 where the device computes "
                                    "it natively (CPUs with AMX, CUDA GPUs with bf16), else "
                                    "fp32.")

    @model_validator(mode="before")
    @classmethod
    def _default_learning_rate(cls, data: Any) -> Any:
        """Fill a missing (or None) ``learning_rate`` from the batch size."""
        if not isinstance(data, dict) or data.get("learning_rate") is not None:
            return data
        batch = data.get("batch_size", cls.model_fields["batch_size"].default)
        try:
            batch = max(1, int(batch))
        except (TypeError, ValueError):  # the batch_size field reports it
            batch = REFERENCE_BATCH
        return {**data, "learning_rate": default_learning_rate(batch)}

    @model_validator(mode="after")
    def _check(self) -> "TrainingConfig":
        sizes = (self.patch_size,) if isinstance(self.patch_size, int) else self.patch_size
        if not 1 <= len(sizes) <= 3 or any(s < 1 for s in sizes):
            raise ValueError(f"patch_size must be positive, one int or 2-3 ints, got "
                             f"{self.patch_size}")
        needs_val = (self.lr_schedule == "plateau" or self.early_stopping_patience is not None
                     or self.keep_best)
        if needs_val and self.validation_fraction == 0:
            raise ValueError("validation_fraction=0 leaves no validation data, which "
                             "lr_schedule='plateau', early_stopping_patience and keep_best "
                             "need; use lr_schedule='cosine'/'constant' and keep_best=False")
        return self

    def patch_shape(self, ndim: int) -> tuple[int, ...]:
        """Patch shape for ``ndim`` spatial axes (ZYX order)."""
        if isinstance(self.patch_size, int):
            return (self.patch_size,) * ndim
        if len(self.patch_size) != ndim:
            raise ConfigError(message(f"patch_size {self.patch_size} for {ndim}D data",
                                      f"one int or {ndim} ints", "Fix patch_size."))
        return tuple(self.patch_size)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively, so bf16 autocast is faster than fp32.

    CUDA: ``torch.cuda.is_bf16_supported()``. CPU: AMX tiles (Intel Sapphire Rapids and
    later), with which a training step of the CAREamics-sized N2V network runs about 2.5x
    faster in bf16 than in fp32 (``docs/benchmarks.md``); without them bf16 autocast is
    several times *slower* on a CPU.
    """
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
        return bool(amx()) if callable(amx) else False
    return False


def training_precision(precision: str, device: torch.device) -> Literal["fp32", "bf16"]:
    """Resolve :attr:`TrainingConfig.precision` for ``device`` (``auto`` -> bf16 where the
    device computes it natively, see :func:`native_bf16`)."""
    if precision == "fp32":
        return "fp32"
    if precision == "bf16":
        if device.type not in ("cpu", "cuda"):
            raise ConfigError(message(f"precision='bf16' on device {device}", "a CPU or "
                                      "CUDA device", "Use precision='fp32'."))
        return "bf16"
    return "bf16" if native_bf16(device) else "fp32"


# -- objectives ---------------------------------------------------------------------------
class Objective(Protocol):
    """Turns a batch of (input, target) patches into what the network and the loss see."""

    loss: str  # "mse", "mae" or "laplace"

    def make_batch(self, inputs: np.ndarray, targets: np.ndarray, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Return ``(net_input, target, weight)``; ``weight`` (shape of ``target``) or None."""
        ...


@dataclass(frozen=True)
class SupervisedObjective:
    """Learn ``input -> target`` on every pixel (CARE, Noise2Noise)."""

    loss: str = "mse"

    def make_batch(self, inputs: np.ndarray, targets: np.ndarray, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        return inputs, targets, None


def pixel_loss(output: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
               loss: str) -> torch.Tensor:
    """Weighted mean of a per-pixel loss.

    Parameters
    ----------
    output : Tensor, ``(N, C, ...)`` or ``(N, 2C, ...)`` for ``loss="laplace"``
        Network output: means, then (Laplace) scales.
    target : Tensor, ``(N, C, ...)``
    weight : Tensor or None
        Non-negative per-pixel weights of ``target``'s shape; None weighs all pixels 1.
    loss : {"mse", "mae", "laplace"}

    Notes
    -----
    ``mse``: :math:`(\\mu - y)^2`; ``mae``: :math:`|\\mu - y|`; ``laplace``: the negative
    log-likelihood of a Laplace distribution with scale :math:`b`,
    :math:`\\log(2b) + |y - \\mu| / b`. The result is
    :math:`\\sum_i w_i \\ell_i / \\sum_i w_i`.
    """
    c = target.shape[1]
    mean = output[:, :c]
    if loss == "mse":
        per = (mean - target) ** 2
    elif loss == "mae":
        per = (mean - target).abs()
    elif loss == "laplace":
        if output.shape[1] != 2 * c:
            raise ValueError("the laplace loss needs a probabilistic network (2C outputs)")
        b = output[:, c:]
        per = torch.log(2 * b) + (mean - target).abs() / b
    else:
        raise ValueError(f"unknown loss {loss!r}")
    if weight is None:
        return per.mean()
    return (per * weight).sum() / weight.sum().clamp_min(1e-12)


# -- patch sampling -----------------------------------------------------------------------
def augment_batch(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, *,
                  rotate: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Apply one random element of the YX dihedral group (8 when Y == X) per sample.

    ``x`` and ``y`` are ``(N, C, *spatial)``; the same transform is applied to both. With
    non-square YX patches, or ``rotate=False``, only the 4 mirror images (identity, the two
    flips, the half turn) are used: a 90-degree turn would change the shape, or swap Y and
    X. Z is never flipped or rotated (anisotropic sampling).
    """
    xs, ys = [], []
    turns = rotate and x.shape[-1] == x.shape[-2]
    for i in range(x.shape[0]):
        k = int(rng.integers(4)) if turns else 2 * int(rng.integers(2))
        flip = bool(rng.integers(2))
        xi, yi = np.rot90(x[i], k, axes=(-2, -1)), np.rot90(y[i], k, axes=(-2, -1))
        if flip:
            xi, yi = xi[..., ::-1], yi[..., ::-1]
        xs.append(xi)
        ys.append(yi)
    return np.ascontiguousarray(np.stack(xs)), np.ascontiguousarray(np.stack(ys))


@dataclass
class _Region:
    image: int
    start: tuple[int, ...]
    shape: tuple[int, ...]
    cdf: np.ndarray | None = None  # foreground sampling over a lattice of corners
    stride: tuple[int, ...] = ()
    grid: tuple[int, ...] = ()


class PatchSampler:
    """Random patches from a list of large images, with a held-out validation part.

    Parameters
    ----------
    inputs, targets : list of ndarray, ``(C_in, *spatial)`` and ``(C_out, *spatial)``
        Normalised float32 images; pairs share their spatial shape (2D or 3D, all alike).
    patch_shape : tuple of int
        Spatial patch shape.
    validation_fraction : float
        Fraction of each image, at the end of its longest spatial axis, held out for
        validation (0: none). The held-out slab and the training part do not overlap, so
        no validation pixel is ever seen in training.
    foreground_weight : float
        With this probability a patch's corner is drawn with probability proportional to
        the patch's mean (clipped at 0, channel-summed) target intensity, evaluated on a
        lattice of corners spaced a quarter patch apart (then jittered within a lattice
        cell); otherwise uniformly.

    Raises
    ------
    DataError
        An image (or its training or validation part) is smaller than a patch.
    """

    def __init__(self, inputs: Sequence[np.ndarray], targets: Sequence[np.ndarray],
                 patch_shape: tuple[int, ...], *, validation_fraction: float = 0.1,
                 foreground_weight: float = 0.0) -> None:
        if len(inputs) != len(targets) or not inputs:
            raise DataError(message(f"{len(inputs)} inputs and {len(targets)} targets",
                                    "the same, non-zero number of each", "Pass pairs."))
        self.inputs = list(inputs)
        self.targets = list(targets)
        self.patch = tuple(int(p) for p in patch_shape)
        self.foreground_weight = float(foreground_weight)
        nd = len(self.patch)
        self.train_regions: list[_Region] = []
        self.val_regions: list[_Region] = []
        for i, (x, y) in enumerate(zip(self.inputs, self.targets)):
            sp = tuple(x.shape[1:])
            if len(sp) != nd or tuple(y.shape[1:]) != sp:
                raise DataError(message(f"input {i} of shape {x.shape} and target of shape "
                                        f"{y.shape}", f"{nd}D pairs of equal spatial shape",
                                        "Check the axes of the training data."))
            if any(s < p for s, p in zip(sp, self.patch)):
                raise DataError(message(f"image {i} of spatial shape {sp}",
                                        f"at least the patch shape {self.patch}",
                                        "Use a smaller patch_size."))
            if validation_fraction > 0:
                ax = max(range(nd), key=lambda a: (sp[a], a))
                n_val = max(math.ceil(validation_fraction * sp[ax]), self.patch[ax])
                if sp[ax] - n_val < self.patch[ax]:
                    raise DataError(message(
                        f"image {i} of spatial shape {sp} (axis {ax} has {sp[ax]} pixels)",
                        f"room for a training and a validation patch of {self.patch[ax]} "
                        "pixels along it", "Use a smaller patch_size or larger images."))
                tr_shape = list(sp)
                tr_shape[ax] -= n_val
                start = [0] * nd
                start[ax] = sp[ax] - n_val
                va_shape = list(sp)
                va_shape[ax] = n_val
                self.train_regions.append(_Region(i, (0,) * nd, tuple(tr_shape)))
                self.val_regions.append(_Region(i, tuple(start), tuple(va_shape)))
            else:
                self.train_regions.append(_Region(i, (0,) * nd, sp))
        self._counts = np.array([self._n_corners(r) for r in self.train_regions], np.float64)
        if self.foreground_weight > 0:
            for r in self.train_regions:
                self._foreground_cdf(r)

    def _valid(self, r: _Region) -> tuple[int, ...]:
        return tuple(s - p + 1 for s, p in zip(r.shape, self.patch))

    def _n_corners(self, r: _Region) -> int:
        return int(np.prod(self._valid(r)))

    def _foreground_cdf(self, r: _Region) -> None:
        valid = self._valid(r)
        stride = tuple(max(1, p // 4) for p in self.patch)
        sl = tuple(slice(s, s + n) for s, n in zip(r.start, r.shape))
        img = np.clip(self.targets[r.image][(slice(None),) + sl], 0, None).sum(0)
        sat = np.zeros(tuple(n + 1 for n in img.shape), np.float64)  # summed-area table
        sat[tuple(slice(1, None) for _ in img.shape)] = img
        for a in range(img.ndim):
            np.cumsum(sat, axis=a, out=sat)
        grids = [np.arange(0, v, s) for v, s in zip(valid, stride)]
        mesh = np.meshgrid(*grids, indexing="ij")
        box = np.zeros(mesh[0].shape, np.float64)
        for corner in itertools.product((0, 1), repeat=img.ndim):
            idx = tuple(m + c * p for m, c, p in zip(mesh, corner, self.patch))
            box += (-1) ** (img.ndim - sum(corner)) * sat[idx]
        w = np.clip(box.ravel(), 0, None)
        r.cdf = None if w.sum() <= 0 else np.cumsum(w / w.sum())
        r.stride, r.grid = stride, tuple(len(g) for g in grids)

    def _corner(self, r: _Region, rng: np.random.Generator, foreground: bool) -> tuple[int, ...]:
        valid = self._valid(r)
        if foreground and r.cdf is not None:
            k = min(int(np.searchsorted(r.cdf, rng.random(), side="right")), r.cdf.size - 1)
            cell = np.unravel_index(k, r.grid)
            return tuple(min(int(c) * s + int(rng.integers(s)), v - 1)
                         for c, s, v in zip(cell, r.stride, valid))
        return tuple(int(rng.integers(v)) for v in valid)

    def _cut(self, r: _Region, corner: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        sl = (slice(None),) + tuple(slice(s + c, s + c + p)
                                    for s, c, p in zip(r.start, corner, self.patch))
        return self.inputs[r.image][sl], self.targets[r.image][sl]

    def train_batch(self, batch_size: int, rng: np.random.Generator, *, augment: bool,
                    rotate: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``batch_size`` random training patches, ``(N, C_in, *patch)``, ``(N, C_out, *patch)``,
        augmented by :func:`augment_batch` when ``augment``."""
        p_img = self._counts / self._counts.sum()
        xs, ys = [], []
        for _ in range(batch_size):
            r = self.train_regions[int(rng.choice(len(p_img), p=p_img))]
            fg = self.foreground_weight > 0 and rng.random() < self.foreground_weight
            x, y = self._cut(r, self._corner(r, rng, fg))
            xs.append(x)
            ys.append(y)
        xb, yb = np.stack(xs), np.stack(ys)
        if augment:
            xb, yb = augment_batch(xb, yb, rng, rotate=rotate)
        return xb, yb

    def validation_set(self, n: int, rng: np.random.Generator
                       ) -> tuple[np.ndarray, np.ndarray] | None:
        """``n`` uniformly drawn validation patches (fixed once drawn), or None."""
        if not self.val_regions:
            return None
        counts = np.array([self._n_corners(r) for r in self.val_regions], np.float64)
        xs, ys = [], []
        for _ in range(n):
            r = self.val_regions[int(rng.choice(len(counts), p=counts / counts.sum()))]
            x, y = self._cut(r, self._corner(r, rng, False))
            xs.append(x)
            ys.append(y)
        return np.stack(xs), np.stack(ys)

    def describe(self) -> dict[str, Any]:
        """JSON summary: images, shapes, training and validation pixel counts."""
        return {
            "n_images": len(self.inputs),
            "input_shapes": [list(x.shape) for x in self.inputs],
            "target_shapes": [list(y.shape) for y in self.targets],
            "patch_shape": list(self.patch),
            "train_pixels": int(sum(np.prod(r.shape) for r in self.train_regions)),
            "validation_pixels": int(sum(np.prod(r.shape) for r in self.val_regions)),
        }


def data_fingerprint(arrays: Sequence[np.ndarray]) -> str:
    """BLAKE2b digest of the shapes and bytes of ``arrays`` (identifies training data)."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a, dtype=np.float32)
        h.update(repr(a.shape).encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


# -- the engine ---------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    history : list of dict
        One row per validation (or per ``validation_interval`` steps without validation):
        ``step``, ``train_loss`` (mean since the previous row), ``val_loss`` (NaN without
        validation), ``lr``, ``time_s`` (training seconds so far).
    steps_done : int
        Optimiser steps taken (less than ``steps`` after early stopping).
    best_step, best_val_loss : int, float
        Step and loss of the best validation (``-1`` / NaN without validation).
    stopped_early : bool
    final_weights : {"best", "last"}
        Which weights the network holds on return.
    precision : {"fp32", "bf16"}
        Arithmetic of the forward passes (``TrainingConfig.precision`` resolved).
    """

    history: list[dict[str, float]]
    steps_done: int
    best_step: int
    best_val_loss: float
    stopped_early: bool
    final_weights: str
    data: dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"


@dataclass
class _State:
    step: int = 0
    pending_post: bool = False
    lr: float = 0.0
    best_val: float = math.inf
    best_step: int = -1
    bad_rounds: int = 0          # validations without improvement (early stopping)
    plateau_bad: int = 0         # validations without improvement since the last LR cut
    plateau_best: float = math.inf
    stopped_early: bool = False
    finished: bool = False
    run_sum: float = 0.0
    run_count: int = 0
    last_loss: float = math.nan
    elapsed: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)


def _cosine(cfg: TrainingConfig, step: int) -> float:
    t = min(step / cfg.steps, 1.0)
    return cfg.min_lr + (cfg.learning_rate - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * t))


@heap_reuse()
def train(net: nn.Module, sampler: PatchSampler, objective: Objective, config: TrainingConfig,
          *, fingerprint: str = "", checkpoint_dir: str | os.PathLike[str] | None = None,
          resume: bool = False, progress: ProgressFn | None = None,
          device: str | torch.device | None = None) -> TrainResult:
    """Train ``net`` in place on patches from ``sampler``.

    Parameters
    ----------
    net : torch.nn.Module
        Network with initial weights (seed torch before building it).
    sampler : PatchSampler
        Training and validation patches.
    objective : Objective
        Batch preparation (masking) and the loss name.
    config : TrainingConfig
    fingerprint : str
        Identifies the network, method and data; a checkpoint with another fingerprint is
        refused on resume.
    checkpoint_dir : path, optional
        Folder for checkpoints (``checkpoint.json`` + ``checkpoint-<step>.safetensors``),
        written every ``checkpoint_interval`` steps, at the end, and when training is
        interrupted by ``KeyboardInterrupt`` (which is then re-raised).
    resume : bool
        Continue from the checkpoint in ``checkpoint_dir``. Without it an existing
        checkpoint is an error (so a long run is never overwritten by accident). The
        checkpoint of a *finished* run is extended when ``config.steps`` is larger than
        the steps it did (the fingerprint does not include ``steps``); with the cosine
        schedule the learning rate then follows the longer schedule from the step reached.
    progress : callable, optional
        ``progress(step, total, logs)`` after every step; ``logs`` has ``loss`` and ``lr``,
        and ``val_loss`` after a validation. It may raise ``KeyboardInterrupt`` to stop.
    device : str or torch.device, optional
        Default: CUDA if available, else CPU.

    Returns
    -------
    TrainResult

    Notes
    -----
    Optimiser: Adam. Each step draws ``batch_size`` patches (random image in proportion to
    its size, random or foreground-weighted position, random YX dihedral transform), lets
    the objective prepare them, and minimises the weighted mean per-pixel loss (see
    :func:`pixel_loss`). Checkpoints hold the weights, Adam's moments, the best weights,
    the random generator state, schedule and early-stopping counters and the history, so a
    resumed run continues exactly. A checkpoint is never written from the middle of an
    optimiser update: an interrupt there leaves the previous checkpoint in place.
    """
    # NHWC (channels-last) is ~1.3x faster for 2D convolutions, forward and backward, with
    # oneDNN on CPUs (and suits cuDNN); set before any wrapping, so DDP sees the layout
    layout = (torch.channels_last if any(isinstance(m, nn.Conv2d) for m in net.modules())
              else torch.contiguous_format)
    net.to(memory_format=layout)
    parallel = PARALLEL.get()
    if parallel is not None:  # one rank of a multi-process run (methods/learned/ddp.py)
        net, sampler, config, device = parallel.prepare(net, sampler, config, device)
    dev = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    net.to(dev)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    precision = training_precision(config.precision, dev)
    autocast = autocast_context(precision, dev)
    seeds = np.random.SeedSequence(config.seed).spawn(3)
    rng = np.random.default_rng(seeds[0])
    val = sampler.validation_set(config.validation_patches, np.random.default_rng(seeds[1]))
    val_batches = None
    if val is not None:
        vi, vt, vw = objective.make_batch(val[0], val[1], np.random.default_rng(seeds[2]))
        val_batches = (vi, vt, vw)
    st = _State(lr=config.learning_rate)
    best_weights: dict[str, torch.Tensor] | None = None
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    # every rank reads a checkpoint to resume; only one writes
    ckpt_out = ckpt if parallel is None or parallel.writes_checkpoints else None
    if ckpt is not None and (ckpt / CHECKPOINT_JSON).exists():
        if not resume:
            raise OutputExistsError(message(f"a checkpoint in {ckpt}", "an empty checkpoint "
                                            "folder, or resume=True", "Pass resume=True to "
                                            "continue it, or delete the folder."))
        best_weights = _load_checkpoint(ckpt, net, optimizer, rng, st, fingerprint, dev)
        if st.step > config.steps:
            raise ConfigError(message(f"a checkpoint at step {st.step} resumed with steps="
                                      f"{config.steps}", f"steps >= {st.step}",
                                      f"Pass steps={st.step} or more."))
        if st.finished and not st.stopped_early and st.step < config.steps:
            st.finished = False  # extend a finished run to the larger number of steps
    for group in optimizer.param_groups:
        group["lr"] = st.lr

    def validate() -> float:
        assert val_batches is not None
        net.eval()
        total, norm = 0.0, 0.0
        vi, vt, vw = val_batches
        with torch.no_grad():
            for s in range(0, vi.shape[0], config.batch_size):
                xi = torch.from_numpy(vi[s:s + config.batch_size]).to(dev).contiguous(
                    memory_format=layout)
                ti = torch.from_numpy(vt[s:s + config.batch_size]).to(dev)
                wi = None if vw is None else torch.from_numpy(vw[s:s + config.batch_size]).to(dev)
                out = net(xi)
                n = float(ti.numel() if wi is None else wi.sum())
                total += float(pixel_loss(out, ti, wi, objective.loss)) * n
                norm += n
        net.train()
        return total / max(norm, 1e-12)

    def post_step() -> dict[str, float]:
        nonlocal best_weights
        logs: dict[str, float] = {}
        due = st.step % config.validation_interval == 0 or st.step == config.steps
        if due:
            val_loss = validate() if val_batches is not None else math.nan
            st.history.append({"step": st.step,
                               "train_loss": st.run_sum / max(st.run_count, 1),
                               "val_loss": val_loss, "lr": st.lr,
                               "time_s": round(st.elapsed, 3)})
            st.run_sum, st.run_count = 0.0, 0
            logs["val_loss"] = val_loss
            if val_batches is not None:
                if val_loss < st.best_val:
                    st.best_val, st.best_step, st.bad_rounds = val_loss, st.step, 0
                    if config.keep_best:
                        best_weights = {k: v.detach().cpu().clone()
                                        for k, v in net.state_dict().items()}
                else:
                    st.bad_rounds += 1
                if config.lr_schedule == "plateau":
                    if val_loss < st.plateau_best:
                        st.plateau_best, st.plateau_bad = val_loss, 0
                    else:
                        st.plateau_bad += 1
                        if st.plateau_bad >= config.lr_patience:
                            st.lr = max(st.lr * config.lr_factor, config.min_lr)
                            st.plateau_bad = 0
                if (config.early_stopping_patience is not None
                        and st.bad_rounds >= config.early_stopping_patience):
                    st.stopped_early = True
        if st.step >= config.steps or st.stopped_early:
            st.finished = True
        if ckpt_out is not None and (st.step % config.checkpoint_interval == 0
                                     or st.finished):
            # this step's validation and schedule updates are done: a resume must not
            # redo them (the caller clears pending_post too, after this returns)
            st.pending_post = False
            _save_checkpoint(ckpt_out, net, optimizer, rng, st, best_weights, fingerprint)
        return logs

    net.train()
    phase = "idle"
    rng_before: dict[str, Any] = rng.bit_generator.state
    # the forward pass updates batch-norm running statistics: an interrupted step undoes it
    buffers = list(net.buffers())
    buffers_before: list[torch.Tensor] = []
    snapshot: tuple[_State, dict[str, torch.Tensor] | None] = (st, best_weights)
    try:
        while True:
            if st.pending_post:
                snapshot = (dataclasses.replace(st, history=list(st.history)), best_weights)
                phase = "post"
                logs = post_step()
                st.pending_post = False
                phase = "idle"
                if progress is not None:
                    progress(st.step, config.steps, {"loss": st.last_loss, "lr": st.lr, **logs})
            if st.finished or st.step >= config.steps:
                break
            buffers_before = [b.detach().clone() for b in buffers]
            phase = "pre"
            rng_before = rng.bit_generator.state
            t0 = time.perf_counter()
            xb, yb = sampler.train_batch(config.batch_size, rng, augment=config.augment,
                                         rotate=config.rotate)
            xi, ti, wi = objective.make_batch(xb, yb, rng)
            if config.lr_schedule == "cosine":
                lr_now = _cosine(config, st.step)
                for group in optimizer.param_groups:
                    group["lr"] = lr_now
            else:
                lr_now = st.lr
                for group in optimizer.param_groups:
                    group["lr"] = lr_now
            x_t = torch.from_numpy(np.ascontiguousarray(xi)).to(dev).contiguous(
                memory_format=layout)
            t_t = torch.from_numpy(np.ascontiguousarray(ti)).to(dev)
            w_t = None if wi is None else torch.from_numpy(np.ascontiguousarray(wi)).to(dev)
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                out = net(x_t)
            loss = pixel_loss(out.float(), t_t, w_t, objective.loss)
            loss.backward()
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise DataError(message(f"a non-finite training loss at step {st.step + 1}",
                                        "finite losses", "Lower learning_rate or check the "
                                        "data for extreme values."))
            phase = "update"
            optimizer.step()
            st.step += 1
            st.lr = lr_now if config.lr_schedule == "cosine" else st.lr
            st.run_sum += loss_value
            st.run_count += 1
            st.elapsed += time.perf_counter() - t0
            st.last_loss = loss_value
            st.pending_post = True
            phase = "idle"
    except KeyboardInterrupt:
        if ckpt_out is not None and phase != "update":
            if phase == "pre":  # nothing applied yet: rewind the random draws of this step
                rng.bit_generator.state = rng_before
                with torch.no_grad():
                    for b, saved in zip(buffers, buffers_before):
                        b.copy_(saved)
            elif phase == "post":  # validation is redone on resume: undo its partial effects
                saved, best_weights = snapshot
                for f in dataclasses.fields(st):
                    setattr(st, f.name, getattr(saved, f.name))
            _save_checkpoint(ckpt_out, net, optimizer, rng, st, best_weights, fingerprint)
        raise
    # back to the default layout: the trained network then computes exactly like one
    # loaded from its saved weights
    net.to(memory_format=torch.contiguous_format)
    final = "last"
    if config.keep_best and best_weights is not None:
        net.load_state_dict(best_weights)
        final = "best"
    return TrainResult(history=list(st.history), steps_done=st.step, best_step=st.best_step,
                       best_val_loss=st.best_val if math.isfinite(st.best_val) else math.nan,
                       stopped_early=st.stopped_early, final_weights=final,
                       data=sampler.describe(), precision=precision)


# -- checkpoints --------------------------------------------------------------------------
def _state_json(st: _State) -> dict[str, Any]:
    def num(v: float) -> float | None:
        return v if math.isfinite(v) else None

    return {"step": st.step, "pending_post": st.pending_post, "lr": st.lr,
            "best_val": num(st.best_val), "best_step": st.best_step,
            "bad_rounds": st.bad_rounds, "plateau_bad": st.plateau_bad,
            "plateau_best": num(st.plateau_best), "stopped_early": st.stopped_early,
            "finished": st.finished, "run_sum": st.run_sum, "run_count": st.run_count,
            "last_loss": num(st.last_loss), "elapsed": st.elapsed,
            "history": [{k: num(float(v)) if k != "step" else int(v) for k, v in row.items()}
                        for row in st.history]}


def _state_from_json(st: _State, d: dict[str, Any]) -> None:
    def num(v: float | None) -> float:
        return math.inf if v is None else float(v)

    st.step, st.pending_post, st.lr = int(d["step"]), bool(d["pending_post"]), float(d["lr"])
    st.best_val, st.best_step = num(d["best_val"]), int(d["best_step"])
    st.bad_rounds, st.plateau_bad = int(d["bad_rounds"]), int(d["plateau_bad"])
    st.plateau_best, st.stopped_early = num(d["plateau_best"]), bool(d["stopped_early"])
    st.finished, st.run_sum, st.run_count = bool(d["finished"]), float(d["run_sum"]), int(
        d["run_count"])
    st.last_loss = math.nan if d["last_loss"] is None else float(d["last_loss"])
    st.elapsed = float(d["elapsed"])
    st.history = [{k: (int(v) if k == "step" else (math.nan if v is None else float(v)))
                   for k, v in row.items()} for row in d["history"]]


def _save_checkpoint(folder: Path, net: nn.Module, optimizer: torch.optim.Optimizer,
                     rng: np.random.Generator, st: _State,
                     best: dict[str, torch.Tensor] | None, fingerprint: str) -> None:
    """Write ``checkpoint-<step>.safetensors`` then, as the commit, ``checkpoint.json``.

    Tensors (weights, Adam moments and step counts, best weights) go to safetensors under
    the prefixes ``model.``, ``optim.<param index>.`` and ``best.``; everything else
    (step, random state, schedule, history, Adam's hyper-parameters) to JSON. No pickles.
    """
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for k, v in net.state_dict().items():
        tensors[f"model.{k}"] = v.detach().cpu().contiguous()
    opt = optimizer.state_dict()
    for idx, pstate in opt["state"].items():
        for k, v in pstate.items():
            if not isinstance(v, torch.Tensor):
                v = torch.tensor(v)
            tensors[f"optim.{idx}.{k}"] = v.detach().cpu().contiguous()
    if best is not None:
        for k, v in best.items():
            tensors[f"best.{k}"] = v.contiguous()
    weights_name = f"checkpoint-{st.step:09d}.safetensors"
    tmp = folder / f".{weights_name}.tmp"
    save_file(tensors, str(tmp))
    os.replace(tmp, folder / weights_name)
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
              for g in opt["param_groups"]]
    doc = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
           "fingerprint": fingerprint, "weights": weights_name, "has_best": best is not None,
           "rng": rng.bit_generator.state, "optimizer_param_groups": groups,
           "state": _state_json(st)}
    tmpj = folder / f".{CHECKPOINT_JSON}.tmp"
    tmpj.write_text(json.dumps(doc, indent=1))
    os.replace(tmpj, folder / CHECKPOINT_JSON)
    for old in folder.glob("checkpoint-*.safetensors"):
        if old.name != weights_name:
            old.unlink(missing_ok=True)


def _load_checkpoint(folder: Path, net: nn.Module, optimizer: torch.optim.Optimizer,
                     rng: np.random.Generator, st: _State, fingerprint: str,
                     device: torch.device) -> dict[str, torch.Tensor] | None:
    """Restore everything :func:`_save_checkpoint` wrote; return the best weights."""
    path = folder / CHECKPOINT_JSON
    try:
        doc = json.loads(path.read_text())
        if doc.get("format") != CHECKPOINT_FORMAT or doc.get("version") != CHECKPOINT_VERSION:
            raise ValueError("not a fluorecon checkpoint of version 1")
        tensors = load_file(str(folder / doc["weights"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputFileError(message(f"an unreadable checkpoint in {folder} "
                                     f"({' '.join(str(exc).split())})",
                                     "a complete checkpoint", "Delete the folder and train "
                                     "again without resume.")) from None
    if doc.get("fingerprint") != fingerprint:
        raise ConfigError(message(f"a checkpoint in {folder} from other settings or data",
                                  "the same method config and training data to resume",
                                  "Resume with the original settings, or use another "
                                  "checkpoint folder."))
    try:
        net.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        opt_state: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, idx, name = k.split(".", 2)
                opt_state.setdefault(int(idx), {})[name] = v
        groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()}
                  for g in doc["optimizer_param_groups"]]
        optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
        rng.bit_generator.state = doc["rng"]
        _state_from_json(st, doc["state"])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise InputFileError(message(f"a checkpoint in {folder} that does not fit this "
                                     f"network ({' '.join(str(exc).split())[:200]})",
                                     "a checkpoint of the same architecture",
                                     "Delete the folder and train again.")) from None
    net.to(device)
    if not doc["has_best"]:
        return None
    return {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}


# -- history ------------------------------------------------------------------------------
def write_history_csv(path: str | os.PathLike[str], history: Sequence[dict[str, float]]) -> None:
    """Write the training history as CSV with columns :data:`HISTORY_COLUMNS`."""
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(HISTORY_COLUMNS))
        writer.writeheader()
        for row in history:
            writer.writerow({k: row.get(k, "") for k in HISTORY_COLUMNS})


def read_history_csv(path: str | os.PathLike[str]) -> list[dict[str, float]]:
    """Read a history written by :func:`write_history_csv`."""
    with open(path, newline="") as fh:
        return [{k: (int(v) if k == "step" else float(v)) for k, v in row.items()}
                for row in csv.DictReader(fh)]


def plot_history(path: str | os.PathLike[str], history: Sequence[dict[str, float]], *,
                 title: str = "") -> None:
    """Save a PNG of training and validation loss (log scale) and learning rate per step.

    Uses matplotlib's Agg canvas directly (no pyplot, no global state).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax, ax_lr = fig.subplots(1, 2)
    steps = [r["step"] for r in history]
    tr = [r["train_loss"] for r in history]
    va = [r["val_loss"] for r in history]
    ax.plot(steps, tr, label="training", marker=".")
    if any(math.isfinite(v) for v in va):
        ax.plot(steps, va, label="validation", marker=".")
    positive = all(v > 0 for v in tr + [v for v in va if math.isfinite(v)])
    if positive and steps:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(frameon=False)
    ax_lr.plot(steps, [r["lr"] for r in history], color="0.3")
    ax_lr.set_xlabel("step")
    ax_lr.set_ylabel("learning rate")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
