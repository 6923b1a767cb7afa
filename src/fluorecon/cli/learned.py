"""``fluorecon train {care,n2n,n2v,n2s}`` and ``fluorecon predict``: learned models from the
command line.

Training reads images from files or folders, trains with a progress bar, checkpoints into
``<MODEL_DIR>.checkpoint/`` (also on Ctrl-C, exit code 130; ``--resume`` continues exactly)
and writes the model folder atomically at the end. Prediction loads a model folder and
applies it tile by tile (exact crop-and-stitch, halo = the network's receptive field).

This module imports no torch at import time: the learned methods are imported when a
command runs, so ``fluorecon --help`` stays fast and works without the torch extra.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import typer

from fluorecon import __version__
from fluorecon.cli.params import parse_params
from fluorecon.cli.progress import console, progress_bar, training_bar
from fluorecon.core.axes import spatial_axes
from fluorecon.core.errors import (
    AxesError,
    ConfigError,
    DataError,
    FluoreconError,
    InputFileError,
    OutputExistsError,
    message,
)
from fluorecon.methods.learned_names import STRUCT_MASKS, TRAIN_PRECISIONS
from fluorecon.methods.training_folders import (
    TRAINING_STATE,
    checkpoint_dir_for,
    prepare_training_output,
)

F = TypeVar("F", bound=Callable[..., Any])


train_app = typer.Typer(
    help="Train a restoration network (CARE, Noise2Noise, Noise2Void, Noise2Self) on image "
         "files or folders and save it as a model folder (config.json + weights.safetensors).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


#: ``--struct`` choices of ``fluorecon train n2v`` (N2VConfig.struct_mask; "none" is the
#: option's absence)
StructMask = Enum("StructMask", {m: m for m in STRUCT_MASKS if m != "none"},  # type: ignore[misc]
                  type=str, module=__name__)


#: ``--precision`` choices of ``fluorecon train`` (TrainingConfig.precision)
TrainPrecision = Enum("TrainPrecision", {p: p for p in TRAIN_PRECISIONS},  # type: ignore[misc]
                      type=str, module=__name__)


class _Interrupted(Exception):
    """Training stopped by Ctrl-C; carries the checkpoint folder (or None)."""

    def __init__(self, checkpoint: Path | None) -> None:
        super().__init__(str(checkpoint))
        self.checkpoint = checkpoint


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def cli_errors(func: F) -> F:
    """One line on stderr and exit code 2 for fluorecon errors; 130 on Ctrl-C (naming the
    checkpoint to resume from when training was interrupted)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FluoreconError as exc:
            _say(f"error: {exc}")
            raise typer.Exit(2) from None
        except _Interrupted as exc:
            if exc.checkpoint is not None:
                _say(f"interrupted: checkpoint saved in {exc.checkpoint}, rerun with --resume")
            else:
                _say("interrupted: no checkpoint was written yet, nothing to resume")
            raise typer.Exit(130) from None
        except KeyboardInterrupt:
            _say("interrupted: no output was written")
            raise typer.Exit(130) from None
        except (PermissionError, IsADirectoryError, NotADirectoryError) as exc:
            _say(f"error: {exc.strerror or exc}: {exc.filename}")
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


# --- inputs -----------------------------------------------------------------------------
def expand_image_paths(paths: Sequence[Path], *, what: str) -> list[Path]:
    """Files as given; folders (other than OME-Zarr) replaced by their readable images.

    A folder contributes every entry whose suffix is a readable format (TIFF, OME-TIFF,
    OME-Zarr folder, ``.npy``, PNG), sorted by name; hidden entries are skipped.

    Raises
    ------
    InputFileError
        A path does not exist, or a folder holds no image.
    """
    from fluorecon.io import READ_FORMATS, format_of

    out: list[Path] = []
    for p in paths:
        if not p.exists():
            raise InputFileError(message(f"{what} path '{p}' which does not exist",
                                         "an image file or a folder of images",
                                         "Check the path."))
        if p.is_dir() and format_of(p) != "ome-zarr":
            found = sorted((c for c in p.iterdir() if not c.name.startswith(".")
                            and format_of(c) in READ_FORMATS), key=lambda c: c.name)
            if not found:
                raise InputFileError(message(f"{what} folder '{p}' with no image in it",
                                             "a folder holding .tif, .ome.tif, .zarr, .npy "
                                             "or .png images", "Check the folder."))
            out.extend(found)
        else:
            out.append(p)
    return out


def read_images(paths: Sequence[Path], axes: str | None, *, what: str
                ) -> tuple[list[np.ndarray], str]:
    """Read every image (eagerly) and return them with their common axes."""
    from fluorecon.io import read_image

    arrays: list[np.ndarray] = []
    common: str | None = None
    for p in paths:
        arr, meta = read_image(p, axes=axes)
        if common is not None and meta.axes != common:
            raise AxesError(message(f"{what} '{p.name}' with axes {meta.axes!r} after images "
                                    f"with axes {common!r}", f"one axes layout for all {what}s",
                                    "Pass --axes, or convert the images to one layout."))
        common = meta.axes
        arrays.append(arr)
    assert common is not None
    return arrays, common


def parse_patch_size(text: str | None) -> int | tuple[int, ...] | None:
    """``"64"`` -> 64; ``"16x64x64"`` -> (16, 64, 64); None stays None."""
    if text is None:
        return None
    try:
        dims = tuple(int(p) for p in text.lower().replace(",", "x").split("x"))
    except ValueError:
        dims = ()
    if not 1 <= len(dims) <= 3 or min(dims, default=0) < 1:
        raise ConfigError(message(f"--patch-size {text!r}", "one size or 2-3 sizes joined by "
                                  "x, like 64 or 16x64x64", "Fix --patch-size."))
    return dims[0] if len(dims) == 1 else dims


def _learned_class(name: str) -> Any:
    from fluorecon.methods import get_method

    return get_method(name)  # one-line ConfigError when torch is missing


def run_training(method_name: str, inputs: Sequence[Path], targets: Sequence[Path] | None, *,
                 out: Path, axes: str | None, fields: dict[str, Any], resume: bool,
                 overwrite: bool, quiet: bool, device: str | None, devices: int = 1,
                 nodes: int = 1) -> Path:
    """Read the data, train ``method_name`` with a progress bar, write the model folder.

    ``devices``/``nodes`` > 1 train with DistributedDataParallel (see
    :mod:`fluorecon.cli.stream`); nodes other than 0 train but write nothing.

    Raises ``_Interrupted`` on Ctrl-C (after the engine saved its checkpoint).
    """
    cls = _learned_class(method_name)
    method = cls(**{k: v for k, v in fields.items() if v is not None})
    in_paths = expand_image_paths(inputs, what="input")
    xs, in_axes = read_images(in_paths, axes, what="input")
    ys: list[np.ndarray] | None = None
    tg_paths: list[Path] = []
    if targets is not None:
        tg_paths = expand_image_paths(targets, what="target")
        if len(tg_paths) != len(in_paths):
            raise DataError(message(f"{len(in_paths)} input images and {len(tg_paths)} target "
                                    "images", "one target per input (matched by sorted name)",
                                    "Pass as many targets as inputs."))
        ys, tg_axes = read_images(tg_paths, axes, what="target")
        if spatial_axes(tg_axes) != spatial_axes(in_axes):
            raise AxesError(message(f"targets with axes {tg_axes!r} and inputs with "
                                    f"{in_axes!r}", "the same spatial axes",
                                    "Pass --axes or matching images."))
        for xp, yp, x, y in zip(in_paths, tg_paths, xs, ys):
            sx = tuple(x.shape[in_axes.index(a)] for a in spatial_axes(in_axes))
            sy = tuple(y.shape[tg_axes.index(a)] for a in spatial_axes(tg_axes))
            if sx != sy:
                raise DataError(message(f"input '{xp.name}' of shape {x.shape} paired with "
                                        f"target '{yp.name}' of shape {y.shape}",
                                        "registered pairs of equal spatial shape",
                                        "Check that sorted inputs and targets match."))
    from fluorecon.cli.stream import fitter, is_secondary_node

    secondary = is_secondary_node(nodes)
    ckpt, extending = ((checkpoint_dir_for(out), False) if secondary else
                       prepare_training_output(out, resume=resume, overwrite=overwrite))
    fit = fitter(method, devices=devices, nodes=nodes)

    def run(cb: ProgressCallback) -> None:
        if ys is not None:
            fit(xs, ys, in_axes, target_axes=tg_axes, checkpoint_dir=ckpt, resume=resume,
                progress=cb, device=device)
        else:
            fit(xs, in_axes, checkpoint_dir=ckpt, resume=resume, progress=cb, device=device)

    train_with_checkpoint(run, method_name, ckpt, extending=extending, quiet=quiet)
    if secondary:  # node 0 holds the model and writes it
        if not quiet:
            _say(f"finished training on this node; node 0 writes {out}")
        return out
    # input statistics for the out-of-distribution check at prediction time (fluorecon qc)
    from fluorecon.trust.ensembles import attach_input_stats

    attach_input_stats(method, xs, in_axes)
    files = {"inputs": [str(p) for p in in_paths]}
    if tg_paths:
        files["targets"] = [str(p) for p in tg_paths]
    return save_trained_model(method, method_name, out, ckpt, files, overwrite=overwrite,
                              extending=extending, quiet=quiet)


ProgressCallback = Callable[[int, int, dict[str, float]], None]


def train_with_checkpoint(run: Callable[[ProgressCallback], None], method_name: str,
                          ckpt: Path, *, extending: bool, quiet: bool) -> None:
    """Call ``run(progress)`` under a training progress bar.

    Ctrl-C raises ``_Interrupted`` (with the checkpoint folder, if the engine saved one);
    a failed extension of a finished model removes its working copy of the training
    state, since the model's own ``training_state/`` stays the source of truth.
    """
    try:
        with training_bar(f"train {method_name}", enabled=not quiet) as cb:
            run(cb)
    except KeyboardInterrupt:
        raise _Interrupted(ckpt if (ckpt / "checkpoint.json").is_file() else None) from None
    except FluoreconError:
        if extending:
            from fluorecon.io.atomic import remove_path

            remove_path(ckpt)
        raise


def save_trained_model(method: Any, method_name: str, out: Path, ckpt: Path,
                       files: dict[str, Any], *, overwrite: bool, extending: bool,
                       quiet: bool) -> Path:
    """Record the training files and provenance, write the model folder, keep the final
    training state inside it (so ``--resume --steps N`` can extend it) and say so."""
    import os

    mc = method.model_config
    method.model_config = mc.model_copy(update={
        "training_data": {**mc.training_data, "files": files},
        "provenance": {**mc.provenance, "command": f"fluorecon train {method_name}",
                       "fluorecon": __version__}})
    path = method.save(out, overwrite=overwrite or extending)
    os.replace(ckpt, path / TRAINING_STATE)
    if not quiet:
        res = method.train_result
        best = ("" if res is None or math.isnan(res.best_val_loss)
                else f", best validation loss {res.best_val_loss:.4g} at step {res.best_step}")
        steps = "" if res is None else f"{res.steps_done} steps"
        _say(f"wrote model {path} ({steps}{best})")
    return path


# --- shared options ---------------------------------------------------------------------
InputsArg = Annotated[list[Path], typer.Argument(
    help="Training images: files, or folders (every .tif/.ome.tif/.zarr/.npy/.png inside, "
         "sorted by name).", show_default=False)]
TargetsOpt = Annotated[list[Path], typer.Option(
    "--target", "-t", help="Target images (file or folder, repeatable), matched to the "
                           "inputs by sorted order; spatial shapes must agree.",
    show_default=False)]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Model folder to write "
                                      "(config.json, weights.safetensors, history.csv/png).")]
AxesOpt = Annotated[str | None, typer.Option(
    "--axes", help="Axes of every image, one letter of STCZYX per dimension (S/T: separate "
                   "images, C: channels). Default: from the files; plain 2D/3D are YX/ZYX.")]
PatchOpt = Annotated[str | None, typer.Option(
    "--patch-size", help="Patch size in pixels: one number or ZxYxX, divisible by 2**depth "
                         "(default 64).")]
StepsOpt = Annotated[int | None, typer.Option("--steps", min=1, help="Optimiser steps "
                                              "(default 2000).")]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", min=1, help="Patches per step "
                                              "(default 16).")]
ValOpt = Annotated[float | None, typer.Option(
    "--validation-fraction", min=0.0, max=0.99, help="Fraction of every image (at the end "
                                                     "of its longest axis) held out for "
                                                     "validation (default 0.1).")]
SeedOpt = Annotated[int | None, typer.Option("--seed", min=0, help="Seed of weights, patches "
                                             "and masks (default 0).")]
DepthOpt = Annotated[int | None, typer.Option("--depth", min=1, max=5, help="U-Net depth "
                                              "(2x downsamplings, default 2).")]
FiltersOpt = Annotated[int | None, typer.Option("--filters", min=1, help="U-Net filters at "
                                                "the top level (default 32).")]
ProbOpt = Annotated[bool, typer.Option("--probabilistic", help="Also predict a per-pixel "
                                       "Laplace scale (uncertainty); trained by its "
                                       "likelihood.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from "
                                         "<out>.checkpoint, or extend a finished model to "
                                         "a larger --steps (same data and other options).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing model "
                                            "folder (and discard an old checkpoint).")]
ParamOpt = Annotated[list[str] | None, typer.Option(
    "--param", "-p", help="Further config field KEY=VALUE, repeatable (e.g. learning_rate=1e-3;"
                          " see `fluorecon methods NAME`).")]
PrecisionOpt = Annotated[TrainPrecision | None, typer.Option(
    "--precision", help="Training arithmetic: fp32 (default); bf16 (forward pass in bfloat16 "
                        "autocast, weights and optimiser fp32: about 2.5x faster on CPUs "
                        "with AMX and on GPUs, slower on other CPUs); auto (bf16 only where "
                        "the device has it natively).")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="torch device: cpu, cuda, "
                                               "cuda:1, ... (default: CUDA if available).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")]


def _fields(patch_size: str | None, steps: int | None, batch_size: int | None,
            validation_fraction: float | None, seed: int | None, depth: int | None,
            filters: int | None, probabilistic: bool, param: list[str] | None,
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Config fields of the options (None: not given), ``extra`` method options and
    ``--param``; a field given both as an option and as ``--param`` is an error."""
    fields = parse_params(param)
    named = {"patch_size": parse_patch_size(patch_size), "steps": steps,
             "batch_size": batch_size, "validation_fraction": validation_fraction,
             "seed": seed, "depth": depth, "base_filters": filters,
             "probabilistic": probabilistic or None, **(extra or {})}
    for k, v in named.items():
        if v is not None:
            if k in fields:
                raise ConfigError(message(f"{k} given both as an option and as --param",
                                          "one value", f"Drop --param {k}=..."))
            fields[k] = v
    return fields


def _precision_field(arguments: dict[str, Any]) -> dict[str, Any]:
    """The ``precision`` config field of ``--precision`` (None: not given)."""
    p = arguments.get("precision")
    return {"precision": p.value if p is not None else None}


def _train_parameters(*, paired: bool, extra: Sequence[inspect.Parameter] = ()
                      ) -> list[inspect.Parameter]:
    """The parameters of a ``fluorecon train`` command, in help order: inputs (and
    ``--target`` when ``paired``), the shared options, ``extra`` method options, then
    ``--param`` and the run options."""

    def opt(name: str, annotation: Any, default: Any = inspect.Parameter.empty
            ) -> inspect.Parameter:
        return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                 default=default, annotation=annotation)

    head = [opt("inputs", InputsArg), *([opt("target", TargetsOpt)] if paired else []),
            opt("out", OutOpt), opt("axes", AxesOpt, None), opt("patch_size", PatchOpt, None),
            opt("steps", StepsOpt, None), opt("batch_size", BatchOpt, None),
            opt("validation_fraction", ValOpt, None), opt("seed", SeedOpt, None),
            opt("depth", DepthOpt, None), opt("filters", FiltersOpt, None),
            opt("probabilistic", ProbOpt, False)]
    tail = [opt("param", ParamOpt, None), opt("resume", ResumeOpt, False),
            opt("overwrite", OverwriteOpt, False), opt("device", DeviceOpt, None),
            opt("precision", PrecisionOpt, None), opt("quiet", QuietOpt, False)]
    return [*head, *extra, *tail]


def _train_command(command: str, doc: str, *, paired: bool,
                   extra: Sequence[inspect.Parameter] = (),
                   method_name: Callable[[dict[str, Any]], str] | None = None,
                   extra_fields: Callable[[dict[str, Any]], dict[str, Any]] | None = None
                   ) -> Callable[..., None]:
    """Register ``fluorecon train COMMAND`` and return it (as ``train_<command>``).

    The command takes the parameters of :func:`_train_parameters` (its signature is what
    typer reads) and calls :func:`run_training` with the method ``method_name(arguments)``
    (default ``command``), the targets when ``paired``, and the config fields of the
    shared options, of ``extra_fields(arguments)`` (None values skipped) and ``--param``.
    """
    from fluorecon.cli.stream import parallel_parameters  # --devices, --nodes

    params = _train_parameters(paired=paired, extra=[*extra, *parallel_parameters()])
    signature = inspect.Signature(params, return_annotation=None)

    def train_command(*args: Any, **kwargs: Any) -> None:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        fields = _fields(a["patch_size"], a["steps"], a["batch_size"],
                         a["validation_fraction"], a["seed"], a["depth"], a["filters"],
                         a["probabilistic"], a["param"],
                         {**(extra_fields(a) if extra_fields else {}),
                          **_precision_field(a)})
        run_training(method_name(a) if method_name else command, a["inputs"],
                     a["target"] if paired else None, out=a["out"], axes=a["axes"],
                     resume=a["resume"], overwrite=a["overwrite"], quiet=a["quiet"],
                     device=a["device"], devices=a["devices"], nodes=a["nodes"],
                     fields=fields)

    train_command.__name__ = train_command.__qualname__ = f"train_{command}"
    train_command.__doc__ = doc
    train_command.__annotations__ = {**{p.name: p.annotation for p in params},
                                     "return": None}
    train_command.__signature__ = signature  # type: ignore[attr-defined]
    return train_app.command(command)(cli_errors(train_command))


train_care = _train_command(
    "care", "CARE: supervised restoration from registered (low, high quality) image pairs.",
    paired=True)
train_n2n = _train_command(
    "n2n", "Noise2Noise: pairs of independent noisy images of the same sample.", paired=True)
train_n2v = _train_command(
    "n2v", "Noise2Void: self-supervised blind-spot training on the noisy images alone.",
    paired=False,
    extra=[inspect.Parameter(
        "n2v2", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=False,
        annotation=Annotated[bool, typer.Option("--n2v2", help="N2V2 variant (blur pooling, "
                                                "no top skip, median replacement): no "
                                                "checkerboard artefacts.")]),
        inspect.Parameter(
        "struct", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
        annotation=Annotated[StructMask | None, typer.Option(
            "--struct", help="structN2V: also hide the neighbours along this line around "
                             "every masked pixel, for noise correlated along X (horizontal), "
                             "Y (vertical) or both (cross); horizontal/vertical train "
                             "without 90-degree turns. Span: --param struct_span=5.")])],
    method_name=lambda a: "n2v2" if a["n2v2"] else "n2v",
    extra_fields=lambda a: {"struct_mask": a["struct"].value if a["struct"] else None})
train_n2s = _train_command(
    "n2s", "Noise2Self: self-supervised J-invariant training with grid masking.",
    paired=False)


# --- prediction -------------------------------------------------------------------------
def parse_tile(text: str, ndim: int) -> int | tuple[int, ...] | str:
    """``auto`` / ``none`` as given; ``"256"`` -> 256; ``"16x256x256"`` -> a tuple."""
    low = text.strip().lower()
    if low in ("auto", "none"):
        return low
    try:
        dims = tuple(int(p) for p in low.replace(",", "x").split("x"))
    except ValueError:
        dims = ()
    if len(dims) not in (1, ndim) or min(dims, default=0) < 1:
        raise ConfigError(message(f"--tile {text!r}", f"auto, none, one size or {ndim} sizes "
                                  "joined by x", "E.g. --tile auto or --tile 256."))
    return dims[0] if len(dims) == 1 else dims


def _scale_path(output: Path) -> Path:
    """``out.ome.tif`` -> ``out_scale.ome.tif`` (the longest known suffix is kept)."""
    from fluorecon.io.validate import FORMAT_SUFFIXES

    name = output.name
    suffix = max((s for ss in FORMAT_SUFFIXES.values() for s in ss
                  if name.lower().endswith(s)), key=len, default=output.suffix)
    return output.with_name(name[: len(name) - len(suffix)] + "_scale" + suffix)


@cli_errors
def predict_command(
    input: Annotated[Path, typer.Argument(help="Image to restore (TIFF, OME-TIFF, OME-Zarr, "
                                          ".npy, PNG).", show_default=False)],
    model: Annotated[Path, typer.Option("--model", "-m", help="Model folder written by "
                                        "`fluorecon train` (config.json + "
                                        "weights.safetensors), or a bioimage.io package "
                                        "(.zip, folder, rdf.yaml).", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output image path; the "
                                         "format follows the suffix. Probabilistic models "
                                         "also write <stem>_scale<suffix>.",
                                         show_default=False)],
    axes: Annotated[str | None, typer.Option(
        "--axes", help="Axes of the input, one letter of STCZYX per dimension (S/T/C are "
                       "looped over; multi-channel models take C jointly). Default: from "
                       "the file; plain 2D/3D are YX/ZYX.")] = None,
    tile: Annotated[str, typer.Option("--tile", help="auto: tiles sized to a 256 MiB memory "
                                      "budget, raised (up to a quarter of the free memory) "
                                      "where tiles that small would be mostly halo, as for "
                                      "3D networks; none: whole images; or a tile size (256, "
                                      "16x256x256). Tiles overlap by the receptive field and "
                                      "are cropped, so the result equals whole-image "
                                      "prediction.")] = "auto",
    tta: Annotated[bool, typer.Option("--tta", help="Average over the 8 flips/rotations of "
                                      "the YX plane (8x slower, less noise).")] = False,
    uncertainty: Annotated[str | None, typer.Option(
        "--uncertainty", help="Also write <stem>_std<suffix>: probabilistic (the model's "
                              "Laplace scale), ensemble (members' spread; --model an "
                              "ensemble folder), or both (mixture). Recalibrated when "
                              "fluorecon calibrate stored a factor.")] = None,
    consistency: Annotated[bool, typer.Option(
        "--consistency", help="Also write <stem>_residual (input minus prediction, in "
                              "noise standard deviations) and <stem>_flagged (regions the "
                              "input does not support), denoising forward model.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Tiles per network "
                                            "call (more can be faster for many small "
                                            "tiles).")] = 1,
    precision: Annotated[str, typer.Option("--precision", help="fp32 (exact), bf16 (GPUs and "
                                           "CPUs with AMX/AVX512-BF16; slower on others) or "
                                           "fp16 (CUDA).")] = "fp32",
    compile_net: Annotated[bool, typer.Option("--compile", help="torch.compile the network "
                                              "first (tens of seconds; pays for large "
                                              "data).")] = False,
    stream: Annotated[bool, typer.Option(
        "--stream", help="Write the output (OME-Zarr, or TIFF at the end) block by block, "
                         "resumably, with memory bounded by the block and tile sizes "
                         "(implied by --resume, --workers, --scheduler; prediction only)."
    )] = False,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue an interrupted streamed run into the same --output, "
                         "skipping the blocks already written.")] = False,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, help="Stream on a local dask.distributed cluster of N worker "
                                 "processes.")] = None,
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", help="Stream on a running dask.distributed cluster: address "
                            "(tcp://host:8786) or scheduler file (*.json); input, model and "
                            "output on storage all workers see.")] = None,
    device: DeviceOpt = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing output "
                                            "files (never the input).")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Restore an image with a trained model folder (tiled, exact crop-and-stitch)."""
    from fluorecon.cli.export import is_bioimageio_package, predict_bioimageio

    if is_bioimageio_package(model):  # bioimage.io package: .zip, folder or rdf.yaml
        predict_bioimageio(model, input, output, axes=axes, tile=tile, batch_size=batch_size,
                           device=device, overwrite=overwrite, quiet=quiet, unsupported={
                               "--tta": tta, "--uncertainty": uncertainty, "--consistency":
                               consistency, "--stream": stream or resume or workers or
                               scheduler, "--precision": precision != "fp32",
                               "--compile": compile_net})
        return
    from fluorecon.cli.stream import predict_streamed, wants_stream

    if wants_stream(stream=stream, resume=resume, workers=workers, scheduler=scheduler):
        predict_streamed(model, input, output, axes=axes, tile=tile, tta=tta,
                         uncertainty=uncertainty, consistency=consistency, workers=workers,
                         scheduler=scheduler, resume=resume, device=device,
                         overwrite=overwrite, quiet=quiet)
        return
    from fluorecon.io import read_image, write_image
    from fluorecon.predict import predict_tiled, with_tta

    try:
        from fluorecon.methods.learned import load_model_method
    except ImportError as exc:
        raise ConfigError(message(f"a learned model, which needs {exc.name or 'torch'} "
                                  "(not installed)", "the learned-methods extra",
                                  "Install it with: pip install 'fluorecon[torch]'.")) from None
    from fluorecon.cli.trust import predict_with_uncertainty, write_consistency
    from fluorecon.trust.ensembles import is_ensemble_folder

    if uncertainty is not None or is_ensemble_folder(model):
        written = predict_with_uncertainty(model, input, output, axes=axes,
                                           uncertainty=uncertainty, consistency=consistency,
                                           tta=tta, device=device, overwrite=overwrite,
                                           quiet=quiet)
        if not quiet:
            for path in written:
                _say(f"wrote {path}")
        return
    method = load_model_method(model, device=device)
    method.set_inference(precision=precision, compile=compile_net)
    mc = method.model_config
    if consistency and getattr(method, "resamples", False):
        raise ConfigError(message(f"--consistency with a {mc.method!r} model (its output grid "
                                  "is finer than the input)", "a model predicting on the "
                                  "input grid", "Use fluorecon qc --task upsample --factor N "
                                  "on the prediction instead."))
    if getattr(method, "resamples", False):  # upsample / iso: the output grid is finer
        from fluorecon.cli.restore3d import predict_resampling

        predict_resampling(method, input, output, model=model, axes=axes, tta=tta,
                           overwrite=overwrite, quiet=quiet)
        return
    image, meta = read_image(input, axes=axes, lazy=True)
    sp = spatial_axes(meta.axes)
    if len(sp) != mc.unet.ndim:
        raise AxesError(message(f"a {len(sp)}D image (axes {meta.axes!r}) for a "
                                f"{mc.unet.ndim}D model", f"{mc.unet.ndim}D images "
                                f"(model axes {mc.axes!r})", "Pass --axes, or use a model "
                                "trained on data like this."))
    mode = parse_tile(tile, len(sp))
    outputs: dict[str, np.ndarray] = {}
    kinds = ["mean"] + (["scale"] if mc.unet.probabilistic else [])
    counts = method.channel_counts  # multi-channel models take C jointly
    if counts is not None:
        if "C" not in meta.axes:
            raise AxesError(message(f"axes {meta.axes!r} for a model with {counts[0]} "
                                    "input channels", "a C axis",
                                    "Pass --axes with C, e.g. --axes CYX."))
        if tta and counts[0] != counts[1]:
            raise ConfigError(message(f"--tta with a model mapping {counts[0]} to "
                                      f"{counts[1]} channels", "as many output as input "
                                      "channels for test-time augmentation", "Drop --tta."))
    block_axes = ("C" if counts is not None else "") + sp
    halo = method.receptive_field
    if halo is None:
        mode = "none"  # group norm: outputs depend on the whole block
        halo = 0
    sp_shape = tuple(int(image.shape[meta.axes.index(a)]) for a in sp)
    tile_shape = None if mode == "auto" else (sp_shape if mode == "none" else mode)

    def block_fn(kind: str) -> Callable[[np.ndarray], np.ndarray]:
        def fn(batch: np.ndarray) -> np.ndarray:
            if kind == "scale":
                return method.predict_laplace_batch(batch, block_axes)[1]
            return method.predict_batch(batch, block_axes)

        # a model trained without 90-degree turns (Y and X differ) averages mirrors only
        return with_tta(fn, ndim_spatial=len(sp), channels=counts is not None,
                        rotations=getattr(method.config, "rotate", True)) if tta else fn

    with progress_bar(f"predict ({mc.method})", enabled=not quiet) as cb:
        for i, kind in enumerate(kinds):
            def prog(done: int, total: int, i: int = i) -> None:
                cb(i * total + done, len(kinds) * total)

            outputs[kind] = predict_tiled(block_fn(kind), image, meta.axes,
                                          tile_shape=tile_shape, halo=halo,
                                          divisible_by=method.divisible_by,
                                          bytes_per_voxel=method.bytes_per_voxel,
                                          batch_size=batch_size, progress=prog,
                                          joint_channels=counts is not None,
                                          out_channels=None if counts is None else counts[1])
    out_meta = meta
    if counts is not None and counts[0] != counts[1]:
        out_meta = meta.model_copy(update={"channel_names": None})
    prov = {"fluorecon": __version__, "command": "predict", "model": str(model),
            "method": mc.method, "input": str(input), "tile": tile, "tta": tta,
            "precision": precision}
    written = []
    scale_path = _scale_path(output)
    if "scale" in outputs and not overwrite and scale_path.exists():
        raise OutputExistsError(message(f"an existing scale output {scale_path}",
                                        "a new path", "Pass --overwrite or choose another "
                                        "--output."))
    written.append(write_image(output, outputs["mean"], out_meta.model_copy(
        update={"extra": {**prov, "quantity": "prediction"}}), overwrite=overwrite,
        inputs=[input, model]))
    if "scale" in outputs:
        written.append(write_image(scale_path, outputs["scale"], out_meta.model_copy(
            update={"extra": {**prov, "quantity": "Laplace scale b (std = sqrt(2) b), "
                                                  "target units"}}),
            overwrite=overwrite, inputs=[input, model, output]))
    if consistency:
        written += write_consistency(np.asarray(image), outputs["mean"], out_meta, output,
                                     model=model, input=input, overwrite=overwrite)
    if not quiet:
        for path in written:
            _say(f"wrote {path}")


# Train commands of the simulation-trained methods (deconv, upsample, iso).
from fluorecon.cli import restore3d as _restore3d  # noqa: E402,F401
