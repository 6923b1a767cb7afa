"""Noise2Self: self-supervised denoising by J-invariant training with grid masking.

References
----------
.. [1] J. Batson, L. Royer, "Noise2Self: blind denoising by self-supervision", ICML 2019.
.. [2] A. Krull, T.-O. Buchholz, F. Jug, "Noise2Void - learning denoising from single noisy
   images", CVPR 2019.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, model_validator

from fluorecon.core.axes import check_axes, spatial_axes
from fluorecon.core.dtypes import as_float32
from fluorecon.core.errors import DataError, message
from fluorecon.methods.learned._base import LearnedConfig, SelfSupervisedMethod
from fluorecon.methods.learned.training import Objective


def donut_weights(ndim: int) -> np.ndarray:
    """The ``3^ndim`` interpolation kernel without its centre (not normalised).

    A neighbour at offset :math:`o \\in \\{-1, 0, 1\\}^d \\setminus \\{0\\}` has weight
    :math:`2^{1 - \\|o\\|_1}`: 1 for face neighbours, 1/2 for edge (diagonal) neighbours,
    1/4 for 3D corners. In 2D this is Noise2Self's kernel
    ``[[0.5, 1, 0.5], [1, 0, 1], [0.5, 1, 0.5]]`` [1]_.
    """
    w = np.zeros((3,) * ndim, np.float32)
    for o in itertools.product((-1, 0, 1), repeat=ndim):
        d = sum(abs(v) for v in o)
        if d:
            w[tuple(v + 1 for v in o)] = 2.0 ** (1 - d)
    return w


def donut_interpolate(batch: np.ndarray, ndim: int) -> np.ndarray:
    """Weighted mean of the ``3^ndim - 1`` neighbours of every pixel (centre excluded).

    Parameters
    ----------
    batch : ndarray, ``(..., *spatial)``
        Images; the last ``ndim`` axes are spatial, leading axes are independent.
    ndim : {2, 3}

    Returns
    -------
    ndarray, float32
        Same shape. At the border only neighbours inside the image count (the weights are
        renormalised), so no pixel's own value and no padding enters its interpolation.
    """
    x = np.asarray(batch, np.float32)
    sp = x.shape[-ndim:]
    kernel = donut_weights(ndim)
    lead = x.ndim - ndim
    pad = [(0, 0)] * lead + [(1, 1)] * ndim
    xp = np.pad(x, pad)
    ones = np.pad(np.ones(sp, np.float32), [(1, 1)] * ndim)
    acc = np.zeros(x.shape, np.float32)
    norm = np.zeros(sp, np.float32)
    for o in itertools.product((0, 1, 2), repeat=ndim):
        w = kernel[o]
        if not w:
            continue
        sl = tuple(slice(s, s + n) for s, n in zip(o, sp))
        acc += w * xp[(Ellipsis,) + sl]
        norm += w * ones[sl]
    return acc / norm


def grid_mask(shape: tuple[int, ...], spacing: int, phase: tuple[int, ...]) -> np.ndarray:
    """Boolean mask of the regular grid ``{p : p_a mod spacing == phase_a for every a}``."""
    mask = np.ones(shape, bool)
    for a, (n, ph) in enumerate(zip(shape, phase)):
        line = (np.arange(n) % spacing) == ph
        mask &= line.reshape((1,) * a + (n,) + (1,) * (len(shape) - a - 1))
    return mask


@dataclass(frozen=True)
class GridMaskObjective:
    """Noise2Self's masking: one random grid phase per batch, donut interpolation, loss on
    the masked pixels only (all channels of a masked pixel are masked together)."""

    loss: str
    spacing: int

    def make_batch(self, inputs: np.ndarray, targets: np.ndarray, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        nd = inputs.ndim - 2
        sp = inputs.shape[2:]
        phase = tuple(int(rng.integers(min(self.spacing, n))) for n in sp)
        mask = grid_mask(tuple(sp), self.spacing, phase)
        masked = np.where(mask, donut_interpolate(inputs, nd), inputs).astype(np.float32)
        weight = np.broadcast_to(mask, targets.shape).astype(np.float32)
        return masked, targets, weight


class N2SConfig(LearnedConfig):
    """Settings of :class:`Noise2Self`."""

    grid_spacing: int = Field(default=4, ge=2, le=16, description="Spacing of the masked "
                              "grid (pixels, every spatial axis): 1/spacing**ndim of the "
                              "pixels are masked per batch.")
    j_invariant_prediction: bool = Field(
        default=False, description="Predict every pixel from a pass in which it is masked "
                                   "(grid_spacing**ndim passes; strictly J-invariant output) "
                                   "instead of one pass on the unmasked image.")

    @model_validator(mode="after")
    def _check_grid(self) -> "N2SConfig":
        sizes = (self.patch_size,) if isinstance(self.patch_size, int) else self.patch_size
        if any(s < self.grid_spacing for s in sizes):
            raise ValueError(f"patch_size {self.patch_size} must be at least grid_spacing "
                             f"{self.grid_spacing} along every axis")
        return self


class Noise2Self(SelfSupervisedMethod):
    """Noise2Self: a U-Net trained to be J-invariant by grid masking [1]_.

    Notes
    -----
    Partition the pixels into the :math:`w^d` cosets :math:`J` of a regular grid with
    spacing :math:`w` (``grid_spacing``). A function :math:`f` is J-invariant if
    :math:`f(x)_J` does not depend on :math:`x_J`. For noise independent between pixels and
    zero-mean given the signal :math:`s`, the self-supervised loss of a J-invariant
    function equals its supervised loss plus the noise variance,

    .. math::

        \\mathbb{E}\\,\\|f(x) - x\\|^2 = \\mathbb{E}\\,\\|f(x) - s\\|^2
        + \\mathbb{E}\\,\\|x - s\\|^2,

    so minimising it on noisy data alone learns a denoiser. Each training batch draws a
    random grid phase :math:`J`, replaces :math:`x_J` by the donut interpolation of its
    ``3^d - 1`` neighbours (:func:`donut_interpolate`; ``w >= 2`` keeps masked pixels out
    of each other's neighbourhoods), and scores the output only on :math:`J`. Channels of
    a pixel are masked together, so correlated noise between channels is not learned.

    Unlike Noise2Void's random stratified positions and random-neighbour replacement
    [2]_, the masked set is a regular grid and the replacement deterministic. Prediction
    applies the network once to the unmasked image (the paper's default), or with
    ``j_invariant_prediction=True`` assembles each pixel from the pass in which its
    coset is masked, which makes the output exactly J-invariant at ``w^d`` times the cost.
    The output is in the input's units.
    """

    name: ClassVar[str] = "n2s"
    kind: ClassVar[str] = "denoise"
    Config: ClassVar[type[N2SConfig]] = N2SConfig  # type: ignore[assignment]
    summary: ClassVar[str] = "Noise2Self: self-supervised U-Net denoising by grid masking."
    config: N2SConfig

    def _objective(self) -> Objective:
        return GridMaskObjective(loss=self.config.loss_name, spacing=self.config.grid_spacing)

    @property
    def receptive_field(self) -> int | None:
        """Network receptive field, plus 1 pixel for the interpolation when
        ``j_invariant_prediction`` (None with group norm)."""
        rf = super().receptive_field
        if rf is None:
            return None
        return rf + (1 if self.config.j_invariant_prediction else 0)

    def _masking_info(self) -> dict[str, Any]:
        return {"grid_spacing": self.config.grid_spacing, "replacement": "donut"}

    def predict_block(self, block: np.ndarray, axes: str) -> np.ndarray:
        """Denoise one block (see :meth:`LearnedMethod.predict_block`); with
        ``j_invariant_prediction`` every pixel comes from the pass where it is masked."""
        if not self.config.j_invariant_prediction:
            return super().predict_block(block, axes)
        up = check_axes(axes)
        sp = spatial_axes(up)
        x = as_float32(block)
        xc = x if up.startswith("C") else x[None]
        shape = tuple(xc.shape[1:])
        if len(shape) != len(sp):
            raise DataError(message(f"a block of shape {x.shape} with axes {axes!r}",
                                    "one dimension per axis", "Fix the axes."))
        interp = donut_interpolate(xc, len(sp))
        out: np.ndarray | None = None
        w = self.config.grid_spacing
        for phase in itertools.product(*(range(min(w, n)) for n in shape)):
            mask = grid_mask(shape, w, phase)
            xin = np.where(mask, interp, xc)
            y = super().predict_block(xin if up.startswith("C") else xin[0], axes)
            yc = y if up.startswith("C") else y[None]
            if out is None:
                out = np.empty(yc.shape, np.float32)
            out[:, mask] = yc[:, mask]
        assert out is not None
        return out if up.startswith("C") else out[0]
