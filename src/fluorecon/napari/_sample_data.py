"""Sample data for napari (File > Open Sample > fluorecon): simulated, seeded, with units.

Each sample is a :func:`~fluorecon.simulate.pairs.simulate_pair` run: a phantom imaged
through a widefield PSF (Born-Wolf, NA 1.2, 520 nm) and recorded by an sCMOS camera
(Poisson shot noise, Gaussian read noise, offset 100 ADU). The noisy layer is the camera
image mapped back to photons with the camera's exact mean inverse
(:func:`~fluorecon.simulate.camera.camera_inverse`), so noisy and clean layers share units
(photons per pixel) and no offset has to be subtracted before deconvolution; the
deconvolution samples add a uniform background of 50 photons (out-of-focus light), which
keeps them positive for Richardson-Lucy (pass ``background=50`` for the exact model, or
leave 0 to treat it as signal). Layers carry
the pixel size (0.1 µm lateral, 0.2 µm axial) as napari ``scale`` and
``metadata["pixel_size"]``, and the simulation parameters in ``metadata["simulation"]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["deconvolve_2d", "deconvolve_3d", "denoise_2d", "denoise_3d", "sample_layers"]

LayerDataTuple = tuple[Any, dict[str, Any], str]

#: Uniform background (photons per pixel) of the deconvolution samples: out-of-focus light
#: keeps the image positive, as Richardson-Lucy's Poisson model requires.
BACKGROUND = 50.0

#: Expected photons at the brightest point of the noise-free image (noisy, like live
#: imaging at low light).
PHOTONS = 20.0


def sample_layers(task: str, shape: tuple[int, ...], *, phantom: str = "filaments",
                  photons: float = PHOTONS, seed: int = 0) -> list[LayerDataTuple]:
    """Simulated (noisy, clean[, PSF]) layers.

    Parameters
    ----------
    task : {"denoise", "deconvolve"}
        ``denoise``: clean = the blurred, noise-free image. ``deconvolve``: clean = the
        sample itself, and a PSF layer (same pixel size, centred, sum 1) is added.
    shape : tuple of int
        ``(ny, nx)`` or ``(nz, ny, nx)``.
    phantom : str
        ``filaments``, ``beads``, ``nuclei``, ``rings`` or ``mixed``.
    photons : float
        Peak expected photons of the noise-free blurred image.
    seed : int
        Same seed, same data.

    Returns
    -------
    list of (data, kwargs, layer_type)
        napari layer-data tuples; data float32.
    """
    from fluorecon.simulate.camera import camera_inverse
    from fluorecon.simulate.pairs import simulate_pair

    background = BACKGROUND if task == "deconvolve" else 0.0
    pair = simulate_pair(task, shape, phantom=phantom, photons=photons,  # type: ignore[arg-type]
                         background=background, seed=seed)
    axes = pair.axes
    sizes = pair.meta.pixel_size
    scale = tuple(float(sizes[a]) for a in axes)
    units = tuple("micrometer" for _ in axes)
    noisy = camera_inverse(pair.input, pair.camera).astype(np.float32)
    sim = {"task": task, "phantom": phantom, "photons": photons, "seed": seed,
           "background_photons": background,
           "camera": pair.camera.model_dump(mode="json"), "relation": pair.meta.extra.get(
               "relation")}
    meta = {"axes": axes, "pixel_size": dict(sizes), "simulation": sim}
    tag = f"{len(shape)}D {task}"
    layers: list[LayerDataTuple] = [
        (noisy, {"name": f"noisy ({tag}, photons)", "scale": scale, "units": units,
                 "metadata": {**meta, "quantity": "camera image in photons (shot + read "
                                                  "noise)"}}, "image"),
        (pair.target.astype(np.float32),
         {"name": f"clean ({tag}, photons)", "scale": scale, "units": units, "visible": False,
          "metadata": {**meta, "quantity": "ground truth, photons"}}, "image"),
    ]
    if task == "deconvolve":
        layers.append((pair.psf.astype(np.float32),
                       {"name": f"psf ({len(shape)}D widefield)", "scale": scale,
                        "units": units, "visible": False, "colormap": "magma",
                        "metadata": {**meta, "quantity": "PSF, sums to 1"}}, "image"))
    return layers


def denoise_2d() -> list[LayerDataTuple]:
    """Noisy filaments, 256 x 256 (2D), with the noise-free image."""
    return sample_layers("denoise", (256, 256), phantom="filaments", seed=0)


def denoise_3d() -> list[LayerDataTuple]:
    """Noisy mixed structures, 32 x 128 x 128 (3D), with the noise-free volume."""
    return sample_layers("denoise", (32, 128, 128), phantom="mixed", seed=1)


def deconvolve_2d() -> list[LayerDataTuple]:
    """Blurred, noisy filaments, 256 x 256, with the sample and the PSF."""
    return sample_layers("deconvolve", (256, 256), phantom="filaments", photons=100.0, seed=2)


def deconvolve_3d() -> list[LayerDataTuple]:
    """Blurred, noisy beads, 32 x 128 x 128, with the sample and the 3D PSF."""
    return sample_layers("deconvolve", (32, 128, 128), phantom="beads", photons=100.0, seed=3)
