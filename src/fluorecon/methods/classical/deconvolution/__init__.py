"""Classical deconvolution: Richardson-Lucy (plain, TV, accelerated) and Wiener / Tikhonov.

Importing this package registers the methods ``"rl"``, ``"rl-tv"`` and ``"wiener"``.
"""

from fluorecon.methods.classical.deconvolution.richardson_lucy import (
    DeconvolutionInfo,
    DeconvolutionResult,
    RichardsonLucy,
    RichardsonLucyConfig,
    RichardsonLucyTV,
    RichardsonLucyTVConfig,
    richardson_lucy,
    richardson_lucy_result,
)
from fluorecon.methods.classical.deconvolution.wiener import (
    Wiener,
    WienerConfig,
    WienerInfo,
    WienerResult,
    wiener,
    wiener_result,
)

__all__ = [
    "DeconvolutionInfo",
    "DeconvolutionResult",
    "RichardsonLucy",
    "RichardsonLucyConfig",
    "RichardsonLucyTV",
    "RichardsonLucyTVConfig",
    "Wiener",
    "WienerConfig",
    "WienerInfo",
    "WienerResult",
    "richardson_lucy",
    "richardson_lucy_result",
    "wiener",
    "wiener_result",
]
