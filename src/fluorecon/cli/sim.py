"""``fluorecon sim``: simulate raw 2D SIM frames and reconstruct them (Wiener-SIM).

Raw stacks are ``(n_angles * n_phases, Y, X)``, angle-major, read from any format
:mod:`fluorecon.io` reads (first axis = frames) or from MRC (fairSIM / rDL-SIM files).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from fluorecon import __version__
from fluorecon.cli.app import handles_errors
from fluorecon.cli.progress import console, progress_bar
from fluorecon.core.errors import ConfigError, DataError, message
from fluorecon.core.meta import ImageMeta

sim_app = typer.Typer(name="sim",
                      help="Structured illumination (2D SIM): simulate and reconstruct.",
                      no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                      pretty_exceptions_enable=False)

Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")]


@sim_app.command("simulate")
@handles_errors
def simulate_command(
    out: Annotated[Path, typer.Argument(help="Output folder (raw.ome.tif, truth.ome.tif, "
                                             "widefield.ome.tif, simulation.json).")],
    size: Annotated[int, typer.Option(help="Raw frame side, camera pixels.")] = 256,
    phantom: Annotated[str, typer.Option(help="Phantom: filaments, beads, rings.")] = "filaments",
    photons: Annotated[float, typer.Option(help="Photons per pixel, bright structures.")] = 300.0,
    background: Annotated[float, typer.Option(help="Background photons per pixel.")] = 10.0,
    angles: Annotated[int, typer.Option(help="Pattern orientations.")] = 3,
    phases: Annotated[int, typer.Option(help="Phase steps (3 or 5).")] = 3,
    pixel_size: Annotated[float, typer.Option(help="Camera pixel size, um.")] = 0.0626,
    na: Annotated[float, typer.Option(help="Detection NA.")] = 1.4,
    wavelength: Annotated[float, typer.Option(help="Emission wavelength, um.")] = 0.52,
    pattern_frequency: Annotated[float, typer.Option(
        help="Pattern frequency as a fraction of the OTF cutoff 2NA/lambda.")] = 0.85,
    modulation: Annotated[float, typer.Option(help="Modulation depth.")] = 0.8,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    overwrite: Overwrite = False,
) -> None:
    """Simulate raw SIM frames (camera ADU) of a phantom, with the truth on the 2x grid."""
    from fluorecon.io import write_bytes_atomic, write_image
    from fluorecon.simulate.phantoms import make_phantom
    from fluorecon.simulate.sim import simulate_sim

    if size < 32:
        raise ConfigError(message(f"--size {size}", "at least 32", "Use e.g. --size 256."))
    truth = make_phantom(phantom, (2 * size, 2 * size), seed=seed)
    sim = simulate_sim(truth, pixel_size=pixel_size, na=na, wavelength=wavelength,
                       n_angles=angles, n_phases=phases, pattern_frequency=pattern_frequency,
                       modulation=modulation, photons=photons, background=background, rng=seed)
    names = [f"angle{a}_phase{p}" for a in range(angles) for p in range(phases)]
    raw_meta = ImageMeta(axes="CYX", pixel_size={"Y": pixel_size, "X": pixel_size},
                         channel_names=names, extra={"units": "camera ADU"})
    fine = {"Y": pixel_size / 2, "X": pixel_size / 2}
    write_image(out / "raw.ome.tif", sim.frames, raw_meta, overwrite=overwrite)
    write_image(out / "truth.ome.tif", sim.truth, ImageMeta(axes="YX", pixel_size=fine),
                overwrite=overwrite)
    write_image(out / "widefield.ome.tif", sim.widefield,
                ImageMeta(axes="YX", pixel_size={"Y": pixel_size, "X": pixel_size}),
                overwrite=overwrite)
    params = {"fluorecon": __version__, "phantom": phantom, "seed": seed, **sim.to_dict()}
    write_bytes_atomic(out / "simulation.json", json.dumps(params, indent=2).encode(),
                       overwrite=overwrite)
    console.print(f"wrote {out}/raw.ome.tif ({sim.frames.shape[0]} frames), truth, widefield, "
                  "simulation.json", markup=False, highlight=False)


def _read_frames(path: Path) -> tuple[np.ndarray, float | None]:
    """Raw frames and the pixel size (um) stored in the file, if any."""
    if path.suffix.lower() == ".mrc":
        from fluorecon.methods.classical.sim import read_mrc

        mrc = read_mrc(path)  # keep the integer dtype: saturated pixels are recognised by it
        return mrc.data, (mrc.spacing[2] if mrc.spacing[2] > 0 else None)
    from fluorecon.io import read_image

    arr, meta = read_image(path)
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise DataError(message(f"an image of shape {arr.shape} (axes {meta.axes})",
                                "a 3D stack of raw frames (frames, Y, X)",
                                "Save the raw frames as one stack, angle-major."))
    return arr, meta.pixel_size.get("X")


@sim_app.command("reconstruct")
@handles_errors
def reconstruct_command(
    raw: Annotated[Path, typer.Argument(help="Raw frames: TIFF/OME-TIFF/npy/zarr or MRC, "
                                             "(frames, Y, X), angle-major.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output SIM image (e.g. sim.ome.tif); "
                                      "<name>_widefield and <name>.json are written beside.")],
    pixel_size: Annotated[float | None, typer.Option(
        help="Camera pixel size, um (default: from the file).")] = None,
    na: Annotated[float, typer.Option(help="Detection NA (OTF from optics).")] = 1.4,
    wavelength: Annotated[float, typer.Option(help="Emission wavelength, um.")] = 0.52,
    otf: Annotated[Path | None, typer.Option(
        help="Measured radial OTF (MRC, as fairSIM/rDL-SIM write it) instead of NA/wavelength.")
    ] = None,
    otf_spacing: Annotated[float | None, typer.Option(
        help="Sample spacing of the OTF file, cycles/um (default: from its header).")] = None,
    angles: Annotated[int, typer.Option(help="Pattern orientations.")] = 3,
    phases: Annotated[int, typer.Option(help="Phase steps per orientation.")] = 3,
    background: Annotated[str, typer.Option(
        help="Constant subtracted first (camera offset + background), same units as input, "
             "or 'auto' (0.5th percentile).")] = "0",
    k_guess: Annotated[str | None, typer.Option(
        help="Rough pattern PERIOD_UM,ANGLE_DEG of one orientation (instrument "
             "calibration); the search is restricted around it and 180/n deg apart.")] = None,
    geometry: Annotated[str, typer.Option(
        help="regular: re-search orientations that break the 180/n spacing; free: never.")
    ] = "regular",
    wiener: Annotated[float, typer.Option(help="Wiener parameter.")] = 0.05,
    apodization_cutoff: Annotated[float, typer.Option(
        help="Apodisation support, fraction of the extended passband.")] = 1.0,
    apodization_bend: Annotated[float, typer.Option(help="Apodisation bend exponent.")] = 0.9,
    attenuation: Annotated[float, typer.Option(
        help="OTF attenuation strength (0 off; 0.99 against out-of-focus light).")] = 0.0,
    phase_method: Annotated[str, typer.Option(
        help="autocorrelation (per frame) or cross-correlation (equal steps).")
    ] = "autocorrelation",
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Estimate the pattern from the raw frames and reconstruct by generalised Wiener-SIM."""
    from fluorecon.io import write_bytes_atomic, write_image
    from fluorecon.methods.classical.sim import RadialOTF, read_mrc, sim_reconstruct

    bg: float | str
    try:
        bg = "auto" if background.strip().lower() == "auto" else float(background)
    except ValueError:
        raise ConfigError(message(f"--background {background!r}", "a number or 'auto'",
                                  "E.g. --background 100 or --background auto.")) from None
    guess: tuple[float, float] | None = None
    if k_guess is not None:
        try:
            period, angle = (float(v) for v in k_guess.split(","))
        except ValueError:
            raise ConfigError(message(f"--k-guess {k_guess!r}", "PERIOD_UM,ANGLE_DEG",
                                      "E.g. --k-guess 0.18,25.")) from None
        guess = (period, angle)
    if geometry not in ("regular", "free"):
        raise ConfigError(message(f"--geometry {geometry!r}", "regular or free",
                                  "Use the default."))
    frames, stored = _read_frames(raw)
    px = pixel_size if pixel_size is not None else stored
    if px is None or px <= 0:
        raise ConfigError(message(f"no pixel size for {raw.name}", "the camera pixel size",
                                  "Pass --pixel-size in micrometres."))
    if otf is not None:
        mrc = read_mrc(otf)
        spacing = otf_spacing if otf_spacing is not None else mrc.spacing[2]
        model = RadialOTF.from_profile(mrc.data.ravel(), spacing)
    else:
        model = RadialOTF.from_optics(na=na, wavelength=wavelength, pixel_size=px)
    with progress_bar("SIM", enabled=not quiet) as update:
        rec = sim_reconstruct(frames, pixel_size=px, otf=model, n_angles=angles,
                              n_phases=phases, background=bg,  # type: ignore[arg-type]
                              k_guess=guess, geometry=geometry, wiener=wiener,
                              apodization_cutoff=apodization_cutoff,
                              apodization_bend=apodization_bend,
                              attenuation_strength=attenuation,
                              phase_method=phase_method, progress=update)
    fine = {"Y": rec.pixel_size, "X": rec.pixel_size}
    name = out.name
    for suffix in (".ome.tif", ".ome.tiff", ".tif", ".tiff", ".npy", ".ome.zarr", ".zarr"):
        if name.endswith(suffix):
            stem, ext = name[: -len(suffix)], suffix
            break
    else:
        stem, ext = out.stem, out.suffix
    meta = ImageMeta(axes="YX", pixel_size=fine, extra={"method": "wiener-sim"})
    write_image(out, rec.image, meta, overwrite=overwrite, inputs=[raw])
    write_image(out.with_name(f"{stem}_widefield{ext}"), rec.widefield,
                ImageMeta(axes="YX", pixel_size=fine, extra={"method": "widefield"}),
                overwrite=overwrite, inputs=[raw])
    info = {"fluorecon": __version__, "input": str(raw), "otf_cutoff_per_um": model.cutoff,
            **rec.to_dict()}
    write_bytes_atomic(out.with_name(f"{stem}.json"), json.dumps(info, indent=2).encode(),
                       overwrite=overwrite, inputs=[raw])
    if rec.estimate is not None and rec.estimate.problems():
        console.print("warning: the pattern estimate looks wrong (" +
                      "; ".join(rec.estimate.problems()) + "); the reconstruction will have "
                      "artefacts. Check --pixel-size, the OTF and the frame order.",
                      markup=False, highlight=False, soft_wrap=True)
    if not quiet and rec.estimate is not None and np.any(rec.estimate.constrained):
        which = np.nonzero(rec.estimate.constrained)[0].tolist()
        how = "--k-guess" if k_guess is not None else "the 180/n-degree geometry of the others"
        console.print(f"note: orientation(s) {which} located with {how} (weak pattern; "
                      f"peak/background {np.round(rec.estimate.peak_ratio, 1).tolist()})",
                      markup=False, highlight=False, soft_wrap=True)
    if not quiet:
        p = rec.pattern
        console.print(f"pattern periods {np.round(p.periods, 4).tolist()} um, angles "
                      f"{np.round(np.degrees(p.angles), 2).tolist()} deg, modulation "
                      f"{np.round(p.modulation, 2).tolist()}; resolution limit "
                      f"{1 / rec.support:.4f} um", markup=False, highlight=False)


@sim_app.command("train")
@handles_errors
def train_command(
    model: Annotated[Path, typer.Argument(help="Output model folder (config.json + "
                                               "weights.safetensors).")],
    steps: Annotated[int, typer.Option(help="Optimiser steps.")] = 2000,
    images: Annotated[int, typer.Option(help="Simulated training images.")] = 16,
    size: Annotated[int, typer.Option(help="Raw frame side of the training images.")] = 128,
    frames: Annotated[str | None, typer.Option(
        help="Comma-separated frame indices the network sees (few-frame SIM), e.g. 0,4,8.")
    ] = None,
    photons: Annotated[str, typer.Option(help="Photon range LOW,HIGH (low-signal training).")
                       ] = "30,1000",
    phases: Annotated[int, typer.Option(help="Phase steps per orientation.")] = 3,
    pixel_size: Annotated[float, typer.Option(help="Camera pixel size, um.")] = 0.0626,
    na: Annotated[float, typer.Option(help="Detection NA.")] = 1.4,
    wavelength: Annotated[float, typer.Option(help="Emission wavelength, um.")] = 0.52,
    seed: Annotated[int, typer.Option(help="Seed of simulation and training.")] = 0,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Train a SIM network (raw frames -> SIM image) on simulated acquisitions."""
    from fluorecon.cli.progress import training_bar
    from fluorecon.methods.learned.sim_net import SIMNet, SIMNetConfig, simulate_sim_training_data

    def ints(text: str, name: str) -> list[float]:
        try:
            return [float(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(message(f"--{name} {text!r}", "comma-separated numbers",
                                      f"E.g. --{name} 0,4,8.")) from None

    lohi = ints(photons, "photons")
    if len(lohi) != 2:
        raise ConfigError(message(f"--photons {photons!r}", "LOW,HIGH", "E.g. 30,1000."))
    cfg = SIMNetConfig.build(steps=steps, n_images=images, image_size=size, n_phases=phases,
                             frames=None if frames is None else [int(v) for v in
                                                                 ints(frames, "frames")],
                             photons=tuple(lohi), pixel_size=pixel_size, na=na,
                             wavelength=wavelength, seed=seed)
    if model.exists() and not overwrite:
        raise ConfigError(message(f"an existing model folder {model}", "a new folder",
                                  "Pass --overwrite or another name."))
    with progress_bar("simulating", enabled=not quiet) as update:
        data = simulate_sim_training_data(cfg, progress=update)  # type: ignore[arg-type]
    net = SIMNet(cfg)  # type: ignore[arg-type]
    with training_bar("training", enabled=not quiet) as bar:
        net.fit(data=data, progress=bar)
    net.save(model, overwrite=overwrite)
    if not quiet:
        assert net.result is not None
        console.print(f"saved {model} (best validation loss {net.result.best_val_loss:.4g} at "
                      f"step {net.result.best_step})", markup=False, highlight=False)


@sim_app.command("predict")
@handles_errors
def predict_command(
    raw: Annotated[Path, typer.Argument(help="Raw frames (frames, Y, X), angle-major, "
                                             "photons or ADU.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Model folder from "
                                                              "`fluorecon sim train`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output image (2x grid).")],
    offset: Annotated[float, typer.Option(help="Camera offset subtracted first, ADU.")] = 0.0,
    gain: Annotated[float, typer.Option(help="ADU per photon.")] = 1.0,
    background: Annotated[float, typer.Option(help="Background photons per pixel.")] = 0.0,
    overwrite: Overwrite = False,
) -> None:
    """Learned SIM reconstruction with a trained network (compare with `sim reconstruct`)."""
    from fluorecon.io import write_image
    from fluorecon.methods.learned.sim_net import SIMNet

    net = SIMNet.load(model)
    frames, _ = _read_frames(raw)
    if gain <= 0:
        raise ConfigError(message(f"--gain {gain}", "a positive gain", "Pass ADU per photon."))
    image = net.predict((frames - offset) / gain, background=background)
    px = net.config.pixel_size / 2
    write_image(out, image, ImageMeta(axes="YX", pixel_size={"Y": px, "X": px},
                                      extra={"method": "sim-net", "model": str(model)}),
                overwrite=overwrite, inputs=[raw])
