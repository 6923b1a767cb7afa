"""``fluorecon stabilize``: drift correction and registration of 2D/3D time-lapses.

Writes the corrected time-lapse and, beside it, the estimated motion:
``<name>.motion.csv`` (per-frame displacement of the view centre, pixels and micrometres),
``<name>.motion.json`` (full matrices and settings) and, for non-rigid models,
``<name>.flow.ome.tif`` (displacement fields, axes TCYX/TCZYX with C = displacement
component in ZYX order, pixels).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fluorecon.cli.learned import cli_errors
from fluorecon.cli.progress import console, progress_bar
from fluorecon.core.errors import ConfigError, message

_IMAGE_SUFFIXES = (".ome.tiff", ".ome.tif", ".ome.zarr", ".tiff", ".tif", ".zarr", ".npy",
                   ".png")


def sidecar(output: Path, suffix: str) -> Path:
    """A file beside an output image: ``out.ome.tif`` + ``".motion.csv"`` ->
    ``out.motion.csv`` (same folder)."""
    name = output.name
    for s in _IMAGE_SUFFIXES:
        if name.lower().endswith(s):
            name = name[: -len(s)]
            break
    return output.with_name(name + suffix)

stabilize_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                            rich_markup_mode=None)


def _reference(text: str) -> str | int:
    if text in ("first", "mean", "previous"):
        return text
    try:
        return int(text)
    except ValueError:
        raise ConfigError(message(f"--reference {text!r}", "first, mean, previous or a frame "
                                  "index", "Fix --reference.")) from None


@stabilize_app.command("stabilize")
@cli_errors
def stabilize(
    input: Annotated[Path, typer.Argument(help="Time-lapse (axes with T: TYX, TZYX, TCYX...).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Corrected time-lapse path; "
                                         "motion files are written beside it.")],
    model: Annotated[str, typer.Option("--model", "-m", help="translation (sub-pixel phase "
                                       "correlation + refinement), rigid, similarity, affine, "
                                       "flow (non-rigid optical flow) or learned (needs "
                                       "--net).")] = "translation",
    reference: Annotated[str, typer.Option("--reference", help="first, mean, previous "
                                           "(chained) or a frame index.")] = "first",
    channel: Annotated[int | None, typer.Option("--channel", min=0, help="Channel that "
                                                "drives the estimate (default: sum of "
                                                "channels); all channels are corrected.")] = None,
    order: Annotated[int, typer.Option("--order", min=0, max=5, help="Interpolation order "
                                       "(1 linear: never overshoots; 3 cubic).")] = 3,
    fill: Annotated[str, typer.Option("--fill", help="Outside the frame: nearest, constant "
                                      "(0) or reflect.")] = "nearest",
    max_shift: Annotated[float | None, typer.Option("--max-shift", min=0.0, help="Largest "
                                                    "plausible shift, pixels.")] = None,
    net: Annotated[Path | None, typer.Option("--net", help="Registration-net model folder "
                                             "(with --model learned); train it with "
                                             "`fluorecon stabilize-train`.")] = None,
    axes: Annotated[str | None, typer.Option("--axes", help="Axes of the input, e.g. TYX, "
                                             "TZYX, TCYX (default: from the file).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs "
                                            "(never the input).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary.")] = False,
) -> None:
    """Correct drift / motion of a time-lapse; the estimated motion is written beside it."""
    import numpy as np

    from fluorecon import __version__
    from fluorecon.core.meta import ImageMeta
    from fluorecon.io import check_output_target, read_image, write_bytes_atomic, write_image
    from fluorecon.methods.classical.registration import (
        StabilizeConfig,
        apply_motion,
        estimate_motion,
    )

    image, meta = read_image(input, axes=axes)
    outs = [sidecar(output, ".motion.csv"), sidecar(output, ".motion.json")]
    if model in ("flow", "learned"):
        outs.append(sidecar(output, ".flow.ome.tif"))
    for p in [output, *outs]:
        check_output_target(p, overwrite=overwrite, inputs=[input])
    base = {"reference": _reference(reference), "channel": channel, "order": order,
            "fill": fill, "max_shift": max_shift}
    if model == "learned":
        if net is None:
            raise ConfigError(message("--model learned without --net", "a registration-net "
                                      "model folder", "Pass --net MODEL_DIR."))
        from fluorecon.methods.learned.registration_net import RegistrationNet

        reg = RegistrationNet.load(net)
        cfg = StabilizeConfig.build(model="flow", **{k: v for k, v in base.items()
                                                      if k in ("order", "fill", "channel")})
        with progress_bar("estimate (learned)", enabled=not quiet) as cb:
            motion = reg.estimate(image, meta.axes, reference=base["reference"],
                                  channel=channel, progress=cb)
    else:
        cfg = StabilizeConfig.build(model=model, **base)
        with progress_bar(f"estimate ({model})", enabled=not quiet) as cb:
            motion = estimate_motion(image, meta.axes, config=cfg, progress=cb)
    motion.pixel_size = dict(meta.pixel_size)
    motion.time_interval = meta.time_interval
    with progress_bar("resample", enabled=not quiet) as cb:
        corrected = apply_motion(image, meta.axes, motion, order=cfg.order, fill=cfg.fill,
                                 progress=cb)
    extra = {"fluorecon": __version__, "command": "stabilize", "model": model,
             "config": cfg.model_dump(mode="json"), "inputs": {"input": str(input)},
             "motion": outs[1].name}
    path = write_image(output, corrected, meta.model_copy(update={"extra": extra}),
                       overwrite=overwrite, inputs=[input])
    write_bytes_atomic(outs[0], motion.to_csv().encode(), overwrite=overwrite, inputs=[input])
    write_bytes_atomic(outs[1], motion.to_json().encode(), overwrite=overwrite, inputs=[input])
    if motion.fields is not None:
        sp = motion.spatial_axes
        fmeta = ImageMeta(axes="TC" + sp, pixel_size={a: s for a, s in meta.pixel_size.items()
                                                      if a in sp},
                          extra={"content": "displacement u_t, pixels, C = components in "
                                            f"{sp} order: reference(x) = frame_t(x + u_t(x))"})
        write_image(outs[2], np.asarray(motion.fields, np.float32), fmeta, overwrite=overwrite,
                    inputs=[input])
    if not quiet:
        tr = motion.translations()
        worst = float(np.abs(tr).max()) if tr.size else 0.0
        console.print(f"wrote {path} (+ {', '.join(p.name for p in outs)}); largest "
                      f"displacement {worst:.2f} px, lowest quality "
                      f"{float(motion.quality.min()):.3f}", markup=False, highlight=False,
                      soft_wrap=True)


@stabilize_app.command("stabilize-train")
@cli_errors
def stabilize_train(
    input: Annotated[Path, typer.Argument(help="Time-lapse to train on (axes with T); the "
                                         "net is unsupervised: no ground truth needed.")],
    model_dir: Annotated[Path, typer.Option("--model-dir", "-o", help="Model folder to write "
                                            "(config.json + weights.safetensors).")],
    steps: Annotated[int, typer.Option("--steps", min=1, help="Training steps.")] = 500,
    smoothness: Annotated[float, typer.Option("--smoothness", min=0.0, help="Weight of the "
                                              "field smoothness term.")] = 0.05,
    reference: Annotated[str, typer.Option("--reference", help="Pairs with the first frame, "
                                           "the previous one, or a frame index.")] = "first",
    patch_size: Annotated[int, typer.Option("--patch-size", min=16, help="Patch side, "
                                            "divisible by 2**depth.")] = 64,
    depth: Annotated[int, typer.Option("--depth", min=1, max=5, help="U-Net depth.")] = 3,
    channel: Annotated[int | None, typer.Option("--channel", min=0, help="Channel to train "
                                                "on (default: channel sum).")] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Random seed.")] = 0,
    axes: Annotated[str | None, typer.Option("--axes", help="Axes of the input.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the model folder.")]
    = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train the learned registration net (VoxelMorph-style, unsupervised) on a time-lapse."""
    from fluorecon.cli.progress import training_bar
    from fluorecon.io import check_output_target, read_image
    from fluorecon.methods.learned.registration_net import RegistrationNet

    image, meta = read_image(input, axes=axes)
    check_output_target(model_dir, overwrite=overwrite, inputs=[input])
    ref = _reference(reference)
    net = RegistrationNet(steps=steps, smoothness=smoothness, reference=ref,
                          patch_size=patch_size, depth=depth, seed=seed)
    with training_bar("train registration net", enabled=not quiet) as cb:
        net.fit(image, meta.axes, channel=channel, progress=cb)
    path = net.save(model_dir, overwrite=overwrite)
    if not quiet:
        console.print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True)
