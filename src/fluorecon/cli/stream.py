"""Streamed and distributed prediction, and multi-process training, from the command line.

- ``fluorecon predict IN -m MODEL -o OUT.zarr --stream | --resume | --workers N |
  --scheduler ADDRESS``: a learned model applied block by block into OME-Zarr with bounded
  memory (:mod:`fluorecon.predict.stream`), resumable, optionally on a dask cluster
  (:mod:`fluorecon.predict.distributed`).
- ``fluorecon stream METHOD IN -o OUT.zarr``: the same for classical methods with a
  bounded receptive field (Wiener, Richardson-Lucy with a halo, ...).
- ``fluorecon train ... --devices N [--nodes M]``: DistributedDataParallel training
  (:mod:`fluorecon.methods.learned.ddp`).

Nothing heavy is imported at import time (no torch, no dask.distributed).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from fluorecon import __version__
from fluorecon.cli.params import parse_params
from fluorecon.cli.progress import progress_bar
from fluorecon.core.axes import spatial_axes
from fluorecon.core.errors import ConfigError, message

stream_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                         rich_markup_mode=None)

# --- options -------------------------------------------------------------------------
ResumeOpt = Annotated[bool, typer.Option(
    "--resume", help="Continue an interrupted streamed run into the same --output, "
                     "skipping the blocks already written (same input, model and options).")]
WorkersOpt = Annotated[int | None, typer.Option(
    "--workers", min=1, help="Run the blocks on a local dask.distributed cluster of N worker "
                             "processes.")]
SchedulerOpt = Annotated[str | None, typer.Option(
    "--scheduler", help="Run the blocks on a running dask.distributed cluster: its "
                        "address (tcp://host:8786) or scheduler file (*.json); e.g. "
                        "dask-jobqueue on Slurm/PBS, dask on Kubernetes. Input and output "
                        "must be on storage all workers see.")]
ChunksOpt = Annotated[str | None, typer.Option(
    "--chunks", help="Output chunk shape in NGFF axis order, e.g. 1x16x256x256 (default: "
                     "16x256x256 in 3D, 512x512 in 2D, 1 along T/C).")]
BudgetOpt = Annotated[float, typer.Option(
    "--memory-gb", min=0.01, help="Memory budget of one batch of tiles, in GB (1e9 bytes).")]


def _cli_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """:func:`fluorecon.cli.learned.cli_errors`, imported when the command runs (the
    learned CLI imports this module for its training options)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from fluorecon.cli.learned import cli_errors

        return cli_errors(func)(*args, **kwargs)

    return wrapper


def _say(text: str) -> None:
    from fluorecon.cli.learned import _say as say

    say(text)


def wants_stream(*, stream: bool, resume: bool, workers: int | None,
                 scheduler: str | None) -> bool:
    """Whether ``fluorecon predict`` takes the streamed path."""
    return stream or resume or workers is not None or scheduler is not None


def _parse_chunks(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        dims = tuple(int(p) for p in text.lower().replace(",", "x").split("x"))
    except ValueError:
        dims = ()
    if not dims or min(dims) < 1:
        raise ConfigError(message(f"--chunks {text!r}", "sizes joined by x, one per output "
                                  "axis in NGFF order", "E.g. --chunks 1x16x256x256."))
    return dims


def run_streamed(method: Any, input: Path, output: Path, *, axes: str | None, tile: str,
                 workers: int | None, scheduler: str | None, resume: bool, overwrite: bool,
                 quiet: bool, provenance: dict[str, Any], inputs: list[Path],
                 chunks: str | None = None, memory_gb: float = 1.0) -> Path:
    """Stream ``method`` over the image at ``input`` into ``output`` (progress bar; Ctrl-C
    keeps the finished blocks for ``--resume``)."""
    from fluorecon.cli.learned import parse_tile
    from fluorecon.io import read_image

    image, meta = read_image(input, axes=axes, lazy=True)
    mode = parse_tile(tile, len(spatial_axes(meta.axes)))
    tile_shape = None if mode in ("auto", "none") else mode
    if mode == "none":
        raise ConfigError(message("--tile none with a streamed output", "--tile auto or a "
                                  "tile size (streaming cuts the image into blocks anyway)",
                                  "Use --tile auto."))
    out_meta = meta.model_copy(update={"extra": {**provenance, "quantity": "prediction"}})
    kw: dict[str, Any] = {"chunks": _parse_chunks(chunks), "tile_shape": tile_shape,
                          "memory_budget_bytes": memory_gb * 1e9, "resume": resume,
                          "overwrite": overwrite, "inputs": inputs}
    label = f"predict ({method.name}" + (", distributed)" if workers or scheduler else ")")
    try:
        path = _run(method, input, output, image, meta, out_meta, label=label,
                    workers=workers, scheduler=scheduler, quiet=quiet, kw=kw)
    except KeyboardInterrupt:
        from fluorecon.predict.stream import partial_dir_for

        partial = partial_dir_for(Path(output))
        if (partial / "stream.json").is_file():
            done = sum(1 for _ in (partial / "done").iterdir())
            _say(f"interrupted: {done} finished blocks kept in {partial}; rerun the same "
                 "command with --resume to complete the output")
            raise typer.Exit(130) from None
        raise
    if not quiet:
        _say(f"wrote {path}")
    return path


def _run(method: Any, input: Path, output: Path, image: Any, meta: Any, out_meta: Any, *,
         label: str, workers: int | None, scheduler: str | None, quiet: bool,
         kw: dict[str, Any]) -> Path:
    with progress_bar(label + " blocks", enabled=not quiet) as cb:
        if workers is not None or scheduler is not None:
            from fluorecon.predict.distributed import distributed_predict

            path = distributed_predict(method, input, meta.axes, output, meta=out_meta,
                                       n_workers=workers, scheduler=scheduler,
                                       progress=cb, **kw)
        else:
            from fluorecon.predict.stream import stream_predict

            path = stream_predict(method, image, meta.axes, output, meta=out_meta,
                                  source=f"file:{Path(input).absolute()}", progress=cb, **kw)
    return path


def predict_streamed(model: Path, input: Path, output: Path, *, axes: str | None, tile: str,
                     tta: bool, uncertainty: str | None, consistency: bool,
                     workers: int | None, scheduler: str | None, resume: bool,
                     device: str | None, overwrite: bool, quiet: bool) -> Path:
    """The streamed path of ``fluorecon predict`` (a learned model folder)."""
    for flag, given in (("--tta", tta), ("--uncertainty", uncertainty is not None),
                        ("--consistency", consistency)):
        if given:
            raise ConfigError(message(f"{flag} with a streamed output", "plain prediction "
                                      "(--stream, --resume, --workers, --scheduler write the "
                                      "prediction only)", f"Drop {flag}, or drop the "
                                      "streaming options."))
    try:
        from fluorecon.methods.learned import load_model_method
    except ImportError as exc:
        raise ConfigError(message(f"a learned model, which needs {exc.name or 'torch'} "
                                  "(not installed)", "the learned-methods extra",
                                  "Install it with: pip install 'fluorecon[torch]'.")) from None
    method = load_model_method(model, device=device)
    if getattr(method, "resamples", False):
        raise ConfigError(message(f"a {method.name!r} model, whose output grid differs from "
                                  "the input's", "a model whose output has the input's shape",
                                  "Drop the streaming options for this model."))
    prov = {"fluorecon": __version__, "command": "predict", "model": str(model),
            "method": method.model_config.method, "input": str(input), "tile": tile,
            "streamed": True}
    return run_streamed(method, input, output, axes=axes, tile=tile, workers=workers,
                        scheduler=scheduler, resume=resume, overwrite=overwrite, quiet=quiet,
                        provenance=prov, inputs=[input, model])


@stream_app.command("stream")
@_cli_errors
def stream_command(
    method: Annotated[str, typer.Argument(help="Registered method with a bounded receptive "
                                          "field (see `fluorecon methods`), e.g. wiener, "
                                          "rl.", show_default=False)],
    input: Annotated[Path, typer.Argument(help="Image to process (OME-Zarr, TIFF, .npy; read "
                                          "lazily).", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output: OME-Zarr folder "
                                         "(.zarr), or TIFF (.tif, written from the finished "
                                         "blocks at the end).", show_default=False)],
    psf: Annotated[Path | None, typer.Option("--psf", help="PSF image for deconvolution "
                                             "methods.")] = None,
    axes: Annotated[str | None, typer.Option("--axes", help="Axes of the input, one letter "
                                             "of STCZYX per dimension.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="Method parameter "
                                                    "KEY=VALUE, repeatable.")] = None,
    tile: Annotated[str, typer.Option("--tile", help="auto, or a tile size within each "
                                      "block (256, 16x256x256).")] = "auto",
    chunks: ChunksOpt = None,
    memory_gb: BudgetOpt = 1.0,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    resume: ResumeOpt = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output "
                                            "(never the input) and discard a partial one.")
                         ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Apply a classical method block by block (bounded memory, resumable, optionally on a
    dask cluster). Blocks overlap by the method's receptive field."""
    from fluorecon.io import read_image
    from fluorecon.methods import get_method

    cls = get_method(method)
    kwargs: dict[str, Any] = dict(parse_params(param))
    inputs = [input]
    if psf is not None:
        kwargs["psf"] = read_image(psf)[0]
        inputs.append(psf)
    inst = cls(**kwargs)
    prov = {"fluorecon": __version__, "command": "stream", "method": inst.name,
            "config": inst.config.model_dump(mode="json"), "input": str(input),
            "streamed": True}
    if psf is not None:
        prov["psf"] = str(psf)
    run_streamed(inst, input, output, axes=axes, tile=tile, workers=workers,
                 scheduler=scheduler, resume=resume, overwrite=overwrite, quiet=quiet,
                 provenance=prov, inputs=inputs, chunks=chunks, memory_gb=memory_gb)


# --- multi-process training ---------------------------------------------------------------
DevicesOpt = Annotated[int, typer.Option(
    "--devices", min=1, help="Training processes on this node (GPUs with CUDA, CPU "
                             "processes otherwise): DistributedDataParallel, NCCL on GPUs, "
                             "gloo on CPU. --batch-size is the global batch, split evenly.")]
NodesOpt = Annotated[int, typer.Option(
    "--nodes", min=1, help="Nodes taking part; run the same command on each with "
                           "MASTER_ADDR, MASTER_PORT and NODE_RANK set (node 0 writes the "
                           "model).")]


def parallel_parameters() -> list[inspect.Parameter]:
    """The ``--devices`` / ``--nodes`` parameters of the ``fluorecon train`` commands."""
    return [inspect.Parameter("devices", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=1,
                              annotation=DevicesOpt),
            inspect.Parameter("nodes", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=1,
                              annotation=NodesOpt)]


def is_secondary_node(nodes: int) -> bool:
    """Whether this is a node other than 0 of a multi-node run (``$NODE_RANK`` or
    ``$SLURM_NODEID`` > 0): it trains but neither prepares nor writes the model folder."""
    import os

    rank = os.environ.get("NODE_RANK", os.environ.get("SLURM_NODEID", "0"))
    return nodes > 1 and rank.strip() not in ("", "0")


def fitter(method: Any, *, devices: int = 1, nodes: int = 1) -> Callable[..., Any]:
    """``method.fit``, or its data-parallel version over ``devices * nodes`` processes."""
    if devices == 1 and nodes == 1:
        return method.fit
    from fluorecon.methods.learned.ddp import fit_data_parallel

    return functools.partial(fit_data_parallel, method, devices=devices, nodes=nodes)
