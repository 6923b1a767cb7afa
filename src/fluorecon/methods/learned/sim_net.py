"""Learned SIM reconstruction: a U-Net from raw SIM frames to the super-resolved image,
trained on simulation.

The raw frames (all ``n_angles x n_phases``, or a subset for few-frame SIM) are background
subtracted, Fourier-upsampled onto the 2x output grid (the grid of the Wiener-SIM result,
:func:`~fluorecon.methods.classical.sim.reconstruct.fourier_upsample`), stacked as channels and
divided by one per-image scale ``s`` (99.9th percentile of their mean); the network predicts
the target divided by ``s`` and the prediction is multiplied back, so outputs are in photons
per output pixel like the Wiener result (intensities are never rescaled).

Training data come from :func:`fluorecon.simulate.sim.simulate_sim`: random phantoms, random
pattern orientation and phases, frequency and modulation drawn from ranges, photon levels drawn
log-uniformly, sCMOS noise. The default target is the ground truth band-limited to the ideal
SIM passband (``f_c + |k|``, apodised like the Wiener filter): the best any SIM reconstruction
can deliver, so the network is not asked to invent detail the data cannot hold (as in DL-SIM
and rDL-SIM, which train on high-SNR SIM reconstructions); ``target="truth"`` trains on the
full-resolution truth instead.

References
----------
.. [1] L. Jin et al., "Deep learning enables structured illumination microscopy with low light
   levels and enhanced speed", Nat. Commun. 11, 1934, 2020 (DL-SIM).
.. [2] C. Qiao et al., "Rationalized deep learning super-resolution microscopy for sustained
   live imaging of rapid subcellular processes", Nat. Biotechnol. 41, 367-377, 2023 (rDL-SIM).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.fft as sfft
import torch
from pydantic import Field, model_validator

from fluorecon.core.config import BaseConfig
from fluorecon.core.errors import ConfigError, DataError, InputFileError, message
from fluorecon.core.rng import make_rng
from fluorecon.methods.classical.sim.bands import check_frames
from fluorecon.methods.classical.sim.reconstruct import apodization, fourier_upsample
from fluorecon.methods.learned._base import configure_threads
from fluorecon.methods.learned.model_io import (
    ModelConfig,
    load_model,
    package_versions,
    save_model,
)
from fluorecon.methods.learned.training import (
    PatchSampler,
    SupervisedObjective,
    TrainingConfig,
    TrainResult,
    data_fingerprint,
    train,
)
from fluorecon.methods.learned.unet import UNet, UNetConfig
from fluorecon.normalize.percentile import NormParams
from fluorecon.simulate.camera import camera_inverse
from fluorecon.simulate.phantoms import make_phantom
from fluorecon.simulate.sim import otf_cutoff, sim_pattern, simulate_sim

__all__ = ["SIMNet", "SIMNetConfig", "simulate_sim_training_data"]

METHOD = "sim-net"
TrainProgress = Callable[[int, int, dict[str, float]], None]


class SIMNetConfig(BaseConfig):
    """Optics, training-data simulation, network and training settings of :class:`SIMNet`."""

    version: int = Field(default=1, ge=1, description="Schema version of this config.")
    n_angles: int = Field(default=3, ge=1, le=7, description="Pattern orientations.")
    n_phases: int = Field(default=3, ge=3, le=7, description="Phase steps per orientation.")
    frames: list[int] | None = Field(
        default=None, description="Indices (angle-major) of the raw frames the network sees; "
                                  "None: all. E.g. [0, 4, 8] for 3-frame SIM.")
    pixel_size: float = Field(default=0.0626, gt=0, description="Camera pixel size, um.")
    na: float = Field(default=1.4, gt=0, lt=1.7, description="Detection NA.")
    wavelength: float = Field(default=0.52, gt=0.2, lt=2.0,
                              description="Emission wavelength, um.")
    pattern_frequency: tuple[float, float] = Field(
        default=(0.8, 0.9), description="Range of the pattern frequency, fractions of the OTF "
                                        "cutoff (drawn per training image).")
    modulation: tuple[float, float] = Field(default=(0.6, 0.9),
                                            description="Range of the modulation depth.")
    photons: tuple[float, float] = Field(
        default=(30.0, 1000.0), description="Range of photons per pixel (bright structures), "
                                            "drawn log-uniformly per training image.")
    background: float = Field(default=10.0, ge=0, description="Background photons per pixel.")
    phantoms: list[str] = Field(default_factory=lambda: ["filaments"],
                                description="Phantom kinds of the training images.")
    n_images: int = Field(default=16, ge=2, le=10000, description="Simulated training images.")
    image_size: int = Field(default=128, ge=32, le=2048,
                            description="Raw frame side of each training image, pixels.")
    target: Literal["apodized-truth", "truth"] = Field(
        default="apodized-truth", description="Training target: the truth band-limited to the "
                                              "SIM passband, or the full truth.")
    depth: int = Field(default=2, ge=1, le=4, description="U-Net depth.")
    base_filters: int = Field(default=32, ge=4, le=256, description="U-Net top-level filters.")
    steps: int = Field(default=2000, ge=1, description="Optimiser steps.")
    batch_size: int = Field(default=8, ge=1, le=512, description="Patches per step.")
    patch_size: int = Field(default=64, ge=16, le=1024,
                            description="Patch side on the output (2x) grid.")
    learning_rate: float = Field(default=4e-4, gt=0, le=1, description="Adam learning rate.")
    validation_interval: int = Field(default=100, ge=1, description="Steps between "
                                                                    "validations.")
    seed: int = Field(default=0, ge=0, description="Seed of the simulation and training.")

    @model_validator(mode="after")
    def _check(self) -> "SIMNetConfig":
        n = self.n_angles * self.n_phases
        if self.frames is not None and (not self.frames or len(set(self.frames)) != len(
                self.frames) or any(not 0 <= f < n for f in self.frames)):
            raise ValueError(f"frames must be distinct indices in [0, {n}), got {self.frames}")
        for name in ("pattern_frequency", "modulation", "photons"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must be a range 0 < low <= high, got {(lo, hi)}")
        if self.pattern_frequency[1] >= 1 or self.modulation[1] > 1:
            raise ValueError("pattern_frequency must stay below 1 and modulation at most 1")
        if self.patch_size % 2 ** self.depth:
            raise ValueError(f"patch_size {self.patch_size} must be divisible by 2**depth")
        if 2 * self.image_size < 2 * self.patch_size:
            raise ValueError(f"image_size {self.image_size} too small for patch_size "
                             f"{self.patch_size} (output grid 2x image_size)")
        return self

    @property
    def frame_indices(self) -> list[int]:
        """Frames fed to the network."""
        return list(self.frames) if self.frames is not None else list(
            range(self.n_angles * self.n_phases))


def prepare_input(frames: np.ndarray, indices: Sequence[int], background: float
                  ) -> tuple[np.ndarray, float]:
    """Network input ``(C, 2 ny, 2 nx)`` (Fourier-upsampled frames / s) and the scale ``s``."""
    sel = np.asarray(frames, dtype=np.float64)[list(indices)] - background
    up = np.stack([fourier_upsample(f) for f in sel])
    scale = float(np.percentile(up.mean(axis=0), 99.9))
    if not scale > 0:
        raise DataError(message("raw frames without signal above the background",
                                "some fluorescence", "Check --background and the input."))
    return (up / scale).astype(np.float32), scale


def sim_target(truth: np.ndarray, *, pixel_size: float, support: float) -> np.ndarray:
    """Truth (2x grid, ``pixel_size / 2``) band-limited to ``support`` cycles/um with the
    Wiener-SIM apodisation (bend 1)."""
    fy = np.fft.fftfreq(truth.shape[0], d=pixel_size / 2)[:, None]
    fx = np.fft.fftfreq(truth.shape[1], d=pixel_size / 2)[None, :]
    apo = apodization(np.hypot(fy, fx), support, 1.0)
    return sfft.ifft2(sfft.fft2(truth) * apo).real.astype(np.float32)


def simulate_sim_training_data(config: SIMNetConfig, *,
                               progress: Callable[[int, int], None] | None = None
                               ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Simulated ``(inputs, targets)``: ``(C, 2n, 2n)`` network inputs and ``(1, 2n, 2n)``
    targets, both divided by each image's input scale."""
    rng = make_rng(config.seed)
    fc = otf_cutoff(config.na, config.wavelength)
    n = config.image_size
    xs, ys = [], []
    for i in range(config.n_images):
        kind = config.phantoms[i % len(config.phantoms)]
        truth = make_phantom(kind, (2 * n, 2 * n), seed=int(rng.integers(2**31)))
        freq = float(rng.uniform(*config.pattern_frequency))
        pattern = sim_pattern(config.n_angles, config.n_phases, period=1.0 / (freq * fc),
                              angle_offset=float(rng.uniform(0, np.pi)),
                              modulation=float(rng.uniform(*config.modulation)),
                              phase_offset=rng.uniform(0, 2 * np.pi, config.n_angles))
        lo, hi = config.photons
        photons = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        sim = simulate_sim(truth, pixel_size=config.pixel_size, na=config.na,
                           wavelength=config.wavelength, pattern=pattern, photons=photons,
                           background=config.background, rng=rng)
        x, scale = prepare_input(camera_inverse(sim.frames, sim.camera), config.frame_indices,
                                 config.background)
        t = sim.truth if config.target == "truth" else sim_target(
            sim.truth, pixel_size=config.pixel_size, support=fc + freq * fc)
        xs.append(x)
        ys.append((t / scale)[None].astype(np.float32))
        if progress is not None:
            progress(i + 1, config.n_images)
    return xs, ys


def _pad_to(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode="reflect")
    return x, (h, w)


def run_unet(net: UNet, x: np.ndarray, multiple: int) -> np.ndarray:
    """Apply ``net`` to one ``(C, Y, X)`` array (reflect-padded to a multiple), return
    ``(C_out, Y, X)`` float32."""
    dev = next(net.parameters()).device
    net.eval()
    with torch.no_grad():
        t, (h, w) = _pad_to(torch.from_numpy(np.ascontiguousarray(x))[None].to(dev), multiple)
        out = net(t)[0, :, :h, :w]
    return out.cpu().numpy().astype(np.float32)


def save_network(folder: str | os.PathLike[str], *, method: str, config: BaseConfig,
                 net: UNet, unet_config: UNetConfig, axes: str, result: TrainResult,
                 fingerprint: str, seconds: float, overwrite: bool) -> Path:
    """Write a fluorecon model folder (``config.json`` + ``weights.safetensors``)."""
    unit = NormParams(low=0.0, high=99.9, lo=[0.0], hi=[1.0])
    mc = ModelConfig(
        method=method, method_config=config.model_dump(mode="json"), unet=unet_config,
        axes=axes, input_norm=unit, target_norm=unit, seed=int(getattr(config, "seed", 0)),
        training_data={"source": "simulation", "fingerprint": fingerprint,
                       "normalisation": "per image: divided by the 99.9th percentile of the "
                                        "(mean) input; outputs multiplied back"},
        versions=package_versions(),
        provenance={"steps_done": result.steps_done, "best_step": result.best_step,
                    "best_val_loss": result.best_val_loss, "train_seconds": seconds,
                    "stopped_early": result.stopped_early})
    return save_model(folder, mc, net.state_dict(), result.history, overwrite=overwrite)


def load_network(folder: str | os.PathLike[str], method: str
                 ) -> tuple[ModelConfig, UNet]:
    """Read a model folder written by :func:`save_network` for ``method``."""
    mc, state = load_model(folder)
    if mc.method != method:
        raise InputFileError(message(f"a model of method {mc.method!r} in {folder}",
                                     f"a {method!r} model", "Pass the right model folder."))
    net = UNet(mc.unet)
    net.load_state_dict(state)
    return mc, net


class SIMNet:
    """U-Net SIM reconstruction trained on simulated acquisitions.

    Parameters
    ----------
    config : SIMNetConfig, optional
        Settings; default :class:`SIMNetConfig` (keywords may be passed instead).

    Examples
    --------
    >>> net = SIMNet(steps=10, n_images=2, image_size=64)  # doctest: +SKIP
    >>> net.fit()  # doctest: +SKIP
    >>> image = net.predict(frames_in_photons, background=10.0)  # doctest: +SKIP
    """

    def __init__(self, config: SIMNetConfig | None = None, **kwargs: Any) -> None:
        if config is not None and kwargs:
            raise TypeError("pass either a config or keyword fields, not both")
        self.config = config if config is not None else SIMNetConfig.build(**kwargs)
        self.net: UNet | None = None
        self.result: TrainResult | None = None
        self._fingerprint = ""
        self._seconds = 0.0

    def _unet_config(self) -> UNetConfig:
        return UNetConfig(ndim=2, in_channels=len(self.config.frame_indices), out_channels=1,
                          depth=self.config.depth, base_filters=self.config.base_filters)

    def fit(self, *, data: tuple[list[np.ndarray], list[np.ndarray]] | None = None,
            progress: TrainProgress | None = None,
            checkpoint_dir: str | os.PathLike[str] | None = None, resume: bool = False,
            device: str | None = None) -> "SIMNet":
        """Simulate training data (unless given) and train the network.

        Parameters
        ----------
        data : (inputs, targets), optional
            Output of :func:`simulate_sim_training_data` (default: simulated here).
        progress : callable, optional
            The training engine's ``progress(step, total, logs)``.
        checkpoint_dir, resume, device
            Passed to :func:`~fluorecon.methods.learned.training.train`.
        """
        cfg = self.config
        configure_threads()
        xs, ys = data if data is not None else simulate_sim_training_data(cfg)
        if xs[0].shape[0] != len(cfg.frame_indices):
            raise DataError(message(f"training inputs with {xs[0].shape[0]} channels",
                                    f"{len(cfg.frame_indices)} (the configured frames)",
                                    "Simulate the data with the same config."))
        tcfg = TrainingConfig(patch_size=cfg.patch_size, batch_size=cfg.batch_size,
                              steps=cfg.steps, learning_rate=cfg.learning_rate,
                              validation_interval=min(cfg.validation_interval, cfg.steps),
                              validation_patches=8, seed=cfg.seed, augment=True,
                              lr_schedule="plateau")
        sampler = PatchSampler(xs, ys, (cfg.patch_size,) * 2, validation_fraction=0.1)
        torch.manual_seed(cfg.seed)
        ucfg = self._unet_config()
        net = UNet(ucfg)
        self._fingerprint = data_fingerprint(xs + ys)
        t0 = time.perf_counter()
        self.result = train(net, sampler, SupervisedObjective("mse"), tcfg,
                            fingerprint=f"{METHOD}:{self._fingerprint}",
                            checkpoint_dir=checkpoint_dir, resume=resume, progress=progress,
                            device=device)
        self._seconds = time.perf_counter() - t0
        self.net = net.cpu()
        return self

    def predict(self, frames: Any, *, background: float = 0.0) -> np.ndarray:
        """Reconstruct ``(n_angles * n_phases, ny, nx)`` raw frames (photons) into a
        ``(2 ny, 2 nx)`` float32 image in photons per output pixel."""
        if self.net is None:
            raise ConfigError(message("an untrained SIMNet", "a trained or loaded network",
                                      "Call fit() or SIMNet.load(folder) first."))
        cfg = self.config
        data = check_frames(frames, cfg.n_angles, cfg.n_phases).reshape(
            cfg.n_angles * cfg.n_phases, *np.shape(frames)[-2:])
        x, scale = prepare_input(data, cfg.frame_indices, background)
        return run_unet(self.net, x, 2 ** cfg.depth)[0] * np.float32(scale)

    def save(self, folder: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the model folder (``config.json``, ``weights.safetensors``, history)."""
        if self.net is None or self.result is None:
            raise ConfigError(message("an untrained SIMNet", "a trained network",
                                      "Call fit() before save()."))
        return save_network(folder, method=METHOD, config=self.config, net=self.net,
                            unet_config=self._unet_config(), axes="CYX", result=self.result,
                            fingerprint=self._fingerprint, seconds=self._seconds,
                            overwrite=overwrite)

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> "SIMNet":
        """Read a model folder written by :meth:`save`."""
        mc, net = load_network(folder, METHOD)
        obj = cls(SIMNetConfig.model_validate(mc.method_config))
        obj.net = net
        return obj
