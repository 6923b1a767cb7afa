"""Config fields and Method plumbing shared by the self-calibrated denoisers."""

from __future__ import annotations

from abc import abstractmethod

from typing import Any, ClassVar

import numpy as np
from pydantic import Field, model_validator

from fluorecon.methods.base import Method, MethodConfig
from fluorecon.methods.classical.denoising.calibration import CalibrationResult
from fluorecon.methods.classical.denoising.noise import NoiseModel
from fluorecon.methods.classical.denoising.pipeline import DenoiseResult


class DenoiseConfig(MethodConfig):
    """Noise-model and calibration fields common to every classical denoiser."""

    gain: float | None = Field(
        default=None, ge=0,
        description="Camera gain in ADU per photo-electron (slope a of var = a*mean + b). "
                    "None: estimated from each image. 0: pure Gaussian noise.")
    read_noise: float | None = Field(
        default=None, ge=0,
        description="Read-noise standard deviation in ADU. Give together with gain.")
    offset: float = Field(
        default=0.0,
        description="Camera offset (dark level) in ADU; used only with gain/read_noise.")
    vst: bool = Field(
        default=True,
        description="Variance-stabilise with the generalised Anscombe transform before "
                    "denoising (exact unbiased inverse after). False: one global noise std.")
    calibration_stride: int = Field(
        default=4, ge=2, le=8,
        description="Spacing of the J-invariant calibration mask grid, pixels.")
    calibration_masks: int | None = Field(
        default=None, ge=1, le=64,
        description="Number of mask grids averaged in the self-supervised loss. None: "
                    "enough for about 8192 masked pixels (2 to 4).")
    calibration_crop: int | None = Field(
        default=None, ge=16,
        description="Edge length of the most-structured crop used for calibration. "
                    "None: the method's default (256 in 2D, 64 or less in 3D).")

    @model_validator(mode="after")
    def _check_noise(self) -> "DenoiseConfig":
        if (self.gain is None) != (self.read_noise is None):
            raise ValueError("give gain and read_noise together (gain=0 for pure Gaussian "
                             "noise), or neither to estimate the noise model")
        if self.gain == 0 and self.read_noise == 0:
            raise ValueError("gain=0 and read_noise=0 describe noise-free data")
        if (self.calibration_masks is not None
                and self.calibration_masks > self.calibration_stride ** 2):
            raise ValueError(f"calibration_masks ({self.calibration_masks}) must not exceed "
                             f"calibration_stride**2 ({self.calibration_stride ** 2})")
        return self

    def noise_model(self) -> NoiseModel | None:
        """The configured noise model, or ``None`` to estimate it per image."""
        if self.gain is None or self.read_noise is None:
            return None
        return NoiseModel.from_camera(self.gain, self.read_noise, self.offset)

    def pipeline_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`~.pipeline.run_denoiser` from this config."""
        return {"noise_model": self.noise_model(), "vst": self.vst,
                "stride": self.calibration_stride, "n_masks": self.calibration_masks,
                "crop": self.calibration_crop}


class SelfCalibratedDenoiser(Method):
    """Method base: runs a pipeline per block and records what it did.

    After :meth:`predict`, ``calibration_`` and ``noise_model_`` describe the last block
    processed, and ``results_`` lists the :class:`DenoiseResult` of every block (one per
    channel/time point), in loop order, without their images.
    """

    kind: ClassVar[str] = "denoise"
    calibration_: CalibrationResult | None
    noise_model_: NoiseModel | None

    def __init__(self, config: DenoiseConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.calibration_ = None
        self.noise_model_ = None
        self.results_: list[DenoiseResult] = []

    def predict(self, image: Any, axes: str, **kwargs: Any) -> np.ndarray:  # noqa: D102
        self.results_ = []
        return super().predict(image, axes, **kwargs)

    def predict_block(self, block: np.ndarray, axes: str) -> np.ndarray:
        """Denoise one ``"YX"`` or ``"ZYX"`` block (see the class docstring)."""
        res = self._run(block)
        self.calibration_ = res.calibration
        self.noise_model_ = res.noise_model
        self.results_.append(DenoiseResult(np.empty((0,), np.float32), res.noise_model,
                                           res.calibration))
        return res.image

    @abstractmethod
    def _run(self, block: np.ndarray) -> DenoiseResult:
        """Denoise one block with this method's pipeline."""
