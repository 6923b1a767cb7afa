"""Classical light-field reconstruction: lenslet-grid calibration and rectification of raw
frames, 3D Richardson-Lucy with the light-field forward model and its adjoint (the operator
itself lives in :mod:`fluorecon.simulate.lightfield`, which the simulation layer shares)."""

from fluorecon.methods.classical.lightfield.grid import (
    LensletGrid,
    calibrate_lenslet_grid,
    rectify_lightfield,
)
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
    "LensletGrid",
    "LightFieldOperator",
    "LightFieldOptics",
    "LightFieldReconstruction",
    "calibrate_lenslet_grid",
    "lenslet_to_views",
    "lightfield_psf",
    "lightfield_richardson_lucy",
    "rectify_lightfield",
    "views_to_lenslet",
]
