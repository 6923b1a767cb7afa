"""napari plugin (optional extra ``fluorecon[napari]``; npe2 manifest ``napari.yaml``).

- Restore widget: any classical denoiser/deconvolver of the registry, or a trained model
  (or ensemble) folder, with uncertainty and consistency maps as extra layers.
- Train widget: Noise2Void, N2V2, Noise2Self, CARE, Noise2Noise on image layers, with a
  resumable checkpoint when cancelled.
- Sample data: simulated 2D/3D noisy/clean pairs (and PSFs) from :mod:`fluorecon.simulate`.

Work runs in napari worker threads; the GUI-free parts live in
:mod:`fluorecon.napari._jobs` (restore, train, cancel) and :mod:`fluorecon.napari._layers`
(axes, pixel sizes, result layers). Importing this package imports neither Qt nor torch;
the widgets are loaded by napari through the manifest.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["CancelToken", "Cancelled", "RestoreWidget", "TrainWidget", "restore",
           "train_model"]

_EXPORTS = {"RestoreWidget": "_widgets", "TrainWidget": "_widgets", "restore": "_jobs",
            "train_model": "_jobs", "CancelToken": "_jobs", "Cancelled": "_jobs"}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"fluorecon.napari.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'fluorecon.napari' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
