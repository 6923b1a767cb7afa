"""Learned light-field reconstruction (VCD-Net style): views in, volume out, trained on
simulation.

The lenslet image is rearranged into its ``n_views x n_views`` views
(:func:`~fluorecon.simulate.lightfield.lenslet_to_views`), which become the input channels of a
2D U-Net; its ``nz`` output channels are the volume planes (the "view-channel-depth" idea of
VCD-Net, here with the lateral sampling of the views, i.e. the lenslet pitch). Inputs are
background-subtracted photons divided by one per-image scale ``s`` (99.9th percentile of the
views); the predicted planes are multiplied by ``s`` (intensities are never rescaled).
Training pairs come from :func:`~fluorecon.simulate.lightfield.simulate_lightfield` on random
phantoms. Flips and rotations are *not* used as augmentation: they would break the mapping
between view index and parallax direction.

References
----------
.. [1] Z. Wang et al., "Real-time volumetric reconstruction of biological dynamics with
   light-field microscopy and deep learning", Nat. Methods 18, 551-556, 2021 (VCD-Net).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, model_validator

from fluorecon.core.config import BaseConfig
from fluorecon.core.dtypes import as_float32, check_image_array
from fluorecon.core.errors import ConfigError, DataError, message
from fluorecon.core.rng import make_rng
from fluorecon.methods.learned._base import configure_threads
from fluorecon.methods.learned.sim_net import TrainProgress, load_network, run_unet, save_network
from fluorecon.methods.learned.training import (
    PatchSampler,
    SupervisedObjective,
    TrainingConfig,
    TrainResult,
    data_fingerprint,
    train,
)
from fluorecon.methods.learned.unet import UNet, UNetConfig
from fluorecon.simulate.camera import camera_inverse
from fluorecon.simulate.lightfield import (
    LightFieldOperator,
    LightFieldOptics,
    lightfield_psf,
    simulate_lightfield,
)
from fluorecon.simulate.phantoms import make_phantom

__all__ = ["LightFieldNet", "LightFieldNetConfig", "simulate_lightfield_training_data"]

METHOD = "lightfield-net"


class LightFieldNetConfig(BaseConfig):
    """Optics, training-data simulation, network and training settings of
    :class:`LightFieldNet`."""

    version: int = Field(default=1, ge=1, description="Schema version of this config.")
    optics: LightFieldOptics = Field(default_factory=lambda: LightFieldOptics(n_views=7),
                                     description="Light-field microscope (n_views**2 <= 64).")
    planes: int = Field(default=9, ge=1, le=64, description="Volume planes (output channels).")
    z_step: float = Field(default=2.0, gt=0, description="Plane spacing, um (centred on focus).")
    photons: tuple[float, float] = Field(default=(50.0, 1000.0),
                                         description="Range of photons in the brightest pixel, "
                                                     "drawn log-uniformly per volume.")
    background: float = Field(default=5.0, ge=0, description="Background photons per pixel.")
    phantoms: list[str] = Field(default_factory=lambda: ["beads"],
                                description="3D phantom kinds of the training volumes.")
    phantom_options: dict[str, Any] = Field(
        default_factory=dict, description="Keyword options of the phantom generator, e.g. "
                                          "{'n_beads': 40, 'radius': [0.6, 1.5]}.")
    n_volumes: int = Field(default=16, ge=2, le=10000, description="Simulated training volumes.")
    lenslets: int = Field(default=64, ge=16, le=1024,
                          description="Lenslets per side of each training volume.")
    depth: int = Field(default=2, ge=1, le=4, description="U-Net depth.")
    base_filters: int = Field(default=32, ge=4, le=256, description="U-Net top-level filters.")
    steps: int = Field(default=2000, ge=1, description="Optimiser steps.")
    batch_size: int = Field(default=8, ge=1, le=512, description="Patches per step.")
    patch_size: int = Field(default=32, ge=8, le=1024, description="Patch side, lenslets.")
    learning_rate: float = Field(default=4e-4, gt=0, le=1, description="Adam learning rate.")
    validation_interval: int = Field(default=100, ge=1, description="Steps between "
                                                                    "validations.")
    seed: int = Field(default=0, ge=0, description="Seed of the simulation and training.")

    @model_validator(mode="after")
    def _check(self) -> "LightFieldNetConfig":
        if self.optics.n_views ** 2 > 64:
            raise ValueError(f"n_views={self.optics.n_views} gives {self.optics.n_views**2} "
                             "input channels; the U-Net takes at most 64 (use n_views <= 7)")
        lo, hi = self.photons
        if not 0 < lo <= hi:
            raise ValueError(f"photons must be a range 0 < low <= high, got {self.photons}")
        if self.patch_size % 2 ** self.depth:
            raise ValueError(f"patch_size {self.patch_size} must be divisible by 2**depth")
        if self.lenslets < 2 * self.patch_size:
            raise ValueError(f"lenslets {self.lenslets} must be at least 2 x patch_size "
                             f"{self.patch_size} (training and validation parts)")
        return self

    @property
    def depths(self) -> np.ndarray:
        """Plane positions, micrometres."""
        return self.z_step * (np.arange(self.planes) - (self.planes - 1) / 2)


def prepare_views(views: Any, background: float) -> tuple[np.ndarray, float]:
    """Network input ``(nv * nv, ny, nx)`` and the per-image scale ``s``."""
    check_image_array(views, name="light-field views")
    v = as_float32(views)
    if v.ndim != 4 or v.shape[0] != v.shape[1]:
        raise DataError(message(f"views of shape {v.shape}", "(nv, nv, ny, nx)",
                                "Rearrange the lenslet image with lenslet_to_views."))
    x = np.clip(v - background, 0, None).reshape(v.shape[0] * v.shape[1], *v.shape[2:])
    scale = float(np.percentile(x, 99.9))
    if not scale > 0:
        raise DataError(message("views without signal above the background",
                                "some fluorescence", "Check the background and the input."))
    return (x / scale).astype(np.float32), scale


def simulate_lightfield_training_data(config: LightFieldNetConfig, *,
                                      progress: Callable[[int, int], None] | None = None
                                      ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Simulated ``(inputs, targets)``: ``(nv**2, n, n)`` views and ``(nz, n, n)`` volumes,
    both divided by each light field's scale."""
    rng = make_rng(config.seed)
    n = config.lenslets
    xs, ys = [], []
    for i in range(config.n_volumes):
        kind = config.phantoms[i % len(config.phantoms)]
        vol = make_phantom(kind, (config.planes, n, n), seed=int(rng.integers(2**31)),
                           **config.phantom_options)
        lo, hi = config.photons
        photons = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        lf = simulate_lightfield(vol, optics=config.optics, depths=config.depths,
                                 photons=photons, background=config.background, rng=rng)
        x, scale = prepare_views(camera_inverse(lf.views, lf.camera), config.background)
        xs.append(x)
        ys.append((lf.truth / scale).astype(np.float32))
        if progress is not None:
            progress(i + 1, config.n_volumes)
    return xs, ys


class LightFieldNet:
    """VCD-Net-style light-field reconstruction trained on simulated light fields.

    Parameters
    ----------
    config : LightFieldNetConfig, optional
        Settings (keywords may be passed instead).
    """

    def __init__(self, config: LightFieldNetConfig | None = None, **kwargs: Any) -> None:
        if config is not None and kwargs:
            raise TypeError("pass either a config or keyword fields, not both")
        self.config = config if config is not None else LightFieldNetConfig.build(**kwargs)
        self.net: UNet | None = None
        self.result: TrainResult | None = None
        self._fingerprint = ""
        self._seconds = 0.0

    def _unet_config(self) -> UNetConfig:
        return UNetConfig(ndim=2, in_channels=self.config.optics.n_views ** 2,
                          out_channels=self.config.planes, depth=self.config.depth,
                          base_filters=self.config.base_filters)

    def operator(self, shape: tuple[int, int]) -> LightFieldOperator:
        """The classical forward model of this config for a ``(ny, nx)`` lenslet grid
        (to compare with Richardson-Lucy or check data consistency)."""
        return LightFieldOperator(lightfield_psf(self.config.optics, self.config.depths), shape)

    def fit(self, *, data: tuple[list[np.ndarray], list[np.ndarray]] | None = None,
            progress: TrainProgress | None = None,
            checkpoint_dir: str | os.PathLike[str] | None = None, resume: bool = False,
            device: str | None = None) -> "LightFieldNet":
        """Simulate training data (unless given) and train the network."""
        cfg = self.config
        configure_threads()
        xs, ys = data if data is not None else simulate_lightfield_training_data(cfg)
        if xs[0].shape[0] != cfg.optics.n_views ** 2 or ys[0].shape[0] != cfg.planes:
            raise DataError(message(f"training pairs of {xs[0].shape[0]} views and "
                                    f"{ys[0].shape[0]} planes",
                                    f"{cfg.optics.n_views ** 2} views and {cfg.planes} planes",
                                    "Simulate the data with the same config."))
        tcfg = TrainingConfig(patch_size=cfg.patch_size, batch_size=cfg.batch_size,
                              steps=cfg.steps, learning_rate=cfg.learning_rate,
                              validation_interval=min(cfg.validation_interval, cfg.steps),
                              validation_patches=8, seed=cfg.seed, augment=False,
                              lr_schedule="plateau")
        sampler = PatchSampler(xs, ys, (cfg.patch_size,) * 2, validation_fraction=0.1)
        torch.manual_seed(cfg.seed)
        net = UNet(self._unet_config())
        self._fingerprint = data_fingerprint(xs + ys)
        t0 = time.perf_counter()
        self.result = train(net, sampler, SupervisedObjective("mse"), tcfg,
                            fingerprint=f"{METHOD}:{self._fingerprint}",
                            checkpoint_dir=checkpoint_dir, resume=resume, progress=progress,
                            device=device)
        self._seconds = time.perf_counter() - t0
        self.net = net.cpu()
        return self

    def predict(self, views: Any, *, background: float = 0.0) -> np.ndarray:
        """Reconstruct views ``(nv, nv, ny, nx)`` (photons) into a ``(nz, ny, nx)`` float32
        volume in photons per voxel."""
        if self.net is None:
            raise ConfigError(message("an untrained LightFieldNet", "a trained or loaded "
                                      "network", "Call fit() or LightFieldNet.load() first."))
        x, scale = prepare_views(views, background)
        if x.shape[0] != self.config.optics.n_views ** 2:
            raise DataError(message(f"{x.shape[0]} views", f"{self.config.optics.n_views}**2 "
                                    "views (the trained optics)", "Use the matching model."))
        # Negative densities are unphysical: clipped (the network has a linear output).
        out = run_unet(self.net, x, 2 ** self.config.depth) * np.float32(scale)
        return np.clip(out, 0, None)

    def save(self, folder: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the model folder."""
        if self.net is None or self.result is None:
            raise ConfigError(message("an untrained LightFieldNet", "a trained network",
                                      "Call fit() before save()."))
        return save_network(folder, method=METHOD, config=self.config, net=self.net,
                            unet_config=self._unet_config(), axes="CYX", result=self.result,
                            fingerprint=self._fingerprint, seconds=self._seconds,
                            overwrite=overwrite)

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> "LightFieldNet":
        """Read a model folder written by :meth:`save`."""
        mc, net = load_network(folder, METHOD)
        obj = cls(LightFieldNetConfig.model_validate(mc.method_config))
        obj.net = net
        return obj
