"""Learned deconvolution: a CARE network trained on pairs a forward model makes for one PSF.

The training pairs come from :mod:`fluorecon.simulate.semisynthetic`: the user's own
high-quality images (or phantoms) are the targets, and the inputs are those images blurred
by the given PSF (theoretical or measured, e.g. by
:func:`~fluorecon.methods.classical.psf_beads.psf_from_beads`) and recorded by a camera
model. The network learns to undo that blur and noise; classical deconvolution
(Richardson-Lucy, RL-TV, Wiener in :mod:`fluorecon.methods.classical.deconvolution`) is the
baseline it must beat without inventing structure.

References
----------
.. [1] M. Weigert et al., "Content-aware image restoration: pushing the limits of
   fluorescence microscopy", Nature Methods 15, 1090-1097 (2018).
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from fluorecon.core.errors import DataError, message
from fluorecon.methods.learned._base import LearnedConfig, LearnedMethod, split_images
from fluorecon.methods.learned.training import Objective, ProgressFn, SupervisedObjective
from fluorecon.simulate.semisynthetic import TrainingPairs


class SimulationConfig(LearnedConfig):
    """Learned-method fields plus the camera part of the training-data forward model."""

    residual: bool = Field(default=True, description="Predict a correction added to the "
                                                     "(interpolated) input.")
    photons: float | None = Field(default=50.0, gt=0, description="Peak expected photons of "
                                  "the simulated inputs (camera noise); None: noise-free.")
    background: float = Field(default=0.0, ge=0, description="Background photons per pixel "
                                                             "of the simulated inputs.")
    camera: Literal["scmos", "emccd", "ideal"] = Field(default="scmos", description="Camera "
                                                       "model of the simulated inputs.")
    copies: int = Field(default=2, ge=1, le=64, description="Noise realisations per training "
                                                            "image.")


class SimulatedCARE(LearnedMethod):
    """Base of CARE networks trained on :class:`~fluorecon.simulate.semisynthetic.
    TrainingPairs` (deconvolution, upsampling, isotropic restoration)."""

    Config: ClassVar[type[SimulationConfig]] = SimulationConfig  # type: ignore[assignment]
    config: SimulationConfig

    def _unet_overrides(self, in_channels: int, out_channels: int) -> dict[str, Any]:
        return {"residual": bool(self.config.residual and in_channels == out_channels)}

    def _objective(self) -> Objective:
        return SupervisedObjective(loss=self.config.loss_name)

    def fit_pairs(self, pairs: TrainingPairs, *, data_info: dict[str, Any] | None = None,
                  checkpoint_dir: str | os.PathLike[str] | None = None, resume: bool = False,
                  progress: ProgressFn | None = None, device: str | None = None
                  ) -> "SimulatedCARE":
        """Train on simulated pairs; their forward model is recorded in the model folder.

        Parameters
        ----------
        pairs : TrainingPairs
            From :func:`~fluorecon.simulate.semisynthetic.semisynthetic_pairs` or
            :func:`~fluorecon.simulate.semisynthetic.iso_pairs`.
        data_info : dict, optional
            Extra description stored in ``model_config.training_data``.
        checkpoint_dir, resume, progress, device
            As in :meth:`CARE.fit <fluorecon.methods.learned.care.CARE.fit>`.

        Returns
        -------
        SimulatedCARE
            ``self``, trained.
        """
        xs = [np.ascontiguousarray(x[None], dtype=np.float32) for x in pairs.inputs]
        ys = [np.ascontiguousarray(y[None], dtype=np.float32) for y in pairs.targets]
        info = {**(data_info or {}), "pairs": len(xs), "simulation": pairs.info}
        self._fit(xs, ys, pairs.axes, same=False, data_info=info,
                  checkpoint_dir=checkpoint_dir, resume=resume, progress=progress,
                  device=device)
        return self


def spatial_images(images: Any, axes: str, *, name: str) -> tuple[list[np.ndarray], str]:
    """Split images (``S``/``T``/``C`` axes: separate images) into spatial float32 arrays."""
    items, sp = split_images(images, axes, name=name)
    out = [c for im in items for c in im]  # channels are images of their own
    if not out:
        raise DataError(message(f"no {name}", "at least one image", "Pass images."))
    return out, sp


class DeconvConfig(SimulationConfig):
    """Settings of :class:`LearnedDeconvolution`."""


class LearnedDeconvolution(SimulatedCARE):
    """Learned deconvolution for one PSF, trained on physics-simulated pairs (``deconv``).

    Parameters
    ----------
    config : DeconvConfig, optional
    **kwargs
        Config fields, e.g. ``steps=2000, photons=30, camera="emccd"``.

    Notes
    -----
    For every high-quality image :math:`x` (the target) the input is
    :math:`y = \\mathcal{C}(h * x)` with :math:`h` the PSF and :math:`\\mathcal{C}` the
    camera (shot, read and EM noise at ``photons`` peak photons), in the units of
    :math:`x` (:func:`~fluorecon.simulate.semisynthetic.semisynthetic_pairs`). A
    residual U-Net learns :math:`y \\mapsto x` on percentile-normalised patches (MSE,
    or the Laplace likelihood with ``probabilistic=True``) [1]_. The targets should be
    sharper than what the PSF leaves (phantoms, deconvolved or higher-NA images): the
    network cannot restore detail its targets lack, and whatever blur the targets carry
    stays. Prediction applies the network to raw images of the same PSF and comparable
    intensities (the stored training percentiles normalise them).

    Examples
    --------
    >>> from fluorecon.simulate.semisynthetic import phantom_images
    >>> from fluorecon.simulate.psf import gaussian_psf
    >>> dec = LearnedDeconvolution(steps=200, patch_size=32, base_filters=8)  # doctest: +SKIP
    >>> dec.fit(phantom_images("mixed", (128, 128), 4), "YX",
    ...         psf=gaussian_psf((15, 15), 2.0))                              # doctest: +SKIP
    >>> sharp = dec.predict(raw, "YX")                                      # doctest: +SKIP
    """

    name: ClassVar[str] = "deconv"
    kind: ClassVar[str] = "restore"
    Config: ClassVar[type[DeconvConfig]] = DeconvConfig  # type: ignore[assignment]
    summary: ClassVar[str] = "Learned deconvolution trained on simulated blur + noise pairs."
    config: DeconvConfig

    def fit(self, images: Any, axes: str, *, psf: Any,
            checkpoint_dir: str | os.PathLike[str] | None = None, resume: bool = False,
            progress: ProgressFn | None = None, device: str | None = None
            ) -> "LearnedDeconvolution":
        """Simulate (blurred + noisy, image) pairs for ``psf`` and train on them.

        Parameters
        ----------
        images : array_like or list of array_like
            High-quality images (targets); ``S``/``T``/``C`` axes give separate images.
        axes : str
            Axes of every image, e.g. ``"YX"``, ``"SZYX"``.
        psf : array_like
            PSF with the images' spatial axes and sampling, centred at ``shape // 2``.
        checkpoint_dir, resume, progress, device
            As in :meth:`CARE.fit <fluorecon.methods.learned.care.CARE.fit>`.

        Returns
        -------
        LearnedDeconvolution
            ``self``, trained.
        """
        from fluorecon.simulate.semisynthetic import semisynthetic_pairs

        imgs, sp = spatial_images(images, axes, name="images")
        c = self.config
        pairs = semisynthetic_pairs(imgs, sp, psf=psf, photons=c.photons, camera=c.camera,
                                    background=c.background, copies=c.copies, seed=c.seed)
        self.fit_pairs(pairs, data_info={"images_axes": axes.upper(), "images": len(imgs)},
                       checkpoint_dir=checkpoint_dir, resume=resume, progress=progress,
                       device=device)
        return self
