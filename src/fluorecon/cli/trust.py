"""``fluorecon qc``, ``fluorecon calibrate`` and ``fluorecon train ensemble``: trust from the
command line.

- ``fluorecon train ensemble INPUTS --target T --out DIR --members 5`` trains K models with
  different seeds (and data splits) into an ensemble folder.
- ``fluorecon calibrate --model DIR --input V --target W`` fits the recalibration factor
  of the uncertainty on held-out pairs and stores it in the model (or ensemble) folder.
- ``fluorecon qc INPUT --model DIR --out REPORT`` writes an HTML report: prediction,
  uncertainty, data-consistency map, flagged regions, out-of-distribution warnings,
  calibration figures and the model card.

Nothing here imports torch at import time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from fluorecon import __version__
from fluorecon.cli.learned import (
    AxesOpt,
    BatchOpt,
    DepthOpt,
    DeviceOpt,
    FiltersOpt,
    InputsArg,
    ParamOpt,
    PatchOpt,
    ProbOpt,
    QuietOpt,
    SeedOpt,
    StepsOpt,
    ValOpt,
    _fields,
    _Interrupted,
    _say,
    cli_errors,
    expand_image_paths,
    read_images,
    train_app,
)
from fluorecon.cli.progress import progress_bar
from fluorecon.core.errors import (
    ConfigError,
    DataError,
    InputFileError,
    OutputExistsError,
    message,
)

__all__ = ["calibrate_command", "predict_with_uncertainty", "qc_command", "register",
           "tagged_path", "train_ensemble_command", "write_consistency"]

UncertaintyChoice = Annotated[str, typer.Option(
    "--uncertainty", help="auto (the richest the model supports), probabilistic (Laplace "
                          "scale), ensemble (members' spread), both (mixture), or none.")]
ModelOpt = Annotated[Path, typer.Option("--model", "-m", help="Model folder or ensemble "
                                        "folder.", show_default=False)]


def _trust_import() -> None:
    """One-line error when torch (needed by every learned model) is not installed."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise ConfigError(message("a learned model, which needs torch (not installed)",
                                  "the learned-methods extra",
                                  "Install it with: pip install 'fluorecon[torch]'."))


def _read_psf(path: Path | None) -> np.ndarray | None:
    if path is None:
        return None
    from fluorecon.io import read_image

    arr, _ = read_image(path)
    return np.asarray(arr, np.float32)


def _forward(task: str, psf: Path | None, factor: int) -> Any:
    from fluorecon.trust.consistency import forward_for

    return forward_for(task, psf=_read_psf(psf), factor=factor)


# --- train ensemble -----------------------------------------------------------------------
@cli_errors
def train_ensemble_command(
    inputs: InputsArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Ensemble folder to write "
                                      "(ensemble.json + member_NN model folders).",
                                      show_default=False)],
    target: Annotated[list[Path] | None, typer.Option(
        "--target", "-t", help="Target images or folders for supervised methods (care, "
                               "n2n), matched to inputs by sorted name.")] = None,
    method: Annotated[str, typer.Option("--method", help="Learned method of every member: "
                                        "care, n2n, n2v, n2v2, n2s.")] = "care",
    members: Annotated[int, typer.Option("--members", "-k", min=1, max=64,
                                         help="Members (2+ for an epistemic "
                                              "uncertainty).")] = 5,
    split: Annotated[str, typer.Option("--split", help="Data split per member: none (seeds "
                                       "only), bootstrap (images resampled), leave-out (one "
                                       "image left out each).")] = "none",
    axes: AxesOpt = None,
    patch_size: PatchOpt = None,
    steps: StepsOpt = None,
    batch_size: BatchOpt = None,
    validation_fraction: ValOpt = None,
    seed: SeedOpt = None,
    depth: DepthOpt = None,
    filters: FiltersOpt = None,
    probabilistic: ProbOpt = False,
    param: ParamOpt = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing "
                                            "ensemble folder (and discard the checkpoint "
                                            "of an interrupted run).")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run "
                                         "from <out>.checkpoint (same data and settings): "
                                         "finished members are kept, the interrupted one "
                                         "continues exactly.")] = False,
    device: DeviceOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Train K models with different seeds (and data splits) as an ensemble.

    Members checkpoint into ``<out>.checkpoint/member_NN/``; Ctrl-C leaves them there
    (exit code 130) and ``--resume`` continues. The folder is removed once the ensemble
    is written.
    """
    _trust_import()
    from fluorecon.io.atomic import remove_path
    from fluorecon.methods.training_folders import checkpoint_dir_for
    from fluorecon.trust.ensembles import train_ensemble

    if split not in ("none", "bootstrap", "leave-out"):
        raise ConfigError(message(f"--split {split!r}", "none, bootstrap or leave-out",
                                  "Pick a split."))
    if out.exists() and not overwrite:
        raise OutputExistsError(message(f"an existing path {out}", "a new ensemble folder",
                                        "Pass --overwrite or choose another --out."))
    ckpt = checkpoint_dir_for(out)

    def has_checkpoint() -> bool:
        return any(ckpt.glob("member_*/checkpoint.json"))

    if resume and not has_checkpoint():
        raise InputFileError(message(f"--resume without a checkpoint in {ckpt}",
                                     "the checkpoint folder of an interrupted run",
                                     "Drop --resume to start a new ensemble."))
    if not resume and ckpt.exists():
        if not overwrite:
            raise OutputExistsError(message(f"the checkpoint of an interrupted run in {ckpt}",
                                            "no checkpoint, or --resume",
                                            "Pass --resume to continue it, or --overwrite "
                                            "to start over."))
        remove_path(ckpt)
    fields = _fields(patch_size, steps, batch_size, validation_fraction, None, depth,
                     filters, probabilistic, param)
    in_paths = expand_image_paths(inputs, what="input")
    xs, in_axes = read_images(in_paths, axes, what="input")
    ys = None
    if target:
        tg_paths = expand_image_paths(target, what="target")
        if len(tg_paths) != len(in_paths):
            raise DataError(message(f"{len(in_paths)} input images and {len(tg_paths)} "
                                    "target images", "one target per input",
                                    "Pass as many targets as inputs."))
        ys, tg_axes = read_images(tg_paths, axes, what="target")
        if tg_axes != in_axes:
            raise DataError(message(f"targets with axes {tg_axes!r} and inputs with "
                                    f"{in_axes!r}", "one layout", "Pass --axes."))
    try:
        with progress_bar(f"train ensemble ({method} x{members})", enabled=not quiet) as cb:
            ens = train_ensemble(method, xs, ys, axes=in_axes, k=members,
                                 data_split=split,  # type: ignore[arg-type]
                                 seed=seed or 0, config=fields, progress=cb, device=device,
                                 checkpoint_root=ckpt, resume=resume)
    except KeyboardInterrupt:
        raise _Interrupted(ckpt if has_checkpoint() else None) from None
    ens.save(out, overwrite=overwrite)
    remove_path(ckpt)
    if not quiet:
        _say(f"wrote {out} ({members} members of {method})")


# --- calibrate ------------------------------------------------------------------------------
@cli_errors
def calibrate_command(
    model: ModelOpt,
    input: Annotated[list[Path], typer.Option("--input", "-i", help="Held-out input images "
                                              "or folders (not used in training).",
                                              show_default=False)],
    target: Annotated[list[Path], typer.Option("--target", "-t", help="Their ground truth "
                                               "(training targets' units), matched by "
                                               "sorted name.", show_default=False)],
    axes: AxesOpt = None,
    uncertainty: UncertaintyChoice = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Fit the recalibration factor of the uncertainty on held-out pairs; store it in the
    model (config.json) or ensemble (ensemble.json) folder."""
    _trust_import()
    from fluorecon.trust.ensembles import (
        calibrate_uncertainty,
        load_predictor,
        save_model_config,
    )
    from fluorecon.trust.qc import default_uncertainty

    pred = load_predictor(model)
    mode = default_uncertainty(pred) if uncertainty == "auto" else uncertainty
    if mode is None or mode == "none":
        raise ConfigError(message(f"--uncertainty {uncertainty} for a model without "
                                  "uncertainty", "a probabilistic model or an ensemble",
                                  "Train with --probabilistic or fluorecon train ensemble."))
    in_paths = expand_image_paths(input, what="input")
    tg_paths = expand_image_paths(target, what="target")
    if len(in_paths) != len(tg_paths):
        raise DataError(message(f"{len(in_paths)} inputs and {len(tg_paths)} targets",
                                "one target per input", "Pass matching pairs."))
    xs, in_axes = read_images(in_paths, axes, what="input")
    ys, _ = read_images(tg_paths, axes, what="target")
    with progress_bar(f"calibrate ({mode})", enabled=not quiet) as cb:
        rec = calibrate_uncertainty(pred, xs, ys, in_axes, mode=mode,  # type: ignore[arg-type]
                                    data={"inputs": [str(p) for p in in_paths]})
        cb(1, 1)
    save_model_config(pred, model)
    if not quiet:
        _say(f"{mode}: factor {rec.factor:.4g} on {rec.n_pixels} pixels")
        _say("| level | coverage before | coverage after |")
        _say("|---|---|---|")
        for p, b, a in zip(rec.levels, rec.coverage_before, rec.coverage_after):
            _say(f"| {p:.2f} | {b:.3f} | {a:.3f} |")
        _say(f"ECE {100 * rec.ece_before:.1f} -> {100 * rec.ece_after:.1f} points; "
             f"updated {model}")


# --- qc -------------------------------------------------------------------------------------
@cli_errors
def qc_command(
    input: Annotated[Path, typer.Argument(help="Image to restore and check (one YX or ZYX "
                                          "image).", show_default=False)],
    model: ModelOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder (index.html, "
                                      "figures, prediction and trust maps as OME-TIFF, "
                                      "qc.json).", show_default=False)],
    axes: AxesOpt = None,
    task: Annotated[str, typer.Option("--task", help="Forward model for the consistency "
                                      "check: denoise (identity), deconvolve (needs --psf), "
                                      "upsample (binning by --factor).")] = "denoise",
    psf: Annotated[Path | None, typer.Option("--psf", help="PSF image for deconvolve / "
                                             "upsample (centred, any scale).")] = None,
    factor: Annotated[int, typer.Option("--factor", min=1, help="Binning factor for "
                                        "upsample.")] = 2,
    uncertainty: UncertaintyChoice = "auto",
    alpha: Annotated[float, typer.Option("--alpha", min=1e-9, max=0.5, help="False-alarm "
                                         "probability of the flagged regions per "
                                         "image.")] = 0.01,
    sensitivity: Annotated[bool, typer.Option("--sensitivity", help="Also measure the "
                                              "output change under noise-sized "
                                              "perturbations (gradient-based).")] = False,
    device: DeviceOpt = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing "
                                            "report.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Write an HTML trust report for one prediction of a model (or ensemble)."""
    _trust_import()
    from fluorecon.core.meta import ImageMeta
    from fluorecon.io import read_image, write_bytes_atomic, write_image
    from fluorecon.report.qc import write_qc_report
    from fluorecon.trust.ensembles import load_predictor
    from fluorecon.trust.qc import run_qc

    if out.resolve() == input.resolve() or out.resolve() == model.resolve():
        raise OutputExistsError(message(f"--out {out}, which is an input", "a new folder",
                                        "Choose another --out."))
    if (out / "index.html").exists() and not overwrite:
        raise OutputExistsError(message(f"an existing report in {out}", "a new report folder",
                                        "Pass --overwrite or choose another --out."))
    pred = load_predictor(model, device=device)
    image, meta = read_image(input, axes=axes)
    fwd = _forward(task, psf, factor)
    mode = None if uncertainty == "none" else uncertainty
    with progress_bar("qc", enabled=not quiet) as cb:
        res = run_qc(pred, np.asarray(image), meta.axes, forward=fwd, uncertainty=mode,
                     alpha=alpha, sensitivity=sensitivity, progress=cb)
    source = {"input": str(input), "model": str(model), "task": task,
              "fluorecon": __version__}
    page = write_qc_report(res, out, source=source, overwrite=overwrite)
    sp = res.axes
    px = {a: v for a, v in meta.pixel_size.items() if a in sp}
    m = ImageMeta(axes=sp, pixel_size=px,
                  extra={"fluorecon": __version__, "command": "qc", "model": str(model)})
    maps: dict[str, np.ndarray] = {"prediction": res.prediction}
    if res.uncertainty is not None:
        maps["std"] = res.uncertainty.std
    if res.consistency is not None:
        maps["residual"] = res.consistency.residual
        maps["flagged"] = res.consistency.flagged.astype(np.uint8)
    for name, arr in maps.items():
        mm = m if arr.shape == res.prediction.shape else ImageMeta(axes=sp, extra=m.extra)
        write_image(out / f"{name}.ome.tif", arr, mm.model_copy(
            update={"extra": {**m.extra, "quantity": name}}), overwrite=True,
            inputs=[input, model])
    summary = {"consistency": None if res.consistency is None else res.consistency.summary(),
               "regions": [] if res.consistency is None else
               [{"bbox": r.bbox(), "pixels": r.size, "peak_z": r.peak_score, "sign": r.sign}
                for r in res.consistency.regions],
               "ood_warnings": [] if res.ood is None else [str(w) for w in res.ood.warnings],
               "uncertainty": None if res.uncertainty is None else
               {"mode": res.uncertainty.mode, "factor": res.uncertainty.factor,
                "median_std": float(np.median(res.uncertainty.std))},
               "sensitivity": None if res.sensitivity is None else
               {"rms_change": res.sensitivity.rms_change,
                "random_rms_change": res.sensitivity.random_rms_change,
                "fragility": res.sensitivity.fragility},
               "model_card": res.card, "notes": res.notes}
    write_bytes_atomic(out / "qc.json", json.dumps(summary, indent=2, default=str).encode(),
                       overwrite=True)
    if not quiet:
        if res.ood is not None:
            for w in res.ood.warnings:
                _say(f"warning: {w}")
        if res.consistency is not None:
            _say(f"{len(res.consistency.regions)} inconsistent region(s), reduced chi-square "
                 f"{res.consistency.reduced_chi2:.3f}")
        _say(f"wrote {page}")


# --- predict --uncertainty / --consistency -----------------------------------------------------
def tagged_path(output: Path, tag: str) -> Path:
    """``out.ome.tif`` -> ``out_<tag>.ome.tif`` (the longest known suffix is kept)."""
    from fluorecon.io.validate import FORMAT_SUFFIXES

    name = output.name
    suffix = max((x for xs in FORMAT_SUFFIXES.values() for x in xs
                  if name.lower().endswith(x)), key=len, default=output.suffix)
    return output.with_name(name[: len(name) - len(suffix)] + f"_{tag}" + suffix)


def _refuse_existing(paths: list[Path], overwrite: bool) -> None:
    for p in paths:
        if p.exists() and not overwrite:
            raise OutputExistsError(message(f"an existing output {p}", "a new path",
                                            "Pass --overwrite or choose another --output."))


def predict_with_uncertainty(model: Path, input: Path, output: Path, *, axes: str | None,
                             uncertainty: str | None, consistency: bool, tta: bool,
                             device: str | None, overwrite: bool, quiet: bool) -> list[Path]:
    """``fluorecon predict`` for ensembles and ``--uncertainty``: writes the mean and
    ``<stem>_std`` (recalibrated when a calibration is stored), and with ``consistency``
    the trust maps of :func:`write_consistency`."""
    from fluorecon.io import read_image, write_image
    from fluorecon.trust.ensembles import Ensemble, check_mode, load_predictor, member_outputs
    from fluorecon.trust.ensembles import predict_uncertainty as predict_unc

    if tta:
        raise ConfigError(message("--tta with an ensemble or --uncertainty", "one of them",
                                  "Drop --tta (ensembles already average members)."))
    if uncertainty is not None and uncertainty not in ("probabilistic", "ensemble", "both"):
        raise ConfigError(message(f"--uncertainty {uncertainty!r}", "probabilistic, "
                                  "ensemble or both", "Pick a mode."))
    pred = load_predictor(model, device=device)
    if uncertainty is not None:
        check_mode(pred, uncertainty)
    image, meta = read_image(input, axes=axes)
    outs = [output] + ([tagged_path(output, "std")] if uncertainty else [])
    if consistency:
        outs += [tagged_path(output, "residual"), tagged_path(output, "flagged")]
    _refuse_existing(outs, overwrite)
    members = pred.members if isinstance(pred, Ensemble) else [pred]
    with progress_bar(f"predict ({members[0].name} x{len(members)})", enabled=not quiet) as cb:
        if uncertainty is not None:
            res = predict_unc(pred, image, meta.axes, mode=uncertainty,  # type: ignore[arg-type]
                              progress=cb)
            mean, std = res.mean, res.std
        else:
            acc = []
            for j, m in enumerate(members):
                acc.append(member_outputs(m, image, meta.axes, scale=False)[0])
                cb(j + 1, len(members))
            mean, std = np.mean(acc, axis=0).astype(np.float32), None
    prov = {"fluorecon": __version__, "command": "predict", "model": str(model),
            "input": str(input), "members": len(members), "uncertainty": uncertainty}
    written = [write_image(output, mean, meta.model_copy(
        update={"extra": {**prov, "quantity": "prediction (mean)"}}), overwrite=overwrite,
        inputs=[input, model])]
    if std is not None:
        factor = res.factor
        written.append(write_image(outs[1], std, meta.model_copy(update={"extra": {
            **prov, "quantity": f"predictive std ({uncertainty}), target units",
            "recalibration_factor": factor}}), overwrite=overwrite,
            inputs=[input, model, output]))
    if consistency:
        written += write_consistency(np.asarray(image), mean, meta, output, model=model,
                                     input=input, overwrite=overwrite)
    return written


def write_consistency(image: np.ndarray, prediction: np.ndarray, meta: Any, output: Path, *,
                      model: Path, input: Path, overwrite: bool) -> list[Path]:
    """Write ``<stem>_residual`` (standardised residual of the input against the
    prediction, identity forward model: denoising) and ``<stem>_flagged`` (uint8 mask of
    regions inconsistent with the input)."""
    from fluorecon.io import write_image
    from fluorecon.trust.qc import consistency_maps

    if np.shape(image) != np.shape(prediction):
        raise ConfigError(message(f"--consistency with an input of shape {np.shape(image)} "
                                  f"and a prediction of shape {np.shape(prediction)}",
                                  "a prediction on the input's grid (denoising)",
                                  "Use fluorecon qc --task deconvolve/upsample for other "
                                  "forward models."))
    residual, flagged, summaries = consistency_maps(image, prediction, meta.axes)
    prov = {"fluorecon": __version__, "command": "predict --consistency", "model": str(model),
            "input": str(input), "forward": "identity",
            "reduced_chi2": [round(s["reduced_chi2"], 4) for s in summaries],
            "regions": [s["regions"] for s in summaries]}
    rp, fp = tagged_path(output, "residual"), tagged_path(output, "flagged")
    _refuse_existing([rp, fp], overwrite)
    return [write_image(rp, residual, meta.model_copy(update={"extra": {
                **prov, "quantity": "standardised residual (input - prediction) / noise std"}}),
                overwrite=overwrite, inputs=[input, model, output]),
            write_image(fp, flagged.astype(np.uint8), meta.model_copy(update={"extra": {
                **prov, "quantity": "1 = inconsistent with the input"}}),
                overwrite=overwrite, inputs=[input, model, output])]


def register(app: typer.Typer) -> None:
    """Attach ``qc`` and ``calibrate`` to ``app`` and ``ensemble`` to ``fluorecon train``."""
    app.command("qc")(qc_command)
    app.command("calibrate")(calibrate_command)
    train_app.command("ensemble")(train_ensemble_command)
