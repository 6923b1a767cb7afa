"""CARE: supervised content-aware restoration from (low-quality, high-quality) pairs, and
Noise2Noise as CARE trained on pairs of independent noisy images.

References
----------
.. [1] M. Weigert et al., "Content-aware image restoration: pushing the limits of
   fluorescence microscopy", Nature Methods 15, 1090-1097 (2018).
.. [2] J. Lehtinen et al., "Noise2Noise: learning image restoration without clean data",
   ICML 2018.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from pydantic import Field

from fluorecon.core.axes import check_axes
from fluorecon.core.errors import DataError, message
from fluorecon.methods.learned._base import LearnedConfig, LearnedMethod, split_images
from fluorecon.methods.learned.training import Objective, ProgressFn, SupervisedObjective


class CAREConfig(LearnedConfig):
    """Settings of :class:`CARE` (U-Net, training, normalisation)."""

    residual: bool = Field(default=True, description="Predict a correction added to the "
                                                     "input (used when input and output "
                                                     "channel counts match).")


class CARE(LearnedMethod):
    """Content-aware image restoration (CARE): a U-Net trained on registered pairs.

    Parameters
    ----------
    config : CAREConfig, optional
    **kwargs
        Config fields, e.g. ``steps=2000, patch_size=64, probabilistic=True``.

    Notes
    -----
    Inputs and targets are percentile-normalised separately, each with percentiles
    computed once over all training images (``norm_low``, ``norm_high``) and stored in the
    model. The network minimises the mean squared (or absolute) error between its output
    and the normalised target over random patches; with ``probabilistic=True`` it predicts
    a Laplace location :math:`\\mu` and scale :math:`b` per pixel and minimises
    :math:`\\log 2b + |y - \\mu| / b` [1]_. Prediction normalises with the input
    parameters, applies the network and maps back with the target parameters, so the
    output is in the targets' units (scales via ``denormalize_scale``).

    Examples
    --------
    >>> care = CARE(steps=200, patch_size=32, depth=2, base_filters=8)  # doctest: +SKIP
    >>> care.fit(low, high, axes="SYX").save("care_model")              # doctest: +SKIP
    >>> restored = CARE.load("care_model").predict(image, axes="YX")    # doctest: +SKIP
    """

    name: ClassVar[str] = "care"
    kind: ClassVar[str] = "restore"
    Config: ClassVar[type[CAREConfig]] = CAREConfig  # type: ignore[assignment]
    summary: ClassVar[str] = "CARE: supervised U-Net restoration from image pairs."
    config: CAREConfig

    def _unet_overrides(self, in_channels: int, out_channels: int) -> dict[str, Any]:
        return {"residual": bool(self.config.residual and in_channels == out_channels)}

    def _objective(self) -> Objective:
        return SupervisedObjective(loss=self.config.loss_name)

    def fit(self, inputs: Any, targets: Any, axes: str, *, target_axes: str | None = None,
            checkpoint_dir: str | os.PathLike[str] | None = None, resume: bool = False,
            progress: ProgressFn | None = None, device: str | None = None) -> "CARE":
        """Train on registered (input, target) pairs.

        Parameters
        ----------
        inputs, targets : array_like or list of array_like
            Low- and high-quality images, pair by pair of equal spatial shape. ``S`` and
            ``T`` axes hold separate pairs; a ``C`` axis holds channels (input and target
            channel counts may differ). All data are loaded into memory as float32.
        axes : str
            Axes of every input, e.g. ``"YX"``, ``"SYX"``, ``"CZYX"``.
        target_axes : str, optional
            Axes of the targets (default ``axes``).
        checkpoint_dir : path, optional
            Checkpoint folder (see :func:`~fluorecon.methods.learned.training.train`).
        resume : bool
            Continue from the checkpoint in ``checkpoint_dir``.
        progress : callable, optional
            ``progress(step, total, logs)`` after every step.
        device : str, optional
            ``"cpu"``, ``"cuda"``, ...; default CUDA if available.

        Returns
        -------
        CARE
            ``self``, trained.
        """
        xs, sp = split_images(inputs, axes, name="inputs")
        ys, sp_t = split_images(targets, target_axes or axes, name="targets")
        if len(xs) != len(ys) or sp != sp_t or any(
                x.shape[1:] != y.shape[1:] for x, y in zip(xs, ys)):
            raise DataError(message(
                f"{len(xs)} inputs of spatial shapes {sorted({x.shape[1:] for x in xs})} and "
                f"{len(ys)} targets of spatial shapes {sorted({y.shape[1:] for y in ys})}",
                "one target of the same spatial shape per input", "Pass registered pairs."))
        info = {"inputs_axes": check_axes(axes), "targets_axes": check_axes(target_axes or axes),
                "pairs": len(xs)}
        self._fit(xs, ys, sp, same=False, data_info=info, checkpoint_dir=checkpoint_dir,
                  resume=resume, progress=progress, device=device)
        return self


class N2NConfig(CAREConfig):
    """Settings of :class:`Noise2Noise` (as CARE; residual off by default)."""

    residual: bool = Field(default=False, description="Predict a correction added to the "
                                                      "input (rarely useful for N2N).")


class Noise2Noise(CARE):
    """Noise2Noise: CARE trained on pairs of independent noisy images of the same sample.

    With zero-mean, independent noise in the targets, the expected MSE is minimised by the
    same function as with clean targets [2]_, so :meth:`fit` takes ``(noisy_a, noisy_b)``
    pairs exactly like :meth:`CARE.fit`. Pairs can be swapped to double the data
    (pass ``[a, b]`` as inputs and ``[b, a]`` as targets).
    """

    name: ClassVar[str] = "n2n"
    kind: ClassVar[str] = "denoise"
    Config: ClassVar[type[N2NConfig]] = N2NConfig  # type: ignore[assignment]
    summary: ClassVar[str] = "Noise2Noise: U-Net trained on pairs of noisy images."
    config: N2NConfig
