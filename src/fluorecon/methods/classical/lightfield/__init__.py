"""Classical light-field reconstruction: 3D Richardson-Lucy with the light-field forward
model and its adjoint (the operator itself lives in :mod:`fluorecon.simulate.lightfield`,
which the simulation layer shares)."""

from fluorecon.methods.classical.lightfield.deconvolve import (
    LightFieldReconstruction,
    lightfield_richardson_lucy,
)
from fluorecon.simulate.lightfield import (
    LightFieldOperator,
    LightFieldOptics,
    lenslet_to_views,
    lightfield_psf,
    views_to_lenslet,
)

__all__ = [
    "LightFieldOperator",
    "LightFieldOptics",
    "LightFieldReconstruction",
    "lenslet_to_views",
    "lightfield_psf",
    "lightfield_richardson_lucy",
    "views_to_lenslet",
]
