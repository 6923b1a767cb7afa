"""Image input and output: TIFF, OME-TIFF, OME-Zarr, NumPy and PNG.

:func:`read_image` returns ``(array, ImageMeta)`` with axes from the ``"STCZYX"``
vocabulary and pixel sizes in micrometres, eagerly (NumPy) or lazily (memmap / dask);
:func:`write_image` writes atomically and refuses to replace existing files or inputs;
:func:`image_info` describes a file from its metadata alone. Every problem with a file
raises a :class:`~fluorecon.core.errors.FluoreconError` with a one-line message.
"""

from fluorecon.io.api import image_info, read_image, write_image
from fluorecon.io.files import write_bytes_atomic
from fluorecon.io.validate import (
    READ_FORMATS,
    WRITE_FORMATS,
    OutputPathError,
    check_array,
    check_input_path,
    check_output_path,
    check_output_target,
    format_of,
)

__all__ = [
    "READ_FORMATS",
    "WRITE_FORMATS",
    "OutputPathError",
    "check_array",
    "check_input_path",
    "check_output_path",
    "check_output_target",
    "format_of",
    "image_info",
    "read_image",
    "write_bytes_atomic",
    "write_image",
]
