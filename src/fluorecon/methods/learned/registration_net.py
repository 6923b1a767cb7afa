"""Unsupervised learned registration (VoxelMorph / UnFlow style), trained on the user's own
time-lapse.

A U-Net takes a (moving, fixed) pair of frames as two channels and predicts a dense
displacement field ``u`` (``d`` channels, pixels, conventions of
:mod:`fluorecon.simulate.motion`: ``fixed(x) ~ moving(x + u(x))``). No ground-truth motion
is needed: training minimises, over pairs of frames of the time-lapse,

.. math::

    L = \\frac{1}{|\\Omega|} \\sum_x \\bigl(m(x + u(x)) - f(x)\\bigr)^2
        + \\lambda\\, \\frac{1}{|\\Omega|}\\sum_x \\sum_{i,j}
        \\bigl(\\partial_j u_i(x)\\bigr)^2 ,

a similarity term (the moving frame warped by a differentiable spatial transformer, bilinear)
and a smoothness term (finite differences of the field), as in VoxelMorph [1]_ and
UnFlow [2]_. Once trained, one forward pass per frame estimates the motion, which is fast
for long time-lapses and can follow large or fast motion that makes iterative methods
fall into local minima. The estimated fields are applied by the same NumPy resampling as
the classical methods (:func:`~fluorecon.methods.classical.registration.apply_motion`), so
intensities are kept.

The training uses the shared engine (:func:`~fluorecon.methods.learned.training.train`:
seeded, checkpoints, progress, history): the network is wrapped so that its output is the
warped moving frame followed by the weighted field derivatives, and the target the fixed
frame followed by zeros, so the engine's mean squared error is exactly ``L`` (up to a
constant factor).

References
----------
.. [1] G. Balakrishnan, A. Zhao, M. R. Sabuncu, J. Guttag, A. V. Dalca, "VoxelMorph: a
   learning framework for deformable medical image registration", IEEE TMI 38, 1788-1800
   (2019).
.. [2] S. Meister, J. Hur, S. Roth, "UnFlow: unsupervised learning of optical flow with a
   bidirectional census loss", AAAI 2018.
"""

from __future__ import annotations

import datetime
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from fluorecon.core.config import BaseConfig
from fluorecon.core.errors import ConfigError, DataError, InputFileError, message
from fluorecon.methods.classical.registration.stabilize import MotionEstimate, _frames
from fluorecon.methods.learned._base import configure_threads
from fluorecon.methods.learned.model_io import ModelConfig, load_model, package_versions, save_model
from fluorecon.methods.learned.training import PatchSampler, ProgressFn, TrainingConfig, train
from fluorecon.methods.learned.unet import UNet, UNetConfig
from fluorecon.normalize import compute_norm_params

__all__ = ["RegistrationNet", "RegistrationNetConfig", "warp_torch"]

METHOD = "registration-net"


class RegistrationNetConfig(BaseConfig):
    """Settings of :class:`RegistrationNet`."""

    version: int = Field(default=1, ge=1, description="Schema version.")
    smoothness: float = Field(default=0.05, ge=0, description="Weight lambda of the field "
                              "smoothness term (normalised intensities, pixels).")
    reference: str | int = Field(default="first", description="Training pairs: each frame "
                                 "with the first ('first'), with the one before "
                                 "('previous'), or with a frame index.")
    depth: int = Field(default=3, ge=1, le=5, description="U-Net depth (receptive field "
                       "and so the largest motion grow with it).")
    base_filters: int = Field(default=16, ge=4, description="U-Net filters at the top.")
    patch_size: int = Field(default=64, ge=16, description="Training patch side (pixels).")
    batch_size: int = Field(default=4, ge=1, description="Pairs per step.")
    steps: int = Field(default=500, ge=1, description="Training steps.")
    learning_rate: float = Field(default=3e-3, gt=0, description="Adam learning rate.")
    flow_scale: float = Field(default=8.0, gt=0, description="Pixels per unit of network "
                              "output (the field is predicted in these units, so typical "
                              "displacements are O(1) for the network).")
    seed: int = Field(default=0, ge=0, description="Seed of weights and patches.")

    @model_validator(mode="after")
    def _check(self) -> "RegistrationNetConfig":
        if self.patch_size % (2 ** self.depth):
            raise ValueError(f"patch_size {self.patch_size} must be divisible by 2**depth = "
                             f"{2 ** self.depth}")
        if isinstance(self.reference, str) and self.reference not in ("first", "previous"):
            raise ValueError("reference must be 'first', 'previous' or a frame index")
        return self


def warp_torch(moving: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Bilinear/trilinear sample ``moving`` ``(N, C, *sp)`` at ``x + flow(x)`` (pixels,
    ``flow`` ``(N, d, *sp)`` in ZYX order), border values outside."""
    sp = moving.shape[2:]
    d = len(sp)
    grids = torch.meshgrid(*[torch.arange(n, dtype=flow.dtype, device=flow.device)
                             for n in sp], indexing="ij")
    coords = [g + flow[:, i] for i, g in enumerate(grids)]
    # grid_sample wants (x, y[, z]) normalised to [-1, 1] (align_corners=True)
    norm = [2 * c / max(n - 1, 1) - 1 for c, n in zip(coords, sp)]
    grid = torch.stack(norm[::-1], dim=-1)
    return F.grid_sample(moving, grid, mode="bilinear", padding_mode="border",
                         align_corners=True) if d in (2, 3) else moving


class _WarpLoss(nn.Module):
    """Wraps the U-Net: output = [warped moving, sqrt(lambda) * field derivatives]."""

    def __init__(self, unet: UNet, smoothness: float, flow_scale: float) -> None:
        super().__init__()
        self.unet = unet
        self.w = math.sqrt(smoothness)
        self.scale = flow_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flow = self.unet(x) * self.scale
        warped = warp_torch(x[:, :1], flow)
        d = flow.shape[1]
        ders = []
        for ax in range(d):
            diff = torch.diff(flow, dim=2 + ax)
            pad = [0, 0] * d
            pad[2 * (d - 1 - ax) + 1] = 1
            ders.append(F.pad(diff, pad))
        return torch.cat([warped, self.w * torch.cat(ders, dim=1)], dim=1)


@dataclass(frozen=True)
class _PairObjective:
    """Target = [fixed frame, zeros for the derivatives]; every pixel weighs 1."""

    n_zero: int
    loss: str = "mse"

    def make_batch(self, inputs: np.ndarray, targets: np.ndarray, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        zeros = np.zeros((targets.shape[0], self.n_zero) + targets.shape[2:], np.float32)
        return inputs, np.concatenate([targets, zeros], axis=1), None


class RegistrationNet:
    """Learned unsupervised registration: :meth:`fit` on a time-lapse, :meth:`estimate`."""

    name = METHOD
    Config = RegistrationNetConfig

    def __init__(self, config: RegistrationNetConfig | None = None, **kwargs: Any) -> None:
        self.config = config if config is not None else RegistrationNetConfig.build(**kwargs)
        self.net: UNet | None = None
        self.model_config: ModelConfig | None = None
        self.history: list[dict[str, float]] = []

    def _pairs(self, frames: np.ndarray, reference: str | int) -> list[tuple[int, int]]:
        n = frames.shape[0]
        if reference == "previous":
            return [(t, t - 1) for t in range(1, n)]
        r = 0 if reference == "first" else int(reference)
        if not 0 <= r < n:
            raise ConfigError(message(f"reference frame {r} of {n}", f"an index below {n}",
                                      "Fix reference."))
        return [(t, r) for t in range(n) if t != r]

    def fit(self, stack: Any, axes: str, *, channel: int | None = None,
            progress: ProgressFn | None = None, device: str | None = None,
            checkpoint_dir: str | os.PathLike[str] | None = None,
            resume: bool = False) -> "RegistrationNet":
        """Train on the time-lapse itself (no ground truth): pairs (frame, reference)."""
        c = self.config
        frames, sp = _frames(stack, axes, channel)
        d = len(sp)
        norm = compute_norm_params(frames.reshape((-1,) + frames.shape[2:]) if d == 2
                                   else frames.reshape((-1,) + frames.shape[2:]),
                                   low=1.0, high=99.8)
        fn = np.asarray(norm.normalize(frames), np.float32)
        pairs = self._pairs(fn, c.reference)
        xs = [np.stack([fn[m], fn[f]]) for m, f in pairs]
        ys = [fn[f][None] for _, f in pairs]
        ucfg = UNetConfig(ndim=d, in_channels=2, out_channels=d, depth=c.depth,
                          base_filters=c.base_filters)
        patch = tuple(min(c.patch_size, (n // 2 ** c.depth) * 2 ** c.depth)
                      for n in frames.shape[1:])
        if any(p < 2 ** c.depth for p in patch):
            raise DataError(message(f"frames of shape {frames.shape[1:]}", f"frames of at "
                                    f"least {2 ** c.depth} pixels per axis", "Use a smaller "
                                    "depth."))
        tcfg = TrainingConfig(patch_size=patch, batch_size=c.batch_size, steps=c.steps,
                              learning_rate=c.learning_rate, lr_schedule="cosine",
                              validation_fraction=0.0, keep_best=False, augment=True,
                              validation_interval=max(1, c.steps // 10),
                              checkpoint_interval=max(1, c.steps), seed=c.seed)
        sampler = PatchSampler(xs, ys, patch, validation_fraction=0.0)
        threads = configure_threads()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            unet = UNet(ucfg)
            # start from the zero field (identity), as VoxelMorph does
            last = [m for m in unet.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))][-1]
            nn.init.normal_(last.weight, std=1e-5)
            if last.bias is not None:
                nn.init.zeros_(last.bias)
        wrapped = _WarpLoss(unet, c.smoothness, c.flow_scale)
        result = train(wrapped, sampler, _PairObjective(n_zero=d * d), tcfg,
                       fingerprint=c.to_json(), checkpoint_dir=checkpoint_dir, resume=resume,
                       progress=progress, device=device)
        self.net = unet.eval().cpu()
        self.history = result.history
        self.model_config = ModelConfig(
            method=METHOD, method_config=c.model_dump(mode="json"), unet=ucfg, axes=sp,
            input_norm=norm, target_norm=norm,
            training_data={**result.data, "pairs": len(pairs), "axes": axes},
            versions=package_versions(), seed=c.seed,
            provenance={"created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"), "steps_done": result.steps_done,
                "final_loss": result.history[-1]["train_loss"] if result.history else None,
                "torch_threads": threads})
        return self

    def _require(self) -> tuple[UNet, ModelConfig]:
        if self.net is None or self.model_config is None:
            raise ConfigError(message("an untrained registration net", "a trained model",
                                      "Call fit() or RegistrationNet.load(folder)."))
        return self.net, self.model_config

    def field(self, fixed: np.ndarray, moving: np.ndarray) -> np.ndarray:
        """Displacement ``(d, *shape)`` with ``fixed(x) ~ moving(x + u(x))``."""
        net, mc = self._require()
        x = np.stack([np.asarray(mc.input_norm.normalize(moving), np.float32),
                      np.asarray(mc.input_norm.normalize(fixed), np.float32)])
        div = mc.unet.divisible_by
        shape = x.shape[1:]
        pads = [(0, 0)] + [(0, (-n) % div) for n in shape]
        x = np.pad(x, pads, mode="edge")
        configure_threads()
        with torch.inference_mode():
            u = net(torch.from_numpy(np.ascontiguousarray(x))[None])[0].numpy()
        u = u * self.config.flow_scale
        return np.ascontiguousarray(u[(slice(None),) + tuple(slice(0, n) for n in shape)],
                                    dtype=np.float32)

    def estimate(self, stack: Any, axes: str, *, reference: str | int = "first",
                 channel: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> MotionEstimate:
        """Estimate per-frame fields against ``reference`` ("first" or an index)."""
        _, mc = self._require()
        frames, sp = _frames(stack, axes, channel)
        if sp != mc.axes:
            raise DataError(message(f"spatial axes {sp!r}", f"{mc.axes!r} as trained",
                                    "Train a net on data like this."))
        if reference == "previous" or reference == "mean":
            raise ConfigError(message(f"reference {reference!r} for the learned model",
                                      "'first' or a frame index", "Use --reference first."))
        r = 0 if reference == "first" else int(reference)
        n = frames.shape[0]
        fields = np.zeros((n, len(sp)) + frames.shape[1:], np.float32)
        qual = np.ones(n)
        for t in range(n):
            if t != r:
                fields[t] = self.field(frames[r], frames[t])
            if progress is not None:
                progress(t + 1, n)
        return MotionEstimate(model="learned", spatial_axes=sp, matrices=None, fields=fields,
                              quality=qual, reference=r,
                              shape=tuple(int(v) for v in frames.shape[1:]))

    def save(self, folder: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the model folder."""
        net, mc = self._require()
        return save_model(folder, mc, net.state_dict(), self.history, overwrite=overwrite)

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> "RegistrationNet":
        """Load a model folder written by :meth:`save`."""
        mc, tensors = load_model(folder)
        if mc.method != METHOD:
            raise InputFileError(message(f"a {mc.method!r} model in {folder}",
                                         f"a {METHOD!r} model", "Pass a registration-net "
                                         "folder."))
        inst = cls(RegistrationNetConfig.build(**mc.method_config))
        net = UNet(mc.unet)
        net.load_state_dict(tensors)
        inst.net = net.eval()
        inst.model_config = mc
        return inst
