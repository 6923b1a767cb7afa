"""Noise2Void and N2V2: self-supervised denoising by blind-spot masking.

References
----------
.. [1] A. Krull, T.-O. Buchholz, F. Jug, "Noise2Void - learning denoising from single noisy
   images", CVPR 2019.
.. [2] E. Höck et al., "N2V2 - fixing Noise2Void checkerboard artifacts with modified
   sampling strategies and a tweaked network architecture", ECCV Workshops 2022.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from fluorecon.methods.learned._base import LearnedConfig, SelfSupervisedMethod
from fluorecon.methods.learned.training import Objective


def blind_spot_mask(batch: np.ndarray, rng: np.random.Generator, *, fraction: float,
                    radius: int = 2, replacement: str = "uniform"
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Mask pixels of a batch for blind-spot training.

    Parameters
    ----------
    batch : ndarray, ``(N, C, *spatial)``
        Patches (2 or 3 spatial axes). Not modified.
    rng : numpy.random.Generator
    fraction : float
        Fraction of pixels masked, in (0, 1]. Masked pixels are stratified: the patch is
        tiled into cells of ``g = round(fraction ** (-1 / ndim))`` pixels per axis and one
        uniformly random pixel of every cell is masked (cells cut by the border keep
        their pixel only if it falls inside).
    radius : int
        Half-width of the neighbourhood: the ``(2 r + 1)^ndim`` window, without the
        centre and without positions outside the patch.
    replacement : {"uniform", "median"}
        ``uniform`` (N2V): the value of a uniformly random *other* pixel of the window;
        ``median`` (N2V2): the median of the window without the centre pixel.

    Returns
    -------
    masked : ndarray, float32
        ``batch`` with the masked pixels replaced.
    mask : ndarray, float32
        1 at masked pixels, else 0 (the loss weight).

    Notes
    -----
    Channels are masked independently (each channel has its own random pixels). The centre
    pixel is never part of its own replacement, also at the border, so the network cannot
    learn the identity at masked pixels.
    """
    n, c, *sp = batch.shape
    nd = len(sp)
    cell = max(1, int(round(fraction ** (-1.0 / nd))))
    grids = [np.arange(0, s, cell) for s in sp]
    gshape = tuple(len(g) for g in grids)
    lead = np.indices((n, c) + gshape).reshape(2 + nd, -1)
    coords = [lead[2 + a] * cell + rng.integers(0, cell, size=lead.shape[1]) for a in range(nd)]
    keep = np.all([co < s for co, s in zip(coords, sp)], axis=0)
    ni, ci = lead[0][keep], lead[1][keep]
    coords = [co[keep] for co in coords]
    offsets = np.array([o for o in itertools.product(range(-radius, radius + 1), repeat=nd)
                        if any(o)], dtype=np.int64)
    masked = np.array(batch, dtype=np.float32, copy=True)
    m = coords[0].size

    def inside(nb: list[np.ndarray]) -> np.ndarray:
        return np.all([(q >= 0) & (q < s) for q, s in zip(nb, sp)], axis=0)

    if replacement == "uniform":
        pick = rng.integers(0, len(offsets), size=m)
        nb = [co + offsets[pick, a] for a, co in enumerate(coords)]
        out = ~inside(nb)
        while out.any():  # outside the image: draw again (uniform over the clipped window)
            k = np.flatnonzero(out)
            pick_k = rng.integers(0, len(offsets), size=k.size)
            for a in range(nd):
                nb[a][k] = coords[a][k] + offsets[pick_k, a]
            out = ~inside(nb)
        values = batch[(ni, ci, *nb)]
    elif replacement == "median":
        nbs = [co[:, None] + offsets[None, :, a] for a, co in enumerate(coords)]
        ok = inside(nbs)
        vals = batch[(ni[:, None], ci[:, None],
                      *[np.clip(q, 0, s - 1) for q, s in zip(nbs, sp)])].astype(np.float32)
        vals[~ok] = np.nan
        values = np.nanmedian(vals, axis=1)
    else:
        raise ValueError(f"unknown replacement {replacement!r}")
    masked[(ni, ci, *coords)] = values
    mask = np.zeros(batch.shape, np.float32)
    mask[(ni, ci, *coords)] = 1.0
    return masked, mask


@dataclass(frozen=True)
class BlindSpotObjective:
    """Mask the input (:func:`blind_spot_mask`), score the loss at masked pixels only."""

    loss: str
    fraction: float
    radius: int
    replacement: str

    def make_batch(self, inputs: np.ndarray, targets: np.ndarray, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        masked, mask = blind_spot_mask(inputs, rng, fraction=self.fraction,
                                       radius=self.radius, replacement=self.replacement)
        return masked, targets, mask


class N2VConfig(LearnedConfig):
    """Settings of :class:`Noise2Void`."""

    masked_pixel_percentage: float = Field(default=0.2, gt=0, le=25, description="Percent of"
                                           " pixels masked per patch (stratified).")
    neighbourhood_radius: int = Field(default=5, ge=1, le=10, description="Half-width of the "
                                      "replacement window (5: the 11x11 window of N2V and "
                                      "CAREamics).")
    n2v2: bool = Field(default=False, description="N2V2: blur-pool U-Net without top-level "
                                                  "skip, median replacement by default.")
    replacement: Literal["uniform", "median"] | None = Field(
        default=None, description="Masked-pixel replacement: uniform neighbour (N2V) or "
                                  "neighbourhood median without centre (N2V2); default by "
                                  "n2v2.")

    @property
    def replacement_name(self) -> str:
        """The replacement strategy actually used."""
        if self.replacement is not None:
            return self.replacement
        return "median" if self.n2v2 else "uniform"


class Noise2Void(SelfSupervisedMethod):
    """Noise2Void: a U-Net trained to predict masked pixels from their surroundings.

    Notes
    -----
    For noise that is independent between pixels and zero-mean given the signal, the
    expected loss at a pixel whose own value the network cannot see is minimised by the
    clean signal [1]_. Training therefore masks a small stratified set of pixels in every
    patch (``masked_pixel_percentage``; each channel independently), replaces them by a
    random neighbour (N2V) or the neighbourhood median without the centre (N2V2 [2]_), and
    scores the output only there.
    No residual connection is used (it would hand the network the masked pixel's
    replacement). Prediction applies the network to the unmasked image; the output is in
    the input's units (one normalisation, computed on the training images). Noise that is
    correlated between neighbouring pixels (e.g. after demosaicing or scanning artefacts)
    is partly learned as signal.
    """

    name: ClassVar[str] = "n2v"
    kind: ClassVar[str] = "denoise"
    Config: ClassVar[type[N2VConfig]] = N2VConfig  # type: ignore[assignment]
    summary: ClassVar[str] = "Noise2Void: self-supervised blind-spot U-Net denoising."
    config: N2VConfig

    def _unet_overrides(self, in_channels: int, out_channels: int) -> dict[str, Any]:
        return {**super()._unet_overrides(in_channels, out_channels), "n2v2": self.config.n2v2}

    def _objective(self) -> Objective:
        c = self.config
        return BlindSpotObjective(loss=c.loss_name, fraction=c.masked_pixel_percentage / 100,
                                  radius=c.neighbourhood_radius,
                                  replacement=c.replacement_name)

    def _masking_info(self) -> dict[str, Any]:
        c = self.config
        return {"percentage": c.masked_pixel_percentage, "radius": c.neighbourhood_radius,
                "replacement": c.replacement_name}


class N2V2Config(N2VConfig):
    """Settings of :class:`N2V2` (as :class:`N2VConfig` with ``n2v2=True``)."""

    n2v2: bool = Field(default=True, description="N2V2: blur-pool U-Net without top-level "
                                                 "skip, median replacement by default.")


class N2V2(Noise2Void):
    """N2V2 [2]_: Noise2Void with max blur pooling, no top-level skip connection and
    median replacement, which removes N2V's checkerboard artefacts."""

    name: ClassVar[str] = "n2v2"
    Config: ClassVar[type[N2V2Config]] = N2V2Config  # type: ignore[assignment]
    summary: ClassVar[str] = "N2V2: Noise2Void without checkerboard artefacts."
    config: N2V2Config
