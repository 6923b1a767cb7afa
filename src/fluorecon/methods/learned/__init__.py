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
- :mod:`~fluorecon.methods.learned.deconv`, :mod:`~fluorecon.methods.learned.upsample`,
  :mod:`~fluorecon.methods.learned.iso`: networks trained on simulated pairs. They import
  :mod:`fluorecon.simulate` (and SciPy's interpolation, optimisation and special
  functions), so they load on first use: a process that only trains or applies a
  denoiser stays about 40 MB smaller and starts 0.7 s sooner.
"""

from __future__ import annotations

import os
from typing import Any

from fluorecon.core.errors import InputFileError, message
from fluorecon.methods.learned._base import LearnedConfig, LearnedMethod
from fluorecon.methods.learned.care import CARE, CAREConfig, N2NConfig, Noise2Noise
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
from fluorecon.methods.learned_names import LEARNED_METHODS
from fluorecon.methods.registry import import_target

#: Class name -> registry entry of the classes imported on first attribute access (see
#: the module docstring).
_LAZY_CLASSES = {LEARNED_METHODS[name].partition(":")[2]: LEARNED_METHODS[name]
                 for name in ("deconv", "upsample", "iso")}
#: Methods that save model folders (the ``method`` of their ``config.json``).
_WITH_MODEL_FOLDER = frozenset(LEARNED_METHODS) - {"dip"}


def __getattr__(name: str) -> Any:
    target = _LAZY_CLASSES.get(name)
    if target is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = import_target(target)
    globals()[name] = value
    return value


def load_model_method(folder: str | os.PathLike[str], *, device: str | None = None
                      ) -> LearnedMethod:
    """Load any learned model folder as its method (the class named in ``config.json``)."""
    mc = read_model_config(folder)
    if mc.method not in _WITH_MODEL_FOLDER:
        raise InputFileError(message(f"a model of method {mc.method!r} in {folder}",
                                     f"one of {', '.join(sorted(_WITH_MODEL_FOLDER))}",
                                     "Load it with the package that wrote it."))
    # the class itself, not get_method(): that would import the classical methods too
    cls: type[LearnedMethod] = import_target(LEARNED_METHODS[mc.method])
    return cls.load(folder, device=device)


__all__ = [
    "CARE", "CAREConfig", "DIPConfig", "DIPResult", "DeepImagePrior", "IsotropicCARE",
    "LearnedConfig", "LearnedDeconvolution", "LearnedUpsampling",
    "LearnedMethod", "ModelConfig", "N2NConfig", "N2SConfig", "N2V2", "N2V2Config",
    "N2VConfig", "Noise2Noise", "Noise2Self", "Noise2Void", "PatchSampler", "TrainResult",
    "TrainingConfig", "UNet", "UNetConfig", "blind_spot_mask", "deep_image_prior",
    "donut_interpolate", "grid_mask", "load_model", "load_model_method",
    "read_model_config", "save_model", "train",
]
