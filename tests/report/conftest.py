"""Fixtures of the report tests: a model folder written without torch."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest


def write_model_folder(folder: Path, *, history: list[dict[str, float]] | None = None,
                       adversarial: bool = False, input_stats: bool = True) -> dict[str, int]:
    """A model folder like ``fluorecon train`` writes (config.json, history.csv, weights);
    returns the tensor shapes' element counts."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    td = {"inputs_axes": "YX", "n_images": 1, "input_shapes": [[1, 64, 96]],
          "patch_shape": [32, 32], "fingerprint": "abc"}
    if adversarial:
        td["adversarial"] = {"weight": 0.01, "steps": 50, "may_hallucinate": True,
                             "warning": "trained with an adversarial loss: outputs can "
                                        "contain plausible but invented structure"}
    config = {
        "format": "fluorecon-model", "schema_version": 1, "method": "care",
        "method_config": {"patch_size": 32, "validation_fraction": 0.1, "steps": 40},
        "unet": {"ndim": 2, "in_channels": 1, "out_channels": 1, "depth": 2,
                 "base_filters": 8, "kernel_size": 3, "norm": "none", "residual": True,
                 "probabilistic": False},
        "axes": "YX",
        "input_norm": {"low": 1.0, "high": 99.8, "lo": [100.0], "hi": [400.0]},
        "target_norm": {"low": 1.0, "high": 99.8, "lo": [0.0], "hi": [20.0]},
        "training_data": td, "versions": {"numpy": np.__version__}, "seed": 3,
        "provenance": {"steps_done": 40, "best_step": 20, "best_val_loss": 0.1,
                       "final_weights": "best", "loss": "mse"},
        "input_stats": {"n_images": 1} if input_stats else None,
    }
    (folder / "config.json").write_text(json.dumps(config))
    tensors = {"enc.0.weight": np.zeros((8, 1, 3, 3), np.float32),
               "enc.0.bias": np.zeros(8, np.float32),
               "out.weight": np.zeros((1, 8, 1, 1), np.float32)}
    save_file(tensors, str(folder / "weights.safetensors"))
    rows = history if history is not None else [
        {"step": 10, "train_loss": 0.5, "val_loss": 0.3, "lr": 1e-3, "time_s": 1.0},
        {"step": 20, "train_loss": 0.2, "val_loss": 0.1, "lr": 1e-3, "time_s": 2.0},
        {"step": 30, "train_loss": 0.1, "val_loss": 0.15, "lr": 5e-4, "time_s": 3.0},
        {"step": 40, "train_loss": 0.05, "val_loss": 0.2, "lr": 5e-4, "time_s": 4.0}]
    lines = ["step,train_loss,val_loss,lr,time_s"]
    for r in rows:
        lines.append(",".join("" if isinstance(r[k], float) and math.isnan(r[k]) else str(r[k])
                              for k in ("step", "train_loss", "val_loss", "lr", "time_s")))
    (folder / "history.csv").write_text("\n".join(lines) + "\n")
    return {k: int(v.size) for k, v in tensors.items()}


@pytest.fixture
def make_model_folder():
    """:func:`write_model_folder` as a fixture."""
    return write_model_folder


@pytest.fixture
def make_ridge():
    """:func:`ridge` as a fixture."""
    return ridge


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    write_model_folder(folder)
    return folder


def ridge(shape: tuple[int, int], angle_deg: float, *, width: float = 1.5,
          centre: tuple[float, float] | None = None) -> np.ndarray:
    """A straight Gaussian ridge through ``centre`` at ``angle_deg`` (from the x axis)."""
    yy, xx = np.mgrid[:shape[0], :shape[1]].astype(np.float64)
    cy, cx = centre if centre is not None else ((shape[0] - 1) / 2, (shape[1] - 1) / 2)
    t = np.deg2rad(angle_deg)
    dist = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
    along = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
    return (np.exp(-0.5 * (dist / width) ** 2) * np.exp(-0.5 * (along / (shape[0] / 3)) ** 2)
            ).astype(np.float32)
