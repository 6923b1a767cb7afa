"""The one method interface: a validated config, optional ``fit``, and ``predict``.

A method processes one spatial block (``"YX"`` or ``"ZYX"``) in :meth:`Method.predict_block`.
:meth:`Method.predict` validates the input once, converts it to float32 (by value),
and loops over non-spatial axes (``S``, ``T``, ``C``), so every method handles
``"CYX"``, ``"TZYX"``, ... without writing that loop itself. Tiling and streaming of
large images belong to :mod:`fluorecon.predict`, not here.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from fluorecon.core.axes import check_axes, spatial_axes
from fluorecon.core.config import BaseConfig
from fluorecon.core.dtypes import as_float32, check_image_array
from fluorecon.core.errors import AxesError, message


class MethodConfig(BaseConfig):
    """Base of every method config; subclasses add their own described fields."""

    version: int = Field(default=1, ge=1, description="Schema version of this config.")


class Method(ABC):
    """Base class of every reconstruction method.

    Subclasses set ``name``, ``kind`` (``"denoise"``, ``"deconvolve"``, ...),
    ``Config`` (a :class:`MethodConfig` subclass), ``spatial_dims`` (the spatial
    dimensionalities supported) and implement :meth:`predict_block`.

    Parameters
    ----------
    config : MethodConfig, optional
        A validated config. If omitted, ``**kwargs`` are validated into ``Config``.
    **kwargs
        Config fields, as an alternative to ``config``.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    spatial_dims: ClassVar[tuple[int, ...]] = (2, 3)
    summary: ClassVar[str] = ""
    #: True when :meth:`predict_block` accepts ``progress=`` and reports progress within
    #: one block (e.g. iterations of a deconvolution), so long single blocks show progress.
    block_progress: ClassVar[bool] = False

    def __init__(self, config: MethodConfig | None = None, **kwargs: Any) -> None:
        if config is not None and kwargs:
            raise TypeError("pass either a config or keyword fields, not both")
        if config is None:
            config = self.Config.build(**kwargs)
        elif not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} needs a {self.Config.__name__}, "
                            f"got {type(config).__name__}")
        self.config = config

    # -- interface -------------------------------------------------------------------
    def fit(self, image: Any, axes: str, **kwargs: Any) -> "Method":
        """Learn or calibrate from data. Methods that need nothing return ``self``."""
        return self

    @abstractmethod
    def predict_block(self, block: np.ndarray, axes: str) -> np.ndarray:
        """Process one float32 spatial block with ``axes`` ``"YX"`` or ``"ZYX"``."""

    @property
    def receptive_field(self) -> int | None:
        """Half-width in pixels of the input a single output pixel depends on, if bounded."""
        return None

    # -- driver ----------------------------------------------------------------------
    def predict(self, image: Any, axes: str, *,
                progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Apply the method to ``image`` and return a float32 array of the same shape.

        Parameters
        ----------
        image : array_like
            Image with dimensions described by ``axes``. Not modified.
        axes : str
            Axes string, e.g. ``"YX"``, ``"ZYX"``, ``"CYX"``, ``"TZYX"``.
        progress : callable, optional
            Called as ``progress(done, total)`` after each spatial block.

        Returns
        -------
        numpy.ndarray
            float32 result, same shape and axes as ``image``.
        """
        axes = self.check_input(image, axes)
        arr = as_float32(image)
        sp = spatial_axes(axes)
        lead = [i for i, a in enumerate(axes) if a not in sp]
        if not lead:
            return self._predict_one(arr, sp, progress, 0, 1)
        # Move non-spatial axes first, loop over them, put them back.
        order = lead + [axes.index(a) for a in sp]
        moved = np.transpose(arr, order)
        out = np.empty(moved.shape, dtype=np.float32)
        blocks = list(itertools.product(*(range(n) for n in moved.shape[: len(lead)])))
        for i, idx in enumerate(blocks):
            out[idx] = self._predict_one(np.ascontiguousarray(moved[idx]), sp, progress, i,
                                         len(blocks))
        return np.transpose(out, np.argsort(order))

    def _predict_one(self, block: np.ndarray, sp: str,
                     progress: Callable[[int, int], None] | None, index: int,
                     n_blocks: int) -> np.ndarray:
        if progress is not None and self.block_progress:
            scale = 1000

            def within(done: int, total: int) -> None:
                progress(index * scale + (scale * done) // max(total, 1), n_blocks * scale)

            res = self.predict_block(block, sp, progress=within)  # type: ignore[call-arg]
        else:
            res = self.predict_block(block, sp)
            if progress is not None:
                progress(index + 1, n_blocks)
        res = np.asarray(res, dtype=np.float32)
        if res.shape != block.shape:
            raise RuntimeError(f"{self.name}.predict_block changed shape {block.shape} -> "
                               f"{res.shape}")
        return res

    def check_input(self, image: Any, axes: str) -> str:
        """Validate ``image`` against ``axes`` and the supported dimensionality."""
        check_image_array(image)
        axes = check_axes(axes, ndim=len(image.shape))
        nsp = len(spatial_axes(axes))
        if nsp not in self.spatial_dims:
            dims = " or ".join(f"{d}D" for d in self.spatial_dims)
            raise AxesError(message(f"a {nsp}D image (axes {axes!r}) for method {self.name!r}",
                                    f"{dims} spatial data", "Choose another method or axes."))
        return axes

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump().items()
                           if k != "version")
        return f"{type(self).__name__}({fields})"
