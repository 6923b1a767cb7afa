"""The work behind the widgets, free of Qt and napari: restore, train, cancel.

Every function here runs in a worker thread (see :mod:`fluorecon.napari._widgets`) and
talks to the GUI only through its ``progress`` callback and a :class:`CancelToken`. The
token is checked between blocks, tiles, iterations and training steps, so a cancelled run
stops at the next such point and returns nothing. The same library functions as the
command line do the work:

- classical methods through the registry and :meth:`Method.predict`;
- model folders through :func:`~fluorecon.trust.ensembles.load_predictor`, tiled with
  :func:`~fluorecon.predict.predict_method_tiled` (exact crop-and-stitch) and, for
  uncertainty, :func:`~fluorecon.trust.ensembles.predict_uncertainty` (Laplace scale,
  ensemble spread or both, recalibrated when a calibration is stored);
- consistency maps through :func:`~fluorecon.trust.qc.consistency_maps` (identity forward
  model for denoising, PSF convolution for deconvolution);
- training through the learned methods' ``fit`` (the one training engine), with the same
  ``<model>.checkpoint/`` folder and ``<model>/training_state/`` as ``fluorecon train``,
  so a run cancelled in napari resumes in napari or on the command line.

torch is never imported here: learned methods are reached through the registry.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fluorecon import __version__
from fluorecon.core.axes import check_axes, spatial_axes
from fluorecon.core.dtypes import as_float32
from fluorecon.core.errors import (
    AxesError,
    ConfigError,
    DataError,
    FluoreconError,
    InputFileError,
    message,
)
from fluorecon.methods.training_folders import (
    CHECKPOINT_SUFFIX,
    TRAINING_STATE,
    OutputAdvice,
    checkpoint_dir_for,
    prepare_training_output,
)

__all__ = [
    "CHECKPOINT_SUFFIX", "TRAINABLE", "TRAINING_STATE", "CancelToken", "Cancelled",
    "RestoreResult", "TrainOutcome", "TrainingCancelled", "checkpoint_dir_for",
    "classical_methods", "restore", "train_model",
]

#: How the widget's refusals tell the user to fix them (check boxes, not options).
_ADVICE = OutputAdvice(
    resume="resume",
    exists="Tick overwrite to replace it, resume with more steps to extend it, or choose "
           "another folder.",
    nothing_to_resume="Untick resume to start training, or pick the folder of the "
                      "cancelled run.",
    stale_checkpoint="Tick resume (same data and options) or overwrite.")
#: Learned methods the train widget offers, and whether they need a target layer.
TRAINABLE: dict[str, bool] = {"n2v": False, "n2v2": False, "n2s": False, "care": True,
                              "n2n": True}

Progress = Callable[[int, int], None]
TrainProgress = Callable[[int, int, dict[str, float]], None]


class Cancelled(Exception):
    """The user cancelled the run; nothing was produced."""


class TrainingCancelled(Cancelled):
    """Training was cancelled; ``checkpoint`` is the folder to resume from (or None)."""

    def __init__(self, checkpoint: Path | None) -> None:
        super().__init__(str(checkpoint))
        self.checkpoint = checkpoint


class CancelToken:
    """A thread-safe cancel flag, set from the GUI thread and checked by the worker."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the running job to stop at its next check."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if :meth:`cancel` was called."""
        if self._event.is_set():
            raise Cancelled("cancelled")


def _checked(progress: Progress | None, token: CancelToken | None) -> Progress:
    """A progress callback that first checks the token (raising :class:`Cancelled`)."""

    def cb(done: int, total: int) -> None:
        if token is not None:
            token.check()
        if progress is not None:
            progress(done, total)

    return cb


def classical_methods() -> dict[str, str]:
    """Registered classical restoration methods (name -> kind), torch-free.

    Only ``denoise`` and ``deconvolve`` methods are listed: they map an image onto its
    own grid, which is what the restore widget needs.
    """
    from fluorecon.methods.registry import available, get_method, is_lazy

    out = {}
    for name in available():
        if is_lazy(name):
            continue
        kind = get_method(name).kind
        if kind in ("denoise", "deconvolve"):
            out[name] = kind
    return out


# --- restore ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RestoreResult:
    """What one restore run produced.

    Attributes
    ----------
    prediction : ndarray, float32
        The restored image; same axes as the input (shape refined by ``refined`` for
        upsampling models).
    std : ndarray or None
        Predictive standard deviation (target units), when uncertainty was requested.
    residual : ndarray or None
        Standardised residual ``(y - m) / sqrt(a m + b)`` of the input against the re-imaged
        prediction (input shape), when consistency was requested.
    flagged : ndarray of bool or None
        Regions the input does not support (Bonferroni-corrected local test).
    refined : dict of str to float
        Factor by which the pixel size shrinks along each refined axis (empty: same grid).
    source : str
        Method name, or ``"model <folder>"``.
    info : dict
        Provenance and summaries (method config, calibration, chi-square, ...).
    """

    prediction: np.ndarray
    std: np.ndarray | None = None
    residual: np.ndarray | None = None
    flagged: np.ndarray | None = None
    refined: dict[str, float] = field(default_factory=dict)
    source: str = ""
    info: dict[str, Any] = field(default_factory=dict)


class _Cancellable:
    """Wraps a learned method so that every block or batch it predicts first checks the
    cancel token; everything else is delegated unchanged."""

    def __init__(self, method: Any, token: CancelToken | None) -> None:
        self._method = method
        self._token = token

    def __getattr__(self, name: str) -> Any:
        return getattr(self._method, name)

    def _check(self) -> None:
        if self._token is not None:
            self._token.check()

    def predict_block(self, block: np.ndarray, axes: str) -> np.ndarray:
        self._check()
        return self._method.predict_block(block, axes)

    def predict_batch(self, batch: np.ndarray, axes: str) -> np.ndarray:
        self._check()
        return self._method.predict_batch(batch, axes)

    def predict_laplace_block(self, block: np.ndarray, axes: str
                              ) -> tuple[np.ndarray, np.ndarray]:
        self._check()
        return self._method.predict_laplace_block(block, axes)

    def predict_laplace_batch(self, batch: np.ndarray, axes: str
                              ) -> tuple[np.ndarray, np.ndarray]:
        self._check()
        return self._method.predict_laplace_batch(batch, axes)


def _spatial_shape(image: Any, axes: str) -> tuple[int, ...]:
    return tuple(int(image.shape[axes.index(a)]) for a in spatial_axes(axes))


def _check_psf(psf: Any, image: Any, axes: str) -> np.ndarray:
    kernel = as_float32(np.asarray(psf))
    nsp = len(spatial_axes(axes))
    if kernel.ndim != nsp:
        raise DataError(message(f"a {kernel.ndim}D PSF for a {nsp}D image (axes {axes!r})",
                                f"a {nsp}D PSF with the image's pixel size",
                                "Pick the PSF layer that matches the image."))
    return kernel


def _forward_model(psf: np.ndarray | None) -> Any:
    from fluorecon.trust.consistency import forward_for

    return forward_for("denoise") if psf is None else forward_for("deconvolve", psf=psf)


def restore(image: Any, axes: str, *, method: str | None = None,
            params: dict[str, Any] | None = None, psf: Any = None,
            model: str | os.PathLike[str] | None = None, uncertainty: str | None = None,
            consistency: bool = False, token: CancelToken | None = None,
            progress: Progress | None = None) -> RestoreResult:
    """Restore ``image`` with a classical method or a trained model folder.

    Parameters
    ----------
    image : array_like
        Image with dimensions ``axes``; not modified.
    axes : str
        E.g. ``"YX"``, ``"ZYX"``, ``"CYX"``, ``"TZYX"`` (non-spatial axes are looped over).
    method : str, optional
        A registered classical ``denoise``/``deconvolve`` method (exclusive with
        ``model``).
    params : dict, optional
        Config fields of ``method`` (validated by its pydantic config).
    psf : array_like, optional
        PSF with the image's spatial dimensionality and pixel size, centred. Required by
        deconvolution methods; for consistency maps it selects the convolution forward
        model (without it the identity, i.e. denoising, is assumed).
    model : path, optional
        A model folder or an ensemble folder written by ``fluorecon train``.
    uncertainty : {"probabilistic", "ensemble", "both"}, optional
        Per-pixel predictive std (models only; see
        :func:`~fluorecon.trust.ensembles.predict_uncertainty`).
    consistency : bool
        Re-image the prediction through the forward model and test it against the input
        (:func:`~fluorecon.trust.qc.consistency_maps`).
    token : CancelToken, optional
        Checked between blocks, tiles and iterations; a set token raises
        :class:`Cancelled`.
    progress : callable, optional
        ``progress(done, total)``.

    Returns
    -------
    RestoreResult

    Raises
    ------
    FluoreconError
        Bad input or configuration (one-line message).
    Cancelled
        The token was set.
    """
    if (method is None) == (model is None):
        raise ConfigError(message("both or neither of a method and a model folder",
                                  "exactly one of them", "Choose a method or a model."))
    axes = check_axes(axes, ndim=len(np.shape(image)))
    if psf is not None:
        psf = _check_psf(psf, image, axes)
    if token is not None:
        token.check()
    if method is not None:
        res = _restore_classical(image, axes, method, params or {}, psf, uncertainty,
                                 consistency, token, progress)
    else:
        res = _restore_model(image, axes, Path(model), psf, uncertainty,  # type: ignore[arg-type]
                             consistency, token, progress)
    if token is not None:
        token.check()  # cancelled after the last check: still nothing is returned
    return res


def _restore_classical(image: Any, axes: str, name: str, params: dict[str, Any],
                       psf: np.ndarray | None, uncertainty: str | None, consistency: bool,
                       token: CancelToken | None, progress: Progress | None) -> RestoreResult:
    from fluorecon.methods.registry import get_method

    if uncertainty is not None:
        raise ConfigError(message(f"uncertainty {uncertainty!r} with the classical method "
                                  f"{name!r}", "a trained probabilistic model or an "
                                  "ensemble folder", "Set uncertainty to none, or choose "
                                  "a model."))
    kinds = classical_methods()
    if name not in kinds:
        raise ConfigError(message(f"method {name!r}", f"one of {', '.join(kinds)}",
                                  "Choose a listed method."))
    cls = get_method(name)
    if cls.kind == "deconvolve":
        if psf is None:
            raise ConfigError(message(f"the deconvolution method {name!r} without a PSF",
                                      "a PSF layer (same pixel size, centred)",
                                      "Pick a PSF layer (the sample data include one)."))
        meth = cls(psf=psf, **params)
    else:
        meth = cls(**params)
    n_stages = 2 if consistency else 1
    cb = _checked(progress, token)

    def stage0(done: int, total: int) -> None:
        cb(done, total * n_stages)

    pred = meth.predict(image, axes, progress=stage0)
    info: dict[str, Any] = {"method": name, "config": meth.config.model_dump(mode="json")}
    calib = getattr(meth, "calibration_", None)
    if calib is not None:
        info["calibration"] = calib.summary() if hasattr(calib, "summary") else str(calib)
    res = _with_consistency(image, axes, pred, psf if cls.kind == "deconvolve" else None,
                            consistency, info, token)
    cb(n_stages, n_stages)
    return RestoreResult(prediction=pred, source=name, info=info, **res)


def _with_consistency(image: Any, axes: str, pred: np.ndarray, psf: np.ndarray | None,
                      consistency: bool, info: dict[str, Any], token: CancelToken | None
                      ) -> dict[str, Any]:
    if not consistency:
        return {}
    from fluorecon.trust.qc import consistency_maps

    if token is not None:
        token.check()
    if np.shape(pred) != np.shape(image):
        raise ConfigError(message(f"consistency maps for a prediction of shape "
                                  f"{np.shape(pred)} and an input of shape "
                                  f"{np.shape(image)}", "a prediction on the input's grid",
                                  "Run fluorecon qc --task upsample on the saved result."))
    residual, flagged, summaries = consistency_maps(np.asarray(image), pred, axes,
                                                    _forward_model(psf))
    info["consistency"] = {"forward": "identity" if psf is None else "convolution",
                           "reduced_chi2": [round(s["reduced_chi2"], 4) for s in summaries],
                           "regions": [s["regions"] for s in summaries]}
    return {"residual": residual, "flagged": flagged}


def _load_predictor(model: Path) -> Any:
    if not model.is_dir():
        raise InputFileError(message(f"model folder '{model}' which does not exist",
                                     "a model or ensemble folder written by fluorecon train",
                                     "Check the path."))
    try:
        from fluorecon.trust.ensembles import load_predictor

        return load_predictor(model)
    except ImportError as exc:
        raise ConfigError(message(f"a learned model, which needs {exc.name or 'torch'} "
                                  "(not installed)", "the learned-methods extra",
                                  "Install it with: pip install 'fluorecon[torch]'.")) from None


def _restore_model(image: Any, axes: str, model: Path, psf: np.ndarray | None,
                   uncertainty: str | None, consistency: bool, token: CancelToken | None,
                   progress: Progress | None) -> RestoreResult:
    from fluorecon.predict import predict_method_tiled
    from fluorecon.trust.ensembles import Ensemble, predict_uncertainty

    pred = _load_predictor(model)
    members = pred.members if isinstance(pred, Ensemble) else [pred]
    first = members[0]
    mc = first.model_config
    sp = spatial_axes(axes)
    if len(sp) != mc.unet.ndim:
        raise AxesError(message(f"a {len(sp)}D image (axes {axes!r}) for a {mc.unet.ndim}D "
                                f"model", f"{mc.unet.ndim}D images (model axes "
                                f"{mc.axes!r})", "Set the axes, or use a model trained on "
                                "data like this."))
    if uncertainty is not None and uncertainty not in ("probabilistic", "ensemble", "both"):
        raise ConfigError(message(f"uncertainty {uncertainty!r}", "none, probabilistic, "
                                  "ensemble or both", "Pick a mode."))
    resamples = bool(getattr(first, "resamples", False))
    if resamples and (uncertainty is not None or consistency or len(members) > 1):
        raise ConfigError(message(f"uncertainty or consistency maps with a {mc.method!r} "
                                  "model (its output grid is finer than the input)",
                                  "a model predicting on the input grid",
                                  "Switch both off; run fluorecon qc --task upsample on "
                                  "the saved result instead."))
    n_stages = 2 if consistency else 1
    cb = _checked(progress, token)

    def stage0(done: int, total: int) -> None:
        cb(done, total * n_stages)

    info: dict[str, Any] = {"model": str(model), "method": mc.method, "members": len(members),
                            "uncertainty": uncertainty}
    std = None
    refined: dict[str, float] = {}
    if uncertainty is not None:
        wrapped = (Ensemble([_Cancellable(m, token) for m in members], pred.config)
                   if isinstance(pred, Ensemble) else _Cancellable(pred, token))
        res = predict_uncertainty(wrapped, image, axes, mode=uncertainty,  # type: ignore[arg-type]
                                  progress=stage0)
        mean, std = res.mean, res.std.astype(np.float32)
        info["recalibration_factor"] = res.factor
    elif resamples:
        mean = first.predict(image, axes, progress=stage0)
        refined = ({"Z": float(first.config.factor)} if mc.method == "iso" else
                   {a: float(first.config.factor) for a in first.config.upsample_axes})
    else:
        acc = None
        for j, m in enumerate(members):
            def prog(done: int, total: int, j: int = j) -> None:
                stage0(j * total + done, len(members) * total)

            wrapped: Any = _Cancellable(m, token)
            out = np.asarray(predict_method_tiled(wrapped, image, axes, progress=prog),
                             np.float32)
            acc = out if acc is None else acc + out
        mean = (acc / len(members)).astype(np.float32)  # type: ignore[operator]
    maps = _with_consistency(image, axes, mean, psf, consistency, info, token)
    cb(n_stages, n_stages)
    label = f"{mc.method} x{len(members)}" if len(members) > 1 else mc.method
    return RestoreResult(prediction=mean, std=std, refined=refined, source=label, info=info,
                         **maps)


def model_capabilities(model: str | os.PathLike[str]) -> dict[str, Any]:
    """What a model folder offers, read from its JSON files only (no torch, no weights).

    Returns
    -------
    dict
        ``method``, ``members`` (1 for a single model), ``probabilistic`` and
        ``uncertainty``: the modes :func:`restore` accepts for it.
    """
    from fluorecon.trust.ensembles import is_ensemble_folder, read_ensemble_config

    folder = Path(model)
    try:
        if is_ensemble_folder(folder):
            cfg = read_ensemble_config(folder)
            names = cfg.members
            configs = [_read_config(folder / n) for n in names]
            method = cfg.method
        else:
            configs = [_read_config(folder)]
            method = configs[0]["method"]
    except (OSError, ValueError, KeyError) as exc:
        raise InputFileError(message(f"an unreadable model folder '{folder}' ({exc})",
                                     "a model or ensemble folder written by fluorecon train",
                                     "Check the path.")) from None
    prob = all(bool(c.get("unet", {}).get("probabilistic", False)) for c in configs)
    modes = (["probabilistic"] if prob else []) + (["ensemble"] if len(configs) > 1 else [])
    if prob and len(configs) > 1:
        modes.append("both")
    return {"method": method, "members": len(configs), "probabilistic": prob,
            "uncertainty": modes}


def _read_config(folder: Path) -> dict[str, Any]:
    import json

    return json.loads((folder / "config.json").read_text())


# --- training ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainOutcome:
    """A finished training run.

    Attributes
    ----------
    model_dir : Path
        The written model folder (``config.json``, ``weights.safetensors``,
        ``history.csv``, ``training_state/``).
    method : LearnedMethod
        The trained method, ready to predict.
    steps_done : int
    best_val_loss : float
        NaN without validation.
    prediction : ndarray or None
        The model applied to the training input, when asked for.
    """

    model_dir: Path
    method: Any
    steps_done: int
    best_val_loss: float
    prediction: np.ndarray | None = None


def train_model(method_name: str, inputs: Any, axes: str, *, out: str | os.PathLike[str],
                targets: Any = None, fields: dict[str, Any] | None = None,
                resume: bool = False, overwrite: bool = False, apply: bool = False,
                layer_names: Sequence[str] = (), device: str | None = None,
                token: CancelToken | None = None, progress: TrainProgress | None = None
                ) -> TrainOutcome:
    """Train a learned restoration method on in-memory images and write its model folder.

    Parameters
    ----------
    method_name : str
        One of :data:`TRAINABLE`: ``n2v``, ``n2v2``, ``n2s`` (self-supervised, inputs
        only), ``care``, ``n2n`` (paired, need ``targets``).
    inputs, targets : array_like
        Training images with axes ``axes`` (``S``/``T`` hold separate images). Targets
        must have the inputs' spatial shape.
    axes : str
    out : path
        Model folder to write. While training, checkpoints go to ``<out>.checkpoint/``.
    fields : dict, optional
        Config fields of the method (``steps``, ``patch_size``, ``batch_size``,
        ``depth``, ``base_filters``, ``probabilistic``, ``seed``, ...).
    resume : bool
        Continue the cancelled run whose checkpoint is in ``<out>.checkpoint/``, or extend
        a finished model (more ``steps``) from its ``training_state/``.
    overwrite : bool
        Replace an existing model folder or stale checkpoint.
    apply : bool
        Also apply the trained model to ``inputs`` (``TrainOutcome.prediction``).
    layer_names : sequence of str
        Names of the napari layers trained on, recorded in the model's provenance.
    device : str, optional
        ``"cpu"``, ``"cuda"``, ...; default CUDA when available.
    token : CancelToken, optional
        Checked after every step; when set, the engine writes its checkpoint and
        :class:`TrainingCancelled` is raised (with the checkpoint folder).
    progress : callable, optional
        ``progress(step, total, logs)`` after every step (``logs``: ``loss``, ``lr`` and
        ``val_loss`` after validations).

    Returns
    -------
    TrainOutcome

    Notes
    -----
    The model folder is written atomically at the end, and the final checkpoint moves
    into it as ``training_state/`` (exactly like ``fluorecon train``), so
    ``fluorecon train <method> --resume --steps N --out <folder>`` extends it too.
    """
    from fluorecon.methods.registry import get_method
    from fluorecon.trust.ensembles import attach_input_stats

    if method_name not in TRAINABLE:
        raise ConfigError(message(f"method {method_name!r} to train",
                                  f"one of {', '.join(TRAINABLE)}", "Choose one of those."))
    paired = TRAINABLE[method_name]
    if paired and targets is None:
        raise ConfigError(message(f"{method_name} without a target layer",
                                  "registered (input, target) layers",
                                  "Pick a target layer (for Noise2Noise: a second noisy "
                                  "acquisition)."))
    axes = check_axes(axes, ndim=len(np.shape(inputs)))
    x = as_float32(np.asarray(inputs))
    y = None
    if paired:
        y = as_float32(np.asarray(targets))
        if _spatial_shape(y, axes) != _spatial_shape(x, axes) or y.shape != x.shape:
            raise DataError(message(f"an input of shape {x.shape} and a target of shape "
                                    f"{y.shape}", "registered layers of equal shape",
                                    "Pick the target that belongs to the input."))
    cls = get_method(method_name)  # one-line ConfigError when torch is missing
    method = cls(**{k: v for k, v in (fields or {}).items() if v is not None})
    out = Path(out)
    ckpt, extending = prepare_training_output(out, resume=resume, overwrite=overwrite,
                                              advice=_ADVICE)

    def step(done: int, total: int, logs: dict[str, float]) -> None:
        if token is not None and token.cancelled:
            raise KeyboardInterrupt  # the engine saves its checkpoint, then re-raises
        if progress is not None:
            progress(done, total, logs)

    try:
        if paired:
            method.fit(x, y, axes, checkpoint_dir=ckpt, resume=resume or extending,
                       progress=step, device=device)
        else:
            method.fit(x, axes, checkpoint_dir=ckpt, resume=resume or extending,
                       progress=step, device=device)
    except KeyboardInterrupt:
        raise TrainingCancelled(ckpt if (ckpt / "checkpoint.json").is_file() else None
                                ) from None
    except FluoreconError:
        if extending:
            from fluorecon.io.atomic import remove_path

            remove_path(ckpt)
        raise
    attach_input_stats(method, x, axes)
    mc = method.model_config
    method.model_config = mc.model_copy(update={
        "training_data": {**mc.training_data, "napari_layers": list(layer_names)},
        "provenance": {**mc.provenance, "command": f"napari: fluorecon train {method_name}",
                       "fluorecon": __version__}})
    path = method.save(out, overwrite=overwrite or extending)
    os.replace(ckpt, path / TRAINING_STATE)
    res = method.train_result
    steps_done = 0 if res is None else int(res.steps_done)
    best = math.nan if res is None else float(res.best_val_loss)
    pred = None
    if apply:  # the model is saved: a cancel now only skips applying it
        try:
            pred = _apply_trained(method, x, axes, token)
        except Cancelled:
            pred = None
    return TrainOutcome(model_dir=path, method=method, steps_done=steps_done,
                        best_val_loss=best, prediction=pred)


def _apply_trained(method: Any, image: np.ndarray, axes: str,
                   token: CancelToken | None) -> np.ndarray:
    from fluorecon.predict import predict_method_tiled

    wrapped: Any = _Cancellable(method, token)
    return np.asarray(predict_method_tiled(wrapped, image, axes), np.float32)
