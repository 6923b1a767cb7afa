"""Model folders: ``config.json`` + ``weights.safetensors`` + ``history.csv`` (+ ``.png``).

A trained model is a folder anyone can inspect::

    my_model/
        config.json          schema version, method and its config, U-Net architecture,
                             axes, normalisation, noise model, training data description,
                             package versions, seed, training provenance
        weights.safetensors  the network's tensors (no pickles, nothing executed on load)
        history.csv          step, train_loss, val_loss, lr, time_s
        history.png          loss and learning-rate curves

Loading validates ``config.json`` with pydantic and checks every tensor name and shape
against the architecture it describes; a missing, corrupt or mismatched file is refused
with a one-line :class:`~fluorecon.core.errors.InputFileError`.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from fluorecon.core.config import BaseConfig, format_validation_error
from fluorecon.core.errors import InputFileError, OutputExistsError, message
from fluorecon.io.atomic import remove_path, replace_path, temporary_sibling
from fluorecon.methods.learned.training import plot_history, write_history_csv
from fluorecon.methods.learned.unet import UNetConfig, expected_weight_shapes
from fluorecon.normalize import NormParams

MODEL_FORMAT = "fluorecon-model"
SCHEMA_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
HISTORY_CSV = "history.csv"
HISTORY_PNG = "history.png"


class ModelConfig(BaseConfig):
    """Everything needed to rebuild and apply a trained model, and where it came from."""

    format: Literal["fluorecon-model"] = Field(default=MODEL_FORMAT,
                                               description="Marks a fluorecon model folder.")
    schema_version: int = Field(default=SCHEMA_VERSION, ge=1, le=SCHEMA_VERSION,
                                description="Version of this file's schema.")
    method: str = Field(description="Registered method name, e.g. 'care' or 'n2v'.")
    method_config: dict[str, Any] = Field(description="The method's config (its JSON).")
    unet: UNetConfig = Field(description="Network architecture.")
    axes: str = Field(description="Axes of one block the network maps: YX, ZYX, CYX, CZYX.")
    input_norm: NormParams = Field(description="Percentile normalisation of the inputs, "
                                               "computed once on the training inputs.")
    target_norm: NormParams = Field(description="Normalisation of the targets; its inverse "
                                                "maps predictions back to target units.")
    noise_model: dict[str, Any] | None = Field(default=None, description="Noise model used "
                                               "in training, if any.")
    training_data: dict[str, Any] = Field(default_factory=dict, description="Images, shapes,"
                                          " axes, split and fingerprint of the training data.")
    versions: dict[str, str] = Field(default_factory=dict, description="Package versions.")
    seed: int = Field(ge=0, description="Training seed.")
    provenance: dict[str, Any] = Field(default_factory=dict, description="Training outcome: "
                                       "steps, best step and loss, early stop, time, device.")
    calibration: dict[str, Any] | None = Field(
        default=None, description="Recalibration of the predicted uncertainty per mode "
                                  "(fluorecon.trust.calibration.CalibrationRecord as JSON), "
                                  "fitted on held-out data; None: not calibrated.")
    input_stats: dict[str, Any] | None = Field(
        default=None, description="Statistics of the training inputs (fluorecon.trust.ood."
                                  "InputStats as JSON) for out-of-distribution warnings.")


def package_versions() -> dict[str, str]:
    """Versions of fluorecon, torch, numpy, safetensors and Python (for ``config.json``)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "numpy": np.__version__,
           "torch": torch.__version__}
    for pkg in ("fluorecon", "safetensors"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            out[pkg] = "unknown"
    return out


def save_model(folder: str | os.PathLike[str], config: ModelConfig,
               state_dict: dict[str, torch.Tensor], history: list[dict[str, float]], *,
               overwrite: bool = False) -> Path:
    """Write a model folder atomically (a temporary sibling is moved into place).

    Parameters
    ----------
    folder : path
        Destination folder.
    config : ModelConfig
    state_dict : dict of str to Tensor
        The network's state dict (moved to CPU).
    history : list of dict
        Training history rows (see :func:`~fluorecon.methods.learned.training.train`).
    overwrite : bool
        Replace an existing folder; otherwise an existing path is an error.

    Returns
    -------
    Path
        ``folder``.
    """
    dst = Path(folder)
    if dst.exists() and not overwrite:
        raise OutputExistsError(message(f"an existing path {dst}", "a new model folder",
                                        "Pass overwrite=True or choose another name."))
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(dst)
    try:
        tmp.mkdir()
        (tmp / CONFIG_FILE).write_text(config.to_json())
        tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
        save_file(tensors, str(tmp / WEIGHTS_FILE),
                  metadata={"format": "pt", "fluorecon": MODEL_FORMAT,
                            "method": config.method})
        write_history_csv(tmp / HISTORY_CSV, history)
        if history:
            plot_history(tmp / HISTORY_PNG, history, title=f"{config.method} training")
        replace_path(tmp, dst)
    except BaseException:
        remove_path(tmp)
        raise
    return dst


def read_model_config(folder: str | os.PathLike[str]) -> ModelConfig:
    """Read and validate ``config.json`` of a model folder (one-line errors)."""
    path = Path(folder)
    if not path.is_dir():
        raise InputFileError(message(f"model folder {path} that does not exist"
                                     if not path.exists() else f"{path}, which is not a folder",
                                     "a model folder with config.json and weights.safetensors",
                                     "Check the path (a model is a folder)."))
    cfg_path = path / CONFIG_FILE
    if not cfg_path.is_file():
        raise InputFileError(message(f"model folder {path} without {CONFIG_FILE}",
                                     f"{CONFIG_FILE} and {WEIGHTS_FILE}",
                                     "Point to a folder written by fluorecon."))
    try:
        data = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(message(f"an unreadable {cfg_path} "
                                     f"({' '.join(str(exc).split())})", "valid JSON",
                                     "Restore config.json from the original model.")) from None
    if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
        raise InputFileError(message(f"{cfg_path} without format {MODEL_FORMAT!r}",
                                     "a fluorecon model config", "Point to a folder written "
                                     "by fluorecon."))
    if isinstance(data.get("schema_version"), int) and data["schema_version"] > SCHEMA_VERSION:
        raise InputFileError(message(f"{cfg_path} of schema version {data['schema_version']}",
                                     f"schema version <= {SCHEMA_VERSION}",
                                     "Upgrade fluorecon to load this model."))
    try:
        return ModelConfig.model_validate(data)
    except ValidationError as exc:
        text = format_validation_error("model config", exc)
        raise InputFileError(message(f"{cfg_path} that does not validate ({text})",
                                     "a valid model config", "Restore config.json from the "
                                     "original model.")) from None


def load_model(folder: str | os.PathLike[str]) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Read a model folder: validated config and tensors matching its architecture.

    Returns
    -------
    config : ModelConfig
    state_dict : dict of str to Tensor
        CPU tensors, names and shapes checked against ``config.unet``.

    Raises
    ------
    InputFileError
        Missing folder or file, unreadable JSON or safetensors, a config that does not
        validate, or weights that do not fit the architecture. One line each.
    """
    config = read_model_config(folder)
    wpath = Path(folder) / WEIGHTS_FILE
    if not wpath.is_file():
        raise InputFileError(message(f"model folder {Path(folder)} without {WEIGHTS_FILE}",
                                     f"{WEIGHTS_FILE} next to {CONFIG_FILE}",
                                     "Restore the weights file from the original model."))
    try:
        tensors = load_file(str(wpath))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InputFileError(message(f"an unreadable {wpath} ({' '.join(str(exc).split())})",
                                     "a complete safetensors file", "Restore the weights "
                                     "file from the original model.")) from None
    expected = expected_weight_shapes(config.unet)
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors)
                   if tuple(tensors[k].shape) != expected[k])
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} unexpected (e.g. {extra[0]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} of the wrong shape (e.g. {k}: "
                         f"{tuple(tensors[k].shape)} instead of {expected[k]})")
        raise InputFileError(message(f"weights in {wpath} that do not fit the architecture "
                                     f"in {CONFIG_FILE}: " + ", ".join(parts),
                                     "the weights saved with this config",
                                     "Keep config.json and weights.safetensors of one model "
                                     "together."))
    bad = [k for k, v in tensors.items()
           if not (v.is_floating_point() or k.endswith("num_batches_tracked"))
           or (v.is_floating_point() and not torch.isfinite(v).all())]
    if bad:
        raise InputFileError(message(f"weights in {wpath} with non-finite or non-float "
                                     f"tensor {bad[0]}", "finite float tensors",
                                     "Restore the weights file from the original model."))
    return config, tensors
