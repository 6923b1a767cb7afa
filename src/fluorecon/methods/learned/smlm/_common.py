"""Shared parts of the SMLM networks: configs, input scaling, model folders, batching."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, model_validator

from fluorecon.core.config import BaseConfig
from fluorecon.core.errors import DataError, InputFileError, message
from fluorecon.methods.classical.smlm.localize import camera_electrons
from fluorecon.methods.learned._base import configure_threads
from fluorecon.methods.learned.model_io import (
    ModelConfig,
    load_model,
    package_versions,
    save_model,
)
from fluorecon.methods.learned.unet import UNet, UNetConfig
from fluorecon.normalize.percentile import NormParams
from fluorecon.simulate.smlm import Localizations, SMLMConfig

ProgressFn = Callable[[int, int, dict[str, float]], None]
FrameProgress = Callable[[int, int], None]


class SMLMNetConfig(BaseConfig):
    """Settings shared by the SMLM networks: the training simulation and the optimiser.

    The simulation should match the user's data: camera (gain, offset, EM gain, read
    noise), pixel size, PSF, photons and background. Training frames are independent
    frames of uniformly placed emitters at densities drawn from ``density_range``.
    """

    version: int = Field(default=1, ge=1, le=1, description="Schema version.")
    simulation: SMLMConfig = Field(
        default_factory=lambda: SMLMConfig(shape=(32, 32)),
        description="Camera, PSF, pixel size, photons and background of the training "
                    "simulation; 'shape' is the training patch in camera pixels.")
    density_range: tuple[float, float] = Field(
        default=(0.2, 4.0), description="Emitters per square micrometre per training frame, "
                                        "drawn uniformly per frame.")
    background_range: tuple[float, float] | None = Field(
        default=None, description="Background photons per pixel drawn per frame (default: "
                                  "0.5x to 1.5x the simulation's background).")
    depth: int = Field(default=2, ge=1, le=4, description="U-Net depth.")
    base_filters: int = Field(default=32, ge=4, le=256, description="U-Net filters at the "
                                                                   "top level.")
    steps: int = Field(default=3000, ge=1, description="Optimiser steps.")
    batch_size: int = Field(default=16, ge=1, le=1024, description="Frames per step.")
    learning_rate: float = Field(default=1e-3, gt=0, le=1, description="Adam learning rate "
                                                                      "(cosine-annealed).")
    validation_frames: int = Field(default=64, ge=1, description="Fixed simulated "
                                                                "validation frames.")
    validation_interval: int = Field(default=100, ge=1, description="Steps between "
                                                                   "validations.")
    seed: int = Field(default=0, ge=0, description="Seed of the simulation and weights.")

    @model_validator(mode="after")
    def _check_common(self) -> "SMLMNetConfig":
        lo, hi = self.density_range
        if not 0 <= lo <= hi:
            raise ValueError(f"density_range must be (low, high) with 0 <= low <= high, got "
                             f"{self.density_range}")
        if self.background_range is not None and not 0 <= self.background_range[0] <= \
                self.background_range[1]:
            raise ValueError(f"background_range must be (low, high), got "
                             f"{self.background_range}")
        d = 2 ** self.depth
        if any(s % d for s in self.simulation.shape):
            raise ValueError(f"simulation.shape {self.simulation.shape} must be divisible by "
                             f"2**depth = {d}")
        return self

    def backgrounds(self) -> tuple[float, float]:
        """The training background range, photons per pixel."""
        if self.background_range is not None:
            return self.background_range
        b = self.simulation.background
        return 0.5 * b, 1.5 * b


def input_scaling(frames_e: np.ndarray) -> NormParams:
    """Affine input scaling from training frames in photoelectrons: median -> 0,
    99.9th percentile -> 1 (stored in the model folder, applied to every input)."""
    lo = float(np.median(frames_e))
    hi = float(np.percentile(frames_e, 99.9))
    return NormParams(low=50.0, high=99.9, lo=[lo], hi=[max(hi, lo + 1e-3)],
                      n_samples=int(frames_e.size))


def scale_input(frames_adu: Any, sim: SMLMConfig, norm: NormParams) -> np.ndarray:
    """Camera frames (ADU) -> network input, float32 ``(T, Y, X)``."""
    arr = np.asarray(frames_adu)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise DataError(message(f"frames of shape {np.shape(frames_adu)} and dtype "
                                f"{getattr(arr, 'dtype', None)}", "a real (T, Y, X) stack",
                                "Pass the raw movie, frames first."))
    if not np.all(np.isfinite(arr)):
        raise DataError(message("frames with NaN or infinite values", "finite values",
                                "Check the movie."))
    e = camera_electrons(arr, sim.camera)
    lo, hi = norm.lo[0], norm.hi[0]
    return ((e - lo) / (hi - lo + norm.eps)).astype(np.float32)


def localize_in_chunks(frames: Any, fn: Callable[[np.ndarray], Localizations], *,
                       chunk: int = 256, progress: FrameProgress | None = None
                       ) -> Localizations:
    """Apply ``fn`` (a (T, Y, X) block -> table) to ``chunk`` frames at a time and shift the
    frame numbers; lazy arrays (memmap, dask, zarr) are read chunk by chunk."""
    lazy = hasattr(frames, "shape") and hasattr(frames, "__getitem__") and \
        hasattr(frames, "dtype")
    arr = frames if lazy else np.asarray(frames)
    if len(arr.shape) == 2:
        arr = arr[None]
    n = int(arr.shape[0]) if len(arr.shape) == 3 else 0
    if len(arr.shape) != 3 or n == 0:
        raise DataError(message(f"frames of shape {tuple(arr.shape)}", "a (T, Y, X) stack",
                                "Pass the movie, frames first."))
    tables = []
    for s in range(0, n, chunk):
        loc = fn(np.asarray(arr[s:s + chunk]))
        tables.append(loc.with_columns(frame=loc.frame + s))
        if progress is not None:
            progress(min(s + chunk, n), n)
    return Localizations.concatenate(tables)


def pad_to(x: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad the last two axes (edge values) up to multiples of ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        pad = [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)]
        x = np.pad(x, pad, mode="edge")
    return x, (h, w)


def run_batches(net: torch.nn.Module, x: np.ndarray, *, device: torch.device,
                pixels_per_batch: int, progress: FrameProgress | None,
                fn: Callable[[torch.Tensor], torch.Tensor]) -> list[np.ndarray]:
    """Apply ``fn(net(x_batch))`` to ``x`` (N, C, H, W) in batches; CPU numpy results."""
    n = x.shape[0]
    bs = max(1, pixels_per_batch // max(1, x.shape[-1] * x.shape[-2]))
    out = []
    net.eval()
    with torch.no_grad():
        for s in range(0, n, bs):
            xb = torch.from_numpy(np.ascontiguousarray(x[s:s + bs])).to(device)
            out.append(fn(net(xb)).cpu().numpy())
            if progress is not None:
                progress(min(s + bs, n), n)
    return out


def pick_device(device: str | None) -> torch.device:
    """The requested device, else CUDA when available, else CPU (threads configured)."""
    configure_threads()
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def write_model(folder: str | os.PathLike[str], *, method: str, config: BaseConfig,
                unet: UNetConfig, net: UNet, norm: NormParams, history: list[dict[str, float]],
                provenance: dict[str, Any], seed: int, overwrite: bool) -> Path:
    """Save a model folder (``config.json`` + ``weights.safetensors`` + history)."""
    mc = ModelConfig(method=method, method_config=config.model_dump(mode="json"), unet=unet,
                     axes="YX", input_norm=norm,
                     target_norm=NormParams(low=0.0, high=100.0, lo=[0.0], hi=[1.0], eps=0.0),
                     noise_model=None,
                     training_data={"source": "simulation (fluorecon.simulate.smlm)"},
                     versions=package_versions(), seed=seed, provenance=provenance)
    return save_model(folder, mc, net.state_dict(), history, overwrite=overwrite)


def read_model(folder: str | os.PathLike[str], method: str
               ) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Load a model folder and check it holds ``method``."""
    mc, tensors = load_model(folder)
    if mc.method != method:
        raise InputFileError(message(f"a {mc.method!r} model in {folder}",
                                     f"a {method!r} model", "Load it with its own class "
                                     "(fluorecon smlm localize --model picks it)."))
    return mc, tensors


def fit_network(net: torch.nn.Module, *, make_batch: Callable[[np.random.Generator],
                                                              tuple[torch.Tensor, Any]],
                loss_fn: Callable[[torch.Tensor, Any], torch.Tensor],
                validation: list[tuple[torch.Tensor, Any]], config: SMLMNetConfig,
                device: torch.device, progress: ProgressFn | None) -> dict[str, Any]:
    """Adam with cosine annealing on batches simulated afresh at every step.

    ``make_batch(rng)`` returns ``(input, target)`` (tensors on ``device``); the weights
    with the lowest validation loss (on the fixed ``validation`` batches) are kept.
    Returns ``{"history": [...], "best_step": int, "best_val_loss": float, ...}``; the
    first history row (step 0) is the validation loss of the initial weights.
    """
    import math
    import time

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(np.random.SeedSequence(config.seed).spawn(2)[1])
    opt = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.steps,
                                                       eta_min=config.learning_rate * 0.02)
    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    best_step = 0
    history: list[dict[str, float]] = []
    run, count, t0 = 0.0, 0, time.perf_counter()

    def validate() -> float:
        net.eval()
        with torch.no_grad():
            tot = sum(float(loss_fn(net(x), y)) for x, y in validation)
        net.train()
        return tot / max(len(validation), 1)

    best = initial = validate()
    history.append({"step": 0, "train_loss": math.nan, "val_loss": initial,
                    "lr": config.learning_rate, "time_s": 0.0})
    net.train()
    for step in range(1, config.steps + 1):
        x, y = make_batch(rng)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise DataError(message(f"a non-finite training loss at step {step}",
                                    "finite losses", "Lower learning_rate."))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        opt.step()
        sched.step()
        run += value
        count += 1
        logs = {"loss": value, "lr": float(opt.param_groups[0]["lr"])}
        if step % config.validation_interval == 0 or step == config.steps:
            val = validate()
            logs["val_loss"] = val
            history.append({"step": step, "train_loss": run / count, "val_loss": val,
                            "lr": logs["lr"], "time_s": round(time.perf_counter() - t0, 3)})
            run, count = 0.0, 0
            if val < best:
                best, best_step = val, step
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        if progress is not None:
            progress(step, config.steps, logs)
    net.load_state_dict(best_state)
    net.eval()
    return {"history": history, "best_step": best_step, "best_val_loss": best,
            "steps": config.steps, "train_time_s": round(time.perf_counter() - t0, 3),
            "device": str(device)}
