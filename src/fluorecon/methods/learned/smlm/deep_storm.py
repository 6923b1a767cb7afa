"""Deep-STORM: a U-Net maps each frame to an upsampled emitter-density map.

Training (Nehme et al. 2018): frames simulated with the user's camera, PSF, photons and
background (:class:`~fluorecon.simulate.smlm.SMLMConfig`) at densities drawn per frame are
mapped to the density of the true emitters on a grid ``upsampling`` times finer, each
emitter a Gaussian of ``target_sigma`` fine pixels and mass
``target_scale`` (so that the map is a smooth, learnable target); the loss is the mean
squared error. Localisations are the local maxima of the predicted map whose surrounding
mass exceeds ``threshold`` emitters, refined to sub-pixel positions by the centroid of their
3 x 3 neighbourhood.

Unlike the original, which upsamples the frame before a fully convolutional network, the
U-Net here runs on the camera grid and predicts ``upsampling**2`` channels that a sub-pixel
convolution (pixel shuffle, Shi et al. 2016) rearranges into the fine grid: the same map,
at ``upsampling**2`` times fewer network pixels, which is what makes CPU training practical.

References
----------
.. [1] E. Nehme, L. E. Weiss, T. Michaeli, Y. Shechtman, "Deep-STORM: super-resolution
   single-molecule microscopy by deep learning", Optica 5, 458-464 (2018).
.. [2] W. Shi et al., "Real-time single image and video super-resolution using an efficient
   sub-pixel convolutional neural network", CVPR 2016.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from scipy import ndimage

from fluorecon.core.errors import ConfigError, message
from fluorecon.methods.learned.smlm._common import (
    FrameProgress,
    ProgressFn,
    SMLMNetConfig,
    fit_network,
    input_scaling,
    localize_in_chunks,
    pad_to,
    pick_device,
    read_model,
    run_batches,
    scale_input,
    write_model,
)
from fluorecon.methods.learned.unet import UNet, UNetConfig
from fluorecon.normalize.percentile import NormParams
from fluorecon.simulate.smlm import Localizations, PSFModel, expected_photons, simulate_frames

__all__ = ["DeepSTORM", "DeepSTORMConfig"]


class DeepSTORMConfig(SMLMNetConfig):
    """Settings of :class:`DeepSTORM` (simulation and optimiser fields inherited)."""

    upsampling: int = Field(default=4, ge=2, le=8, description="Fine-grid pixels per camera "
                                                              "pixel along each axis.")
    target_sigma: float = Field(default=1.0, gt=0.2, le=4.0, description="Width of each "
                                "emitter in the density map, fine pixels.")
    target_scale: float = Field(default=100.0, gt=0, description="Mass of one emitter in "
                                "the density map.")
    threshold: float = Field(default=0.5, gt=0, le=5.0, description="Detection: mass of a "
                             "local maximum's 5x5 neighbourhood, in emitters.")


class DeepSTORM:
    """Deep-STORM localiser trained on simulation.

    Examples
    --------
    >>> from fluorecon.simulate.smlm import SMLMConfig
    >>> cfg = DeepSTORMConfig(simulation=SMLMConfig(shape=(16, 16)), steps=2,
    ...                       base_filters=4, batch_size=2, validation_frames=2)
    >>> model = DeepSTORM(cfg).fit()
    >>> model.is_trained
    True
    """

    name = "deep-storm"

    def __init__(self, config: DeepSTORMConfig | None = None, **kwargs: Any) -> None:
        if config is not None and kwargs:
            raise ConfigError(message("a config and keyword fields", "one of them",
                                      "Pass config=... or keywords."))
        self.config: DeepSTORMConfig = config or DeepSTORMConfig.build(  # type: ignore[assignment]
            **kwargs)
        self.net: UNet | None = None
        self.norm: NormParams | None = None
        self.history: list[dict[str, float]] = []
        self.provenance: dict[str, Any] = {}
        self.device = torch.device("cpu")

    @property
    def is_trained(self) -> bool:
        """True after :meth:`fit` or :meth:`load`."""
        return self.net is not None and self.norm is not None

    def unet_config(self) -> UNetConfig:
        """The network architecture (1 input, ``upsampling**2`` outputs, ReLU output)."""
        c = self.config
        return UNetConfig(ndim=2, in_channels=1, out_channels=c.upsampling ** 2,
                          depth=c.depth, base_filters=c.base_filters, final_activation="relu")

    # -- data ---------------------------------------------------------------------------
    def _pair(self, seed: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
        c = self.config
        sim_cfg = c.simulation.model_copy(update={"frames": n})
        sim = simulate_frames(sim_cfg, seed=seed, density=c.density_range,
                              background=c.backgrounds())
        assert self.norm is not None
        x = scale_input(sim.frames, sim_cfg, self.norm)[:, None]
        y = self._target(sim.truth, n)
        return x, y

    def _target(self, truth: Localizations, n: int) -> np.ndarray:
        c = self.config
        u = c.upsampling
        fine = c.simulation.pixel_size / u
        marks = truth.with_columns(photons=np.full(len(truth), c.target_scale), z=None)
        shape = (c.simulation.shape[0] * u, c.simulation.shape[1] * u)
        dens = expected_photons(marks, shape, pixel_size=fine,
                                psf=PSFModel(sigma=c.target_sigma * fine), n_frames=n)
        return dens[:, None].astype(np.float32)

    # -- training -----------------------------------------------------------------------
    def fit(self, *, progress: ProgressFn | None = None, device: str | None = None
            ) -> "DeepSTORM":
        """Train on frames simulated from :attr:`config` (fresh frames at every step).

        Parameters
        ----------
        progress : callable, optional
            ``progress(step, total, logs)`` (the training engine's signature).
        device : str, optional
            Default: CUDA if available, else CPU.
        """
        c = self.config
        dev = pick_device(device)
        self.device = dev
        seeds = np.random.SeedSequence(c.seed).spawn(3)
        probe = simulate_frames(c.simulation.model_copy(update={"frames": 64}),
                                seed=np.random.default_rng(seeds[0]),
                                density=c.density_range, background=c.backgrounds())
        from fluorecon.methods.classical.smlm.localize import camera_electrons
        self.norm = input_scaling(camera_electrons(probe.frames, c.simulation.camera))
        torch.manual_seed(c.seed)
        net = UNet(self.unet_config()).to(dev)
        vx, vy = self._pair(np.random.default_rng(seeds[1]), c.validation_frames)
        bs = c.batch_size
        val = [(torch.from_numpy(vx[i:i + bs]).to(dev), torch.from_numpy(vy[i:i + bs]).to(dev))
               for i in range(0, len(vx), bs)]

        def batch(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
            x, y = self._pair(rng, bs)
            k = int(rng.integers(4))
            x, y = np.rot90(x, k, axes=(2, 3)), np.rot90(y, k, axes=(2, 3))
            if rng.random() < 0.5:
                x, y = x[..., ::-1], y[..., ::-1]
            return (torch.from_numpy(np.ascontiguousarray(x)).to(dev),
                    torch.from_numpy(np.ascontiguousarray(y)).to(dev))

        def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return torch.mean((F.pixel_shuffle(out, c.upsampling) - y) ** 2)

        self.provenance = fit_network(net, make_batch=batch, loss_fn=loss, validation=val,
                                      config=c, device=dev, progress=progress)
        self.history = self.provenance.pop("history")
        self.net = net
        return self

    # -- inference ----------------------------------------------------------------------
    def density(self, frames: Any, *, progress: FrameProgress | None = None) -> np.ndarray:
        """Predicted density maps, float32 ``(T, u Y, u X)`` (mass ``target_scale`` per
        emitter)."""
        net, norm = self._require()
        u = self.config.upsampling
        x, (h, w) = pad_to(scale_input(frames, self.config.simulation, norm)[:, None],
                           2 ** self.config.depth)
        outs = run_batches(net, x, device=self.device, pixels_per_batch=1 << 18,
                           progress=progress, fn=lambda o: F.pixel_shuffle(o, u)[:, 0])
        return np.concatenate(outs)[:, :h * u, :w * u].astype(np.float32)

    def localize(self, frames: Any, *, progress: FrameProgress | None = None,
                 threshold: float | None = None) -> Localizations:
        """Localisations of camera frames (ADU, ``(T, Y, X)`` or ``(Y, X)``).

        Returns
        -------
        Localizations
            frame, x, y (nm) and extra column ``mass`` (emitters in the peak's
            neighbourhood).
        """
        return localize_in_chunks(frames, lambda block: self._localize_block(block, threshold),
                                  progress=progress)

    def _localize_block(self, frames: np.ndarray, threshold: float | None) -> Localizations:
        c = self.config
        dens = self.density(frames, progress=None)
        thr = c.threshold if threshold is None else float(threshold)
        peak = ndimage.maximum_filter(dens, size=(1, 5, 5), mode="constant")
        mass = ndimage.uniform_filter(dens, size=(1, 5, 5), mode="constant") * 25.0 / \
            c.target_scale
        t, y, x = np.nonzero((dens == peak) & (mass > thr) & (dens > 0))
        # sub-pixel refinement: centroid of the 3x3 neighbourhood
        pad = np.pad(dens, [(0, 0), (1, 1), (1, 1)])
        off = np.arange(-1, 2)
        nb = pad[t[:, None, None], y[:, None, None] + 1 + off[None, :, None],
                 x[:, None, None] + 1 + off[None, None, :]]
        tot = np.maximum(nb.sum(axis=(1, 2)), 1e-12)
        dy = (nb.sum(axis=2) * off).sum(1) / tot
        dx = (nb.sum(axis=1) * off).sum(1) / tot
        fine = c.simulation.pixel_size / c.upsampling
        return Localizations.build(frame=t, x=(x + 0.5 + dx) * fine, y=(y + 0.5 + dy) * fine,
                                   extra={"mass": mass[t, y, x]})

    def _require(self) -> tuple[UNet, NormParams]:
        if self.net is None or self.norm is None:
            raise ConfigError(message("an untrained Deep-STORM model", "a trained one",
                                      "Call fit() or DeepSTORM.load(folder) first."))
        return self.net, self.norm

    # -- model folders ------------------------------------------------------------------
    def save(self, folder: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write ``config.json`` + ``weights.safetensors`` (+ history) to ``folder``."""
        net, norm = self._require()
        return write_model(folder, method=self.name, config=self.config,
                           unet=self.unet_config(), net=net, norm=norm, history=self.history,
                           provenance=self.provenance, seed=self.config.seed,
                           overwrite=overwrite)

    @classmethod
    def load(cls, folder: str | os.PathLike[str], *, device: str | None = None
             ) -> "DeepSTORM":
        """Read a model folder written by :meth:`save`."""
        mc, tensors = read_model(folder, cls.name)
        model = cls(DeepSTORMConfig.model_validate(mc.method_config))
        model.device = pick_device(device)
        net = UNet(mc.unet)
        net.load_state_dict(tensors)
        model.net = net.to(model.device).eval()
        model.norm = mc.input_norm
        model.provenance = dict(mc.provenance)
        return model
