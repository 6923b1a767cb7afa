"""The ``fluorecon`` command: simulate, denoise, deconvolve, evaluate, demo, info, methods.

Every command reads and writes images through :mod:`fluorecon.io`, runs methods through the
registry, prints one line (``error: ...``) and exits with code 2 on bad input, and writes
outputs atomically without overwriting inputs or existing files unless ``--overwrite``.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from fluorecon import __version__
from fluorecon.cli.params import parse_params
from fluorecon.cli.progress import console, progress_bar
from fluorecon.core.errors import ConfigError, FluoreconError, message

app = typer.Typer(
    name="fluorecon",
    help="Fluorescence image reconstruction that tells you how far to trust it.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

F = TypeVar("F", bound=Callable[..., Any])


def handles_errors(func: F) -> F:
    """Turn fluorecon errors into one line on stderr and exit code 2 (130 on Ctrl-C)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FluoreconError as exc:
            console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print("interrupted: no output was written", markup=False)
            raise typer.Exit(130) from None
        except (PermissionError, IsADirectoryError, NotADirectoryError) as exc:
            console.print(f"error: {exc.strerror or exc}: {exc.filename}", markup=False,
                          highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"fluorecon {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version_callback,
                                          is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Fluorescence image reconstruction that tells you how far to trust it."""


# --- shared options -----------------------------------------------------------------
AxesOpt = Annotated[str | None, typer.Option(
    "--axes", help="Axes of the input, one letter of STCZYX per dimension (e.g. YX, ZYX, CYX). "
                   "Default: read from the file; plain 2D/3D files are YX/ZYX.")]
OverwriteOpt = Annotated[bool, typer.Option(
    "--overwrite", help="Replace an existing output file (never an input).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")]
ParamOpt = Annotated[list[str] | None, typer.Option(
    "--param", "-p", help="Method parameter KEY=VALUE, repeatable (see `fluorecon methods NAME`).")]


def _method(name: str, kind: str, **kwargs: Any):
    from fluorecon.methods import available, get_method

    cls = get_method(name)
    if cls.kind != kind:
        raise ConfigError(message(f"method {name!r} (a {cls.kind} method)", f"a {kind} method: "
                                  f"{', '.join(available(kind))}", "Choose one of those."))
    return cls(**kwargs)


def _provenance(command: str, method: Any, inputs: dict[str, Path]) -> dict[str, Any]:
    return {
        "fluorecon": __version__,
        "command": command,
        "method": method.name,
        "config": method.config.model_dump(mode="json"),
        "inputs": {k: str(v) for k, v in inputs.items()},
    }


def _summary(method: Any) -> str:
    parts = []
    calib = getattr(method, "calibration_", None)
    if calib is not None:
        parts.append("calibrated: " + (calib.summary() if hasattr(calib, "summary") else str(calib)))
    result = getattr(method, "last_result_", None)
    if result is not None:
        parts.append(f"{result.iterations} iterations, stop: {result.stop_reason}, boundary: "
                     f"{result.boundary}" if hasattr(result, "stop_reason") else str(result))
    return "; ".join(parts)


def _wrote(path: Path, method: Any, quiet: bool) -> None:
    if not quiet:
        info = _summary(method)
        console.print(f"wrote {path}" + (f" ({info})" if info else ""), markup=False,
                      highlight=False, soft_wrap=True)


# --- commands -----------------------------------------------------------------------
@app.command()
@handles_errors
def denoise(
    input: Annotated[Path, typer.Argument(help="Noisy image (TIFF, OME-TIFF, OME-Zarr, .npy, PNG).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output image path; the "
                                         "format follows the suffix.")],
    method: Annotated[str, typer.Option("--method", "-m", help="Denoiser: auto (picks the best "
                                        "by the self-supervised J-invariant loss), gaussian, tv, "
                                        "nlm, bm3d (optional extra, non-commercial licence).")] = "auto",
    axes: AxesOpt = None,
    param: ParamOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Denoise an image; parameters not given are calibrated on the image itself (J-invariance)."""
    from fluorecon.io import read_image, write_image

    image, meta = read_image(input, axes=axes)
    den = _method(method, "denoise", **parse_params(param))
    with progress_bar(f"denoise ({method})", enabled=not quiet) as cb:
        result = den.predict(image, meta.axes, progress=cb)
    out_meta = meta.model_copy(update={"extra": _provenance("denoise", den, {"input": input})})
    path = write_image(output, result, out_meta, overwrite=overwrite, inputs=[input])
    _wrote(path, den, quiet)


@app.command()
@handles_errors
def deconvolve(
    input: Annotated[Path, typer.Argument(help="Blurred image (2D or 3D, any supported format).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output image path.")],
    psf: Annotated[Path, typer.Option("--psf", help="PSF image with the same spatial axes and "
                                      "pixel size as the input, centred (normalised to sum 1).")],
    method: Annotated[str, typer.Option("--method", "-m", help="rl (Richardson-Lucy), rl-tv "
                                        "(with total-variation regularisation) or wiener.")] = "rl",
    iterations: Annotated[int | None, typer.Option("--iterations", "-n", min=1,
                                                   help="Richardson-Lucy iterations (rl, rl-tv).")] = None,
    tv_weight: Annotated[float | None, typer.Option("--tv-weight", min=0.0, help="TV "
                                                    "regularisation weight lambda (rl-tv), "
                                                    "dimensionless, typically 0.001-0.01.")] = None,
    background: Annotated[float | None, typer.Option("--background", min=0.0, help="Constant "
                                                     "background in input intensity units "
                                                     "(camera offset plus dark signal).")] = None,
    axes: AxesOpt = None,
    param: ParamOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Deconvolve an image with a PSF (Richardson-Lucy, RL-TV or Wiener)."""
    from fluorecon.io import read_image, write_image

    image, meta = read_image(input, axes=axes)
    kernel, _ = read_image(psf)
    fields = parse_params(param)
    for key, value in (("iterations", iterations), ("tv_weight", tv_weight),
                       ("background", background)):
        if value is not None:
            fields[key] = value
    dec = _method(method, "deconvolve", psf=kernel, **fields)
    with progress_bar(f"deconvolve ({method})", enabled=not quiet) as cb:
        result = dec.predict(image, meta.axes, progress=cb)
    out_meta = meta.model_copy(update={"extra": _provenance("deconvolve", dec,
                                                           {"input": input, "psf": psf})})
    path = write_image(output, result, out_meta, overwrite=overwrite, inputs=[input, psf])
    _wrote(path, dec, quiet)


@app.command()
@handles_errors
def evaluate(
    prediction: Annotated[Path, typer.Argument(help="Restored image.")],
    reference: Annotated[Path, typer.Option("--reference", "-r", help="Ground-truth or "
                                            "high-quality reference of the same shape.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object (psnr, ssim, "
                                          "nrmse, plain and normalised) instead of a table.")] = False,
    axes: AxesOpt = None,
) -> None:
    """Compare a prediction with a reference: PSNR (dB), SSIM, NRMSE, plain and normalised.

    Normalised metrics percentile-normalise the reference and fit the prediction to it by
    least squares (scale and offset) first, as CSBDeep's evaluation does; use them when the
    two images are not on the same intensity scale.
    """
    from fluorecon.io import read_image
    from fluorecon.metrics import evaluate as evaluate_images

    pred, pmeta = read_image(prediction, axes=axes)
    ref, _ = read_image(reference, axes=axes or pmeta.axes)
    scores = evaluate_images(pred, ref, axes=pmeta.axes)
    if as_json:
        typer.echo(json.dumps(scores, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"{prediction.name} vs {reference.name}")
    table.add_column("metric")
    table.add_column("plain", justify="right")
    table.add_column("normalised", justify="right")
    for key in ("psnr", "ssim", "nrmse"):
        table.add_row(key.upper() + (" (dB)" if key == "psnr" else ""), f"{scores[key]:.4f}",
                      f"{scores[key + '_normalized']:.4f}")
    console.print(table)


@app.command()
@handles_errors
def simulate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write input.ome.tif, "
                                      "target.ome.tif, psf.ome.tif and simulation.json into.")],
    task: Annotated[str, typer.Option("--task", help="denoise (target: blurred noise-free "
                                      "image), deconvolve (target: the object) or upsample.")] = "denoise",
    shape: Annotated[str, typer.Option("--shape", help="Image shape in pixels, YxX or ZxYxX, "
                                       "e.g. 256x256 or 32x128x128.")] = "256x256",
    phantom: Annotated[str, typer.Option("--phantom", help="filaments, beads, nuclei, rings "
                                         "or mixed.")] = "filaments",
    photons: Annotated[float, typer.Option("--photons", min=0.0, help="Expected photons at the "
                                           "brightest point of the noise-free image.")] = 50.0,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same data).")] = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """Simulate a (degraded input, ground truth) pair with a widefield PSF and an sCMOS camera."""
    from fluorecon.cli.simulation import write_simulation

    dims = _parse_shape(shape)
    paths = write_simulation(out, task=task, shape=dims, phantom=phantom, photons=photons,
                             seed=seed, overwrite=overwrite)
    for path in paths:
        console.print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True)


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(p) for p in text.lower().replace(",", "x").split("x"))
    except ValueError:
        dims = ()
    if len(dims) not in (2, 3) or min(dims, default=0) < 8:
        raise ConfigError(message(f"--shape {text!r}", "2 or 3 sizes of at least 8 pixels, "
                                  "like 256x256 or 32x128x128", "Fix --shape."))
    return dims


@app.command()
@handles_errors
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for report.html and its "
                                      "figures (created).")] = Path("fluorecon-demo"),
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Simulate 2D and 3D data, run classical (and, with torch, small learned) methods, evaluate, write report.html."""
    from fluorecon.report.demo import run_demo

    with progress_bar("demo", enabled=not quiet) as cb:
        report = run_demo(out, overwrite=overwrite, progress=cb)
    if not quiet:
        console.print(f"report: {report}", markup=False, highlight=False, soft_wrap=True)
    else:
        typer.echo(str(report))


@app.command()
@handles_errors
def info(path: Annotated[Path, typer.Argument(help="Image file or OME-Zarr folder.")]) -> None:
    """Show shape, dtype, axes and pixel sizes of an image without reading its pixels."""
    from fluorecon.io import image_info

    typer.echo(json.dumps(image_info(path), indent=2, default=str))


@app.command()
@handles_errors
def methods(name: Annotated[str | None, typer.Argument(help="Show the parameters of one "
                                                       "method.")] = None) -> None:
    """List the available methods, or the parameters of one."""
    from fluorecon.methods import available, get_method

    from fluorecon.methods.registry import is_lazy

    if name is None:
        for n in available():
            if is_lazy(n):
                typer.echo(f"{n:10s} {'learned':11s} trained network (needs the torch extra; "
                           f"`fluorecon methods {n}` for details)")
                continue
            cls = get_method(n)
            typer.echo(f"{n:10s} {cls.kind:11s} {cls.summary or (cls.__doc__ or '').strip().splitlines()[0]}")
        return
    cls = get_method(name)
    typer.echo(f"{name} ({cls.kind}): {(cls.__doc__ or '').strip().splitlines()[0]}")
    for field, spec in cls.Config.model_fields.items():
        if field == "version":
            continue
        typer.echo(f"  --param {field}=...  {spec.description or ''} (default: {spec.default!r})")


def _add_commands() -> None:
    """Attach the sub-commands defined in their own modules (torch is imported only when a
    learned command runs, so ``fluorecon --help`` stays fast and works without it)."""
    from fluorecon.cli.learned import predict_command, train_app
    from fluorecon.cli.lightfield import lightfield_app
    from fluorecon.cli.report import report_app
    from fluorecon.cli.restore3d import psf_from_beads_command
    from fluorecon.cli.sim import sim_app
    from fluorecon.cli.smlm import smlm_app
    from fluorecon.cli.spectral import spectral_app
    from fluorecon.cli.stabilize import stabilize_app
    from fluorecon.cli.stream import stream_app
    from fluorecon.cli.trust import register as register_trust

    app.add_typer(train_app, name="train")
    app.command("predict")(handles_errors(predict_command))
    register_trust(app)  # qc, calibrate
    app.command("psf-from-beads")(psf_from_beads_command)
    app.add_typer(spectral_app)  # unmix, unmix-train
    app.add_typer(stabilize_app)  # stabilize, stabilize-train
    app.add_typer(smlm_app, name="smlm")
    app.add_typer(sim_app)  # fluorecon sim ...
    app.add_typer(lightfield_app)  # fluorecon lightfield ...
    app.add_typer(stream_app)  # fluorecon stream ...
    from fluorecon.cli.export import export_command

    app.command("export")(export_command)  # fluorecon export --format bioimageio|onnx
    app.add_typer(report_app, name="report")  # fluorecon report train|evaluate


_add_commands()


def main() -> None:
    """Console-script entry point."""
    app(prog_name="fluorecon")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
