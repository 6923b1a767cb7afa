"""``fluorecon report train`` and ``fluorecon report evaluate``: single-file HTML reports.

Both write one ``.html`` file with every figure embedded (opens offline, can be mailed).
torch is imported only inside the commands that run a learned model; the report builders
(:mod:`fluorecon.report.training`, :mod:`fluorecon.report.evaluation`) get arrays.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import typer

from fluorecon.cli.params import parse_params
from fluorecon.cli.progress import console, progress_bar
from fluorecon.core.errors import ConfigError, InputFileError, message

report_app = typer.Typer(name="report", help="Training and evaluation reports as single, "
                         "self-contained HTML files (figures embedded; open offline).",
                         no_args_is_help=True, add_completion=False, rich_markup_mode=None)

OutOpt = Annotated[Path, typer.Option("--output", "-o", help="Report path (.html); one "
                                      "self-contained file.", show_default=False)]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing "
                                            "report (never an input).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")]
AxesOpt = Annotated[str | None, typer.Option("--axes", help="Axes of the image(s), one "
                                             "letter of STCZYX per dimension. Default: from "
                                             "the file; plain 2D/3D are YX/ZYX.")]

#: Context added around an example window before predicting it (capped receptive field).
MAX_CONTEXT = 64


F = TypeVar("F", bound=Callable[..., Any])


def handles_errors(func: F) -> F:
    """:func:`fluorecon.cli.app.handles_errors`, looked up when the command runs (this
    module is imported while ``fluorecon.cli.app`` is still being set up)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from fluorecon.cli.app import handles_errors as wrap

        return wrap(func)(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _check_html(path: Path) -> None:
    if path.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(message(f"--output {path}", "an .html file", "Name the report "
                                  "e.g. report.html."))


def _load_learned(model: Path, device: str | None = None) -> Any:
    try:
        from fluorecon.methods.learned import load_model_method
    except ImportError as exc:
        raise ConfigError(message(f"a learned model, which needs {exc.name or 'torch'} "
                                  "(not installed)", "the learned-methods extra",
                                  "Install it with: pip install 'fluorecon[torch]'.")) from None
    return load_model_method(model, device=device)


def _first_spatial(image: Any, axes: str) -> tuple[np.ndarray, str]:
    """The first S/T/C index of ``image``: a ``YX``/``ZYX`` float32 array."""
    from fluorecon.core.axes import spatial_axes
    from fluorecon.core.dtypes import as_float32

    sp = spatial_axes(axes)
    arr = np.asarray(image)
    idx = tuple(slice(None) if a in sp else 0 for a in axes)
    arr = arr[idx]
    order = [a for a in axes if a in sp]
    return as_float32(np.transpose(arr, [order.index(a) for a in sp])), sp


def _resolve(recorded: str, model: Path) -> Path | None:
    p = Path(recorded)
    for cand in (p, model.parent / p, model / p):
        if cand.exists():
            return cand
    return None


def _patch_shape(mcfg: dict[str, Any], ndim: int) -> tuple[int, ...]:
    ps = mcfg.get("patch_size", 64)
    return tuple(int(ps) for _ in range(ndim)) if isinstance(ps, int) else tuple(
        int(p) for p in ps)[-ndim:]


def _predict_window(method: Any, image: np.ndarray, sp: str, win: tuple[slice, ...]
                    ) -> np.ndarray:
    """Predict ``image[win]`` with up to :data:`MAX_CONTEXT` pixels of context around it."""
    halo = method.receptive_field
    m = MAX_CONTEXT if halo is None else min(int(halo), MAX_CONTEXT)
    outer = tuple(slice(max(0, w.start - m), min(n, w.stop + m)) for w, n in
                  zip(win, image.shape))
    pred = np.asarray(method.predict(image[outer], sp), np.float32)
    inner = tuple(slice(w.start - o.start, w.stop - o.start) for w, o in zip(win, outer))
    return pred[inner]


def _describe(win: tuple[slice, ...], sp: str) -> str:
    return ", ".join(f"{a} {w.start}:{w.stop}" for a, w in zip(sp, win))


def _training_examples(model: Path, rec: Any, *, image: Path | None, target: Path | None,
                       axes: str | None, n: int) -> tuple[list[Any], str, Any]:
    """Example patches with predictions, a note on their origin, and the OOD report."""
    from fluorecon.io import read_image
    from fluorecon.report.training import TrainingExample, example_windows, validation_region

    td = rec.training_data
    mcfg = rec.config.get("method_config") or {}
    model_axes = str(rec.config.get("axes", ""))
    ood = None
    if image is None and not (td.get("files") or {}).get("inputs"):
        return [], ("No example patches: the model records no training files (it was trained "
                    "from arrays or simulations). Pass --image (and --target) to show "
                    "predictions on your data."), None
    if "C" in model_axes:
        return [], ("No example patches: multi-channel models are not shown patch by patch "
                    "yet."), None
    try:
        method = _load_learned(model)
    except ConfigError as exc:
        return [], f"No example patches: {exc}", None
    if getattr(method, "resamples", False):
        note = ("No example patches: this model predicts on a finer grid than its input; use "
                "fluorecon report evaluate --model on an image instead.")
        return [], note, None
    pairs: list[tuple[Path, Path | None, bool]] = []
    missing: list[str] = []
    if image is not None:
        pairs.append((image, target, False))
    else:
        files = td["files"]
        tgts = files.get("targets") or []
        for i, rel in enumerate(files["inputs"]):
            p = _resolve(rel, model)
            t = _resolve(tgts[i], model) if i < len(tgts) else None
            if p is None or (i < len(tgts) and t is None):
                missing.append(rel)
                continue
            pairs.append((p, t, True))
    if not pairs:
        return [], ("No example patches: the recorded training files no longer exist ("
                    + ", ".join(missing[:3]) + "). Pass --image (and --target)."), None
    in_axes = axes if image is not None else td.get("inputs_axes")
    tg_axes = axes if image is not None else td.get("targets_axes", in_axes)
    per_file = max(1, math.ceil(n / len(pairs)))
    frac = float(mcfg.get("validation_fraction", 0.0) or 0.0)
    examples: list[Any] = []
    for path, tpath, from_training in pairs:
        if len(examples) >= n:
            break
        raw, meta = read_image(path, axes=in_axes)
        x, sp = _first_spatial(raw, meta.axes)
        y = None
        if tpath is not None:
            traw, tmeta = read_image(tpath, axes=tg_axes)
            y, _ = _first_spatial(traw, tmeta.axes)
            if y.shape != x.shape:
                raise InputFileError(message(f"target {tpath} of spatial shape {y.shape} for "
                                             f"input {path} of shape {x.shape}",
                                             "pairs of equal shape", "Pass matching files."))
        if image is not None and rec.config.get("input_stats"):
            from fluorecon.trust.ood import check_ood

            ood = check_ood(x, sp, rec.config["input_stats"])
        patch = _patch_shape(mcfg, len(sp))
        region = validation_region(x.shape, patch, fraction=frac) if from_training else None
        held_out = region is not None
        wins = example_windows(y if y is not None else x, patch, n=per_file, region=region)
        for win in wins[: n - len(examples)]:
            pred = _predict_window(method, x, sp, win)
            examples.append(TrainingExample(
                input=x[win], prediction=pred, target=None if y is None else y[win], axes=sp,
                source=f"{path.name} [{_describe(win, sp)}]", held_out=held_out))
    if image is not None:
        note = (f"Patches from the supplied image {image.name}: the brightest window and "
                "typical ones (down to the median window), predicted with context around "
                "them. They may overlap the training data.")
    elif all(e.held_out for e in examples):
        note = ("Patches from the held-out validation slab of the training images (never "
                "seen in training): the brightest window and typical ones, down to the "
                "median window, predicted with context around them.")
    else:
        note = ("The model has no validation slab (validation_fraction 0 or small images): "
                "these patches come from the training data itself and flatter the model.")
    if missing:
        note += f" Missing training files skipped: {', '.join(missing[:3])}."
    return examples, note, ood


@report_app.command("train")
@handles_errors
def report_train(
    model: Annotated[Path, typer.Argument(help="Model folder written by fluorecon train.",
                                          show_default=False)],
    output: OutOpt,
    image: Annotated[Path | None, typer.Option("--image", help="Image to show example "
                                               "patches from (default: the recorded training "
                                               "files' held-out part), also checked for "
                                               "being out of distribution.")] = None,
    target: Annotated[Path | None, typer.Option("--target", help="Target of --image "
                                                "(supervised models).")] = None,
    axes: AxesOpt = None,
    examples: Annotated[int, typer.Option("--examples", min=0, max=12, help="Number of "
                                          "example patches (0: none; needs torch).")] = 3,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Training report of a model: summary, provenance, loss curves, example patches,
    warnings (hallucination risk, over-fitting, out-of-distribution input)."""
    from fluorecon.report.training import read_training_record, training_report
    from fluorecon.report.html import write_html

    _check_html(output)
    if target is not None and image is None:
        raise ConfigError(message("--target without --image", "--image IMG --target TGT",
                                  "Pass the image too."))
    rec = read_training_record(model)
    exs: list[Any] = []
    note = "No example patches (--examples 0)."
    ood = None
    if examples > 0:
        with progress_bar("report: example patches", enabled=not quiet) as cb:
            cb(0, 1)
            exs, note, ood = _training_examples(model, rec, image=image, target=target,
                                                axes=axes, n=examples)
            cb(1, 1)
    page = training_report(rec, examples=exs, examples_note=note, ood=ood)
    inputs = [p for p in model.iterdir()] + [p for p in (image, target) if p is not None]
    path = write_html(output, page, overwrite=overwrite, inputs=inputs)
    if not quiet:
        _say(f"wrote {path}")


def _parse_line(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        vals = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        vals = ()
    if len(vals) != 4:
        raise ConfigError(message(f"--line {text!r}", "four numbers Y0,X0,Y1,X1 (pixels)",
                                  "Pass e.g. --line 10,5,10,60."))
    return vals


@report_app.command("evaluate")
@handles_errors
def report_evaluate(
    input: Annotated[Path, typer.Argument(help="Measured image (any supported format).",
                                          show_default=False)],
    output: OutOpt,
    model: Annotated[Path | None, typer.Option("--model", "-m", help="Model folder to run "
                                               "(fluorecon train).")] = None,
    method: Annotated[str | None, typer.Option("--method", help="Classical method to run "
                                               "(see fluorecon methods).")] = None,
    prediction: Annotated[Path | None, typer.Option("--prediction", help="An output "
                                                    "computed already (same axes).")] = None,
    reference: Annotated[Path | None, typer.Option("--reference", "-r", help="Ground truth "
                                                   "or high-quality reference on the output "
                                                   "grid.")] = None,
    psf: Annotated[Path | None, typer.Option("--psf", help="PSF for deconvolution methods "
                                             "(also the forward model of --consistency).")
                   ] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="Method parameter "
                                                    "KEY=VALUE (with --method).")] = None,
    axes: AxesOpt = None,
    line: Annotated[str | None, typer.Option("--line", help="Profile line Y0,X0,Y1,X1 in "
                                             "pixels of the output (default: across the "
                                             "brightest structure).")] = None,
    z: Annotated[int | None, typer.Option("--z", min=0, help="Z slice shown for 3D images "
                                          "(default: the middle one).")] = None,
    uncertainty: Annotated[str | None, typer.Option(
        "--uncertainty", help="With --model: show the predictive std (probabilistic, "
                              "ensemble or both; see fluorecon predict).")] = None,
    consistency: Annotated[bool, typer.Option(
        "--consistency", help="Show the data-consistency map (standardised residual and "
                              "flagged regions; identity forward model, or the --psf).")
    ] = False,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Evaluation report of one restoration: before/after panels with matching contrast,
    metrics (with --reference) or reference-free noise and resolution estimates, line
    profile, difference maps, optional uncertainty and consistency maps."""
    from fluorecon.core.axes import spatial_axes
    from fluorecon.io import read_image
    from fluorecon.report.evaluation import TrustMaps, write_evaluation_report

    _check_html(output)
    chosen = [n for n, v in (("--model", model), ("--method", method),
                             ("--prediction", prediction)) if v is not None]
    if len(chosen) != 1:
        raise ConfigError(message(f"{' and '.join(chosen) or 'none'} of --model, --method, "
                                  "--prediction", "exactly one of them",
                                  "Pass the model, the method or the output to evaluate."))
    if uncertainty is not None and model is None:
        raise ConfigError(message("--uncertainty without --model", "--model DIR",
                                  "Drop --uncertainty or pass a model."))
    line_vals = _parse_line(line)
    image, meta = read_image(input, axes=axes)
    ax = meta.axes
    sp = spatial_axes(ax)
    kernel = read_image(psf)[0] if psf is not None else None
    warns: list[str] = []
    std = None
    src: dict[str, object] = {"input": str(input)}
    runner = None
    if method is not None:  # resolved before any work, so mistakes fail fast
        from fluorecon.methods import get_method
        from fluorecon.methods.registry import is_lazy

        if is_lazy(method):
            raise ConfigError(message(f"--method {method} (a learned method)", "a classical "
                                      "method, or --model with a trained model folder",
                                      f"Train it (fluorecon train {method}) and pass --model."))
        cls = get_method(method)
        fields = parse_params(param)
        if cls.kind == "deconvolve":
            if kernel is None:
                raise ConfigError(message(f"deconvolution method {method!r} without a PSF",
                                          "--psf PSF", "Pass the PSF image."))
            fields["psf"] = kernel
        runner = cls(**fields)
    with progress_bar("report: evaluate", enabled=not quiet) as cb:
        if prediction is not None:
            out, _ = read_image(prediction, axes=ax)
            name = prediction.name
            src["prediction"] = str(prediction)
        elif runner is not None:
            out = runner.predict(image, ax, progress=cb)
            name = method
            src["method"] = method + (f" ({', '.join(param)})" if param else "")
        else:
            assert model is not None
            from fluorecon.predict import predict_method_tiled

            if param:
                raise ConfigError(message("--param with --model", "--param only with "
                                          "--method", "Drop --param."))
            if uncertainty is not None:
                from fluorecon.trust.ensembles import load_predictor, predict_uncertainty

                predictor = load_predictor(model)
                res = predict_uncertainty(predictor, image, ax, mode=uncertainty,  # type: ignore[arg-type]
                                          progress=cb)
                out, std = res.mean, res.std
                mc = getattr(predictor, "model_config", None)
                if getattr(predictor, "may_hallucinate", False):
                    warns.append("The model may hallucinate (adversarial training).")
            else:
                learned = _load_learned(model)
                mc = learned.model_config
                if getattr(learned, "resamples", False):
                    out = learned.predict(image, ax, progress=cb)
                else:
                    out = predict_method_tiled(learned, image, ax, progress=cb)
                if getattr(learned, "may_hallucinate", False):
                    warns.append("MAY HALLUCINATE: the model was trained with an adversarial "
                                  "loss; fine detail can be invented. Check the consistency "
                                  "map (--consistency) and the reference.")
            name = str(getattr(mc, "method", "model"))
            src["model"] = str(model)
            if mc is not None and getattr(mc, "input_stats", None):
                from fluorecon.trust.ood import check_ood

                x0, sp0 = _first_spatial(image, ax)
                warns += [f"Out of distribution: {w}" for w in
                          check_ood(x0, sp0, mc.input_stats).warnings]
    out = np.asarray(out, np.float32)
    ref = None
    if reference is not None:
        ref, _ = read_image(reference, axes=ax)
        src["reference"] = str(reference)
    trust = None
    descr = []
    residual = flagged = None
    if consistency:
        if tuple(out.shape) != tuple(np.shape(image)):
            raise ConfigError(message("--consistency with an output on another grid than "
                                      "the input", "a restoration on the input grid",
                                      "Use fluorecon qc --task upsample for upsampling."))
        from fluorecon.trust.consistency import forward_for
        from fluorecon.trust.qc import consistency_maps

        fwd = forward_for("deconvolve", psf=kernel) if kernel is not None else None
        residual, flagged, summaries = consistency_maps(image, out, ax, fwd)
        s = summaries[0]
        descr.append(f"Consistency ({'PSF' if kernel is not None else 'identity'} forward "
                     f"model): reduced chi-square {s['reduced_chi2']:.3f}, "
                     f"{100 * s['flagged_fraction']:.2f} % of pixels flagged"
                     + (" (first block)." if len(summaries) > 1 else "."))
    if std is not None:
        descr.append(f"Predictive std ({uncertainty}): median {float(np.median(std)):.4g}, 99th "
                     f"percentile {float(np.percentile(std, 99)):.4g} (prediction units).")
    if residual is not None or std is not None:
        trust = TrustMaps(std=std, residual=residual, flagged=flagged,
                          description=" ".join(descr))
    px = meta.pixel_size or {}
    spacing = None
    if all(a in px for a in sp) and out.shape == tuple(np.shape(image)):
        spacing = [float(px[a]) for a in sp]
    inputs = [p for p in (input, reference, psf, prediction) if p is not None]
    path = write_evaluation_report(output, image, out, axes=ax, reference=ref, trust=trust,
                                   output_name=name, line=line_vals, z=z,
                                   pixel_size=spacing, warnings=warns, source=src,
                                   overwrite=overwrite, inputs=inputs)
    if not quiet:
        _say(f"wrote {path}")


__all__ = ["report_app", "report_evaluate", "report_train"]
