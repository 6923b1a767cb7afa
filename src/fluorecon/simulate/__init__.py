"""Forward models with units and inverses: phantoms, PSFs, camera, degradations, pairs.

Submodules (imported lazily; ``from fluorecon.simulate import simulate_pair`` also works):

- :mod:`~fluorecon.simulate.phantoms`: synthetic samples (filaments, beads, nuclei, rings).
- :mod:`~fluorecon.simulate.psf`: Gaussian, widefield (Born-Wolf, Gibson-Lanni) and confocal
  PSFs, FWHM measurement and theoretical resolution.
- :mod:`~fluorecon.simulate.camera`: photons -> ADU camera model (sCMOS, EMCCD), its mean
  inverse and Poisson-Gaussian variance.
- :mod:`~fluorecon.simulate.degrade`: blur, binning, axial anisotropy, background.
- :mod:`~fluorecon.simulate.pairs`: (camera image, ground truth) pairs for denoising,
  deconvolution and upsampling.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "filaments": "phantoms", "beads": "phantoms", "nuclei": "phantoms", "rings": "phantoms",
    "make_phantom": "phantoms",
    "gaussian_psf": "psf", "widefield_psf": "psf", "confocal_psf": "psf", "psf_fwhm": "psf",
    "abbe_lateral_fwhm": "psf", "rayleigh_resolution": "psf", "widefield_axial_fwhm": "psf",
    "CameraModel": "camera", "camera_forward": "camera", "camera_inverse": "camera",
    "camera_mean": "camera", "noise_variance": "camera", "noise_parameters": "camera",
    "blur": "degrade", "downsample": "degrade", "axial_anisotropy": "degrade",
    "add_background": "degrade",
    "SimulatedPair": "pairs", "simulate_pair": "pairs", "default_psf": "pairs",
    "simulate_spectral": "spectra", "mixing_matrix": "spectra", "simulate_timelapse": "motion",
    "SMLMConfig": "smlm", "simulate_smlm": "smlm", "simulate_frames": "smlm",
    "simulate_sim": "sim", "sim_pattern": "sim", "simulate_lightfield": "lightfield",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"fluorecon.simulate.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'fluorecon.simulate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
