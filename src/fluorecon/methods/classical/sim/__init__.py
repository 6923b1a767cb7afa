"""Classical 2D SIM reconstruction: OTF models, band separation, parameter estimation,
generalised Wiener filtering with apodisation, and the widefield comparison.

These functions take a stack of raw frames and return an image on a finer grid, so they are
not :class:`~fluorecon.methods.base.Method` subclasses (whose output has the input's shape);
the ``fluorecon sim`` commands expose them.
"""

from fluorecon.methods.classical.sim.bands import fade_borders, separate_bands
from fluorecon.methods.classical.sim.estimate import (
    PreparedFrames,
    SIMEstimate,
    estimate_sim_parameters,
    prepare_sim_frames,
)
from fluorecon.methods.classical.sim.mrc import read_mrc
from fluorecon.methods.classical.sim.otf import RadialOTF
from fluorecon.methods.classical.sim.reconstruct import (
    SIMReconstruction,
    apodization,
    fourier_upsample,
    sim_reconstruct,
    sim_wiener,
)

__all__ = [
    "PreparedFrames",
    "RadialOTF",
    "SIMEstimate",
    "SIMReconstruction",
    "apodization",
    "estimate_sim_parameters",
    "fade_borders",
    "fourier_upsample",
    "prepare_sim_frames",
    "read_mrc",
    "separate_bands",
    "sim_reconstruct",
    "sim_wiener",
]
