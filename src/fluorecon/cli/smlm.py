"""``fluorecon smlm``: simulate, train, localize, render and evaluate single-molecule data.

Tables are CSV files with ThunderSTORM column names (frames counted from 1 in the file).
Networks (Deep-STORM, DECODE) are imported only inside the commands that need torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from fluorecon.cli.params import parse_params
from fluorecon.cli.progress import console, progress_bar, training_bar
from fluorecon.core.errors import ConfigError, message

smlm_app = typer.Typer(name="smlm", no_args_is_help=True, add_completion=False,
                       pretty_exceptions_enable=False, rich_markup_mode=None,
                       help="Single-molecule localisation microscopy: simulate, train, "
                            "localize, render, evaluate.")

CameraOpt = Annotated[str, typer.Option(
    "--camera", help="Camera preset: emccd, scmos or ideal (photon counter; for data already "
                     "in photons).")]
CameraParamOpt = Annotated[list[str] | None, typer.Option(
    "--camera-param", help="Camera field KEY=VALUE overriding the preset, repeatable: gain "
                           "(ADU/e-), em_gain, offset (ADU), read_noise (e-), "
                           "quantum_efficiency.")]
PixelOpt = Annotated[float, typer.Option("--pixel-size", min=1e-3, help="Camera pixel size "
                                         "in the sample, nm.")]
SigmaOpt = Annotated[float, typer.Option("--sigma", min=1e-3, help="PSF Gaussian sigma, nm "
                                         "(2D).")]
CalibOpt = Annotated[Path | None, typer.Option(
    "--astigmatism", help="JSON file with an astigmatic calibration (fields of "
                          "AstigmaticCalibration, nm): 3D localisation.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs "
                                            "(never an input).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")]


def _errors(func: Any) -> Any:
    from fluorecon.cli.app import handles_errors

    return handles_errors(func)


def _say(text: str, quiet: bool = False) -> None:
    if not quiet:
        console.print(text, markup=False, highlight=False, soft_wrap=True)


def _camera(preset: str, params: list[str] | None) -> Any:
    from fluorecon.simulate.camera import CameraModel

    makers = {"emccd": CameraModel.emccd, "scmos": CameraModel.scmos,
              "ideal": CameraModel.ideal}
    if preset not in makers:
        raise ConfigError(message(f"--camera {preset!r}", "emccd, scmos or ideal",
                                  "Pick a preset and adjust it with --camera-param."))
    return makers[preset](**parse_params(params))


def _psf(sigma: float, astigmatism: Path | None) -> Any:
    from fluorecon.simulate.smlm import AstigmaticCalibration, PSFModel

    if astigmatism is None:
        return PSFModel(kind="gaussian", sigma=sigma)
    try:
        data = json.loads(Path(astigmatism).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(message(f"--astigmatism {astigmatism} ({exc})", "a JSON file of "
                                  "calibration fields", "Write one with fluorecon smlm "
                                  "calibrate.")) from None
    return PSFModel(kind="astigmatic", astigmatism=AstigmaticCalibration.build(**data))


def _shape(text: str) -> tuple[int, int]:
    try:
        dims = tuple(int(p) for p in text.lower().split("x"))
    except ValueError:
        dims = ()
    if len(dims) != 2 or min(dims) < 4:
        raise ConfigError(message(f"--shape {text!r}", "YxX of at least 4 pixels, e.g. 64x64",
                                  "Fix --shape."))
    return dims[0], dims[1]


def _range(text: str, name: str) -> tuple[float, float]:
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or parts[0] > parts[1]:
        raise ConfigError(message(f"{name} {text!r}", "LOW,HIGH (or one value)",
                                  f"E.g. {name} 0.5,4."))
    return parts[0], parts[1]


def _read_movie(path: Path, axes: str | None) -> tuple[Any, Any]:
    """The movie as a lazy (T, Y, X) array (read batch by batch by the localisers)."""
    from fluorecon.io import read_image

    data, meta = read_image(path, axes=axes, lazy=True)
    spatial = [a for a in meta.axes if a in "YX"]
    if len(spatial) != 2 or data.ndim not in (2, 3) or (data.ndim == 3 and meta.axes[0] not in
                                                         "TZS"):
        raise ConfigError(message(f"a movie with axes {meta.axes!r}", "TYX (or YX)",
                                  "Pass --axes TYX."))
    return (data if data.ndim == 3 else data[None]), meta


@smlm_app.command("simulate")
def simulate_command(
    out: Annotated[Path, typer.Argument(help="Output movie (.tif, .ome.tif, .zarr, .npy).")],
    truth: Annotated[Path, typer.Option("--truth", help="Output CSV of the true "
                                        "localisations.")],
    frames: Annotated[int, typer.Option("--frames", min=1, help="Frames.")] = 500,
    shape: Annotated[str, typer.Option("--shape", help="Frame shape YxX, pixels.")] = "64x64",
    pixel_size: PixelOpt = 100.0,
    structure: Annotated[str, typer.Option("--structure", help="filaments, rings, clusters, "
                                           "uniform.")] = "filaments",
    density: Annotated[float, typer.Option("--density", help="Active emitters per um^2 per "
                                           "frame.")] = 0.5,
    independent: Annotated[bool, typer.Option("--independent", help="Independent frames of "
                                              "uniform emitters (no blinking structure), as "
                                              "for density benchmarks.")] = False,
    photons: Annotated[float, typer.Option("--photons", help="Mean photons per emitter and "
                                           "frame.")] = 2000.0,
    background: Annotated[float, typer.Option("--background", help="Background photons per "
                                              "pixel.")] = 20.0,
    k_on: Annotated[float, typer.Option("--k-on", help="Off->on probability per frame.")] = 0.02,
    k_off: Annotated[float, typer.Option("--k-off", help="On->off probability per frame.")] = 0.5,
    k_bleach: Annotated[float, typer.Option("--k-bleach", help="On->bleached probability per "
                                            "frame.")] = 0.01,
    sigma: SigmaOpt = 130.0,
    astigmatism: CalibOpt = None,
    z_range: Annotated[str, typer.Option("--z-range", help="z range of 3D labels, nm: "
                                         "LOW,HIGH.")] = "-500,500",
    camera: CameraOpt = "emccd",
    camera_param: CameraParamOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Simulate a blinking SMLM movie (or independent frames) and its true localisations."""
    from fluorecon.core.meta import ImageMeta
    from fluorecon.io import write_image
    from fluorecon.methods.classical.smlm.table import write_csv
    from fluorecon.simulate.smlm import SMLMConfig, simulate_frames, simulate_smlm

    cfg = SMLMConfig.build(frames=frames, shape=_shape(shape), pixel_size=pixel_size,
                           structure=structure, density=density, photons=photons,
                           background=background, k_on=k_on, k_off=k_off, k_bleach=k_bleach,
                           psf=_psf(sigma, astigmatism), z_range=_range(z_range, "--z-range"),
                           camera=_camera(camera, camera_param))
    with progress_bar("simulating", enabled=not quiet) as bar:
        fn = simulate_frames if independent else simulate_smlm
        sim = fn(cfg, seed=seed, progress=bar)  # type: ignore[operator]
    um = pixel_size / 1000.0
    meta = ImageMeta(axes="TYX", pixel_size={"Y": um, "X": um},
                     extra={"smlm_simulation": json.loads(cfg.to_json()), "seed": seed})
    p1 = write_image(out, sim.frames, meta, overwrite=overwrite)
    p2 = write_csv(truth, sim.truth, overwrite=overwrite, inputs=(out,))
    _say(f"wrote {p1} ({frames} frames) and {p2} ({len(sim.truth)} true localisations)",
         quiet)


@smlm_app.command("train")
def train_command(
    model: Annotated[Path, typer.Argument(help="Output model folder.")],
    method: Annotated[str, typer.Option("--method", help="deep-storm or decode.")] = "decode",
    pixel_size: PixelOpt = 100.0,
    sigma: SigmaOpt = 130.0,
    astigmatism: CalibOpt = None,
    z_range: Annotated[str, typer.Option("--z-range", help="Training z range (3D), nm.")
                       ] = "-500,500",
    photons: Annotated[float, typer.Option("--photons", help="Mean photons per emitter and "
                                           "frame of the user's data.")] = 2000.0,
    background: Annotated[float, typer.Option("--background", help="Typical background "
                                              "photons per pixel.")] = 20.0,
    density_range: Annotated[str, typer.Option("--density-range", help="Training densities, "
                                               "emitters per um^2: LOW,HIGH.")] = "0.2,4",
    patch: Annotated[int, typer.Option("--patch", min=8, help="Training frame size, camera "
                                       "pixels (multiple of 2**depth).")] = 32,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Optimiser steps.")] = 3000,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Frames per step.")
                          ] = 16,
    camera: CameraOpt = "emccd",
    camera_param: CameraParamOpt = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="Further network "
                                                    "config field KEY=VALUE (e.g. "
                                                    "base_filters=16, upsampling=8).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    device: Annotated[str | None, typer.Option("--device", help="torch device (default: "
                                               "cuda if available).")] = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train Deep-STORM or the DECODE-style network on simulation matched to your camera/PSF."""
    from fluorecon.simulate.smlm import SMLMConfig

    if method not in ("deep-storm", "decode"):
        raise ConfigError(message(f"--method {method!r}", "deep-storm or decode",
                                  "Pick one of those."))
    try:
        from fluorecon.methods.learned.smlm import DECODE, DECODEConfig, DeepSTORM, \
            DeepSTORMConfig
    except ImportError:
        raise ConfigError(message("smlm train without torch", "the torch extra",
                                  "pip install 'fluorecon[torch]'.")) from None
    classes: dict[str, tuple[Any, Any]] = {"deep-storm": (DeepSTORM, DeepSTORMConfig),
                                           "decode": (DECODE, DECODEConfig)}
    if model.exists() and not overwrite:
        raise ConfigError(message(f"an existing model folder {model}", "a new folder",
                                  "Pass --overwrite or choose another name."))
    sim = SMLMConfig.build(shape=(patch, patch), pixel_size=pixel_size,
                           psf=_psf(sigma, astigmatism), z_range=_range(z_range, "--z-range"),
                           photons=photons, background=background,
                           camera=_camera(camera, camera_param))
    cls, cfg_cls = classes[method]
    cfg = cfg_cls.build(simulation=sim, density_range=_range(density_range,
                                                             "--density-range"),
                        steps=steps, batch_size=batch_size, seed=seed, **parse_params(param))
    with training_bar(f"training {method}", enabled=not quiet) as bar:
        net = cls(cfg).fit(progress=bar, device=device)
    path = net.save(model, overwrite=overwrite)
    _say(f"wrote {path} (best validation loss {net.provenance['best_val_loss']:.4g} at step "
         f"{net.provenance['best_step']})", quiet)


@smlm_app.command("localize")
def localize_command(
    movie: Annotated[Path, typer.Argument(help="Input movie (TYX), camera ADU.")],
    out: Annotated[Path, typer.Argument(help="Output CSV (ThunderSTORM columns).")],
    model: Annotated[Path | None, typer.Option("--model", help="Deep-STORM / DECODE model "
                                               "folder (it uses the camera, pixel size and PSF "
                                               "it was trained for); default: classical MLE "
                                               "fitting.")
                     ] = None,
    axes: Annotated[str | None, typer.Option("--axes", help="Axes of the movie (TYX).")] = None,
    pixel_size: Annotated[float | None, typer.Option("--pixel-size", help="Camera pixel, nm "
                                                     "(default: from the file, else 100).")
                          ] = None,
    sigma: SigmaOpt = 130.0,
    astigmatism: CalibOpt = None,
    camera: CameraOpt = "emccd",
    camera_param: CameraParamOpt = None,
    threshold: Annotated[float | None, typer.Option("--threshold", help="Detection threshold "
                                                   "(classical: multiples of the filtered "
                                                   "noise; networks: probability / mass).")
                         ] = None,
    filter: Annotated[str, typer.Option("--filter", help="Classical detection filter: "
                                        "wavelet or dog.")] = "wavelet",
    fit_sigma: Annotated[bool, typer.Option("--fit-sigma", help="Classical 2D: fit the PSF "
                                            "width per molecule.")] = False,
    device: Annotated[str | None, typer.Option("--device", help="torch device.")] = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Localise molecules: classical MLE (Poisson/EMCCD/sCMOS) or a trained network."""
    import time

    from fluorecon.methods.classical.smlm.table import write_csv

    frames, meta = _read_movie(movie, axes)
    t0 = time.perf_counter()
    with progress_bar("localising", enabled=not quiet) as bar:
        if model is not None:
            try:
                from fluorecon.methods.learned.smlm import load_smlm_model
            except ImportError:
                raise ConfigError(message("--model without torch", "the torch extra",
                                          "pip install 'fluorecon[torch]'.")) from None
            net = load_smlm_model(model, device=device)
            locs = net.localize(frames, progress=bar, threshold=threshold)
        else:
            from fluorecon.methods.classical.smlm.localize import LocalizeConfig, localize

            px = pixel_size or (meta.pixel_size.get("X", 0.1) * 1000.0)
            kw: dict[str, Any] = {"filter": filter, "fit_sigma": fit_sigma}
            if threshold is not None:
                kw["threshold"] = threshold
            cfg = LocalizeConfig.build(pixel_size=px, psf=_psf(sigma, astigmatism), **kw)
            locs = localize(frames, camera=_camera(camera, camera_param), config=cfg,
                            progress=bar)
    dt = time.perf_counter() - t0
    path = write_csv(out, locs, overwrite=overwrite, inputs=(movie,))
    _say(f"wrote {path} ({len(locs)} localisations in {frames.shape[0]} frames, "
         f"{len(locs) / max(dt, 1e-9):.0f} localisations/s)", quiet)


@smlm_app.command("render")
def render_command(
    table: Annotated[Path, typer.Argument(help="Localisation CSV.")],
    out: Annotated[Path, typer.Argument(help="Output image (.tif, .ome.tif, .png, .npy).")],
    pixel_size: Annotated[float, typer.Option("--pixel-size", min=0.1, help="Render pixel, "
                                              "nm.")] = 10.0,
    mode: Annotated[str, typer.Option("--mode", help="histogram or gaussian (each "
                                      "localisation a Gaussian of its uncertainty).")
                    ] = "gaussian",
    min_photons: Annotated[float | None, typer.Option("--min-photons", help="Drop dimmer "
                                                      "localisations (photons).")] = None,
    max_uncertainty: Annotated[float | None, typer.Option("--max-uncertainty", help="nm.")
                               ] = None,
    drift: Annotated[bool, typer.Option("--drift", help="Correct drift by redundant "
                                        "cross-correlation before rendering.")] = False,
    segments: Annotated[int, typer.Option("--segments", min=3, help="RCC time segments.")
                        ] = 10,
    merge: Annotated[bool, typer.Option("--merge", help="Merge molecules on in consecutive "
                                        "frames.")] = False,
    merge_radius: Annotated[float, typer.Option("--merge-radius", help="nm.")] = 50.0,
    save_table: Annotated[Path | None, typer.Option("--save-table", help="Also write the "
                                                    "filtered/corrected table (CSV).")] = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Filter, drift-correct, merge and render a localisation table as an image."""
    from fluorecon.core.meta import ImageMeta
    from fluorecon.io import write_image
    from fluorecon.methods.classical.smlm.postprocess import (
        apply_drift,
        drift_rcc,
        filter_localizations,
        merge_localizations,
        render_gaussian,
        render_histogram,
    )
    from fluorecon.methods.classical.smlm.table import read_csv, write_csv

    if mode not in ("histogram", "gaussian"):
        raise ConfigError(message(f"--mode {mode!r}", "histogram or gaussian", "Pick one."))
    locs = read_csv(table)
    locs = filter_localizations(locs, min_photons=min_photons,
                                max_uncertainty=max_uncertainty)
    notes = [f"{len(locs)} localisations"]
    if drift:
        with progress_bar("drift (RCC)", enabled=not quiet) as bar:
            res = drift_rcc(locs, segments=segments, progress=bar)
        locs = apply_drift(locs, res)
        notes.append(f"drift up to {float(np.abs(res.drift).max()):.1f} nm "
                     f"(RCC residual {res.residual:.1f} nm)")
    if merge:
        locs = merge_localizations(locs, radius=merge_radius)
        notes.append(f"{len(locs)} after merging")
    img = (render_histogram if mode == "histogram" else render_gaussian)(
        locs, pixel_size=pixel_size)
    um = pixel_size / 1000.0
    path = write_image(out, img, ImageMeta(axes="YX", pixel_size={"Y": um, "X": um}),
                       overwrite=overwrite, inputs=[table])
    if save_table is not None:
        write_csv(save_table, locs, overwrite=overwrite, inputs=(table, out))
    _say(f"wrote {path} ({img.shape[0]}x{img.shape[1]} at {pixel_size} nm; "
         + ", ".join(notes) + ")", quiet)


@smlm_app.command("evaluate")
def evaluate_command(
    table: Annotated[Path, typer.Argument(help="Localisation CSV to score.")],
    truth: Annotated[Path, typer.Argument(help="Ground-truth CSV (e.g. from smlm simulate).")],
    tolerance: Annotated[float, typer.Option("--tolerance", min=1e-3, help="Lateral matching "
                                             "tolerance, nm.")] = 250.0,
    axial_tolerance: Annotated[float | None, typer.Option("--axial-tolerance", help="Axial "
                                                          "tolerance, nm (3D).")] = None,
    frc_pixel: Annotated[float, typer.Option("--frc-pixel", help="Render pixel of the FRC, "
                                             "nm (0: skip).")] = 10.0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the scores as "
                                                  "JSON.")] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """SMLM-challenge scores (Jaccard, recall, precision, RMSE) and FRC resolution."""
    from fluorecon.io.files import write_bytes_atomic
    from fluorecon.methods.classical.smlm.table import read_csv
    from fluorecon.metrics.smlm import localization_scores, rendering_frc

    test, gt = read_csv(table), read_csv(truth)
    scores = localization_scores(test, gt, tolerance=tolerance,
                                 axial_tolerance=axial_tolerance).to_dict()
    if frc_pixel > 0 and len(test) >= 2:
        scores["frc_resolution_nm"] = rendering_frc(test, pixel_size=frc_pixel).resolution_1_7
    lines = ["| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
              for k, v in scores.items()]
    typer.echo("\n".join(lines))
    if json_out is not None:
        write_bytes_atomic(json_out, json.dumps(scores, indent=2).encode(),
                           overwrite=overwrite, inputs=(table, truth))


@smlm_app.command("calibrate")
def calibrate_command(
    stack: Annotated[Path, typer.Argument(help="Bead z-stack (ZYX), camera ADU.")],
    out: Annotated[Path, typer.Argument(help="Output JSON calibration (for --astigmatism).")],
    z_step: Annotated[float, typer.Option("--z-step", help="Stage step between planes, nm.")
                      ] = 50.0,
    pixel_size: Annotated[float | None, typer.Option("--pixel-size", help="Camera pixel, nm "
                                                     "(default: from the file).")] = None,
    sigma: Annotated[float, typer.Option("--sigma", help="Approximate in-focus sigma, nm.")
                     ] = 130.0,
    camera: CameraOpt = "scmos",
    camera_param: CameraParamOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Fit an astigmatic calibration (sigma_x(z), sigma_y(z)) from a bead z-stack."""
    from fluorecon.io import read_image
    from fluorecon.io.files import write_bytes_atomic
    from fluorecon.methods.classical.smlm.localize import calibrate_astigmatism

    data, meta = read_image(stack)
    arr = np.asarray(data)
    if arr.ndim != 3:
        raise ConfigError(message(f"a stack with axes {meta.axes!r}", "ZYX",
                                  "Pass the bead z-stack."))
    px = pixel_size or meta.pixel_size.get("X", 0.1) * 1000.0
    zs = (np.arange(arr.shape[0]) - (arr.shape[0] - 1) / 2) * z_step
    cal = calibrate_astigmatism(arr, zs, camera=_camera(camera, camera_param), pixel_size=px,
                                sigma_guess=sigma)
    fields = cal.model_dump(mode="json")
    write_bytes_atomic(out, json.dumps(fields, indent=2).encode(), overwrite=overwrite,
                       inputs=(stack,))
    _say(f"wrote {out} (sigma0 {cal.sigma0_x:.0f}/{cal.sigma0_y:.0f} nm, foci at +-{cal.c:.0f} "
         f"nm, depth {cal.d:.0f} nm)")


def _wrap_all() -> None:
    """Give every command the CLI's one-line error handling (exit code 2)."""
    for info in smlm_app.registered_commands:
        if info.callback is not None:
            info.callback = _errors(info.callback)


_wrap_all()
