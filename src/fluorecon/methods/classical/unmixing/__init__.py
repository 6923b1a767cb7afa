"""Spectral unmixing: linear (least squares, NNLS) with known spectra, spectral phasors,
and blind NMF. Each takes a multi-channel image with a ``C`` axis and returns an
:class:`UnmixingResult` with one component per fluorophore along ``C``."""

from fluorecon.methods.classical.unmixing._common import UnmixingResult
from fluorecon.methods.classical.unmixing.linear import (
    LinearUnmixing,
    LinearUnmixingConfig,
    linear_unmix,
    nnls_batch,
)
from fluorecon.methods.classical.unmixing.nmf import (
    NMFUnmixing,
    NMFUnmixingConfig,
    nmf_unmix,
    spa_endmembers,
)
from fluorecon.methods.classical.unmixing.phasor import (
    PhasorUnmixing,
    PhasorUnmixingConfig,
    phasor_coordinates,
    phasor_unmix,
    spectrum_phasor,
)

__all__ = [
    "LinearUnmixing",
    "LinearUnmixingConfig",
    "NMFUnmixing",
    "NMFUnmixingConfig",
    "PhasorUnmixing",
    "PhasorUnmixingConfig",
    "UnmixingResult",
    "linear_unmix",
    "nmf_unmix",
    "nnls_batch",
    "phasor_coordinates",
    "phasor_unmix",
    "spa_endmembers",
    "spectrum_phasor",
]
