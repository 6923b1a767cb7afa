"""``fluorecon train deconv|upsample|iso``, ``fluorecon psf-from-beads`` and the prediction of
models whose output lies on a finer grid (upsampling, isotropic restoration).

The train commands take high-quality images (``deconv``, ``upsample``) or the anisotropic
stacks themselves (``iso``), make training pairs with the physical forward model of
:mod:`fluorecon.simulate.semisynthetic`, train with a progress bar, checkpoint into
``<MODEL_DIR>.checkpoint/`` and write the model folder atomically, exactly like
``fluorecon train care``. torch is imported only when a command runs.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from fluorecon import __version__
from fluorecon.cli.learned import (
    _fields,
    _learned_class,
    _precision_field,
    _say,
    _train_parameters,
    cli_errors,
    expand_image_paths,
    prepare_training_output,
    read_images,
    save_trained_model,
    train_app,
    train_with_checkpoint,
)
from fluorecon.cli.progress import progress_bar
from fluorecon.core.axes import spatial_axes
from fluorecon.core.errors import AxesError, ConfigError, message

__all__ = ["predict_resampling", "psf_from_beads_command", "run_simulated_training"]


def _opt(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default,
                             annotation=annotation)


PsfOpt = Annotated[Path | None, typer.Option(
    "--psf", help="PSF image (same spatial axes and sampling as the images, centred).",
    show_default=False)]
PhotonsOpt = Annotated[float | None, typer.Option(
    "--photons", min=0.0, help="Peak expected photons of the simulated inputs (camera noise); "
                               "0 for noise-free inputs.")]
CameraOpt = Annotated[str | None, typer.Option("--camera", help="Camera model of the simulated "
                                               "inputs: scmos, emccd or ideal.")]


def _sim_fields(a: dict[str, Any]) -> dict[str, Any]:
    fields = _fields(a["patch_size"], a["steps"], a["batch_size"], a["validation_fraction"],
                     a["seed"], a["depth"], a["filters"], a["probabilistic"], a["param"],
                     _precision_field(a))
    named: dict[str, Any] = {"camera": a.get("camera")}
    if a.get("photons") is not None:
        named["photons"] = None if a["photons"] == 0 else a["photons"]
    for key in ("factor", "upsample_axes"):
        if a.get(key) is not None:
            named[key] = a[key]
    for k, v in named.items():
        if v is not None or k == "photons":
            if k in fields:
                raise ConfigError(message(f"{k} given both as an option and as --param",
                                          "one value", f"Drop --param {k}=..."))
            fields[k] = v
    return fields


def _read_psf(path: Path | None, sp: str) -> np.ndarray | None:
    if path is None:
        return None
    from fluorecon.io import read_image

    kernel, meta = read_image(path)
    if spatial_axes(meta.axes) != sp or kernel.ndim != len(sp):
        raise AxesError(message(f"a PSF with axes {meta.axes!r} for images with spatial axes "
                                f"{sp!r}", f"a {sp} PSF", "Pass a PSF sampled like the "
                                "images."))
    return np.asarray(kernel, np.float32)


def run_simulated_training(method_name: str, inputs: Sequence[Path], *, out: Path,
                           axes: str | None, fields: dict[str, Any], psf: Path | None,
                           resume: bool, overwrite: bool, quiet: bool,
                           device: str | None) -> Path:
    """Read the images, train ``method_name`` on simulated pairs, write the model folder.

    For ``iso`` without ``factor`` the factor is read from the first stack's pixel sizes
    (Z step over X pixel size). Raises ``_Interrupted`` on Ctrl-C.
    """
    paths = expand_image_paths(inputs, what="input")
    images, in_axes = read_images(paths, axes, what="input")
    sp = spatial_axes(in_axes)
    kernel = _read_psf(psf, sp)
    fit_kw: dict[str, Any] = {}
    if method_name == "iso":
        from fluorecon.io import read_image

        _, meta = read_image(paths[0], axes=axes, lazy=True)
        dz, dx = meta.pixel_size.get("Z"), meta.pixel_size.get("X")
        if fields.get("factor") is None:
            if dz is None or dx is None:
                raise ConfigError(message(f"stack '{paths[0].name}' without Z and X pixel "
                                          "sizes and no --factor", "the axial/lateral "
                                          "sampling ratio", "Pass --factor Z_STEP/PIXEL_SIZE."))
            fields["factor"] = dz / dx
        fit_kw["pixel_size"] = dx if dx is not None else 1.0
    if method_name == "deconv" and kernel is None:
        raise ConfigError(message("no --psf for train deconv", "the PSF to deconvolve",
                                  "Pass --psf PSF.tif (e.g. from fluorecon psf-from-beads)."))
    cls = _learned_class(method_name)
    method = cls(**fields)
    ckpt, extending = prepare_training_output(out, resume=resume, overwrite=overwrite)
    train_with_checkpoint(
        lambda cb: method.fit(images, in_axes, psf=kernel, checkpoint_dir=ckpt, resume=resume,
                              progress=cb, device=device, **fit_kw),
        method_name, ckpt, extending=extending, quiet=quiet)
    files: dict[str, Any] = {"inputs": [str(p) for p in paths]}
    if psf is not None:
        files["psf"] = str(psf)
    # the training state kept is the one before any adversarial phase
    path = save_trained_model(method, method_name, out, ckpt, files, overwrite=overwrite,
                              extending=extending, quiet=quiet)
    if not quiet and getattr(method, "may_hallucinate", False):
        _say("warning: trained with an adversarial loss; predictions can contain "
                 "plausible but invented structure (flagged in config.json and outputs)")
    return path


def _simulated_command(command: str, doc: str, extra: Sequence[inspect.Parameter]
                       ) -> Callable[..., None]:
    params = _train_parameters(paired=False, extra=extra)
    signature = inspect.Signature(params, return_annotation=None)

    def train_command(*args: Any, **kwargs: Any) -> None:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        run_simulated_training(command, a["inputs"], out=a["out"], axes=a["axes"],
                               fields=_sim_fields(a), psf=a.get("psf"), resume=a["resume"],
                               overwrite=a["overwrite"], quiet=a["quiet"], device=a["device"])

    train_command.__name__ = train_command.__qualname__ = f"train_{command}"
    train_command.__doc__ = doc
    train_command.__annotations__ = {**{p.name: p.annotation for p in params}, "return": None}
    train_command.__signature__ = signature  # type: ignore[attr-defined]
    return train_app.command(command)(cli_errors(train_command))


def register_train_commands() -> None:
    """Add ``deconv``, ``upsample`` and ``iso`` to ``fluorecon train`` (called once)."""
    if any(getattr(c, "name", None) == "deconv" for c in train_app.registered_commands):
        return
    sim = [_opt("photons", PhotonsOpt, None), _opt("camera", CameraOpt, None)]
    _simulated_command(
        "deconv", "Learned deconvolution: high-quality images are blurred with --psf and made "
                  "noisy by a camera model; the network learns to undo it.",
        [_opt("psf", Annotated[Path | None, typer.Option(
            "--psf", help="Required: PSF image (same spatial axes and sampling as the "
                          "images, centred), e.g. from fluorecon psf-from-beads.",
            show_default=False)], None), *sim])
    _simulated_command(
        "upsample", "Learned upsampling: high-quality images are (blurred,) binned by "
                    "--factor along --upsample-axes, made noisy and interpolated back; the "
                    "network restores them. Predict on low-resolution images.",
        [_opt("factor", Annotated[int | None, typer.Option("--factor", min=2, max=8,
                                                           help="Upsampling factor "
                                                                "(default 2).")], None),
         _opt("upsample_axes", Annotated[str | None, typer.Option(
             "--upsample-axes", help="Axes to upsample: YX (default), Z, ZYX, ...")], None),
         _opt("psf", PsfOpt, None), *sim])
    _simulated_command(
        "iso", "Isotropic restoration (no ground truth): lateral planes of the anisotropic "
               "stacks are degraded like the axial direction; the network then restores the "
               "XZ and YZ slices. Train on the stacks you will restore.",
        [_opt("factor", Annotated[float | None, typer.Option(
            "--factor", min=1.0, help="Z step / lateral pixel size (default: from the "
                                      "file's pixel sizes).")], None),
         _opt("psf", Annotated[Path | None, typer.Option(
             "--psf", help="ZYX PSF sampled like the stack: sets the axial blur "
                           "(default: a Gaussian of FWHM = factor).", show_default=False)],
              None), *sim])


# --- prediction of resampling models ----------------------------------------------------
def predict_resampling(method: Any, input: Path, output: Path, *, model: Path,
                       axes: str | None, tta: bool, overwrite: bool, quiet: bool) -> Path:
    """``fluorecon predict`` for ``upsample`` and ``iso`` models: the output grid is finer.

    Upsampling interpolates the whole image onto the fine grid, then applies the network
    tile by tile (exact crop-and-stitch); isotropic restoration runs slice by slice. The
    output's pixel sizes along the refined axes are divided by the factor.
    """
    from fluorecon.io import read_image, write_image
    from fluorecon.predict import predict_tiled

    mc = method.model_config
    if tta:
        raise ConfigError(message(f"--tta with a {mc.method!r} model", "no --tta (the model "
                                  "resamples the image; flips would move its axes)",
                                  "Drop --tta."))
    image, meta = read_image(input, axes=axes)
    with progress_bar(f"predict ({mc.method})", enabled=not quiet) as cb:
        if mc.method == "iso":
            result = method.predict(image, meta.axes, progress=cb)
            refined = {"Z": float(method.config.factor)}
        else:
            sp = spatial_axes(meta.axes)
            if len(sp) != mc.unet.ndim:
                raise AxesError(message(f"a {len(sp)}D image (axes {meta.axes!r}) for a "
                                        f"{mc.unet.ndim}D model", f"{mc.unet.ndim}D images",
                                        "Pass --axes, or use a model trained on data like "
                                        "this."))
            fine = method.interpolate(image, meta.axes)
            halo = method.receptive_field

            def fn(batch: np.ndarray) -> np.ndarray:
                return np.stack([method.predict_block(b, sp) for b in batch])

            result = predict_tiled(fn, fine, meta.axes, halo=halo or 0,
                                   tile_shape=None if halo is not None else
                                   tuple(fine.shape[meta.axes.index(a)] for a in sp),
                                   divisible_by=method.divisible_by, progress=cb)
            refined = {a: float(method.config.factor) for a in method.config.upsample_axes}
    sizes = {a: (s / refined[a] if a in refined else s) for a, s in meta.pixel_size.items()}
    hallucinates = bool(getattr(method, "may_hallucinate", False))
    extra = {"fluorecon": __version__, "command": "predict", "model": str(model),
             "method": mc.method, "input": str(input), "quantity": "prediction",
             "resampled": {a: f for a, f in refined.items()},
             "may_hallucinate": hallucinates}
    out_meta = meta.model_copy(update={"pixel_size": sizes, "extra": extra})
    path = write_image(output, result, out_meta, overwrite=overwrite, inputs=[input, model])
    if not quiet:
        _say(f"wrote {path} (shape {tuple(result.shape)})")
        if hallucinates:
            _say("warning: the model was trained with an adversarial loss; the output can "
                 "contain plausible but invented structure")
    return path


# --- psf-from-beads ---------------------------------------------------------------------
def _parse_sizes(text: str, what: str, cast: Callable[[str], Any]) -> Any:
    try:
        vals = [cast(p) for p in text.lower().replace(",", "x").split("x")]
    except ValueError:
        vals = []
    if not 1 <= len(vals) <= 3:
        raise ConfigError(message(f"{what} {text!r}", "one value or 2-3 joined by x, like "
                                  "31 or 21x31x31", f"Fix {what}."))
    return vals[0] if len(vals) == 1 else tuple(vals)


@cli_errors
def psf_from_beads_command(
    input: Annotated[Path, typer.Argument(help="Bead image or stack (2D YX or 3D ZYX).",
                                          show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="PSF image to write (sum 1, "
                                         "centred), with the input's pixel sizes.",
                                         show_default=False)],
    psf_shape: Annotated[str, typer.Option("--psf-shape", help="PSF box in pixels: one size "
                                           "or ZxYxX, odd (e.g. 31 or 21x31x31).")] = "31",
    spacing: Annotated[str | None, typer.Option(
        "--spacing", help="Pixel size per axis in µm (one value or ZxYxX); default from the "
                          "file.")] = None,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", help="Detection threshold in image units (default: median + 8 robust "
                            "sigmas).")] = None,
    max_beads: Annotated[int | None, typer.Option("--max-beads", min=1, help="Average at most "
                                                  "this many (the brightest) beads.")] = None,
    isolation_ratio: Annotated[float, typer.Option(
        "--isolation-ratio", min=0.0, max=1.0, help="Reject beads with a neighbour brighter "
                                                    "than this fraction inside the box.")
    ] = 0.05,
    no_brightness_filter: Annotated[bool, typer.Option(
        "--no-brightness-filter", help="Keep beads far from the median brightness "
                                       "(aggregates).")] = False,
    axes: Annotated[str | None, typer.Option("--axes", help="Axes of the input (YX or ZYX); "
                                             "default from the file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the bead report as JSON.")
                       ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing "
                                            "output (never the input).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary.")] = False,
) -> None:
    """Measure the PSF from isolated beads: detect, register (sub-pixel), average, remove
    background, normalise; report the FWHM in physical units."""
    from fluorecon.io import read_image, write_image
    from fluorecon.methods.classical.psf_beads import psf_from_beads

    image, meta = read_image(input, axes=axes)
    sp = spatial_axes(meta.axes)
    if meta.axes != sp:
        raise AxesError(message(f"a bead image with axes {meta.axes!r}", "YX or ZYX",
                                "Extract one channel / time point first."))
    box = _parse_sizes(psf_shape, "--psf-shape", int)
    if spacing is not None:
        sp_vals = _parse_sizes(spacing, "--spacing", float)
    else:
        sp_vals = tuple(meta.pixel_size.get(a, 1.0) for a in sp)
    in_pixels = spacing is None and not all(a in meta.pixel_size for a in sp)
    res = psf_from_beads(np.asarray(image), psf_shape=box, spacing=sp_vals,
                         threshold=threshold, max_beads=max_beads,
                         isolation_ratio=isolation_ratio,
                         brightness_range=None if no_brightness_filter else (0.5, 2.0))
    sizes = dict(zip(sp, res.spacing))
    out_meta = meta.model_copy(update={"pixel_size": sizes, "extra": {
        "fluorecon": __version__, "command": "psf-from-beads", "input": str(input),
        "quantity": "PSF (sum 1, centred at shape // 2)", "beads": res.to_dict()}})
    path = write_image(output, res.psf, out_meta, overwrite=overwrite, inputs=[input])
    if as_json:
        typer.echo(json.dumps({**res.to_dict(), "output": str(path)}))
    elif not quiet:
        _say(res.summary("pixels" if in_pixels else "µm"))
        if in_pixels:
            _say("note: the file stores no pixel sizes; pass --spacing for FWHM in µm")
        _say(f"wrote {path}")


register_train_commands()
