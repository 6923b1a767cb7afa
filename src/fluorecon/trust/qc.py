"""Quality control of one prediction: uncertainty, data consistency, out-of-distribution
warnings, optional perturbation sensitivity, and the model card.

:func:`run_qc` gathers everything the QC report (:mod:`fluorecon.report.qc`) shows for a
trained model (or ensemble) and one input image; :func:`model_card` summarises a model's
provenance, noise model, intended use and known limits from what its folder records.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fluorecon.core.axes import check_axes, spatial_axes
from fluorecon.core.dtypes import as_float32
from fluorecon.core.errors import AxesError, ConfigError, message
from fluorecon.methods.classical.denoising.noise import NoiseModel
from fluorecon.trust.calibration import CalibrationRecord
from fluorecon.trust.consistency import (
    ConsistencyResult,
    ForwardModel,
    IdentityForward,
    check_consistency,
)
from fluorecon.trust.ensembles import (
    UNCERTAINTY_MODES,
    Ensemble,
    UncertainPrediction,
    input_stats_of,
    predict_uncertainty,
)
from fluorecon.trust.ood import InputStats, OODReport, check_ood

__all__ = ["QCResult", "consistency_maps", "default_uncertainty", "model_card", "run_qc"]


@dataclass(frozen=True)
class QCResult:
    """Everything measured by :func:`run_qc` (arrays: the spatial image, float32).

    Attributes
    ----------
    input : ndarray
    prediction : ndarray
    axes : str
        Spatial axes (``YX`` or ``ZYX``).
    uncertainty : UncertainPrediction or None
    consistency : ConsistencyResult or None
    ood : OODReport or None
    input_stats : InputStats or None
    calibration : dict of str to CalibrationRecord
    card : dict
        :func:`model_card`.
    sensitivity : object or None
        :class:`~fluorecon.methods.learned.sensitivity.SensitivityResult`.
    notes : list of str
        What could not be checked, and why.
    """

    input: np.ndarray
    prediction: np.ndarray
    axes: str
    uncertainty: UncertainPrediction | None
    consistency: ConsistencyResult | None
    ood: OODReport | None
    input_stats: InputStats | None
    calibration: dict[str, CalibrationRecord]
    card: dict[str, Any]
    sensitivity: Any = None
    notes: list[str] = field(default_factory=list)


def _first_member(predictor: Any) -> Any:
    return predictor.members[0] if isinstance(predictor, Ensemble) else predictor


def default_uncertainty(predictor: Any) -> str | None:
    """The richest uncertainty mode a model or ensemble supports (None: none)."""
    members = predictor.members if isinstance(predictor, Ensemble) else [predictor]
    prob = all(m.model_config.unet.probabilistic for m in members)
    if len(members) >= 2:
        return "both" if prob else "ensemble"
    return "probabilistic" if prob else None


def model_card(predictor: Any) -> dict[str, Any]:
    """A model card from what a model (or ensemble) folder records.

    Returns
    -------
    dict
        ``method``, ``kind``, ``members``, ``training_data`` (images, axes, fingerprint),
        ``noise_model``, ``provenance`` (created, steps, best validation loss, time,
        device), ``versions``, ``calibration`` (per mode: factor, coverage at 90 %
        before/after), ``intended_use`` and ``known_limits`` (sentences).
    """
    first = _first_member(predictor)
    mc = first.model_config
    members = predictor.k if isinstance(predictor, Ensemble) else 1
    cal = (predictor.config.calibration if isinstance(predictor, Ensemble)
           else (mc.calibration or {}))
    stats = input_stats_of(predictor)
    td = dict(mc.training_data)
    n_img = td.get("pairs", td.get("images", "?"))
    nd = f"{mc.unet.ndim}D"
    intended = (f"{first.kind} of {nd} {mc.axes} images like its {n_img} training "
                f"{'pairs' if 'pairs' in td else 'images'} (method {mc.method}, "
                f"{members} member{'s' if members > 1 else ''}); inputs in the training "
                "inputs' units, normalised with the stored percentiles.")
    limits = [
        "The output is an estimate: structure absent from the data-consistency and "
        "uncertainty maps' support can be invented or erased by the network.",
        "Only structures and noise levels like the training data are covered; other "
        "samples, optics, cameras or exposures need new validation.",
    ]
    if not cal:
        limits.append("The uncertainty is not calibrated on held-out data "
                      "(fluorecon calibrate); its absolute scale is unverified.")
    if stats is None:
        limits.append("No training-input statistics are stored: out-of-distribution "
                      "inputs cannot be detected.")
    if not mc.unet.probabilistic and members < 2:
        limits.append("No per-pixel uncertainty (train with --probabilistic or as an "
                      "ensemble).")
    if mc.noise_model is None and mc.method in ("n2v", "n2v2", "n2s"):
        limits.append("Self-supervised: assumes pixel-wise independent, zero-mean noise; "
                      "correlated (e.g. sCMOS pattern) noise is kept as signal.")
    calib = {}
    for mode, raw in cal.items():
        rec = CalibrationRecord.build(**raw)
        i90 = rec.levels.index(0.9) if 0.9 in rec.levels else None
        calib[mode] = {"factor": rec.factor, "n_pixels": rec.n_pixels,
                       "coverage90_before": None if i90 is None else rec.coverage_before[i90],
                       "coverage90_after": None if i90 is None else rec.coverage_after[i90],
                       "ece_before": rec.ece_before, "ece_after": rec.ece_after,
                       "data": rec.data}
    prov = dict(mc.provenance)
    return {
        "method": mc.method, "kind": first.kind, "members": members,
        "axes": mc.axes, "architecture": f"U-Net depth {mc.unet.depth}, "
                                         f"{mc.unet.base_filters} filters, "
                                         f"{'probabilistic' if mc.unet.probabilistic else 'point'}"
                                         " output",
        "training_data": {k: v for k, v in td.items() if k != "masking"},
        "noise_model": mc.noise_model, "seed": mc.seed,
        "provenance": {k: prov.get(k) for k in ("created", "steps_done", "best_step",
                                                  "best_val_loss", "training_time_s", "device",
                                                  "loss") if k in prov},
        "versions": dict(mc.versions), "calibration": calib,
        "input_stats": None if stats is None else {"images": stats.n_images},
        "intended_use": intended, "known_limits": limits,
    }


def _spatial_only(image: Any, axes: str) -> tuple[np.ndarray, str]:
    ax = check_axes(axes, ndim=np.ndim(image))
    sp = spatial_axes(ax)
    arr = as_float32(np.asarray(image))
    extra = [i for i, a in enumerate(ax) if a not in sp]
    if any(arr.shape[i] != 1 for i in extra):
        raise AxesError(message(f"an image with axes {ax!r} and shape {arr.shape}",
                                "one YX or ZYX image (non-spatial axes of size 1)",
                                "Run QC per frame/channel (e.g. save one plane first)."))
    arr = arr.reshape([arr.shape[i] for i, a in enumerate(ax) if a in sp])
    return np.transpose(arr, [sp.index(a) for a in sp]), sp


def consistency_maps(measurement: Any, reconstruction: Any, axes: str,
                     forward: ForwardModel | None = None, *, noise: NoiseModel | None = None,
                     units: str | tuple[float, float] = "fit", alpha: float = 0.01,
                     windows: Sequence[int] = (3, 7, 15)
                     ) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Consistency check of every 2D/3D block of an image with any axes.

    Non-spatial axes (``S``, ``T``, ``C``) are looped over; each block gets its own noise
    estimate (unless ``noise`` is given) and units fit.

    Returns
    -------
    residual : ndarray, float32
        Standardised residual, measurement shape.
    flagged : ndarray of bool
    summaries : list of dict
        :meth:`ConsistencyResult.summary` per block.
    """
    ax = check_axes(axes, ndim=np.ndim(measurement))
    sp = spatial_axes(ax)
    y = as_float32(np.asarray(measurement))
    x = as_float32(np.asarray(reconstruction))
    lead = [i for i, a in enumerate(ax) if a not in sp]
    order = lead + [ax.index(a) for a in sp]
    ym = np.transpose(y, order)
    xm = np.transpose(x, order)
    n_lead = len(lead)
    if xm.shape[:n_lead] != ym.shape[:n_lead]:
        raise AxesError(message(f"a reconstruction of shape {x.shape} for a measurement of "
                                f"shape {y.shape}", "the same non-spatial axes",
                                "Pass the reconstruction of this measurement."))
    res = np.zeros(ym.shape, np.float32)
    flg = np.zeros(ym.shape, bool)
    summaries = []
    for idx in np.ndindex(*ym.shape[:n_lead]):
        r = check_consistency(ym[idx], xm[idx], forward, noise=noise, units=units,
                              alpha=alpha, windows=windows)
        res[idx] = r.residual
        flg[idx] = r.flagged
        summaries.append({"index": list(idx), **r.summary()})
    inv = np.argsort(order)
    return np.transpose(res, inv), np.transpose(flg, inv), summaries


def run_qc(predictor: Any, image: Any, axes: str, *, forward: ForwardModel | None = None,
           uncertainty: str | None = "auto", noise: NoiseModel | None = None,
           units: str | tuple[float, float] = "fit", alpha: float = 0.01,
           sensitivity: bool = False, sensitivity_crop: int = 64,
           progress: Callable[[int, int], None] | None = None) -> QCResult:
    """Predict one image and measure every trust signal available for it.

    Parameters
    ----------
    predictor : LearnedMethod or Ensemble
        A trained single-channel model (or an ensemble of them).
    image : array_like
        One ``YX`` or ``ZYX`` image (size-1 non-spatial axes are dropped).
    axes : str
    forward : ForwardModel, optional
        Forward model of the acquisition (default identity: denoising).
    uncertainty : {"auto", "probabilistic", "ensemble", "both"} or None
        ``"auto"`` picks :func:`default_uncertainty`; None skips it.
    noise : NoiseModel, optional
        Noise model of the input (default estimated from it).
    units, alpha
        See :func:`~fluorecon.trust.consistency.check_consistency`.
    sensitivity : bool
        Also run :func:`~fluorecon.methods.learned.sensitivity.perturbation_sensitivity`
        (first member) on a central crop of ``sensitivity_crop`` pixels per axis.
    progress : callable, optional
        ``progress(done, total)`` over the steps.

    Returns
    -------
    QCResult
    """
    x, sp = _spatial_only(image, axes)
    notes: list[str] = []
    mode = default_uncertainty(predictor) if uncertainty == "auto" else uncertainty
    if mode is not None and mode not in UNCERTAINTY_MODES:
        raise ConfigError(message(f"uncertainty {mode!r}", "auto, probabilistic, ensemble, "
                                  "both or none", "Pick a mode."))
    total = 4 if sensitivity else 3
    step = 0

    def tick() -> None:
        nonlocal step
        step += 1
        if progress is not None:
            progress(step, total)

    unc = None
    if mode is not None:
        unc = predict_uncertainty(predictor, x, sp, mode=mode)  # type: ignore[arg-type]
        pred = unc.mean
        if unc.factor == 1.0:
            notes.append(f"The {mode} uncertainty is not recalibrated (no calibration stored "
                         "for this mode): its scale is the network's own.")
    else:
        from fluorecon.trust.ensembles import member_outputs

        members = predictor.members if isinstance(predictor, Ensemble) else [predictor]
        pred = np.mean([member_outputs(m, x, sp, scale=False)[0] for m in members], axis=0)
        notes.append("No per-pixel uncertainty: the model is neither probabilistic nor an "
                     "ensemble.")
    tick()
    fwd = forward if forward is not None else IdentityForward()
    cons = check_consistency(x, pred, fwd, noise=noise, units=units, alpha=alpha)
    tick()
    stats = input_stats_of(predictor)
    ood = None
    if stats is None:
        notes.append("No training-input statistics in the model: out-of-distribution "
                     "checks skipped (models trained by fluorecon train ensemble record "
                     "them).")
    else:
        ood = check_ood(x, sp, stats)
    tick()
    sens = None
    if sensitivity:
        from fluorecon.methods.learned.sensitivity import perturbation_sensitivity

        c = [slice(max(0, (n - sensitivity_crop) // 2), max(0, (n - sensitivity_crop) // 2)
                   + min(n, sensitivity_crop)) for n in x.shape]
        sens = perturbation_sensitivity(_first_member(predictor), x[tuple(c)], sp,
                                        noise=cons.noise)
        tick()
    cal_raw = (predictor.config.calibration if isinstance(predictor, Ensemble)
               else (_first_member(predictor).model_config.calibration or {}))
    cal = {k: CalibrationRecord.build(**v) for k, v in cal_raw.items()}
    return QCResult(input=x, prediction=np.asarray(pred, np.float32), axes=sp,
                    uncertainty=unc, consistency=cons, ood=ood, input_stats=stats,
                    calibration=cal, card=model_card(predictor), sensitivity=sens,
                    notes=notes)
