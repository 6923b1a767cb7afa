"""A DECODE-style network: per-pixel detection probability, sub-pixel offsets, photons,
background and uncertainties, trained on simulation.

The U-Net maps a frame to channels at camera resolution (Speiser et al. 2021):

- ``p``: probability that an emitter sits in the pixel (sigmoid);
- ``dx, dy`` (and ``dz`` for 3D): sub-pixel offset from the pixel centre (tanh, pixels;
  ``z`` in units of ``z_scale``);
- ``n``: photons in units of the simulation's mean photons (softplus);
- ``sigma_*``: standard deviations of ``x, y (, z), n`` (sigmoid, scaled);
- ``b``: background photons per pixel, in units of the simulation's background.

Loss (the "Gaussian mixture model" loss of DECODE): with :math:`P = \\sum_k p_k` and
:math:`V = \\sum_k p_k (1 - p_k)`, the true count :math:`E` of a frame has the
log-likelihood :math:`\\log\\mathcal N(E; P, V)` (weighted by ``E``); every true emitter
:math:`u` has the log-likelihood of a mixture over pixels,
:math:`\\log \\sum_k \\frac{p_k}{P}\\,\\mathcal N(u;\\,\\mu_k, \\mathrm{diag}\\,\\sigma_k^2)`
with :math:`\\mu_k` the pixel centre plus offsets; the background map adds a mean squared
error. The loss is the negative sum, averaged over the batch; an optional per-pixel binary
cross-entropy on the occupied pixels (``detection_weight``) gives the probability map a
dense signal from the first step, which shortens CPU training considerably. Detections are
pixels whose probability, summed over their 3 x 3 neighbourhood at a local maximum, exceeds
``threshold``, or whose own probability exceeds ``single_threshold`` (two emitters in
adjacent pixels).

References
----------
.. [1] A. Speiser et al., "Deep learning enables fast and dense single-molecule
   localization with high accuracy", Nat. Methods 18, 1082-1090 (2021).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from scipy import ndimage

from fluorecon.core.errors import ConfigError, message
from fluorecon.methods.classical.smlm.localize import camera_electrons
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
from fluorecon.simulate.smlm import Localizations, simulate_frames

__all__ = ["DECODE", "DECODEConfig"]


class DECODEConfig(SMLMNetConfig):
    """Settings of :class:`DECODE` (simulation and optimiser fields inherited)."""

    threshold: float = Field(default=0.5, gt=0, le=1.0, description="Detection: summed 3x3 "
                             "probability at a local maximum of p.")
    single_threshold: float = Field(default=0.6, gt=0, le=1.0, description="Detection: a "
                                    "pixel's own probability (adjacent emitters).")
    background_weight: float = Field(default=1.0, ge=0, description="Weight of the "
                                     "background loss.")
    detection_weight: float = Field(default=1.0, ge=0, description="Weight of the per-pixel "
                                    "binary cross-entropy on 'an emitter is in this pixel', "
                                    "which speeds up early training (0: DECODE's loss only).")


class DECODE:
    """DECODE-style localiser (2D, or 3D with an astigmatic PSF) trained on simulation.

    Examples
    --------
    >>> from fluorecon.simulate.smlm import SMLMConfig
    >>> cfg = DECODEConfig(simulation=SMLMConfig(shape=(16, 16)), steps=2, base_filters=4,
    ...                    batch_size=2, validation_frames=2)
    >>> DECODE(cfg).fit().is_trained
    True
    """

    name = "decode"

    def __init__(self, config: DECODEConfig | None = None, **kwargs: Any) -> None:
        if config is not None and kwargs:
            raise ConfigError(message("a config and keyword fields", "one of them",
                                      "Pass config=... or keywords."))
        self.config: DECODEConfig = config or DECODEConfig.build(**kwargs)  # type: ignore
        self.net: UNet | None = None
        self.norm: NormParams | None = None
        self.history: list[dict[str, float]] = []
        self.provenance: dict[str, Any] = {}
        self.device = torch.device("cpu")

    # -- geometry -----------------------------------------------------------------------
    @property
    def is_3d(self) -> bool:
        """True for an astigmatic PSF (z is predicted)."""
        return self.config.simulation.psf.is_3d

    @property
    def n_coords(self) -> int:
        """Coordinates per emitter: x, y, (z,) photons."""
        return 4 if self.is_3d else 3

    @property
    def z_scale(self) -> float:
        """nm per unit of the z offset channel: half the z range (at least 1 nm)."""
        lo, hi = self.config.simulation.z_range
        return max(0.5 * (hi - lo), 1.0)

    @property
    def z_centre(self) -> float:
        lo, hi = self.config.simulation.z_range
        return 0.5 * (lo + hi)

    @property
    def is_trained(self) -> bool:
        """True after :meth:`fit` or :meth:`load`."""
        return self.net is not None and self.norm is not None

    def unet_config(self) -> UNetConfig:
        """Architecture: 1 input channel; p, offsets, photons, sigmas and background out."""
        c = self.config
        return UNetConfig(ndim=2, in_channels=1, out_channels=2 + 2 * self.n_coords,
                          depth=c.depth, base_filters=c.base_filters)

    def _heads(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        m = self.n_coords
        p = torch.sigmoid(raw[:, 0].clamp(-30, 30))
        off = torch.tanh(raw[:, 1:1 + m - 1])             # dx, dy (, dz)
        n = F.softplus(raw[:, m])                           # photons / mean photons
        sig = torch.sigmoid(raw[:, m + 1:2 * m + 1]) * 3.0 + 0.01
        bg = F.softplus(raw[:, 2 * m + 1])
        return {"p": p, "logit": raw[:, 0], "off": off, "n": n, "sigma": sig, "bg": bg}

    # -- data ---------------------------------------------------------------------------
    def _simulate(self, seed: Any, n: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        c = self.config
        sim_cfg = c.simulation.model_copy(update={"frames": n})
        sim = simulate_frames(sim_cfg, seed=seed, density=c.density_range,
                              background=c.backgrounds())
        assert self.norm is not None
        x = scale_input(sim.frames, sim_cfg, self.norm)[:, None]
        t = sim.truth
        px = c.simulation.pixel_size
        counts = np.bincount(t.frame, minlength=n)
        mmax = max(int(counts.max()) if counts.size else 0, 1)
        coords = np.zeros((n, mmax, self.n_coords), np.float32)
        mask = np.zeros((n, mmax), np.float32)
        order = np.argsort(t.frame, kind="stable")
        slot = np.arange(len(t)) - np.repeat(np.cumsum(counts) - counts, counts)
        fr = t.frame[order]
        coords[fr, slot, 0] = t.x[order] / px          # pixel units (0 = frame edge)
        coords[fr, slot, 1] = t.y[order] / px
        if self.is_3d:
            assert t.z is not None
            coords[fr, slot, 2] = (t.z[order] - self.z_centre) / self.z_scale
        assert t.photons is not None
        coords[fr, slot, -1] = t.photons[order] / c.simulation.photons
        mask[fr, slot] = 1.0
        occupied = np.zeros((n,) + tuple(c.simulation.shape), np.float32)
        iy = np.clip((t.y / px).astype(np.int64), 0, c.simulation.shape[0] - 1)
        ix = np.clip((t.x / px).astype(np.int64), 0, c.simulation.shape[1] - 1)
        occupied[t.frame, iy, ix] = 1.0
        bg = (sim.background / max(c.simulation.background, 1e-6)).astype(np.float32)
        return x, {"coords": coords, "mask": mask, "count": counts.astype(np.float32),
                   "bg": bg, "occupied": occupied}

    # -- loss -------------------------------------------------------------------------
    def _loss(self, raw: torch.Tensor, tgt: dict[str, torch.Tensor]) -> torch.Tensor:
        h = self._heads(raw)
        p = h["p"]
        b, ny, nx = p.shape
        psum = p.sum((1, 2))
        pvar = (p - p * p).sum((1, 2)).clamp_min(1e-6)
        e = tgt["count"]
        count_ll = -0.5 * (e - psum) ** 2 / pvar - 0.5 * torch.log(2 * math.pi * pvar)
        count_ll = count_ll * e
        # mixture components: pixel centres + offsets
        yy, xx = torch.meshgrid(torch.arange(ny, device=p.device, dtype=p.dtype) + 0.5,
                                torch.arange(nx, device=p.device, dtype=p.dtype) + 0.5,
                                indexing="ij")
        comps = [xx + h["off"][:, 0], yy + h["off"][:, 1]]
        if self.is_3d:
            comps.append(h["off"][:, 2])
        comps.append(h["n"])
        mu = torch.stack(comps, dim=-1).reshape(b, 1, ny * nx, self.n_coords)
        sig = h["sigma"].permute(0, 2, 3, 1).reshape(b, 1, ny * nx, self.n_coords)
        u = tgt["coords"][:, :, None, :]                        # (b, m, 1, c)
        comp_ll = (-0.5 * ((u - mu) / sig) ** 2 - torch.log(sig)
                   - 0.5 * math.log(2 * math.pi)).sum(-1)      # (b, m, k)
        logw = torch.log(p.reshape(b, 1, -1).clamp_min(1e-8)) - torch.log(
            psum.clamp_min(1e-8))[:, None, None]
        gmm = torch.logsumexp(comp_ll + logw, dim=-1)           # (b, m)
        gmm_ll = (gmm * tgt["mask"]).sum(-1)
        bg_loss = ((h["bg"] - tgt["bg"][:, None, None]) ** 2).mean((1, 2))
        total = -(count_ll + gmm_ll) / (ny * nx) + self.config.background_weight * bg_loss
        if self.config.detection_weight > 0:
            bce = F.binary_cross_entropy_with_logits(h["logit"], tgt["occupied"],
                                                     reduction="none").mean((1, 2))
            total = total + self.config.detection_weight * bce
        return total.mean()

    # -- training -----------------------------------------------------------------------
    def fit(self, *, progress: ProgressFn | None = None, device: str | None = None
            ) -> "DECODE":
        """Train on frames simulated from :attr:`config` (fresh frames at every step)."""
        c = self.config
        dev = pick_device(device)
        self.device = dev
        seeds = np.random.SeedSequence(c.seed).spawn(3)
        probe = simulate_frames(c.simulation.model_copy(update={"frames": 64}),
                                seed=np.random.default_rng(seeds[0]),
                                density=c.density_range, background=c.backgrounds())
        self.norm = input_scaling(camera_electrons(probe.frames, c.simulation.camera))
        torch.manual_seed(c.seed)
        net = UNet(self.unet_config()).to(dev)

        def to_dev(x: np.ndarray, t: dict[str, np.ndarray]
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            return (torch.from_numpy(np.ascontiguousarray(x)).to(dev),
                    {k: torch.from_numpy(np.ascontiguousarray(v)).to(dev)
                     for k, v in t.items()})

        vrng = np.random.default_rng(seeds[1])
        val = []
        for i in range(0, c.validation_frames, c.batch_size):
            n = min(c.batch_size, c.validation_frames - i)
            val.append(to_dev(*self._simulate(vrng, n)))

        def batch(rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            return to_dev(*self._simulate(rng, c.batch_size))

        self.provenance = fit_network(net, make_batch=batch, loss_fn=self._loss,
                                      validation=val, config=c, device=dev,
                                      progress=progress)
        self.history = self.provenance.pop("history")
        self.net = net
        return self

    # -- inference ----------------------------------------------------------------------
    def predict_maps(self, frames: Any, *, progress: FrameProgress | None = None
                     ) -> dict[str, np.ndarray]:
        """Output maps of every frame: ``p`` (T, Y, X), ``off`` (T, 2|3, Y, X), ``n``,
        ``sigma`` (T, 3|4, Y, X), ``bg`` in the network's units (see the module notes)."""
        net, norm = self._require()
        x = scale_input(frames, self.config.simulation, norm)[:, None]
        x, (h, w) = pad_to(x, 2 ** self.config.depth)

        def heads(o: torch.Tensor) -> torch.Tensor:
            hd = self._heads(o)
            return torch.cat([hd["p"][:, None], hd["off"], hd["n"][:, None], hd["sigma"],
                              hd["bg"][:, None]], 1)

        out = np.concatenate(run_batches(net, x, device=self.device, pixels_per_batch=1 << 18,
                                         progress=progress, fn=heads))[..., :h, :w]
        m = self.n_coords
        return {"p": out[:, 0], "off": out[:, 1:m], "n": out[:, m],
                "sigma": out[:, m + 1:2 * m + 1], "bg": out[:, 2 * m + 1]}

    def localize(self, frames: Any, *, progress: FrameProgress | None = None,
                 threshold: float | None = None) -> Localizations:
        """Localisations of camera frames (ADU, ``(T, Y, X)`` or ``(Y, X)``).

        Returns
        -------
        Localizations
            frame, x, y (, z) in nm, photons, background (photons per pixel), uncertainty
            (nm, mean of the predicted x and y standard deviations), uncertainty_z (3D),
            extra column ``detection_probability``.
        """
        return localize_in_chunks(frames, lambda block: self._localize_block(block, threshold),
                                  progress=progress)

    def _localize_block(self, frames: np.ndarray, threshold: float | None) -> Localizations:
        c = self.config
        maps = self.predict_maps(frames, progress=None)
        p = maps["p"]
        thr = c.threshold if threshold is None else float(threshold)
        local = p == ndimage.maximum_filter(p, size=(1, 3, 3), mode="constant")
        psum = ndimage.uniform_filter(p, size=(1, 3, 3), mode="constant") * 9.0
        det = (local & (psum > thr)) | (p > c.single_threshold)
        t, y, x = np.nonzero(det)
        px = c.simulation.pixel_size
        off = maps["off"][t, :, y, x]
        sig = maps["sigma"][t, :, y, x]
        photons = maps["n"][t, y, x] * c.simulation.photons
        z = unc_z = None
        if self.is_3d:
            z = off[:, 2] * self.z_scale + self.z_centre
            unc_z = sig[:, 2] * self.z_scale
        return Localizations.build(
            frame=t, x=(x + 0.5 + off[:, 0]) * px, y=(y + 0.5 + off[:, 1]) * px, z=z,
            photons=photons,
            background=maps["bg"][t, y, x] * c.simulation.background,
            uncertainty=0.5 * (sig[:, 0] + sig[:, 1]) * px, uncertainty_z=unc_z,
            extra={"detection_probability": np.minimum(np.where(local[t, y, x],
                                                                psum[t, y, x], p[t, y, x]),
                                                       1.0)})

    def _require(self) -> tuple[UNet, NormParams]:
        if self.net is None or self.norm is None:
            raise ConfigError(message("an untrained DECODE model", "a trained one",
                                      "Call fit() or DECODE.load(folder) first."))
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
    def load(cls, folder: str | os.PathLike[str], *, device: str | None = None) -> "DECODE":
        """Read a model folder written by :meth:`save`."""
        mc, tensors = read_model(folder, cls.name)
        model = cls(DECODEConfig.model_validate(mc.method_config))
        model.device = pick_device(device)
        net = UNet(mc.unet)
        net.load_state_dict(tensors)
        model.net = net.to(model.device).eval()
        model.norm = mc.input_norm
        model.provenance = dict(mc.provenance)
        return model
