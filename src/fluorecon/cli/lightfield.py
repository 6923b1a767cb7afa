"""``fluorecon lightfield``: simulate lenslet images and reconstruct volumes (3D RL)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from fluorecon import __version__
from fluorecon.cli.app import handles_errors
from fluorecon.cli.progress import console, progress_bar
from fluorecon.core.errors import DataError, message
from fluorecon.core.meta import ImageMeta

lightfield_app = typer.Typer(name="lightfield",
                             help="Light-field microscopy: simulate and reconstruct volumes.",
                             no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                             pretty_exceptions_enable=False)

Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")]
NA = Annotated[float, typer.Option(help="Objective NA.")]
Wavelength = Annotated[float, typer.Option(help="Emission wavelength, um.")]
Immersion = Annotated[float, typer.Option(help="Immersion/sample refractive index.")]
Pitch = Annotated[float, typer.Option(help="Lenslet pitch in sample space (pitch / M), um.")]
Views = Annotated[int, typer.Option(help="Sensor pixels behind each lenslet per axis (odd).")]
Kernel = Annotated[int, typer.Option(help="Lateral PSF support, lenslets (odd).")]
Planes = Annotated[int, typer.Option(help="Number of volume planes.")]
ZStep = Annotated[float, typer.Option(help="Plane spacing, um (planes centred on focus).")]


def _optics(na: float, wavelength: float, n_immersion: float, pitch: float, views: int,
            kernel: int):  # noqa: ANN202 - returns LightFieldOptics
    from fluorecon.simulate.lightfield import LightFieldOptics

    return LightFieldOptics.build(na=na, wavelength=wavelength, n_immersion=n_immersion,
                                  lenslet_pitch=pitch, n_views=views, kernel_size=kernel)


def _depths(planes: int, z_step: float) -> np.ndarray:
    return z_step * (np.arange(planes) - (planes - 1) / 2)


@lightfield_app.command("simulate")
@handles_errors
def simulate_command(
    out: Annotated[Path, typer.Argument(help="Output folder (lenslet.ome.tif, truth.ome.tif, "
                                             "simulation.json).")],
    lenslets: Annotated[int, typer.Option(help="Lenslets per side.")] = 48,
    planes: Planes = 9,
    z_step: ZStep = 2.0,
    phantom: Annotated[str, typer.Option(help="3D phantom: beads, filaments, nuclei.")] = "beads",
    photons: Annotated[float, typer.Option(help="Photons in the brightest pixel.")] = 200.0,
    background: Annotated[float, typer.Option(help="Background photons per pixel.")] = 5.0,
    na: NA = 0.8, wavelength: Wavelength = 0.52, n_immersion: Immersion = 1.33,
    pitch: Pitch = 1.5, views: Views = 9, kernel: Kernel = 15,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    overwrite: Overwrite = False,
) -> None:
    """Simulate the lenslet image (camera ADU) of a 3D phantom."""
    from fluorecon.io import write_bytes_atomic, write_image
    from fluorecon.simulate.lightfield import simulate_lightfield
    from fluorecon.simulate.phantoms import make_phantom

    optics = _optics(na, wavelength, n_immersion, pitch, views, kernel)
    vol = make_phantom(phantom, (planes, lenslets, lenslets), seed=seed)
    lf = simulate_lightfield(vol, optics=optics, depths=_depths(planes, z_step), photons=photons,
                             background=background, rng=seed)
    sensor = pitch / views
    write_image(out / "lenslet.ome.tif", lf.lenslet,
                ImageMeta(axes="YX", pixel_size={"Y": sensor, "X": sensor},
                          extra={"units": "camera ADU"}), overwrite=overwrite)
    write_image(out / "truth.ome.tif", lf.truth,
                ImageMeta(axes="ZYX", pixel_size={"Z": z_step, "Y": pitch, "X": pitch}),
                overwrite=overwrite)
    params = {"fluorecon": __version__, "phantom": phantom, "seed": seed, "photons": photons,
              "background_photons": background, "depths_um": lf.depths.tolist(),
              "optics": optics.model_dump(mode="json"),
              "camera": lf.camera.model_dump(mode="json")}
    write_bytes_atomic(out / "simulation.json", json.dumps(params, indent=2).encode(),
                       overwrite=overwrite)
    console.print(f"wrote {out}/lenslet.ome.tif {lf.lenslet.shape}, truth {lf.truth.shape}",
                  markup=False, highlight=False)


def _read_frame(path: Path, what: str) -> np.ndarray:
    """One 2D camera frame, in its stored dtype."""
    from fluorecon.io import read_image

    arr, meta = read_image(path)
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise DataError(message(f"{what} {path.name} of shape {arr.shape} (axes {meta.axes})",
                                "one 2D camera frame (Y, X)", "Pass a single frame."))
    return arr


def _read_grid(path: Path):  # noqa: ANN202 - returns LensletGrid
    from fluorecon.methods.classical.lightfield import LensletGrid

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(message(f"grid file {path} ({exc.__class__.__name__})",
                                "a JSON file from `fluorecon lightfield calibrate`",
                                "Run `fluorecon lightfield calibrate` first.")) from None
    return LensletGrid.from_dict(data.get("grid", data))


def _rectify(raw: Path, grid_path: Path, dark: Path | None, flat: Path | None, samples: int,
             quiet: bool, offset: float = 0.0) -> np.ndarray:
    """Rectified frame; without a dark frame the constant ``offset`` is the dark level."""
    from fluorecon.methods.classical.lightfield import rectify_lightfield

    grid = _read_grid(grid_path)
    frame = _read_frame(raw, "light-field frame")
    dark_arr = _read_frame(dark, "dark frame") if dark is not None \
        else np.full(frame.shape, offset, dtype=np.float32)
    with progress_bar("rectifying", enabled=not quiet) as update:
        return rectify_lightfield(frame, grid, samples_per_lenslet=samples, dark=dark_arr,
                                  flat=None if flat is None else _read_frame(flat, "flat frame"),
                                  progress=update)


Dark = Annotated[Path | None, typer.Option(help="Dark frame (camera bias), subtracted first.")]
Samples = Annotated[int, typer.Option(
    "--samples", help="Samples per lenslet per axis after rectification (odd; = views).")]


@lightfield_app.command("calibrate")
@handles_errors
def calibrate_command(
    radiometry: Annotated[Path, typer.Argument(help="Radiometry frame: light field of a "
                                                    "uniformly fluorescent slide.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output grid file (JSON).")],
    dark: Dark = None,
    pitch_guess: Annotated[float | None, typer.Option(
        help="Rough pitch in camera pixels (lenslet pitch / pixel size x relay "
             "magnification).")] = None,
    overwrite: Overwrite = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary.")] = False,
) -> None:
    """Find the lenslet grid (pitch, rotation, offset) from a radiometry frame."""
    from fluorecon.io import write_bytes_atomic
    from fluorecon.methods.classical.lightfield import calibrate_lenslet_grid

    inputs = [radiometry] + ([dark] if dark is not None else [])
    grid = calibrate_lenslet_grid(
        _read_frame(radiometry, "radiometry frame"),
        None if dark is None else _read_frame(dark, "dark frame"), pitch_guess=pitch_guess)
    info = {"fluorecon": __version__, "radiometry": str(radiometry),
            "dark": None if dark is None else str(dark), "grid": grid.to_dict()}
    write_bytes_atomic(out, json.dumps(info, indent=2).encode(), overwrite=overwrite,
                       inputs=inputs)
    if not quiet:
        py, px = grid.pitch
        console.print(f"pitch {py:.4f} x {px:.4f} px, rotation {grid.rotation:.4f} deg, "
                      f"shear {grid.shear:.4f} deg, {grid.shape[0]} x {grid.shape[1]} whole "
                      f"lenslets, fit residual {grid.residual:.3f} px "
                      f"({grid.n_fitted} lenslets); wrote {out}", markup=False,
                      highlight=False)


@lightfield_app.command("rectify")
@handles_errors
def rectify_command(
    raw: Annotated[Path, typer.Argument(help="Raw light-field frame (camera ADU).")],
    grid: Annotated[Path, typer.Option("--grid", help="Grid file from `lightfield calibrate`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Rectified lenslet image (YX).")],
    dark: Dark = None,
    offset: Annotated[float, typer.Option(
        help="Constant camera offset subtracted when no --dark is given, ADU.")] = 0.0,
    flat: Annotated[Path | None, typer.Option(
        help="Radiometry frame for flat-field normalisation.")] = None,
    samples: Samples = 15,
    overwrite: Overwrite = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Resample a raw light-field frame onto an integer-pitch lenslet grid."""
    from fluorecon.io import write_image

    rect = _rectify(raw, grid, dark, flat, samples, quiet, offset)
    inputs = [raw, grid] + [p for p in (dark, flat) if p is not None]
    write_image(out, rect, ImageMeta(axes="YX", extra={
        "method": "lenslet-rectification", "samples_per_lenslet": samples,
        "units": "ADU above dark per sample" + (", flat-fielded" if flat else "")}),
        overwrite=overwrite, inputs=inputs)
    if not quiet:
        console.print(f"wrote {out} {rect.shape} ({rect.shape[0] // samples} x "
                      f"{rect.shape[1] // samples} lenslets)", markup=False, highlight=False)


@lightfield_app.command("reconstruct")
@handles_errors
def reconstruct_command(
    lenslet: Annotated[Path, typer.Argument(help="Rectified lenslet image (YX), lenslets "
                                                 "aligned with the pixel grid; or a raw "
                                                 "frame with --grid.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output volume (ZYX).")],
    planes: Planes = 9,
    z_step: ZStep = 2.0,
    iterations: Annotated[int, typer.Option(help="Richardson-Lucy iterations.")] = 30,
    offset: Annotated[float, typer.Option(help="Camera offset, ADU.")] = 100.0,
    gain: Annotated[float, typer.Option(help="ADU per photon (camera gain x QE).")] = 1.0,
    background: Annotated[float, typer.Option(help="Background photons per pixel.")] = 0.0,
    na: NA = 0.8, wavelength: Wavelength = 0.52, n_immersion: Immersion = 1.33,
    pitch: Pitch = 1.5, views: Views = 9, kernel: Kernel = 15,
    grid: Annotated[Path | None, typer.Option(
        "--grid", help="Grid file from `lightfield calibrate`: the input is a raw frame, "
                       "rectified first to --views samples per lenslet.")] = None,
    dark: Dark = None,
    flat: Annotated[Path | None, typer.Option(
        help="Radiometry frame for flat-field normalisation (with --grid).")] = None,
    overwrite: Overwrite = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Reconstruct a volume from a lenslet image by 3D Richardson-Lucy.

    With --grid the raw frame is dark-subtracted (--dark, or the constant --offset),
    rectified to --views samples per lenslet and flat-fielded (--flat) first.
    """
    from fluorecon.io import read_image, write_image
    from fluorecon.methods.classical.lightfield import (
        LightFieldOperator,
        lenslet_to_views,
        lightfield_psf,
        lightfield_richardson_lucy,
    )

    optics = _optics(na, wavelength, n_immersion, pitch, views, kernel)
    if grid is not None:
        arr = np.clip(_rectify(lenslet, grid, dark, flat, views, quiet, offset), 0, None)
        offset = 0.0  # the dark frame (or --offset) was subtracted before resampling
    elif dark is not None or flat is not None:
        raise DataError(message("--dark/--flat without --grid",
                                "a raw frame and its --grid",
                                "Pass --grid, or rectify with `lightfield rectify` first."))
    else:
        arr, _ = read_image(lenslet)
        arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim != 2:
        raise DataError(message(f"an image of shape {arr.shape}", "a 2D lenslet image",
                                "Pass one rectified light-field frame."))
    if gain <= 0:
        raise DataError(message(f"--gain {gain}", "a positive gain", "Pass ADU per photon."))
    v = lenslet_to_views((arr - offset) / gain, views)
    op = LightFieldOperator(lightfield_psf(optics, _depths(planes, z_step)), v.shape[2:])
    with progress_bar("Richardson-Lucy", enabled=not quiet) as update:
        rec = lightfield_richardson_lucy(v, op, n_iter=iterations, background=background,
                                         progress=update)
    write_image(out, rec.volume,
                ImageMeta(axes="ZYX", pixel_size={"Z": z_step, "Y": pitch, "X": pitch},
                          extra={"method": "lightfield-rl", "iterations": iterations}),
                overwrite=overwrite, inputs=[lenslet])
    if not quiet:
        console.print(f"wrote {out} {rec.volume.shape} in {rec.seconds:.1f} s", markup=False,
                      highlight=False)


@lightfield_app.command("train")
@handles_errors
def train_command(
    model: Annotated[Path, typer.Argument(help="Output model folder.")],
    steps: Annotated[int, typer.Option(help="Optimiser steps.")] = 2000,
    volumes: Annotated[int, typer.Option(help="Simulated training volumes.")] = 16,
    lenslets: Annotated[int, typer.Option(help="Lenslets per side of training volumes.")] = 64,
    planes: Planes = 9,
    z_step: ZStep = 2.0,
    phantom: Annotated[str, typer.Option(help="3D phantom of the training volumes.")] = "beads",
    na: NA = 0.8, wavelength: Wavelength = 0.52, n_immersion: Immersion = 1.33,
    pitch: Pitch = 1.5, views: Annotated[int, typer.Option(help="Views per axis (<= 7).")] = 7,
    kernel: Kernel = 15,
    seed: Annotated[int, typer.Option(help="Seed of simulation and training.")] = 0,
    overwrite: Overwrite = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train a VCD-Net-style network (views -> volume) on simulated light fields."""
    from fluorecon.cli.progress import training_bar
    from fluorecon.core.errors import ConfigError
    from fluorecon.methods.learned.lightfield_net import (
        LightFieldNet,
        LightFieldNetConfig,
        simulate_lightfield_training_data,
    )

    cfg = LightFieldNetConfig.build(
        optics=_optics(na, wavelength, n_immersion, pitch, views, kernel), planes=planes,
        z_step=z_step, phantoms=[phantom], n_volumes=volumes, lenslets=lenslets, steps=steps,
        seed=seed)
    if model.exists() and not overwrite:
        raise ConfigError(message(f"an existing model folder {model}", "a new folder",
                                  "Pass --overwrite or another name."))
    with progress_bar("simulating", enabled=not quiet) as update:
        data = simulate_lightfield_training_data(cfg, progress=update)  # type: ignore[arg-type]
    net = LightFieldNet(cfg)  # type: ignore[arg-type]
    with training_bar("training", enabled=not quiet) as bar:
        net.fit(data=data, progress=bar)
    net.save(model, overwrite=overwrite)
    if not quiet:
        console.print(f"saved {model}", markup=False, highlight=False)


@lightfield_app.command("predict")
@handles_errors
def predict_command(
    lenslet: Annotated[Path, typer.Argument(help="Rectified lenslet image (YX).")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Model folder from "
                                                              "`fluorecon lightfield train`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output volume (ZYX).")],
    offset: Annotated[float, typer.Option(help="Camera offset, ADU.")] = 100.0,
    gain: Annotated[float, typer.Option(help="ADU per photon.")] = 1.0,
    background: Annotated[float, typer.Option(help="Background photons per pixel.")] = 0.0,
    overwrite: Overwrite = False,
) -> None:
    """Learned light-field reconstruction with a trained network."""
    from fluorecon.io import read_image, write_image
    from fluorecon.methods.learned.lightfield_net import LightFieldNet
    from fluorecon.simulate.lightfield import lenslet_to_views

    net = LightFieldNet.load(model)
    arr, _ = read_image(lenslet)
    if gain <= 0:
        raise DataError(message(f"--gain {gain}", "a positive gain", "Pass ADU per photon."))
    v = lenslet_to_views((np.asarray(arr, dtype=np.float32) - offset) / gain,
                         net.config.optics.n_views)
    vol = net.predict(v, background=background)
    c = net.config
    write_image(out, vol, ImageMeta(axes="ZYX", pixel_size={
        "Z": c.z_step, "Y": c.optics.lenslet_pitch, "X": c.optics.lenslet_pitch},
        extra={"method": "lightfield-net", "model": str(model)}),
        overwrite=overwrite, inputs=[lenslet])
