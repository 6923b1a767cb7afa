"""Learned restoration (PyTorch): CARE, Noise2Noise, Noise2Void, N2V2, Noise2Self, Deep
Image Prior.

Importing this package imports torch; the registry reaches these methods lazily through
:mod:`fluorecon.methods.learned_names`, so listing methods stays torch-free.

- :mod:`~fluorecon.methods.learned.unet`: the 2D/3D U-Net and its config.
- :mod:`~fluorecon.methods.learned.training`: the one training engine.
- :mod:`~fluorecon.methods.learned.model_io`: model folders (JSON + safetensors).
- :mod:`~fluorecon.methods.learned.care`: CARE and Noise2Noise.
- :mod:`~fluorecon.methods.learned.n2v`: Noise2Void and N2V2.
- :mod:`~fluorecon.methods.learned.n2s`: Noise2Self (grid masking).
- :mod:`~fluorecon.methods.learned.dip`: Deep Image Prior with a held-out stopping rule
  (fitted per image; no model folder).
"""

from __future__ import annotations

import os

from fluorecon.core.errors import InputFileError, message
from fluorecon.methods.learned._base import LearnedConfig, LearnedMethod
from fluorecon.methods.learned.care import CARE, CAREConfig, N2NConfig, Noise2Noise
from fluorecon.methods.learned.deconv import LearnedDeconvolution
from fluorecon.methods.learned.iso import IsotropicCARE
from fluorecon.methods.learned.upsample import LearnedUpsampling
from fluorecon.methods.learned.dip import DeepImagePrior, DIPConfig, DIPResult, deep_image_prior
from fluorecon.methods.learned.model_io import (
    ModelConfig,
    load_model,
    read_model_config,
    save_model,
)
from fluorecon.methods.learned.n2v import (
    N2V2,
    N2V2Config,
    N2VConfig,
    Noise2Void,
    blind_spot_mask,
)
from fluorecon.methods.learned.n2s import N2SConfig, Noise2Self, donut_interpolate, grid_mask
from fluorecon.methods.learned.training import PatchSampler, TrainingConfig, TrainResult, train
from fluorecon.methods.learned.unet import UNet, UNetConfig

_BY_NAME: dict[str, type[LearnedMethod]] = {
    cls.name: cls for cls in (CARE, Noise2Noise, Noise2Void, N2V2, Noise2Self,
                              LearnedDeconvolution, LearnedUpsampling, IsotropicCARE)}


def load_model_method(folder: str | os.PathLike[str], *, device: str | None = None
                      ) -> LearnedMethod:
    """Load any learned model folder as its method (the class named in ``config.json``)."""
    mc = read_model_config(folder)
    cls = _BY_NAME.get(mc.method)
    if cls is None:
        raise InputFileError(message(f"a model of method {mc.method!r} in {folder}",
                                     f"one of {', '.join(sorted(_BY_NAME))}",
                                     "Load it with the package that wrote it."))
    return cls.load(folder, device=device)


__all__ = [
    "CARE", "CAREConfig", "DIPConfig", "DIPResult", "DeepImagePrior", "LearnedConfig",
    "LearnedMethod", "ModelConfig", "N2NConfig", "N2SConfig", "N2V2", "N2V2Config",
    "N2VConfig", "Noise2Noise", "Noise2Self", "Noise2Void", "PatchSampler", "TrainResult",
    "TrainingConfig", "UNet", "UNetConfig", "blind_spot_mask", "deep_image_prior",
    "donut_interpolate", "grid_mask", "load_model", "load_model_method",
    "read_model_config", "save_model", "train",
]
