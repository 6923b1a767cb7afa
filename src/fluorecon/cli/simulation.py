"""``fluorecon simulate``: write a simulated pair as OME-TIFF files plus its parameters."""

from __future__ import annotations

import json
from pathlib import Path

from fluorecon import __version__
from fluorecon.io import write_bytes_atomic
from fluorecon.io import write_image
from fluorecon.simulate.pairs import simulate_pair


def write_simulation(out: Path, *, task: str, shape: tuple[int, ...], phantom: str,
                     photons: float, seed: int, overwrite: bool = False) -> list[Path]:
    """Simulate a pair and write ``input``, ``target``, ``psf`` and ``simulation.json``."""
    pair = simulate_pair(task, shape, phantom=phantom, photons=photons, seed=seed)  # type: ignore[arg-type]
    meta = pair.meta
    paths = [
        write_image(out / "input.ome.tif", pair.input, meta, overwrite=overwrite),
        write_image(out / "target.ome.tif", pair.target, pair.target_meta,
                    overwrite=overwrite),
        write_image(out / "psf.ome.tif", pair.psf, pair.target_meta,
                    overwrite=overwrite),
    ]
    params = {
        "fluorecon": __version__, "task": task, "shape": list(shape), "phantom": phantom,
        "photons": photons, "seed": seed, "axes": pair.axes,
        "pixel_size_um": meta.pixel_size,
        "camera": pair.camera.model_dump(mode="json"),
        "input_units": "camera ADU", "target_units": "photons",
    }
    paths.append(write_bytes_atomic(out / "simulation.json",
                                    json.dumps(params, indent=2).encode(), overwrite=overwrite))
    return paths
