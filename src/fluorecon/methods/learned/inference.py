"""Fast inference of trained networks: batch-norm folding, channels-last layout, reduced
precision and ``torch.compile``, each optional and each checked against fp32.

Training keeps the plain network; prediction runs an *inference copy* built once by
:func:`build_inference_net` from the trained weights and the chosen
:class:`InferenceOptions`. Folding batch normalisation into the preceding convolution
and the channels-last memory layout change the arithmetic only by rounding (the tests
check agreement with the plain network to 1e-5 relative); ``bfloat16``/``float16``
autocast changes results by about 1e-2 relative and is therefore opt-in.

Which options pay off depends on the hardware: on CPUs without native bf16 (AVX-512
BF16 or AMX) bf16 autocast is several times *slower* than fp32, and ``torch.compile``
costs tens of seconds of compilation before the first tile, so it pays only for large
images. ``benchmarks/bench_learned.py`` measures each on the machine at hand.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from fluorecon.core.config import BaseConfig
from fluorecon.core.errors import ConfigError, message

Precision = Literal["fp32", "bf16", "fp16"]
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class InferenceOptions(BaseConfig):
    """How a trained network is run for prediction (not stored with the model)."""

    precision: Precision = Field(default="fp32", description="Arithmetic: fp32 (exact), "
                                 "bf16 (autocast; fast on GPUs and CPUs with AMX/AVX512-BF16"
                                 ", slow elsewhere) or fp16 (CUDA only).")
    compile: bool = Field(default=False, description="Compile the network with "
                          "torch.compile (slow first call; pays for large images).")
    channels_last: bool = Field(default=True, description="NHWC memory layout for 2D "
                                "networks (faster oneDNN convolutions on CPUs).")
    fold_batch_norm: bool = Field(default=True, description="Fold batch normalisation "
                                  "into the preceding convolution (exact up to rounding).")


def fold_batch_norm(net: nn.Module) -> nn.Module:
    """Return a copy of ``net`` (in eval mode) with every ``Conv -> BatchNorm`` pair inside
    an ``nn.Sequential`` replaced by one convolution.

    Notes
    -----
    In eval mode batch normalisation is the affine map
    :math:`y = \\gamma (x - \\mu) / \\sqrt{\\sigma^2 + \\epsilon} + \\beta`; composed with a
    convolution :math:`x = w * u + b` it is the convolution with weights
    :math:`w \\gamma / \\sqrt{\\sigma^2 + \\epsilon}` and bias
    :math:`(b - \\mu) \\gamma / \\sqrt{\\sigma^2 + \\epsilon} + \\beta`
    (``torch.nn.utils.fusion.fuse_conv_bn_eval``).
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    out = copy.deepcopy(net).eval()
    convs = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    bns = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
    for module in out.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = module._modules[a], module._modules[b]
            if isinstance(conv, convs) and isinstance(bn, bns) and bn.track_running_stats:
                module._modules[a] = fuse_conv_bn_eval(conv, bn)
                module._modules[b] = nn.Identity()
    return out


def autocast_context(precision: Precision, device: torch.device
                     ) -> contextlib.AbstractContextManager[None]:
    """Autocast context for ``precision`` on ``device`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(message(f"precision='fp16' on device {device}", "a CUDA device "
                                  "for fp16", "Use precision='bf16' or 'fp32' on the CPU."))
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


class InferenceNet:
    """A callable ``(N, C, *spatial) float32 tensor -> float32 tensor`` for prediction.

    Built by :func:`build_inference_net`; holds the prepared copy of the network and
    runs it without autograd, in the chosen layout and precision.
    """

    def __init__(self, net: nn.Module, options: InferenceOptions, device: torch.device,
                 ndim: int) -> None:
        self.options = options
        self.device = device
        self.ndim = ndim
        self._channels_last = options.channels_last and ndim == 2
        if options.fold_batch_norm:
            net = fold_batch_norm(net)
        else:
            net = copy.deepcopy(net).eval()
        net = net.to(device)
        if self._channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.module = net
        self._call: Callable[[torch.Tensor], torch.Tensor] = net
        if options.compile:
            self._call = torch.compile(net, dynamic=False)  # type: ignore[assignment]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast_context(self.options.precision, self.device):
            out = self._call(x)
        return out.float()


def build_inference_net(net: nn.Module, options: InferenceOptions | None, device: torch.device,
                        ndim: int) -> InferenceNet:
    """Prepare ``net`` for prediction with ``options`` (default :class:`InferenceOptions`)."""
    return InferenceNet(net, options or InferenceOptions(), device, ndim)
