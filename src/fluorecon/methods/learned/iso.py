"""Isotropic restoration of anisotropic stacks (Weigert et al. 2017), with no ground truth.

A z-stack whose axial step is ``factor`` times its lateral pixel size, and whose axial
resolution is worse than its lateral one, carries in its lateral planes what its axial
direction lacks. :class:`IsotropicCARE` degrades those lateral planes as the axial
direction is degraded (axial blur and plane sampling along one lateral axis,
:func:`~fluorecon.simulate.semisynthetic.iso_pairs`), trains a 2D network to undo it, and
applies the network to the XZ and YZ slices of the stack interpolated onto an isotropic
grid; the two predictions are fused.

References
----------
.. [1] M. Weigert, L. Royer, F. Jug, G. Myers, "Isotropic reconstruction of 3D fluorescence
   microscopy images using convolutional neural networks", MICCAI 2017, 126-134.
.. [2] M. Weigert et al., "Content-aware image restoration: pushing the limits of
   fluorescence microscopy", Nature Methods 15, 1090-1097 (2018).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from fluorecon.core.axes import check_axes, spatial_axes
from fluorecon.core.dtypes import as_float32, check_image_array
from fluorecon.core.errors import AxesError, ConfigError, message
from fluorecon.methods.learned.deconv import SimulatedCARE, SimulationConfig, spatial_images
from fluorecon.methods.learned.training import ProgressFn
from fluorecon.simulate.semisynthetic import fine_length, iso_kernel, iso_pairs, resample_axis


class IsoConfig(SimulationConfig):
    """Settings of :class:`IsotropicCARE`."""

    factor: float | None = Field(default=None, gt=1.0, le=64.0, description="Axial step "
                                 "over lateral pixel size of the stacks (z_step / pixel_size);"
                                 " required.")
    photons: float | None = Field(default=None, gt=0, description="Extra camera noise on the "
                                  "degraded planes (peak photons); None: only the stack's own "
                                  "noise.")
    copies: int = Field(default=1, ge=1, le=64, description="Noise realisations per plane.")
    fuse: Literal["mean", "geometric"] = Field(default="mean", description="Fusion of the XZ "
                                               "and YZ predictions: arithmetic or geometric "
                                               "mean (of the positive parts).")
    both_lateral_axes: bool = Field(default=True, description="Train on planes degraded along"
                                                              " Y and along X.")
    augment: bool = Field(default=False, description="Random mirror images of the training "
                                                     "planes; needs rotate=False (90-degree "
                                                     "turns would move the degraded axis).")
    interpolation_order: Literal[1, 3] = Field(default=3, description="Axial interpolation "
                                               "onto the isotropic grid: 1 linear, 3 cubic.")

    @model_validator(mode="after")
    def _check_iso(self) -> "IsoConfig":
        if self.augment and self.rotate:
            raise ValueError("augment=True needs rotate=False for iso: the degraded direction "
                             "is axis 0 of every training plane, and 90-degree turns would "
                             "move it (mirror images keep it)")
        return self


class IsotropicCARE(SimulatedCARE):
    """Isotropic restoration from the stack itself (``iso``).

    Parameters
    ----------
    config : IsoConfig, optional
    **kwargs
        Config fields; ``factor`` (``z_step / pixel_size``) is required before :meth:`fit`.

    Notes
    -----
    Training: each lateral plane :math:`x` (and its transpose) is the target; the input is
    :math:`\\mathcal{I}_0(\\mathcal{S}_0(k *_0 x))`: 1D blur along axis 0 with the kernel
    :math:`k` of :func:`~fluorecon.simulate.semisynthetic.iso_kernel` (the Gaussian that
    turns the lateral into the axial resolution, from the PSF when given, else a Gaussian
    of FWHM ``factor``), sampling every ``factor`` pixels along axis 0 and cubic
    interpolation back [1]_. Prediction: the stack is interpolated along Z onto the
    isotropic grid (``floor((nz - 1) * factor) + 1`` planes), every XZ slice
    (``stack[:, y, :]``) and every YZ slice (``stack[:, :, x]``) is restored with Z along
    the network's axis 0, and the two volumes are fused (``fuse``).

    :meth:`predict` therefore returns more planes than it receives (Z step divided by
    ``factor``); :meth:`predict_block` is the plain 2D network on one interpolated slice.
    """

    name: ClassVar[str] = "iso"
    kind: ClassVar[str] = "restore"
    Config: ClassVar[type[IsoConfig]] = IsoConfig  # type: ignore[assignment]
    summary: ClassVar[str] = "Isotropic restoration of anisotropic stacks (self-supervised " \
                             "from lateral planes)."
    config: IsoConfig
    #: The output lies on a finer grid than the input (see :meth:`predict`).
    resamples: ClassVar[bool] = True

    def _factor(self) -> float:
        if self.config.factor is None:
            raise ConfigError(message("an iso config without factor",
                                      "factor = z_step / pixel_size of the stack",
                                      "Pass factor=..., e.g. IsotropicCARE(factor=4)."))
        return float(self.config.factor)

    def fit(self, stacks: Any, axes: str, *, psf: Any | None = None,
            pixel_size: float = 1.0, checkpoint_dir: str | os.PathLike[str] | None = None,
            resume: bool = False, progress: ProgressFn | None = None,
            device: str | None = None) -> "IsotropicCARE":
        """Train on the lateral planes of the anisotropic stack(s) to be restored.

        Parameters
        ----------
        stacks : array_like or list of array_like
            Anisotropic stacks with a Z axis (``S``/``T``/``C``: separate stacks).
        axes : str
            Axes of every stack, e.g. ``"ZYX"``, ``"CZYX"``.
        psf : array_like, optional
            ZYX PSF sampled like the stack (``factor * pixel_size`` axially): sets the
            axial kernel (see :func:`~fluorecon.simulate.semisynthetic.iso_kernel`).
        pixel_size : float
            Lateral pixel size of the PSF (only its ratio to the axial step matters).
        checkpoint_dir, resume, progress, device
            As in :meth:`CARE.fit <fluorecon.methods.learned.care.CARE.fit>`.
        """
        f = self._factor()
        vols, sp = spatial_images(stacks, axes, name="stacks")
        if sp != "ZYX":
            raise AxesError(message(f"stacks with spatial axes {sp!r}", "ZYX stacks",
                                    "Pass --axes ZYX (a Z axis is needed)."))
        c = self.config
        kernel = iso_kernel(psf, f, pixel_size=pixel_size,
                            z_step=None if psf is None else f * pixel_size)
        inputs, targets, infos = [], [], []
        copies = c.copies if c.photons is not None else 1
        for i, v in enumerate(vols):
            for k in range(copies):
                p = iso_pairs(v, f, kernel=kernel, photons=c.photons, camera=c.camera,
                              background=c.background, both_lateral_axes=c.both_lateral_axes,
                              interpolation_order=c.interpolation_order,
                              seed=c.seed + 1000 * k + i)
                inputs += p.inputs
                targets += p.targets
                infos.append(p.info)
        from fluorecon.simulate.semisynthetic import TrainingPairs

        info = {**infos[0], "stacks": len(vols), "psf_given": psf is not None}
        pairs = TrainingPairs(inputs=inputs, targets=targets, axes="YX", info=info)
        self.fit_pairs(pairs, data_info={"images_axes": axes.upper(), "images": len(vols)},
                       checkpoint_dir=checkpoint_dir, resume=resume, progress=progress,
                       device=device)
        return self

    def output_shape(self, shape: tuple[int, ...], axes: str) -> tuple[int, ...]:
        """Shape of :meth:`predict`'s result for an input of ``shape`` with ``axes``."""
        up = check_axes(axes, ndim=len(shape))
        return tuple(fine_length(n, self._factor(), "point") if a == "Z" else n
                     for n, a in zip(shape, up))

    def interpolate(self, image: Any, axes: str) -> np.ndarray:
        """Interpolate along Z onto the isotropic grid (the baseline; the network's input)."""
        check_image_array(image)
        up = check_axes(axes, ndim=len(image.shape))
        if "Z" not in up:
            raise AxesError(message(f"axes {axes!r}", "a Z axis", "Pass ZYX stacks."))
        return resample_axis(as_float32(image), axis=up.index("Z"), factor=self._factor(),
                             sampling="point", order=self.config.interpolation_order)

    def restore_volume(self, volume: np.ndarray, *,
                       progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Restore one isotropically interpolated ``ZYX`` volume (XZ and YZ slices, fused)."""
        self._require_trained()
        vol = as_float32(volume)
        nz, ny, nx = vol.shape
        total = ny + nx
        out_xz = np.empty_like(vol)
        out_yz = np.empty_like(vol)
        for y in range(ny):
            out_xz[:, y, :] = self.predict_block(np.ascontiguousarray(vol[:, y, :]), "YX")
            if progress is not None:
                progress(y + 1, total)
        for x in range(nx):
            out_yz[:, :, x] = self.predict_block(np.ascontiguousarray(vol[:, :, x]), "YX")
            if progress is not None:
                progress(ny + x + 1, total)
        if self.config.fuse == "geometric":
            return np.sqrt(np.clip(out_xz, 0, None) * np.clip(out_yz, 0, None))
        return 0.5 * (out_xz + out_yz)

    def predict(self, image: Any, axes: str, *,
                progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Restore anisotropic stacks onto an isotropic grid.

        Parameters
        ----------
        image : array_like
            Stack(s) with a Z axis; ``S``/``T``/``C`` axes are looped over. Not modified.
        axes : str
        progress : callable, optional
            ``progress(done, total)`` after each slice.

        Returns
        -------
        numpy.ndarray
            float32 of :meth:`output_shape` (Z step divided by ``factor``), in the units of
            the stack.
        """
        self._require_trained()
        axes = self.check_input(image, axes)
        fine = self.interpolate(image, axes)
        sp = spatial_axes(axes)
        lead = [i for i, a in enumerate(axes) if a not in sp]
        order = lead + [axes.index(a) for a in sp]
        moved = np.transpose(fine, order)
        out = np.empty(moved.shape, np.float32)
        blocks = list(itertools.product(*(range(n) for n in moved.shape[: len(lead)])))
        for i, idx in enumerate(blocks):
            def prog(done: int, total: int, i: int = i) -> None:
                if progress is not None:
                    progress(i * total + done, len(blocks) * total)

            out[idx] = self.restore_volume(moved[idx], progress=prog)
        return np.transpose(out, np.argsort(order))
