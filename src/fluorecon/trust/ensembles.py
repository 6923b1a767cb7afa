"""Deep ensembles and predictive distributions of learned models.

:func:`train_ensemble` trains ``K`` copies of a learned method (any name in the method
registry with a ``fit``) with different seeds (weights, patches, augmentations) and,
optionally, different data splits (bootstrap resampling or leaving images out). The
members' spread is the *epistemic* uncertainty [1]_; probabilistic members (CARE with
``probabilistic=True``) add a per-pixel Laplace scale, the *aleatoric* uncertainty.
:func:`predict_uncertainty` turns a model or an ensemble into a
:class:`~fluorecon.trust.calibration.Predictive` distribution:

==============  ==========================================  ============================
mode            distribution                                needs
==============  ==========================================  ============================
probabilistic   Laplace(mean of locations, mean of scales)  probabilistic model(s)
ensemble        Gaussian(mean, std over members)            an ensemble (K >= 2)
both            equally weighted mixture of members'         an ensemble of probabilistic
                Laplace distributions                       models
==============  ==========================================  ============================

and applies the recalibration factor stored for that mode, if any
(:func:`calibrate_uncertainty`).

An ensemble is a folder::

    my_ensemble/
        ensemble.json    format, method, K, seeds, data split, calibration, input statistics
        member_00/       a model folder (config.json + weights.safetensors + history)
        member_01/
        ...

This module imports no torch: members are created through the registry and loaded through
:func:`fluorecon.methods.learned.load_model_method`, both imported only when used.

References
----------
.. [1] B. Lakshminarayanan, A. Pritzel, C. Blundell, "Simple and scalable predictive
   uncertainty estimation using deep ensembles", NeurIPS 2017.
.. [2] A. Kendall, Y. Gal, "What uncertainties do we need in Bayesian deep learning for
   computer vision?", NeurIPS 2017 (aleatoric + epistemic).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationError

from fluorecon.core.axes import check_axes, spatial_axes
from fluorecon.core.config import BaseConfig, format_validation_error
from fluorecon.core.errors import ConfigError, DataError, InputFileError, OutputExistsError, message
from fluorecon.core.rng import make_rng
from fluorecon.io import write_bytes_atomic
from fluorecon.io.atomic import remove_path, replace_path, temporary_sibling
from fluorecon.predict import predict_tiled
from fluorecon.trust.calibration import CalibrationRecord, Predictive, calibrate
from fluorecon.trust.ood import InputStats, compute_input_stats

__all__ = [
    "ENSEMBLE_FILE", "Ensemble", "EnsembleConfig", "UncertainPrediction", "UNCERTAINTY_MODES",
    "attach_input_stats", "calibrate_uncertainty", "input_stats_of", "is_ensemble_folder",
    "check_mode", "load_predictor", "member_outputs",
    "predict_uncertainty", "save_model_config", "train_ensemble",
]

ENSEMBLE_FILE = "ensemble.json"
ENSEMBLE_FORMAT = "fluorecon-ensemble"
UNCERTAINTY_MODES: tuple[str, ...] = ("probabilistic", "ensemble", "both")
Mode = Literal["probabilistic", "ensemble", "both"]
DataSplit = Literal["none", "bootstrap", "leave-out"]
ProgressFn = Callable[[int, int], None]


class EnsembleConfig(BaseConfig):
    """Contents of ``ensemble.json``."""

    format: Literal["fluorecon-ensemble"] = Field(default=ENSEMBLE_FORMAT,
                                                  description="Marks an ensemble folder.")
    version: int = Field(default=1, ge=1, le=1, description="Schema version.")
    method: str = Field(description="Registered method of every member.")
    members: list[str] = Field(min_length=1, description="Member folder names.")
    seeds: list[int] = Field(description="Training seed of each member.")
    data_split: str = Field(description="none, bootstrap or leave-out.")
    member_images: list[list[int]] = Field(description="Training-image indices per member.")
    calibration: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="CalibrationRecord per uncertainty mode.")
    input_stats: dict[str, Any] | None = Field(default=None, description="InputStats of the "
                                                                        "training inputs.")


@dataclass
class Ensemble:
    """``K`` trained learned methods of one kind, and their ``ensemble.json``.

    Attributes
    ----------
    members : list of LearnedMethod
    config : EnsembleConfig
    """

    members: list[Any]
    config: EnsembleConfig

    @property
    def k(self) -> int:
        """Number of members."""
        return len(self.members)

    @property
    def probabilistic(self) -> bool:
        """Whether every member predicts a Laplace scale."""
        return all(m.model_config.unet.probabilistic for m in self.members)

    def save(self, folder: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the ensemble folder atomically (members first, then ``ensemble.json``)."""
        dst = Path(folder)
        if dst.exists() and not overwrite:
            raise OutputExistsError(message(f"an existing path {dst}", "a new ensemble folder",
                                            "Pass overwrite=True or choose another name."))
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_sibling(dst)
        try:
            tmp.mkdir()
            for name, member in zip(self.config.members, self.members):
                member.save(tmp / name)
            (tmp / ENSEMBLE_FILE).write_text(self.config.to_json())
            replace_path(tmp, dst)
        except BaseException:
            remove_path(tmp)
            raise
        return dst

    @classmethod
    def load(cls, folder: str | os.PathLike[str], *, device: str | None = None) -> "Ensemble":
        """Load an ensemble folder (every member checked like a model folder)."""
        from fluorecon.methods.learned import load_model_method

        cfg = read_ensemble_config(folder)
        members = [load_model_method(Path(folder) / name, device=device)
                   for name in cfg.members]
        bad = [m.name for m in members if m.name != cfg.method]
        if bad:
            raise InputFileError(message(f"members of method {bad[0]!r} in an ensemble of "
                                         f"{cfg.method!r}", "members of one method",
                                         "Restore the ensemble folder."))
        return cls(members, cfg)


def read_ensemble_config(folder: str | os.PathLike[str]) -> EnsembleConfig:
    """Read and validate ``ensemble.json`` (one-line errors)."""
    path = Path(folder) / ENSEMBLE_FILE
    if not path.is_file():
        raise InputFileError(message(f"folder {Path(folder)} without {ENSEMBLE_FILE}",
                                     "an ensemble folder", "Train one with fluorecon train "
                                     "ensemble."))
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(message(f"an unreadable {path} ({' '.join(str(exc).split())})",
                                     "valid JSON", "Restore ensemble.json.")) from None
    try:
        return EnsembleConfig.model_validate(data)
    except ValidationError as exc:
        raise InputFileError(message(f"{path} that does not validate "
                                     f"({format_validation_error('ensemble config', exc)})",
                                     "a valid ensemble config", "Restore ensemble.json."
                                     )) from None


def is_ensemble_folder(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds an ``ensemble.json``."""
    return (Path(folder) / ENSEMBLE_FILE).is_file()


def load_predictor(folder: str | os.PathLike[str], *, device: str | None = None) -> Any:
    """Load a model folder (as its learned method) or an ensemble folder (as
    :class:`Ensemble`)."""
    if is_ensemble_folder(folder):
        return Ensemble.load(folder, device=device)
    from fluorecon.methods.learned import load_model_method

    return load_model_method(folder, device=device)


def _split_for_members(n_images: int, k: int, split: str, seed: int) -> list[list[int]]:
    if split == "none" or n_images == 1:
        return [list(range(n_images)) for _ in range(k)]
    rng = make_rng(seed)
    if split == "bootstrap":
        out = []
        for _ in range(k):
            idx = sorted(int(i) for i in rng.integers(0, n_images, n_images))
            out.append(idx)
        return out
    if split == "leave-out":
        order = rng.permutation(n_images)
        return [sorted(int(i) for i in np.delete(order, j % n_images)) for j in range(k)]
    raise ConfigError(message(f"data_split {split!r}", "none, bootstrap or leave-out",
                              "Pick a data split."))


def _as_list(images: Any, axes: str) -> tuple[list[np.ndarray], str]:
    """Split ``S``/``T`` axes into separate images (other axes kept)."""
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    if not items:
        raise DataError(message("no training images", "at least one image",
                                "Pass the training data."))
    ax = check_axes(axes)
    out: list[np.ndarray] = []
    rest = "".join(a for a in ax if a not in "ST")
    for img in items:
        arr = np.asarray(img)
        check_axes(ax, ndim=arr.ndim)
        lead = [i for i, a in enumerate(ax) if a in "ST"]
        if lead:
            flat = np.moveaxis(arr, lead, list(range(len(lead))))
            out.extend(flat.reshape((-1,) + flat.shape[len(lead):]))
        else:
            out.append(arr)
    return out, rest


def attach_input_stats(method: Any, images: Any, axes: str) -> Any:
    """Record :class:`~fluorecon.trust.ood.InputStats` of ``images`` in a trained method's
    ``model_config.input_stats`` (returns the method)."""
    stats = compute_input_stats(images, axes)
    method.model_config = method.model_config.model_copy(
        update={"input_stats": stats.model_dump(mode="json")})
    return method


def train_ensemble(method: str, inputs: Any, targets: Any = None, *, axes: str, k: int = 5,
                   data_split: DataSplit = "none", seed: int = 0,
                   config: dict[str, Any] | None = None,
                   progress: ProgressFn | None = None, device: str | None = None,
                   checkpoint_root: str | os.PathLike[str] | None = None,
                   resume: bool = False) -> Ensemble:
    """Train ``k`` members of a learned method with different seeds (and data splits).

    Parameters
    ----------
    method : str
        Registered learned method (``"care"``, ``"n2n"``, ``"n2v"``, ``"n2s"``, ...).
    inputs : array_like or list of array_like
        Training inputs; ``S``/``T`` axes hold separate images.
    targets : array_like or list, optional
        Targets for supervised methods (same layout as ``inputs``); None for
        self-supervised ones.
    axes : str
        Axes of every input (and target).
    k : int
        Members (``>= 2`` for an epistemic uncertainty).
    data_split : {"none", "bootstrap", "leave-out"}
        ``none``: every member sees all images (seeds differ only); ``bootstrap``: each
        member sees ``n`` images drawn with replacement; ``leave-out``: member ``j`` leaves
        out one image. With a single image all members see it.
    seed : int
        Member ``j`` trains with seed ``seed + j``; the splits are drawn from ``seed``.
    config : dict, optional
        Method config fields (``steps``, ``patch_size``, ``probabilistic``, ...); ``seed``
        is set per member.
    progress : callable, optional
        ``progress(done, total)`` over all members' steps.
    device : str, optional
    checkpoint_root : path, optional
        Member ``j`` checkpoints into ``checkpoint_root / member_<j>``.
    resume : bool
        Continue members from their checkpoints.

    Returns
    -------
    Ensemble
        Members hold :class:`~fluorecon.trust.ood.InputStats` of the training inputs in
        their model configs; the same statistics go into ``ensemble.json``.
    """
    from fluorecon.methods import get_method

    if k < 1:
        raise ConfigError(message(f"k={k}", "at least 1 member (2 or more for an epistemic "
                                  "uncertainty)", "Pass e.g. k=5."))
    cfg = dict(config or {})
    if "seed" in cfg:
        raise ConfigError(message("a seed in the member config", "member seeds from seed=",
                                  "Pass seed=... to train_ensemble instead."))
    cls = get_method(method)
    if not hasattr(cls, "load") or not hasattr(cls, "save"):
        raise ConfigError(message(f"method {method!r}", "a learned method with model folders",
                                  "Pick care, n2n, n2v, n2v2 or n2s."))
    xs, rest = _as_list(inputs, axes)
    ys = None if targets is None else _as_list(targets, axes)[0]
    if ys is not None and len(ys) != len(xs):
        raise DataError(message(f"{len(xs)} inputs and {len(ys)} targets", "one target per "
                                "input", "Pass registered pairs."))
    splits = _split_for_members(len(xs), k, data_split, seed)
    steps_each = int(cls.Config.build(**cfg).steps) if "steps" not in cfg else int(cfg["steps"])
    total = steps_each * k
    members = []
    for j, idx in enumerate(splits):
        member = cls(**{**cfg, "seed": seed + j})

        def prog(step: int, _total: int, _logs: dict[str, float] | None = None,
                 j: int = j) -> None:
            if progress is not None:
                progress(j * steps_each + min(step, steps_each), total)

        kw: dict[str, Any] = {"progress": prog, "device": device, "resume": resume}
        if checkpoint_root is not None:
            kw["checkpoint_dir"] = Path(checkpoint_root) / f"member_{j:02d}"
        xj = [xs[i] for i in idx]
        if ys is not None:
            member.fit(xj, [ys[i] for i in idx], rest, **kw)
        else:
            member.fit(xj, rest, **kw)
        members.append(member)
    stats = compute_input_stats(xs, rest)
    for member in members:
        member.model_config = member.model_config.model_copy(
            update={"input_stats": stats.model_dump(mode="json")})
    ecfg = EnsembleConfig(method=method, members=[f"member_{j:02d}" for j in range(k)],
                          seeds=[seed + j for j in range(k)], data_split=data_split,
                          member_images=splits, input_stats=stats.model_dump(mode="json"))
    return Ensemble(members, ecfg)


# -- prediction --------------------------------------------------------------------------
@dataclass(frozen=True)
class UncertainPrediction:
    """A prediction with its per-pixel predictive distribution.

    Attributes
    ----------
    mean : ndarray
        Predictive mean (float32, image shape and axes).
    std : ndarray
        Predictive standard deviation (after recalibration when ``factor != 1``).
    predictive : Predictive
        The distribution (recalibrated).
    mode : str
        probabilistic, ensemble or both.
    factor : float
        Recalibration factor applied (1.0: none stored).
    members : ndarray or None
        ``(K, *shape)`` member means (ensembles).
    """

    mean: np.ndarray
    std: np.ndarray
    predictive: Predictive
    mode: str
    factor: float
    members: np.ndarray | None = field(default=None, repr=False)


def _single_channel(method: Any) -> None:
    mc = method.model_config
    if "C" in mc.axes:
        raise ConfigError(message(f"a multi-channel model (axes {mc.axes!r})",
                                  "a single-channel model for uncertainty and trust maps",
                                  "Predict channels with single-channel models."))


def member_outputs(method: Any, image: Any, axes: str, *, scale: bool,
                    progress: ProgressFn | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Tiled location (and Laplace scale) of one learned model over any axes."""
    _single_channel(method)
    sp = spatial_axes(check_axes(axes, ndim=np.ndim(image)))
    halo = method.receptive_field
    tile = None
    if halo is None:
        halo = 0
        tile = tuple(int(np.shape(image)[axes.index(a)]) for a in sp)

    def loc_fn(batch: np.ndarray) -> np.ndarray:
        return np.stack([method.predict_block(b, sp) for b in batch])

    def scale_fn(batch: np.ndarray) -> np.ndarray:
        return np.stack([method.predict_laplace_block(b, sp)[1] for b in batch])

    kw = {"tile_shape": tile, "halo": halo, "divisible_by": method.divisible_by}
    loc = np.asarray(predict_tiled(loc_fn, image, axes, progress=progress, **kw), np.float32)
    sc = np.asarray(predict_tiled(scale_fn, image, axes, **kw), np.float32) if scale else None
    return loc, sc


def _calibration_of(predictor: Any, mode: str) -> dict[str, Any] | None:
    if isinstance(predictor, Ensemble):
        return predictor.config.calibration.get(mode)
    cal = predictor.model_config.calibration or {}
    return cal.get(mode)


def check_mode(predictor: Any, mode: str) -> None:
    """Raise a one-line :class:`ConfigError` when ``predictor`` cannot give ``mode``."""
    if mode not in UNCERTAINTY_MODES:
        raise ConfigError(message(f"uncertainty mode {mode!r}",
                                  f"one of {', '.join(UNCERTAINTY_MODES)}", "Pick a mode."))
    members = predictor.members if isinstance(predictor, Ensemble) else [predictor]
    prob = all(m.model_config.unet.probabilistic for m in members)
    if mode in ("probabilistic", "both") and not prob:
        raise ConfigError(message(f"uncertainty {mode!r} with a model trained with "
                                  "probabilistic=False", "probabilistic models (a Laplace "
                                  "scale per pixel)", "Train with --probabilistic, or use "
                                  "--uncertainty ensemble with an ensemble."))
    if mode in ("ensemble", "both") and len(members) < 2:
        raise ConfigError(message(f"uncertainty {mode!r} with a single model",
                                  "an ensemble of at least 2 members",
                                  "Train one with fluorecon train ensemble (or "
                                  "train_ensemble()), or use --uncertainty probabilistic."))


def predict_uncertainty(predictor: Any, image: Any, axes: str, *, mode: Mode = "probabilistic",
                        recalibrate: bool = True, progress: ProgressFn | None = None
                        ) -> UncertainPrediction:
    """Predict with a per-pixel uncertainty.

    Parameters
    ----------
    predictor : LearnedMethod or Ensemble
        A trained single-channel model (``mode="probabilistic"`` only) or an ensemble.
    image : array_like
        Input in the training inputs' units; any axes (``S``/``T``/``C`` looped over).
    axes : str
    mode : {"probabilistic", "ensemble", "both"}
        See the module table.
    recalibrate : bool
        Apply the factor stored for ``mode`` (see :func:`calibrate_uncertainty`).
    progress : callable, optional
        ``progress(done, total)`` over members.

    Returns
    -------
    UncertainPrediction
    """
    check_mode(predictor, mode)
    members = predictor.members if isinstance(predictor, Ensemble) else [predictor]
    locs, scales = [], []
    for j, m in enumerate(members):
        loc, sc = member_outputs(m, image, axes, scale=mode != "ensemble")
        locs.append(loc)
        if sc is not None:
            scales.append(sc)
        if progress is not None:
            progress(j + 1, len(members))
    L = np.stack(locs)
    if mode == "probabilistic":
        dist = Predictive("laplace", L.mean(axis=0), np.stack(scales).mean(axis=0))
    elif mode == "ensemble":
        dist = Predictive("gaussian", L.mean(axis=0), L.std(axis=0, ddof=1))
    else:
        dist = Predictive("laplace-mixture", L, np.stack(scales))
    factor = 1.0
    rec = _calibration_of(predictor, mode) if recalibrate else None
    if rec is not None:
        factor = float(CalibrationRecord.build(**rec).factor)
        dist = dist.scaled(factor)
    return UncertainPrediction(mean=dist.mean.astype(np.float32), std=dist.std, predictive=dist,
                               mode=mode, factor=factor,
                               members=L if len(members) > 1 else None)


def calibrate_uncertainty(predictor: Any, inputs: Sequence[Any] | Any, targets: Sequence[Any] | Any,
                          axes: str, *, mode: Mode = "probabilistic",
                          fit_levels: Sequence[float] = (0.9,),
                          data: dict[str, Any] | None = None) -> CalibrationRecord:
    """Fit and store the recalibration factor of ``mode`` on held-out pairs.

    Parameters
    ----------
    predictor : LearnedMethod or Ensemble
    inputs, targets : array_like or list of array_like
        Validation pairs *not used for training* (targets in the training targets'
        units).
    axes : str
        Axes of every input.
    mode : {"probabilistic", "ensemble", "both"}
    fit_levels : sequence of float
        Levels the factor is fitted at (see
        :func:`~fluorecon.trust.calibration.fit_recalibration`).
    data : dict, optional
        Description of the calibration data (stored in the record).

    Returns
    -------
    CalibrationRecord
        Also stored in ``predictor`` (``model_config.calibration[mode]`` or
        ``config.calibration[mode]``): save the model / ensemble, or write the config with
        :func:`save_model_config`.
    """
    xs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    ys = list(targets) if isinstance(targets, (list, tuple)) else [targets]
    if len(xs) != len(ys) or not xs:
        raise DataError(message(f"{len(xs)} inputs and {len(ys)} targets",
                                "one target per input", "Pass held-out pairs."))
    preds = [predict_uncertainty(predictor, x, axes, mode=mode, recalibrate=False)
             for x in xs]
    for p, y in zip(preds, ys):
        if np.shape(y) != p.mean.shape:
            raise DataError(message(f"a target of shape {np.shape(y)} for a prediction of "
                                    f"shape {p.mean.shape}", "registered pairs",
                                    "Pass targets of the inputs' shape."))
    dist0 = preds[0].predictive
    if dist0.is_mixture:
        loc = np.concatenate([p.predictive.loc.reshape(p.predictive.loc.shape[0], -1)
                              for p in preds], axis=1)
        sc = np.concatenate([p.predictive.scale.reshape(p.predictive.scale.shape[0], -1)
                             for p in preds], axis=1)
    else:
        loc = np.concatenate([p.predictive.loc.ravel() for p in preds])
        sc = np.concatenate([p.predictive.scale.ravel() for p in preds])
    truth = np.concatenate([np.asarray(y, np.float32).ravel() for y in ys])
    dist = Predictive(dist0.family, loc, sc)
    info = {"images": len(xs), **(data or {})}
    rec = calibrate(dist, truth, uncertainty=mode, fit_levels=fit_levels, data=info)
    dump = rec.model_dump(mode="json")
    if isinstance(predictor, Ensemble):
        predictor.config = predictor.config.model_copy(
            update={"calibration": {**predictor.config.calibration, mode: dump}})
    else:
        mc = predictor.model_config
        predictor.model_config = mc.model_copy(
            update={"calibration": {**(mc.calibration or {}), mode: dump}})
    return rec


def save_model_config(predictor: Any, folder: str | os.PathLike[str]) -> Path:
    """Rewrite only the config of a saved model (``config.json``) or ensemble
    (``ensemble.json``), e.g. after :func:`calibrate_uncertainty`. Weights are untouched."""
    path = Path(folder)
    if isinstance(predictor, Ensemble):
        read_ensemble_config(path)
        return write_bytes_atomic(path / ENSEMBLE_FILE, predictor.config.to_json().encode(),
                                  overwrite=True)
    from fluorecon.methods.learned.model_io import CONFIG_FILE, read_model_config

    old = read_model_config(path)
    if old.method != predictor.model_config.method or old.unet != predictor.model_config.unet:
        raise InputFileError(message(f"model folder {path} of another model",
                                     "the folder this model was loaded from",
                                     "Save the model with method.save() instead."))
    return write_bytes_atomic(path / CONFIG_FILE, predictor.model_config.to_json().encode(),
                              overwrite=True)


def input_stats_of(predictor: Any) -> InputStats | None:
    """The training-input statistics of a model or ensemble (None when not recorded)."""
    raw = (predictor.config.input_stats if isinstance(predictor, Ensemble)
           else predictor.model_config.input_stats)
    return None if raw is None else InputStats.build(**raw)
