"""Learned upsampling (super-resolution by 2x or 4x along chosen axes), CSBDeep style.

As in CSBDeep's upsampling models [1]_, the network is shape-preserving: a low-resolution
image is first interpolated onto the target grid (cubic spline, :meth:`LearnedUpsampling.
interpolate`), then a U-Net restores it. Training pairs come from high-quality images by
the physical forward model (PSF blur, pixel binning by ``factor`` along ``upsample_axes``,
camera noise, the same interpolation), see
:func:`~fluorecon.simulate.semisynthetic.semisynthetic_pairs`. The bicubic interpolation
alone is the baseline the network must beat.

References
----------
.. [1] M. Weigert et al., "Content-aware image restoration: pushing the limits of
   fluorescence microscopy", Nature Methods 15, 1090-1097 (2018).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from fluorecon.core.axes import check_axes, spatial_axes
from fluorecon.core.dtypes import as_float32, check_image_array
from fluorecon.core.errors import AxesError, DataError, message
from fluorecon.methods.learned.deconv import SimulatedCARE, SimulationConfig, spatial_images
from fluorecon.methods.learned.training import ProgressFn
from fluorecon.simulate.semisynthetic import resample_axis


class UpsampleConfig(SimulationConfig):
    """Settings of :class:`LearnedUpsampling`."""

    factor: int = Field(default=2, ge=2, le=8, description="Upsampling factor (2 or 4 "
                                                           "typical) along upsample_axes.")
    upsample_axes: str = Field(default="YX", description="Axes upsampled: YX (lateral), Z, "
                                                         "ZYX, Y or X.")
    interpolation_order: Literal[1, 3] = Field(default=3, description="Interpolation onto "
                                               "the fine grid: 1 linear, 3 cubic spline.")
    adversarial_weight: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Weight of an adversarial (GAN) loss in a "
        "fine-tuning phase after the pixel-loss training; > 0 sharpens textures but can "
        "invent structure (the model is then flagged as able to hallucinate).")
    adversarial_steps: int = Field(default=500, ge=1, description="Fine-tuning steps with "
                                                                  "the adversarial loss.")

    @model_validator(mode="after")
    def _check_upsample(self) -> "UpsampleConfig":
        ax = self.upsample_axes
        if not ax or any(a not in "ZYX" for a in ax) or len(set(ax)) != len(ax) \
                or ax != "".join(a for a in "ZYX" if a in ax):
            raise ValueError(f"upsample_axes must be distinct letters of ZYX in that order "
                             f"(e.g. 'YX', 'Z', 'ZYX'), got {ax!r}")
        if self.augment and self.rotate and ("Y" in ax) != ("X" in ax):
            raise ValueError(f"upsample_axes {ax!r} upsamples only one of Y and X: set "
                             "rotate=False (mirror images only) or augment=False "
                             "(90-degree turns would move that axis)")
        return self


class LearnedUpsampling(SimulatedCARE):
    """Super-resolution by ``factor`` along ``upsample_axes`` (``upsample``).

    Parameters
    ----------
    config : UpsampleConfig, optional
    **kwargs
        Config fields, e.g. ``factor=4, upsample_axes="YX"``.

    Notes
    -----
    Unlike other methods, :meth:`predict` returns an image larger than its input: each
    axis in ``upsample_axes`` grows from ``n`` to ``factor * n`` pixels (pixel size divided
    by ``factor``), as camera binning is undone. It first calls :meth:`interpolate`
    (cubic spline through the pixel centres, edge values held beyond the outer centres),
    then the shape-preserving network (:meth:`predict_block`, which therefore expects
    *interpolated* blocks; tiled prediction runs on the output of :meth:`interpolate`).
    The factor and axes are stored in the model's ``method_config``.

    With ``M`` the area-mean binning, the training input is
    :math:`\\mathcal{I}(\\mathcal{C}(M(h * x)))`, the target :math:`x`.
    """

    name: ClassVar[str] = "upsample"
    kind: ClassVar[str] = "restore"
    Config: ClassVar[type[UpsampleConfig]] = UpsampleConfig  # type: ignore[assignment]
    summary: ClassVar[str] = "Learned upsampling (2x/4x) trained on simulated binned pairs."
    config: UpsampleConfig
    #: The output lies on a finer grid than the input (see :meth:`predict`).
    resamples: ClassVar[bool] = True

    def fit(self, images: Any, axes: str, *, psf: Any | None = None,
            checkpoint_dir: str | os.PathLike[str] | None = None, resume: bool = False,
            progress: ProgressFn | None = None, device: str | None = None
            ) -> "LearnedUpsampling":
        """Simulate (binned + noisy + interpolated, image) pairs and train on them.

        Parameters
        ----------
        images : array_like or list of array_like
            High-quality images on the fine grid (targets).
        axes : str
            Axes of every image; its spatial axes must include ``upsample_axes``.
        psf : array_like, optional
            Extra blur on the fine grid applied before binning (e.g. the PSF difference
            between the low- and high-resolution acquisitions); default none.
        checkpoint_dir, resume, progress, device
            As in :meth:`CARE.fit <fluorecon.methods.learned.care.CARE.fit>`.
        """
        from fluorecon.simulate.semisynthetic import semisynthetic_pairs

        imgs, sp = spatial_images(images, axes, name="images")
        c = self.config
        self._check_axes_against(sp)
        pairs = semisynthetic_pairs(imgs, sp, psf=psf, factor=c.factor,
                                    subsample_axes=c.upsample_axes, photons=c.photons,
                                    camera=c.camera, background=c.background,
                                    copies=c.copies,
                                    interpolation_order=c.interpolation_order, seed=c.seed)
        self.fit_pairs(pairs, data_info={"images_axes": axes.upper(), "images": len(imgs)},
                       checkpoint_dir=checkpoint_dir, resume=resume, progress=progress,
                       device=device)
        if c.adversarial_weight > 0:
            self._adversarial_finetune(pairs, progress=progress)
        return self

    @property
    def may_hallucinate(self) -> bool:
        """True for models fine-tuned with an adversarial loss (see :meth:`fit`)."""
        mc = self.model_config
        return bool(mc is not None and mc.training_data.get("adversarial"))

    def _adversarial_finetune(self, pairs: Any, *, progress: ProgressFn | None) -> None:
        """Fine-tune the trained network with pixel loss + ``adversarial_weight`` x GAN loss.

        Notes
        -----
        A PatchGAN-style discriminator :math:`D` (three stride-2 convolutions with leaky
        ReLUs and a 1-channel convolution, one logit per patch region) is trained to tell
        target patches from network outputs by the binary cross-entropy; the generator
        :math:`G` (the U-Net) minimises
        :math:`\\mathrm{MSE}(G(x), y) + w\\,\\mathrm{BCE}(D(G(x)), 1)` (non-saturating GAN
        loss, Goodfellow et al. 2014; as in SRGAN, Ledig et al. 2017). Both use Adam at the
        configured learning rate, seeded from ``seed``. The adversarial term rewards
        outputs that *look* like targets, not outputs that agree with the input, so it can
        add plausible but false detail: the model's ``training_data["adversarial"]`` says
        so, and predictions carry ``may_hallucinate``. This phase is not checkpointed.
        """
        import math

        import torch
        from torch import nn

        from fluorecon.methods.learned.training import PatchSampler

        net, mc = self._require_trained()
        c = self.config
        nd = mc.unet.ndim
        xs = [np.asarray(mc.input_norm.normalize(x), np.float32)[None] for x in pairs.inputs]
        ys = [np.asarray(mc.target_norm.normalize(y), np.float32)[None] for y in pairs.targets]
        tcfg = c.training_config()
        sampler = PatchSampler(xs, ys, tcfg.patch_shape(nd), validation_fraction=0.0)
        conv = nn.Conv2d if nd == 2 else nn.Conv3d
        dev = self._device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed + 1)
            layers: list[nn.Module] = []
            ch = 1
            for out_ch in (16, 32, 64):
                layers += [conv(ch, out_ch, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
                ch = out_ch
            layers.append(conv(ch, 1, 3, padding=1))
            disc = nn.Sequential(*layers).to(dev)
        opt_g = torch.optim.Adam(net.parameters(), lr=c.learning_rate, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(disc.parameters(), lr=c.learning_rate, betas=(0.5, 0.999))
        bce = nn.BCEWithLogitsLoss()
        rng = np.random.default_rng(np.random.SeedSequence(c.seed).spawn(4)[3])
        net.train()
        g_sum = d_sum = 0.0
        for step in range(1, c.adversarial_steps + 1):
            xb, yb = sampler.train_batch(c.batch_size, rng, augment=c.augment, rotate=c.rotate)
            x = torch.from_numpy(xb).to(dev)
            y = torch.from_numpy(yb).to(dev)
            fake = net(x)[:, :1]
            real_logit = disc(y)
            fake_logit = disc(fake.detach())
            loss_d = bce(real_logit, torch.ones_like(real_logit)) + \
                bce(fake_logit, torch.zeros_like(fake_logit))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            gen_logit = disc(fake)
            loss_g = torch.mean((fake - y) ** 2) + c.adversarial_weight * bce(
                gen_logit, torch.ones_like(gen_logit))
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            lg, ld = float(loss_g.detach()), float(loss_d.detach())
            g_sum, d_sum = g_sum + lg, d_sum + ld
            if not math.isfinite(lg):
                raise DataError(message(f"a non-finite adversarial loss at step {step}",
                                        "finite losses", "Lower adversarial_weight or "
                                        "learning_rate."))
            if progress is not None:
                progress(step, c.adversarial_steps, {"loss": lg})
        net.eval()
        info = {"weight": c.adversarial_weight, "steps": c.adversarial_steps,
                "mean_generator_loss": g_sum / c.adversarial_steps,
                "mean_discriminator_loss": d_sum / c.adversarial_steps,
                "may_hallucinate": True,
                "warning": "trained with an adversarial loss: outputs can contain plausible "
                           "but invented structure"}
        self.model_config = mc.model_copy(update={
            "training_data": {**mc.training_data, "adversarial": info}})

    def _check_axes_against(self, sp: str) -> None:
        missing = [a for a in self.config.upsample_axes if a not in sp]
        if missing:
            raise AxesError(message(f"images with spatial axes {sp!r} for upsample_axes "
                                    f"{self.config.upsample_axes!r}",
                                    f"images containing axis {missing[0]!r}",
                                    "Pass 3D (ZYX) data or upsample_axes='YX'."))

    def output_shape(self, shape: tuple[int, ...], axes: str) -> tuple[int, ...]:
        """Shape of :meth:`predict`'s result for an input of ``shape`` with ``axes``."""
        up = check_axes(axes, ndim=len(shape))
        f = self.config.factor
        return tuple(n * f if a in self.config.upsample_axes else n for n, a in zip(shape, up))

    def interpolate(self, image: Any, axes: str) -> np.ndarray:
        """Interpolate ``image`` onto the fine grid (the network's input; also the bicubic
        baseline).

        Parameters
        ----------
        image : array_like
            Low-resolution image with ``axes`` (containing every axis of
            ``upsample_axes``).
        axes : str

        Returns
        -------
        numpy.ndarray
            float32 image of :meth:`output_shape`.
        """
        check_image_array(image)
        up = check_axes(axes, ndim=len(image.shape))
        self._check_axes_against(spatial_axes(up))
        out = as_float32(image)
        for a in self.config.upsample_axes:
            out = resample_axis(out, axis=up.index(a), factor=self.config.factor,
                                sampling="bin", order=self.config.interpolation_order)
        return out

    def predict(self, image: Any, axes: str, *,
                progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Upsample ``image``: interpolate onto the fine grid, then apply the network.

        Returns
        -------
        numpy.ndarray
            float32, shape :meth:`output_shape` (larger than the input), in the units of
            the training targets.
        """
        net, mc = self._require_trained()
        if len(spatial_axes(check_axes(axes))) != mc.unet.ndim:
            raise AxesError(message(f"axes {axes!r} for a {mc.unet.ndim}D model",
                                    f"{mc.unet.ndim}D images", "Pass matching --axes."))
        return super().predict(self.interpolate(image, axes), axes, progress=progress)
