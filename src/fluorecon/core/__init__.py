"""Core vocabulary shared by every layer: axes, dtypes, errors, configs, seeds, metadata."""

from fluorecon.core.axes import AXES_VOCABULARY, check_axes, spatial_axes
from fluorecon.core.config import BaseConfig
from fluorecon.core.dtypes import as_float32, check_finite, check_image_array
from fluorecon.core.errors import (
    AxesError,
    ConfigError,
    DataError,
    FluoreconError,
    InputFileError,
    OutputExistsError,
)
from fluorecon.core.meta import ImageMeta
from fluorecon.core.rng import make_rng

__all__ = [
    "AXES_VOCABULARY",
    "AxesError",
    "BaseConfig",
    "ConfigError",
    "DataError",
    "FluoreconError",
    "ImageMeta",
    "InputFileError",
    "OutputExistsError",
    "as_float32",
    "check_axes",
    "check_finite",
    "check_image_array",
    "make_rng",
    "spatial_axes",
]
