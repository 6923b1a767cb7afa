"""Registration and drift correction: sub-pixel phase correlation, rigid / similarity /
affine Gauss-Newton registration, non-rigid optical flow, and the time-lapse stabiliser
that estimates motion and applies it without rescaling intensities."""

from fluorecon.methods.classical.registration.affine import (
    MODELS,
    AffineResult,
    register_affine,
)
from fluorecon.methods.classical.registration.flow import (
    compose_field,
    matrix_field,
    register_flow,
)
from fluorecon.methods.classical.registration.phase import (
    PhaseCorrelationResult,
    phase_correlation,
)
from fluorecon.methods.classical.registration.stabilize import (
    MotionEstimate,
    StabilizeConfig,
    Stabilizer,
    apply_motion,
    estimate_motion,
    field_from_motion,
)

__all__ = [
    "MODELS",
    "AffineResult",
    "MotionEstimate",
    "PhaseCorrelationResult",
    "StabilizeConfig",
    "Stabilizer",
    "apply_motion",
    "compose_field",
    "estimate_motion",
    "field_from_motion",
    "matrix_field",
    "phase_correlation",
    "register_affine",
    "register_flow",
]
