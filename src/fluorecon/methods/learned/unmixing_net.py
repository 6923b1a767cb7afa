"""Learned spectral unmixing: a U-Net from channel stack to abundances, trained on
simulation with perturbed spectra.

Linear unmixing is exact only when the reference spectra are the sample's. In real samples
emission maxima shift by a few nm and bands widen or narrow with the environment, and the
optics tilt the spectra. The network is trained on simulated samples
(:func:`~fluorecon.simulate.spectra.simulate_spectral`) whose spectra are randomly
perturbed around the library's (:func:`~fluorecon.simulate.spectra.perturb_fluorophore`),
at photon levels spread over a range, with autofluorescence; it learns an unmixing that
is robust to that spread and, with its spatial context, denoises at the same time.

Model-based design: the network sees the channels together with the non-negative
least-squares abundances under the library spectra, and predicts a correction to them
(residual learning; the last layer starts at zero), so it starts from the classical
solution and learns what the spectral spread, the noise and the spatial context add.

Intensity scale: unmixing is linear, so the network works on ``x / s`` with ``s`` the
99.8th percentile of the channel-summed image (computed per image, at training and at
prediction), and its output is multiplied by ``s`` again: abundances keep the input's
units whatever the brightness of the data.

References
----------
.. [1] T. Zimmermann, J. Rietdorf, R. Pepperkok, "Spectral imaging and its applications in
   live cell microscopy", FEBS Lett. 546, 87-92 (2003) (linear unmixing, the baseline the
   network corrects).
.. [2] J. Seo et al., "PICASSO allows ultra-multiplexed fluorescence imaging of spatially
   overlapping proteins without reference spectra measurements", Nat. Commun. 13, 2475
   (2022) (unmixing when reference spectra do not match the sample).
"""

from __future__ import annotations

import datetime
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, model_validator

from fluorecon.core.config import BaseConfig
from fluorecon.core.errors import ConfigError, DataError, InputFileError, message
from fluorecon.core.rng import make_rng
from fluorecon.methods.classical.unmixing._common import (
    UnmixingResult,
    background_vector,
    channel_image,
    residual_rms,
)
from fluorecon.methods.classical.unmixing.linear import linear_unmix
from fluorecon.methods.learned._base import configure_threads
from fluorecon.methods.learned.model_io import ModelConfig, load_model, package_versions, save_model
from fluorecon.methods.learned.training import (
    PatchSampler,
    ProgressFn,
    SupervisedObjective,
    TrainingConfig,
    train,
)
from fluorecon.methods.learned.unet import UNet, UNetConfig
from fluorecon.normalize import NormParams
from fluorecon.simulate.camera import CameraModel, camera_inverse
from fluorecon.simulate.spectra import (
    Channel,
    abundance_maps,
    fluorophore,
    mixing_matrix,
    simulate_spectral,
)

__all__ = ["UnmixingNet", "UnmixingNetConfig"]

METHOD = "unmix-net"
SCALE_PERCENTILE = 99.8


class UnmixingNetConfig(BaseConfig):
    """What the unmixing network is trained for, and how."""

    version: int = Field(default=1, ge=1, description="Schema version.")
    fluorophores: list[str] = Field(min_length=1, description="Library fluorophore names.")
    bands: list[tuple[float, float]] = Field(min_length=1, description="Channel bands, nm.")
    peak_shift: float = Field(default=3.0, ge=0, description="Std of simulated emission-peak "
                                                             "shifts, nm.")
    width_change: float = Field(default=0.08, ge=0, description="Std of relative FWHM "
                                                                "changes.")
    photons: tuple[float, float] = Field(default=(50.0, 2000.0), description="Range of "
                                         "photons per fluorophore map maximum (log-uniform).")
    autofluorescence: float = Field(default=0.05, ge=0, description="Mean autofluorescence "
                                    "as a fraction of the photons.")
    n_images: int = Field(default=8, ge=1, description="Simulated training images.")
    image_size: int = Field(default=96, ge=16, description="Their side, pixels.")
    depth: int = Field(default=2, ge=1, le=4, description="U-Net depth.")
    base_filters: int = Field(default=16, ge=4, description="U-Net filters at the top.")
    patch_size: int = Field(default=32, ge=8, description="Training patch side.")
    batch_size: int = Field(default=8, ge=1, description="Patches per step.")
    steps: int = Field(default=400, ge=1, description="Training steps.")
    learning_rate: float = Field(default=1e-3, gt=0, description="Adam learning rate.")
    seed: int = Field(default=0, ge=0, description="Seed of simulation and training.")

    @model_validator(mode="after")
    def _check(self) -> "UnmixingNetConfig":
        if self.patch_size % (2 ** self.depth):
            raise ValueError(f"patch_size {self.patch_size} must be divisible by "
                             f"2**depth = {2 ** self.depth}")
        if self.image_size < 2 * self.patch_size:
            raise ValueError(f"image_size {self.image_size} must be at least 2 * patch_size "
                             f"({2 * self.patch_size}): room for training and validation")
        if not 0 < self.photons[0] <= self.photons[1]:
            raise ValueError(f"photons range {self.photons} must be positive and ordered")
        if len(self.fluorophores) > len(self.bands):
            raise ValueError("more fluorophores than channel bands")
        for name in self.fluorophores:
            fluorophore(name)
        return self


class UnmixingNet:
    """Learned unmixing (see the module notes): :meth:`fit` on simulation, :meth:`unmix`.

    Examples
    --------
    >>> net = UnmixingNet(fluorophores=["EGFP", "mCherry"],
    ...                   bands=[(490, 540), (540, 590), (590, 640), (640, 690)],
    ...                   steps=5, n_images=2, image_size=32)  # doctest: +SKIP
    >>> net.fit().unmix(image, "CYX").abundances  # doctest: +SKIP
    """

    name = METHOD
    Config = UnmixingNetConfig

    def __init__(self, config: UnmixingNetConfig | None = None, **kwargs: Any) -> None:
        self.config = config if config is not None else UnmixingNetConfig.build(**kwargs)
        self.net: UNet | None = None
        self.model_config: ModelConfig | None = None
        self.history: list[dict[str, float]] = []

    @property
    def component_names(self) -> list[str]:
        return [fluorophore(n).name for n in self.config.fluorophores]

    @property
    def spectra(self) -> np.ndarray:
        """Nominal ``(C, K)`` library spectra in the configured channels."""
        c = self.config
        return mixing_matrix(c.fluorophores, [Channel(lo, hi) for lo, hi in c.bands])

    def simulate(self, n: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """``n`` simulated (input, target) pairs, scaled as the network sees them."""
        c = self.config
        g = make_rng(seed)
        chans = [Channel(lo, hi) for lo, hi in c.bands]
        xs, ys = [], []
        for _ in range(n):
            ph = float(np.exp(g.uniform(math.log(c.photons[0]), math.log(c.photons[1]))))
            a = abundance_maps((c.image_size, c.image_size), len(c.fluorophores), seed=g,
                               kinds=[("nuclei", "filaments", "rings", "beads")[int(k)]
                                      for k in g.integers(0, 4, len(c.fluorophores))])
            cam = CameraModel.scmos()
            s = simulate_spectral(a, c.fluorophores, chans, photons=ph, camera=cam,
                                  autofluorescence=c.autofluorescence * ph,
                                  peak_shift=c.peak_shift, width_change=c.width_change,
                                  seed=g)
            y = camera_inverse(s.image, cam)
            scale = _scale(y)
            x, base = self._inputs(y / scale)
            xs.append(x)
            ys.append((s.abundances / scale - base).astype(np.float32))
        return xs, ys

    def _inputs(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Network input ``[channels, NNLS abundances]`` and the NNLS abundances (the base
        the network corrects), for a scaled ``(C, Y, X)`` image."""
        base = linear_unmix(y, self.spectra, "CYX").abundances.astype(np.float32)
        return np.concatenate([y.astype(np.float32), base]), base

    def fit(self, *, progress: ProgressFn | None = None, device: str | None = None,
            checkpoint_dir: str | os.PathLike[str] | None = None,
            resume: bool = False) -> "UnmixingNet":
        """Simulate training data and train the network (seeded, deterministic on CPU)."""
        c = self.config
        xs, ys = self.simulate(c.n_images, c.seed)
        ucfg = UNetConfig(ndim=2, in_channels=len(c.bands) + len(c.fluorophores),
                          out_channels=len(c.fluorophores),
                          depth=c.depth, base_filters=c.base_filters)
        tcfg = TrainingConfig(patch_size=c.patch_size, batch_size=c.batch_size, steps=c.steps,
                              learning_rate=c.learning_rate, lr_schedule="cosine",
                              validation_interval=max(1, c.steps // 10),
                              validation_patches=16, checkpoint_interval=max(1, c.steps),
                              seed=c.seed)
        sampler = PatchSampler(xs, ys, (c.patch_size, c.patch_size),
                               validation_fraction=tcfg.validation_fraction)
        threads = configure_threads()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            net = UNet(ucfg)
            # zero correction at the start: the untrained net returns the NNLS solution
            last = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
            torch.nn.init.zeros_(last.weight)
            if last.bias is not None:
                torch.nn.init.zeros_(last.bias)
        result = train(net, sampler, SupervisedObjective("mse"), tcfg,
                       fingerprint=c.to_json(), checkpoint_dir=checkpoint_dir, resume=resume,
                       progress=progress, device=device)
        self.net = net.eval().cpu()
        self.history = result.history
        ident = NormParams(low=0.0, high=100.0, lo=[0.0], hi=[1.0], eps=0.0)
        self.model_config = ModelConfig(
            method=METHOD, method_config=c.model_dump(mode="json"), unet=ucfg, axes="CYX",
            input_norm=ident, target_norm=ident, training_data={
                **result.data, "simulated": True, "intensity_scaling":
                f"per image: divided by the {SCALE_PERCENTILE} percentile of the channel sum"},
            versions=package_versions(), seed=c.seed,
            provenance={"created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"), "steps_done": result.steps_done,
                "best_val_loss": None if math.isnan(result.best_val_loss)
                else result.best_val_loss, "torch_threads": threads})
        return self

    def _require(self) -> UNet:
        if self.net is None:
            raise ConfigError(message("an untrained unmixing net", "a trained model",
                                      "Call fit() or UnmixingNet.load(folder)."))
        return self.net

    def unmix(self, image: Any, axes: str, *, background: Any = None,
              progress: Callable[[int, int], None] | None = None) -> UnmixingResult:
        """Unmix ``image`` (axes with C, 2D spatial; S/T looped) into abundances.

        Intensities must be linear in photons (camera offset removed or given as
        ``background``); the result is in the same units (see the module notes).
        """
        net = self._require()
        arr, lay = channel_image(image, axes)
        if len(lay.axes_without_c.replace("S", "").replace("T", "")) != 2 or "Z" in lay.axes:
            raise DataError(message(f"axes {lay.axes!r}", "2D channel images (CYX, TCYX, ...)",
                                    "Unmix 3D stacks plane by plane (pass Z as T)."))
        c_in = len(self.config.bands)
        if lay.n_channels != c_in:
            raise DataError(message(f"an image with {lay.n_channels} channels",
                                    f"{c_in} channels as trained", "Train a net for these "
                                    "channels."))
        b = background_vector(background, c_in)
        ci = lay.c_index
        sp = [lay.axes.index("Y"), lay.axes.index("X")]
        lead = [i for i in range(arr.ndim) if i not in sp and i != ci]
        moved = np.transpose(arr, lead + [ci] + sp)
        k = len(self.config.fluorophores)
        out = np.empty(moved.shape[:len(lead)] + (k,) + moved.shape[-2:], np.float32)
        idxs = list(np.ndindex(*moved.shape[:len(lead)]))
        configure_threads()
        div = 2 ** self.config.depth
        for n, idx in enumerate(idxs, 1):
            y = moved[idx].astype(np.float32) - b[:, None, None].astype(np.float32)
            scale = _scale(y)
            x, base = self._inputs(y / scale)
            pads = [(0, 0)] + [(0, (-s) % div) for s in x.shape[1:]]
            x = np.pad(x, pads, mode="reflect" if min(x.shape[1:]) > div else "edge")
            with torch.inference_mode():
                o = net(torch.from_numpy(np.ascontiguousarray(x))[None])[0].numpy()
            # abundances are non-negative: clip (a ReLU output layer would stop the
            # gradient of channels that start negative)
            out[idx] = np.clip(base + o[:, :y.shape[1], :y.shape[2]], 0.0, None) * scale
            if progress is not None:
                progress(n, len(idxs))
        back = np.argsort(lead + [ci] + sp)
        ab = np.transpose(out, back)
        m = self.spectra
        yv = lay.to_matrix(arr).astype(np.float64) - b[:, None]
        av = np.moveaxis(ab, ci, 0).reshape(k, -1).astype(np.float64)
        res = residual_rms(yv, m, av, np.zeros(c_in))
        return UnmixingResult(abundances=np.ascontiguousarray(ab), axes=lay.axes, spectra=m,
                              residual=lay.from_pixels(res.astype(np.float32)),
                              info={"method": METHOD})

    def save(self, folder: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the model folder (config.json + weights.safetensors + history)."""
        net = self._require()
        assert self.model_config is not None
        return save_model(folder, self.model_config, net.state_dict(), self.history,
                          overwrite=overwrite)

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> "UnmixingNet":
        """Load a model folder written by :meth:`save` (nothing unpickled)."""
        mc, tensors = load_model(folder)
        if mc.method != METHOD:
            raise InputFileError(message(f"a {mc.method!r} model in {folder}",
                                         f"a {METHOD!r} model", "Pass an unmixing-net folder."))
        inst = cls(UnmixingNetConfig.build(**mc.method_config))
        net = UNet(mc.unet)
        net.load_state_dict(tensors)
        inst.net = net.eval()
        inst.model_config = mc
        return inst


def _scale(y: np.ndarray) -> float:
    total = y.sum(axis=0)
    s = float(np.percentile(total, SCALE_PERCENTILE))
    return s if s > 0 else max(float(np.abs(total).max()), 1.0)
