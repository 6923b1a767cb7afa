"""Noise2Void, N2V2 and structN2V: self-supervised denoising by blind-spot masking.

References
----------
.. [1] A. Krull, T.-O. Buchholz, F. Jug, "Noise2Void - learning denoising from single noisy
   images", CVPR 2019.
.. [2] E. Höck et al., "N2V2 - fixing Noise2Void checkerboard artifacts with modified
   sampling strategies and a tweaked network architecture", ECCV Workshops 2022.
.. [3] C. Broaddus, A. Krull, M. Weigert, U. Schmidt, G. Myers, "Removing structured noise
   with self-supervised blind-spot networks", ISBI 2020.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from fluorecon.methods.learned._base import LearnedConfig, SelfSupervisedMethod
from fluorecon.methods.learned.training import Objective
from fluorecon.methods.learned_names import STRUCT_MASKS


def struct_offsets(struct: str, span: int) -> np.ndarray:
    """YX offsets, ``(k, 2)``, of a structN2V pattern around (not including) its centre.

    ``horizontal``: the ``span - 1`` other pixels of the centre's row within ``span // 2``
    along X; ``vertical``: the same along Y; ``cross``: both; ``none``: no offsets.
    """
    if struct not in STRUCT_MASKS:
        raise ValueError(f"unknown struct mask {struct!r}; one of {STRUCT_MASKS}")
    h = span // 2
    line = [d for d in range(-h, h + 1) if d]
    out = []
    if struct in ("horizontal", "cross"):
        out += [(0, d) for d in line]
    if struct in ("vertical", "cross"):
        out += [(d, 0) for d in line]
    return np.array(out, dtype=np.int64).reshape(-1, 2)


def blind_spot_mask(batch: np.ndarray, rng: np.random.Generator, *, fraction: float,
                    radius: int = 2, replacement: str = "uniform", struct: str = "none",
                    struct_span: int = 5) -> tuple[np.ndarray, np.ndarray]:
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
        ``median`` (N2V2): the median of the window without the centre pixel. With a
        ``struct`` pattern its pixels are not part of the window either.
    struct : {"none", "horizontal", "vertical", "cross"}
        structN2V [3]_: also hide the pixels of this in-plane pattern around every masked
        pixel (:func:`struct_offsets`), each replaced by a value drawn uniformly between
        the minimum and maximum of its patch and channel (as CAREamics). Noise correlated
        along the pattern (e.g. row or column noise of a camera, line-scan artefacts) then
        cannot be read from the neighbours.
    struct_span : int
        Odd length of the pattern's lines (centre included).

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
    learn the identity at masked pixels. In 3D the struct pattern lies in the YX plane of
    the masked pixel.
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
    pattern = struct_offsets(struct, struct_span)
    hidden = {(0,) * (nd - 2) + (int(dy), int(dx)) for dy, dx in pattern}
    offsets = np.array([o for o in itertools.product(range(-radius, radius + 1), repeat=nd)
                        if any(o) and o not in hidden], dtype=np.int64)
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
    if len(pattern):
        # every pattern pixel of every masked pixel (inside the patch), then random values
        sq = [co[:, None] for co in coords[:-2]] + [
            coords[-2][:, None] + pattern[None, :, 0], coords[-1][:, None] + pattern[None, :, 1]]
        sq = [np.broadcast_to(q, (m, len(pattern))) for q in sq]
        ok = inside(sq)
        sn = np.broadcast_to(ni[:, None], ok.shape)[ok]
        sc = np.broadcast_to(ci[:, None], ok.shape)[ok]
        sq = [q[ok] for q in sq]
        flat = batch.reshape(n, c, -1)
        lo, hi = flat.min(axis=2), flat.max(axis=2)
        masked[(sn, sc, *sq)] = lo[sn, sc] + (hi[sn, sc] - lo[sn, sc]) * rng.random(sn.size)
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
    struct: str = "none"
    struct_span: int = 5

    def make_batch(self, inputs: np.ndarray, targets: np.ndarray, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        masked, mask = blind_spot_mask(inputs, rng, fraction=self.fraction,
                                       radius=self.radius, replacement=self.replacement,
                                       struct=self.struct, struct_span=self.struct_span)
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
    struct_mask: Literal["none", "horizontal", "vertical", "cross"] = Field(
        default="none", description="structN2V: also hide this in-plane pattern around every "
                                    "masked pixel, for noise correlated along X "
                                    "(horizontal), Y (vertical) or both (cross). A "
                                    "horizontal or vertical pattern turns 90-degree "
                                    "rotations off (rotate=False).")
    struct_span: int = Field(default=5, ge=3, le=15, description="Odd length of the struct "
                                                                 "pattern's lines.")

    @model_validator(mode="before")
    @classmethod
    def _struct_rotation(cls, data: Any) -> Any:
        """A directional struct pattern defaults to mirror-only augmentation."""
        if (isinstance(data, dict) and data.get("struct_mask") in ("horizontal", "vertical")
                and data.get("rotate") is None):
            return {**data, "rotate": False}
        return data

    @field_validator("struct_span")
    @classmethod
    def _odd_span(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"struct_span must be odd, got {v}")
        return v

    @model_validator(mode="after")
    def _check_struct(self) -> "N2VConfig":
        if self.struct_mask in ("horizontal", "vertical") and self.augment and self.rotate:
            raise ValueError(f"struct_mask={self.struct_mask!r} with rotate=True: 90-degree "
                             "turns would make the noise correlation run the other way; "
                             "leave rotate unset (False) or use struct_mask='cross'")
        return self

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
    is partly learned as signal; where it runs along rows or columns (camera line noise,
    line scanning), ``struct_mask`` (structN2V [3]_) hides the neighbours along that line
    as well (see :func:`blind_spot_mask`).
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
                                  replacement=c.replacement_name, struct=c.struct_mask,
                                  struct_span=c.struct_span)

    def _masking_info(self) -> dict[str, Any]:
        c = self.config
        info = {"percentage": c.masked_pixel_percentage, "radius": c.neighbourhood_radius,
                "replacement": c.replacement_name}
        if c.struct_mask != "none":
            info.update(struct_mask=c.struct_mask, struct_span=c.struct_span)
        return info


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
