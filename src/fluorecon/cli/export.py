"""``fluorecon export``: a trained model folder as a bioimage.io package or an ONNX file,
and ``fluorecon predict --model PACKAGE`` for bioimage.io packages.

torch, bioimageio.spec/core and onnx are imported inside the commands, so ``fluorecon
--help`` stays fast and works without them.
"""

from __future__ import annotations

import enum
import logging
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from fluorecon import __version__
from fluorecon.cli.learned import _say, cli_errors, parse_tile
from fluorecon.cli.progress import progress_bar
from fluorecon.core.axes import spatial_axes
from fluorecon.core.errors import AxesError, ConfigError, message
from fluorecon.io import check_output_target


class ExportFormat(str, enum.Enum):
    """Formats of ``fluorecon export``."""

    bioimageio = "bioimageio"
    onnx = "onnx"


def _require(module: str, extra: str = "bioimageio") -> None:
    import importlib.util

    if importlib.util.find_spec(module.split(".")[0]) is None or \
            importlib.util.find_spec(module) is None:
        raise ConfigError(message(f"an export that needs {module} (not installed)",
                                  f"the {extra} extra", f"Install it with: pip install "
                                  f"'fluorecon[{extra}]'."))


@cli_errors
def export_command(
    model: Annotated[Path, typer.Argument(help="Model folder written by `fluorecon train` "
                                          "(config.json + weights.safetensors).",
                                          show_default=False)],
    out: Annotated[Path, typer.Argument(help="bioimageio: a .zip package, or a folder for "
                                        "an unzipped one; onnx: the .onnx file (a .json "
                                        "sidecar with the normalisation is written next "
                                        "to it).", show_default=False)],
    format: Annotated[ExportFormat, typer.Option(
        "--format", "-f", help="bioimageio: BioImage Model Zoo package (spec 0.5); onnx: "
                               "the network as ONNX + normalisation sidecar.")
    ] = ExportFormat.bioimageio,
    weights: Annotated[list[str] | None, typer.Option(
        "--weights", help="bioimageio weight formats, repeatable: pytorch_state_dict "
                          "(always included), onnx, torchscript. Default: "
                          "pytorch_state_dict and onnx.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Model name in rdf.yaml.")] = None,
    description: Annotated[str | None, typer.Option(
        "--description", help="One-paragraph description in rdf.yaml.")] = None,
    author: Annotated[list[str] | None, typer.Option(
        "--author", help="Author name, repeatable (default: 'fluorecon user').")] = None,
    license: Annotated[str, typer.Option("--license", help="SPDX licence of the weights.")
                       ] = "CC-BY-4.0",
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Extra tag, repeatable.")
                   ] = None,
    notes: Annotated[Path | None, typer.Option(
        "--notes", help="Markdown file added to the package README (sample, microscope, "
                        "intended use).")] = None,
    test_input: Annotated[Path | None, typer.Option(
        "--test-input", help="Image used as the package's test input (model layout; "
                             "cropped to multiples of 2**depth, at most 256 pixels per "
                             "axis; at least twice the halo). Default: a seeded "
                             "synthetic image.")] = None,
    axes: Annotated[str | None, typer.Option(
        "--axes", help="Axes of --test-input (default: from the file).")] = None,
    opset: Annotated[int, typer.Option("--opset", min=17, help="ONNX operator set.")] = 18,
    test: Annotated[bool, typer.Option(
        "--test/--no-test", help="Run bioimageio.core's test of the package after writing "
                                 "it (reproduces the test output with every weight "
                                 "format).")] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs "
                                            "(never the model).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary."
                                        )] = False,
) -> None:
    """Export a trained model as a bioimage.io package (validated, tested) or ONNX."""
    try:
        from fluorecon.methods.learned import load_model_method
    except ImportError as exc:
        raise ConfigError(message(f"a learned model, which needs {exc.name or 'torch'} "
                                  "(not installed)", "the learned-methods extra",
                                  "Install it with: pip install 'fluorecon[torch]'.")) from None
    _require("onnx" if format == ExportFormat.onnx else "bioimageio.spec")
    # torch's ONNX exporter logs a warning per optional torchvision operator it skips
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    method = load_model_method(model)
    if format == ExportFormat.onnx:
        _require("onnxruntime")
        from fluorecon.methods.learned.onnx_export import export_onnx

        if weights or name or description or author or tag or notes or test_input:
            raise ConfigError(message("bioimageio options with --format onnx",
                                      "only --opset and --overwrite", "Drop them."))
        with progress_bar("export onnx", enabled=not quiet) as cb:
            cb(0, 1)
            res = export_onnx(method, out, opset=opset, overwrite=overwrite)
            cb(1, 1)
        if not quiet:
            _say(f"wrote {res.onnx_path} and {res.sidecar_path} (onnxruntime vs torch: "
                 f"max |diff| {res.max_abs_diff:.2g})")
        return
    from fluorecon.methods.learned.bioimageio_export import (
        ALL_WEIGHT_FORMATS,
        DEFAULT_WEIGHT_FORMATS,
        check_exportable,
        export_bioimageio,
        check_bioimageio_package,
    )

    check_exportable(method)  # refuse before reading anything else
    bad = [w for w in weights or () if w not in ALL_WEIGHT_FORMATS]
    if bad:
        raise ConfigError(message(f"--weights {bad[0]}", "one of "
                                  f"{', '.join(ALL_WEIGHT_FORMATS)}",
                                  "Repeat --weights for several formats."))
    check_output_target(out, overwrite=overwrite, inputs=[model])
    x = None if test_input is None else _read_test_input(test_input, axes, method)
    note_text = None
    if notes is not None:
        try:
            note_text = notes.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(message(f"--notes {notes} that cannot be read ({exc})",
                                      "a readable Markdown file", "Check the path.")) from None
    with progress_bar("export bioimageio", enabled=not quiet) as cb:
        res = export_bioimageio(method, out, weight_formats=tuple(weights or
                                                                  DEFAULT_WEIGHT_FORMATS),
                                name=name, description=description, authors=author or (),
                                license=license, tags=tag or (), test_input=x,
                                notes=note_text, opset=opset, overwrite=overwrite,
                                progress=cb)
    if not quiet:
        _say(f"wrote {res.path} ({', '.join(res.weight_formats)}; bioimage.io format "
             f"{res.validation})")
        for w in res.warnings:
            _say(f"warning: {w}")
    if test:
        summary = check_bioimageio_package(res.path)
        failed = [f"{d.name}: {e.msg}" for d in summary.details if d.status == "failed"
                  for e in (d.errors or [])] or [d.name for d in summary.details
                                                  if d.status == "failed"]
        if summary.status != "passed":
            first = " ".join(str(failed[0]).split())[:200] if failed else summary.status
            raise ConfigError(message(f"a package that fails bioimageio.core's test "
                                      f"({first})",
                                      "a package that reproduces its test output",
                                      "Report this as a fluorecon bug; the package was "
                                      f"kept at {res.path}."))
        if not quiet:
            _say(f"bioimageio.core test: {summary.status} "
                 f"({sum(d.status == 'passed' for d in summary.details)} checks)")


def _read_test_input(path: Path, axes: str | None, method: Any) -> np.ndarray:
    """Read ``--test-input`` into ``(C_in, *spatial)``, cropped to valid sizes."""
    from fluorecon.io import read_image

    mc = method.model_config
    image, meta = read_image(path, axes=axes)
    up = meta.axes
    sp = spatial_axes(up)
    if len(sp) != mc.unet.ndim or any(a in up for a in "ST"):
        raise AxesError(message(f"a test input with axes {up!r}", f"one {mc.unet.ndim}D "
                                f"image ({mc.axes!r})", "Pass one image (--axes)."))
    arr = np.asarray(image, np.float32)
    if "C" in up:
        arr = np.moveaxis(arr, up.index("C"), 0)
        order = [1 + "".join(a for a in up if a != "C").index(a) for a in sp]
        arr = np.transpose(arr, [0] + order)
    else:
        arr = np.transpose(arr, [up.index(a) for a in sp])[None]
    div = mc.unet.divisible_by
    crop = tuple(slice(0, min(256, n) // div * div) for n in arr.shape[1:])
    return np.ascontiguousarray(arr[(slice(None),) + crop])


def is_bioimageio_package(path: Path) -> bool:
    """Whether ``--model`` names a bioimage.io package (a ``.zip``, an ``rdf.yaml`` /
    ``*.bioimageio.yaml``, or a folder holding one) rather than a fluorecon model folder."""
    p = Path(path)
    if p.is_dir():
        return not (p / "config.json").is_file() and any(
            (p / n).is_file() for n in ("rdf.yaml", "bioimageio.yaml"))
    name = p.name.lower()
    return p.is_file() and name.endswith((".zip", "rdf.yaml", "bioimageio.yaml"))


def predict_bioimageio(model: Path, input: Path, output: Path, *, axes: str | None,
                       tile: str, batch_size: int, device: str | None, overwrite: bool,
                       quiet: bool, unsupported: dict[str, Any] | None = None) -> list[Path]:
    """``fluorecon predict --model PACKAGE``: tiled prediction with a bioimage.io package.

    Sample statistics of the package's pre-processing (percentiles, mean, std) are
    computed once on the whole input (:meth:`BioimageioModel.with_statistics`), then the
    image is predicted tile by tile with the declared halo and size step. Options of
    fluorecon models that a package cannot honour (``unsupported``: option name to value,
    falsy when unset) are refused.
    """
    used = [k for k, v in (unsupported or {}).items() if v]
    if used:
        raise ConfigError(message(f"{used[0]} with a bioimage.io package",
                                  "plain (tiled) prediction", f"Drop {used[0]}, or export "
                                  "a fluorecon model folder instead."))
    _require("bioimageio.core")
    from fluorecon.io import read_image, write_image
    from fluorecon.methods.learned.bioimageio_import import BioimageioModel
    from fluorecon.predict import predict_method_tiled

    method = BioimageioModel(source=str(model), device=device)
    image, meta = read_image(input, axes=axes, lazy=True)
    sp = spatial_axes(meta.axes)
    if sp != method.layout.spatial:
        raise AxesError(message(f"an image with spatial axes {sp!r} (axes {meta.axes!r})",
                                f"spatial axes {method.layout.spatial!r} as the package "
                                "declares", "Pass --axes, or use a matching package."))
    counts = method.channel_counts
    if counts is not None and "C" not in meta.axes:
        raise AxesError(message(f"axes {meta.axes!r} for a package with {counts[0]} input "
                                "channels", "a C axis", "Pass --axes with C, e.g. CYX."))
    fixed = method.with_statistics(image, meta.axes)
    mode = parse_tile(tile, len(sp))
    sp_shape = tuple(int(image.shape[meta.axes.index(a)]) for a in sp)
    tile_shape = None if mode == "auto" else (sp_shape if mode == "none" else mode)
    if fixed.receptive_field is None and mode != "none":
        tile_shape = sp_shape  # no halo declared: whole blocks are the exact answer
    with progress_bar(f"predict ({method.description.name})", enabled=not quiet) as cb:
        out = predict_method_tiled(fixed, image, meta.axes, tile_shape=tile_shape,
                                   batch_size=batch_size, progress=cb)
    out_meta = meta
    if counts is not None and counts[0] != counts[1]:
        out_meta = meta.model_copy(update={"channel_names": None})
    prov = {"fluorecon": __version__, "command": "predict", "model": str(model),
            "method": "bioimageio", "package": method.description.name,
            "weight_format": method.weight_format, "input": str(input), "tile": tile,
            "quantity": "prediction"}
    path = write_image(output, out, out_meta.model_copy(update={"extra": prov}),
                       overwrite=overwrite, inputs=[input, model])
    if not quiet:
        _say(f"wrote {path}")
    return [path]
