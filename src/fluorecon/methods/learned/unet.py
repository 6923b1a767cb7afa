"""U-Net for 2D and 3D images, built from a validated :class:`UNetConfig`.

The network follows CARE / CSBDeep [1]_ and Noise2Void [2]_: ``depth`` encoder levels of two
``kernel_size`` convolutions (+ optional normalisation) and ReLU, each followed by a 2x
downsampling; a bottleneck block; ``depth`` decoder levels of nearest-neighbour 2x
upsampling, concatenation with the encoder features of the same level, and two
convolutions; a final 1x1 convolution. The N2V2 variant [3]_ replaces max pooling by max
blur pooling and drops the top-level skip connection, which removes the checkerboard
artefacts of blind-spot training.

Tensors are ``(N, C, Y, X)`` (2D) or ``(N, C, Z, Y, X)`` (3D); every spatial size must be
divisible by :attr:`UNetConfig.divisible_by`.

References
----------
.. [1] M. Weigert et al., "Content-aware image restoration: pushing the limits of
   fluorescence microscopy", Nature Methods 15, 1090-1097 (2018).
.. [2] A. Krull, T.-O. Buchholz, F. Jug, "Noise2Void - learning denoising from single noisy
   images", CVPR 2019.
.. [3] E. Höck et al., "N2V2 - fixing Noise2Void checkerboard artifacts with modified
   sampling strategies and a tweaked network architecture", ECCV Workshops 2022.
.. [4] R. Zhang, "Making convolutional networks shift-invariant again", ICML 2019.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from fluorecon.core.config import BaseConfig

#: Smallest predicted Laplace scale (normalised units), added after the softplus.
MIN_SCALE = 1e-4


class UNetConfig(BaseConfig):
    """Architecture of a :class:`UNet`.

    Notes
    -----
    Receptive field. With ``h = (kernel_size - 1) / 2`` and depth ``D``, an output pixel
    depends on input pixels at most ``R`` away along each axis (:attr:`receptive_field`):

    .. math::

        R = 2h\\,(2^{D+1} - 1) + 2h\\,(2^{D} - 1) + (2^{D} - 1) + b\\,(2^{D} - 1),

    where the first term collects the two convolutions per encoder level and bottleneck
    (level :math:`l` counts :math:`2h \\cdot 2^l` input pixels), the second those of the
    decoder, the third the nearest-neighbour upsampling (a level-:math:`l` pixel copies a
    coarse pixel that reaches :math:`2^l` further on one side, depending on the parity of
    its position; linear upsampling also blends the next coarse pixel on the other side,
    which doubles this term to :math:`2 (2^{D} - 1)`), and the last (``b = 1`` for the N2V2 blur pool, else 0) the blur pool's
    one extra coarse pixel on each side per downsampling. Max pooling adds nothing in
    this count, because a coarse pixel is charged for exactly the fine pixels it pools.
    The bound is tight (reached by some output pixels), as the tests check by measuring
    impulse responses. With ``norm="group"`` the normalisation statistics couple the
    whole block: the convolutional receptive field is still ``R`` but outputs also depend
    weakly on everything else, so tiled prediction is then only approximate.
    """

    version: int = Field(default=1, ge=1, le=1, description="Schema version.")
    ndim: Literal[2, 3] = Field(default=2, description="Spatial dimensions (2: YX, 3: ZYX).")
    in_channels: int = Field(default=1, ge=1, le=64, description="Input channels.")
    out_channels: int = Field(default=1, ge=1, le=64, description="Output channels (means).")
    depth: int = Field(default=2, ge=1, le=5, description="Number of 2x downsamplings.")
    base_filters: int = Field(default=32, ge=1, le=512,
                              description="Filters at the top level (doubled per level).")
    kernel_size: int = Field(default=3, ge=1, le=9, description="Convolution size (odd).")
    norm: Literal["none", "batch", "group"] = Field(
        default="none", description="Normalisation after each convolution.")
    groups: int = Field(default=8, ge=1, description="Groups of group normalisation; must "
                                                     "divide base_filters.")
    residual: bool = Field(default=False, description="Add the input to the predicted mean "
                                                      "(needs in_channels == out_channels).")
    n2v2: bool = Field(default=False, description="N2V2 variant: max blur pool "
                                                  "downsampling, no top-level skip.")
    final_activation: Literal["none", "relu"] = Field(
        default="none", description="Activation on the predicted mean (scales always use "
                                    "softplus).")
    probabilistic: bool = Field(default=False, description="Also predict a per-pixel "
                                                           "Laplace scale (doubles outputs).")
    taper: bool = Field(default=False, description="CSBDeep/CAREamics channel layout: the "
                                                   "bottleneck and every decoder level but "
                                                   "the top end with half their filters "
                                                   "(about 30% fewer parameters and FLOPs).")
    upsampling: Literal["nearest", "linear"] = Field(
        default="nearest", description="Decoder upsampling: nearest neighbour, or "
                                       "(bi/tri)linear as CAREamics' U-Net (smoother, "
                                       "slightly larger receptive field).")

    @model_validator(mode="after")
    def _check(self) -> "UNetConfig":
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        if self.residual and self.in_channels != self.out_channels:
            raise ValueError(f"residual needs in_channels == out_channels, got "
                             f"{self.in_channels} and {self.out_channels}")
        if self.norm == "group" and self.base_filters % self.groups:
            raise ValueError(f"groups={self.groups} must divide base_filters="
                             f"{self.base_filters}")
        return self

    @property
    def divisible_by(self) -> int:
        """Every spatial size fed to the network must be a multiple of this (``2**depth``)."""
        return 2 ** self.depth

    @property
    def receptive_field(self) -> int:
        """Half-width in pixels of the input an output pixel depends on (see Notes)."""
        h = (self.kernel_size - 1) // 2
        d = self.depth
        up = 2 ** d - 1
        lin = 2 if self.upsampling == "linear" else 1
        return 2 * h * (2 ** (d + 1) - 1) + 2 * h * up + lin * up + (up if self.n2v2 else 0)

    @property
    def n_outputs(self) -> int:
        """Channels of the network output: ``out_channels``, doubled if probabilistic."""
        return self.out_channels * (2 if self.probabilistic else 1)


class _ConvBlock(nn.Module):
    """Two convolutions (``c_in -> c_mid -> c_out``, ``c_mid = c_out`` by default), each
    followed by the optional normalisation and a ReLU."""

    def __init__(self, cfg: UNetConfig, c_in: int, c_out: int, c_mid: int | None = None
                 ) -> None:
        super().__init__()
        conv = nn.Conv2d if cfg.ndim == 2 else nn.Conv3d
        layers: list[nn.Module] = []
        c_mid = c_out if c_mid is None else c_mid
        for a, b in ((c_in, c_mid), (c_mid, c_out)):
            layers.append(conv(a, b, cfg.kernel_size, padding=cfg.kernel_size // 2,
                               bias=cfg.norm == "none"))
            if cfg.norm == "batch":
                layers.append((nn.BatchNorm2d if cfg.ndim == 2 else nn.BatchNorm3d)(b))
            elif cfg.norm == "group":
                layers.append(nn.GroupNorm(cfg.groups, b))
            layers.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MaxBlurPool(nn.Module):
    """Max blur pooling [4]_: 2x2(x2) max pooling with stride 1, then a [1, 2, 1] blur
    (separable, per channel) with stride 2. Halves each spatial size (even sizes)."""

    def __init__(self, ndim: int, channels: int) -> None:
        super().__init__()
        self.ndim = ndim
        self.channels = channels
        k1 = torch.tensor([1.0, 2.0, 1.0]) / 4.0
        kernel = k1
        for _ in range(ndim - 1):
            kernel = kernel[..., None] * k1
        kernel = kernel[None, None].repeat(channels, *([1] * (ndim + 1)))
        self.register_buffer("kernel", kernel, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, 1) * self.ndim, mode="replicate")
        if self.ndim == 2:
            x = F.max_pool2d(x, 2, stride=1)
            return F.conv2d(x, self.kernel, stride=2, padding=1, groups=self.channels)
        x = F.max_pool3d(x, 2, stride=1)
        return F.conv3d(x, self.kernel, stride=2, padding=1, groups=self.channels)


class UNet(nn.Module):
    """U-Net built from a :class:`UNetConfig`.

    Parameters
    ----------
    config : UNetConfig
        The architecture.

    Notes
    -----
    :meth:`forward` maps ``(N, in_channels, *spatial)`` to ``(N, n_outputs, *spatial)``:
    the first ``out_channels`` are the predicted means (plus the input when ``residual``);
    if ``probabilistic``, the next ``out_channels`` are Laplace scales
    ``softplus(raw) + 1e-4`` (always positive), in the same (normalised) units.

    Examples
    --------
    >>> net = UNet(UNetConfig(ndim=2, depth=2, base_filters=8))
    >>> net(torch.zeros(1, 1, 32, 32)).shape
    torch.Size([1, 1, 32, 32])
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        cfg = config
        conv = nn.Conv2d if cfg.ndim == 2 else nn.Conv3d
        f = [cfg.base_filters * 2 ** level for level in range(cfg.depth + 1)]
        self.encoders = nn.ModuleList()
        self.pools = nn.ModuleList()
        c_prev = cfg.in_channels
        for level in range(cfg.depth):
            self.encoders.append(_ConvBlock(cfg, c_prev, f[level]))
            if cfg.n2v2:
                self.pools.append(MaxBlurPool(cfg.ndim, f[level]))
            else:
                self.pools.append((nn.MaxPool2d if cfg.ndim == 2 else nn.MaxPool3d)(2))
            c_prev = f[level]
        # taper: a block ends with the filters of the level above (CSBDeep / CAREamics).
        ends = [f[max(level - 1, 0)] if cfg.taper else f[level]
                for level in range(cfg.depth + 1)]
        self.bottleneck = _ConvBlock(cfg, c_prev, ends[cfg.depth], c_mid=f[cfg.depth])
        self.decoders = nn.ModuleList()
        c_prev = ends[cfg.depth]
        for level in reversed(range(cfg.depth)):
            skip = 0 if (cfg.n2v2 and level == 0) else f[level]
            self.decoders.append(_ConvBlock(cfg, c_prev + skip, ends[level], c_mid=f[level]))
            c_prev = ends[level]
        self.head = conv(f[0], cfg.n_outputs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if not torch.is_grad_enabled():
            h = self._features_lean(x)
        else:
            skips = []
            h = x
            for enc, pool in zip(self.encoders, self.pools):
                h = enc(h)
                skips.append(h)
                h = pool(h)
            h = self.bottleneck(h)
            for i, dec in enumerate(self.decoders):
                level = cfg.depth - 1 - i
                h = self._upsample(h)
                if not (cfg.n2v2 and level == 0):
                    h = torch.cat([h, skips[level]], dim=1)
                h = dec(h)
        out = self.head(h)
        mean = out[:, : cfg.out_channels]
        if cfg.residual:
            mean = mean + x
        if cfg.final_activation == "relu":
            mean = F.relu(mean)
        if not cfg.probabilistic:
            return mean
        scale = F.softplus(out[:, cfg.out_channels:]) + MIN_SCALE
        return torch.cat([mean, scale], dim=1)


    def _upsample(self, h: torch.Tensor) -> torch.Tensor:
        if self.config.upsampling == "nearest":
            return F.interpolate(h, scale_factor=2, mode="nearest")
        mode = "bilinear" if self.config.ndim == 2 else "trilinear"
        return F.interpolate(h, scale_factor=2, mode=mode, align_corners=False)

    def _features_lean(self, x: torch.Tensor) -> torch.Tensor:
        """The forward pass up to the head, holding as little memory as possible.

        Used without autograd (prediction). Same arithmetic as the training path, but a
        decoder level writes the nearest-upsampled coarse features and its skip straight
        into one preallocated buffer (no separate upsampled tensor, no concatenation
        copy), releases the skip and the coarse features at once, and runs its block
        layer by layer so each input is freed as soon as the next layer has consumed it.
        At the top level this holds the buffer and one convolution output (about
        ``e_1 + 2 f_0`` channels per voxel) instead of the skip, the upsampled tensor,
        their concatenation and the output together.
        """
        cfg = self.config
        skips: list[torch.Tensor | None] = []
        h = x
        for level, (enc, pool) in enumerate(zip(self.encoders, self.pools)):
            h = enc(h)
            skips.append(None if (cfg.n2v2 and level == 0) else h)
            h = pool(h)
        h = self.bottleneck(h)
        for dec in self.decoders:
            skip = skips.pop()
            if skip is None:
                h = self._upsample(h)
            else:
                c_up = h.shape[1]
                fmt = (torch.channels_last if skip.dim() == 4 and not skip.is_contiguous()
                       and skip.is_contiguous(memory_format=torch.channels_last)
                       else torch.contiguous_format)
                buf = torch.empty((skip.shape[0], c_up + skip.shape[1], *skip.shape[2:]),
                                  dtype=h.dtype, device=h.device, memory_format=fmt)
                buf[:, c_up:].copy_(skip)
                del skip
                if cfg.upsampling == "nearest":
                    _upsample2_into(buf[:, :c_up], h)
                else:
                    buf[:, :c_up].copy_(self._upsample(h))
                h = buf
                del buf
            for layer in dec.layers:
                h = layer(h)
        return h


def _upsample2_into(dst: torch.Tensor, low: torch.Tensor) -> None:
    """Write the 2x nearest-neighbour upsampling of ``low`` into the view ``dst``.

    ``dst`` is ``(N, C, 2 s_1, ..., 2 s_d)`` and ``low`` ``(N, C, s_1, ..., s_d)``; equals
    ``dst.copy_(F.interpolate(low, scale_factor=2, mode="nearest"))`` without the
    intermediate tensor.
    """
    view, src = dst, low
    for k, size in enumerate(low.shape[2:]):
        view = view.unflatten(2 + 2 * k, (size, 2))
        src = src.unsqueeze(3 + 2 * k)
    view.copy_(src)


def expected_weight_shapes(config: UNetConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the state dict of ``UNet(config)`` (built on the meta device)."""
    with torch.device("meta"):
        net = UNet(config)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}
