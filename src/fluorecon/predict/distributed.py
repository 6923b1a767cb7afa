"""Streamed prediction on a dask.distributed cluster: one task per block, written in place.

The plan, the partial output and the ``done`` markers are those of
:mod:`fluorecon.predict.stream`; this module only hands the blocks to a cluster:

- the method (network weights included) is shipped to every worker **once**
  (``client.scatter(..., broadcast=True)``); tasks receive it by reference;
- each task predicts one or a few blocks, reading its input region lazily on the worker
  (from the input file, or from a scattered in-memory array) and writing the output
  chunks straight into the OME-Zarr store, which must therefore be on a file system all
  workers share (NFS, Lustre, GPFS, a Kubernetes ReadWriteMany volume);
- a task that raises is retried (``retries``); a task whose worker dies is rescheduled
  by the scheduler on another worker. Blocks own whole output chunks and write
  deterministic values, so a retried or duplicated task rewrites identical bytes and
  never corrupts another block; a block counts as done only once its marker exists;
- progress is reported as tasks complete, and the output is moved into place only when
  every block has its marker.

dask.distributed is an optional dependency (``pip install 'fluorecon[distributed]'``):
without it this module imports, and every entry point raises a one-line ConfigError.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fluorecon.core.errors import ConfigError, message
from fluorecon.core.meta import ImageMeta
from fluorecon.predict.stream import (
    StreamTarget,
    TileOptions,
    cached_reader,
    describe_source,
    make_tile_options,
    open_stream_target,
    plan_stream,
    predict_block_region,
)
from fluorecon.predict.tiled import DEFAULT_BYTES_PER_VOXEL, DEFAULT_MEMORY_BUDGET
from fluorecon.predict.tiling import PadMode

if TYPE_CHECKING:
    from fluorecon.methods.base import Method

try:  # optional dependency; the entry points report its absence
    from distributed import WorkerPlugin as _WorkerPlugin
except ImportError:  # pragma: no cover - exercised only without the extra
    _WorkerPlugin = object  # type: ignore[assignment,misc]

Progress = Callable[[int, int], None]


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ConfigError(message("a distributed run, which needs dask.distributed (not "
                                  "installed)", "the distributed extra",
                                  "Install it with: pip install 'fluorecon[distributed]'.")
                          ) from None
    return distributed


@dataclass(frozen=True)
class FileSource:
    """An input image every worker opens lazily from a shared path."""

    path: str
    axes: str | None = None

    def open(self) -> Any:
        return _open_lazy(self.path, self.axes)


@functools.lru_cache(maxsize=2)
def _open_lazy(path: str, axes: str | None) -> Any:
    """Open ``path`` lazily once per worker process (memmap, or dask behind a chunk cache
    shared by the worker's tasks)."""
    from fluorecon.io import read_image

    return cached_reader(read_image(path, axes=axes, lazy=True)[0])


class _StreamPlugin(_WorkerPlugin):
    """Worker plugin carrying what every task needs: the method, the plan, the input.

    Registered once per run; the scheduler installs it on every worker, including
    workers that join or are restarted later, so a worker lost mid-run is replaced by
    one that has the model (scattered data would be lost with it).
    """

    def __init__(self, name: str, method: Method, target: StreamTarget, source: Any
                 ) -> None:
        self.name, self.method, self.target, self.source = name, method, target, source



def run_blocks(plugin_name: str, block_ids: Sequence[int], tile: TileOptions) -> list[int]:
    """Predict and write the blocks ``block_ids`` (one dask task); return their ids.

    Runs on a worker and takes the method, the output (with its plan) and the input from
    the run's worker plugin, so a task carries only block ids. Blocks whose marker already
    exists (written by an earlier attempt) are skipped.
    """
    from distributed import get_worker

    import dask

    plugin: _StreamPlugin = get_worker().plugins[plugin_name]
    source, target, plan = plugin.source, plugin.target, plugin.target.plan
    image = source.open() if isinstance(source, FileSource) else source
    out = target.array()
    done = target.done()
    # lazy (dask) reads run in this task, not as tasks submitted back to the cluster
    with dask.config.set(scheduler="synchronous"):
        for bid in block_ids:
            if bid in done:
                continue
            block = plan.blocks[bid]
            target.write_block(out, block, predict_block_region(plugin.method, image, plan,
                                                                block, tile))
    return list(block_ids)


def _ship(method: Method) -> Method:
    """A shallow copy without per-process caches (a prepared inference network)."""
    import copy

    shipped = copy.copy(method)
    if hasattr(shipped, "_inference"):
        shipped._inference = None  # rebuilt on the worker at the first block
    return shipped


def make_client(*, scheduler: str | None = None, n_workers: int | None = None,
                threads_per_worker: int = 1, processes: bool = True) -> tuple[Any, Any]:
    """Connect to ``scheduler`` or start a local cluster; return ``(client, cluster)``.

    ``scheduler`` is an address (``tcp://host:8786``) or the path of a scheduler file
    (``*.json``, written by ``dask scheduler --scheduler-file``).

    ``cluster`` is None when connecting to an existing scheduler (the caller must not
    close it); otherwise the caller closes both.
    """
    distributed = _import_distributed()
    if scheduler is not None and n_workers is not None:
        raise ConfigError(message("both a scheduler address and a worker count",
                                  "one of them", "Pass --scheduler ADDRESS or --workers N."))
    if scheduler is not None:
        try:
            if scheduler.endswith(".json") and Path(scheduler).is_file():
                return distributed.Client(scheduler_file=scheduler, timeout="30s"), None
            return distributed.Client(scheduler, timeout="30s"), None
        except (OSError, TimeoutError) as exc:
            raise ConfigError(message(f"scheduler address {scheduler!r}, which does not "
                                      f"answer ({type(exc).__name__})",
                                      "a running dask scheduler, e.g. tcp://host:8786",
                                      "Start the scheduler (dask scheduler / dask-jobqueue) "
                                      "and check the address.")) from None
    n = 1 if n_workers is None else int(n_workers)
    if n < 1:
        raise ConfigError(message(f"workers={n_workers!r}", "a positive integer",
                                  "Pass --workers 2, for instance."))
    cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=threads_per_worker,
                                       processes=processes, dashboard_address=":0")
    return distributed.Client(cluster), cluster


def distributed_predict(method: Method, image: Any, axes: str | None,
                        output: str | os.PathLike[str], *, client: Any = None,
                        scheduler: str | None = None, n_workers: int | None = None,
                        processes: bool = True, meta: ImageMeta | None = None,
                        chunks: Sequence[int] | None = None,
                        block_shape: int | Sequence[int] | None = None,
                        blocks_per_task: int = 1,
                        tile_shape: int | Sequence[int] | None = None,
                        memory_budget_bytes: float = DEFAULT_MEMORY_BUDGET,
                        bytes_per_voxel: float = DEFAULT_BYTES_PER_VOXEL,
                        batch_size: int = 1, pad_mode: PadMode = "reflect",
                        compression: str | None = None, retries: int = 3,
                        resume: bool = False, overwrite: bool = False,
                        inputs: Sequence[str | os.PathLike[str]] = (),
                        progress: Progress | None = None) -> Path:
    """Run :func:`~fluorecon.predict.stream.stream_predict` as tasks on a dask cluster.

    Parameters
    ----------
    method : Method
        A ready method with a bounded ``receptive_field`` (else one block per plane or
        volume). Shipped to every worker once; it must be picklable.
    image : path or array_like
        An image path (each worker reads its blocks lazily from it; the path must be
        visible to every worker) or an in-memory array (scattered to the workers once;
        for data that fit in memory).
    axes : str or None
        Axes of the image; None to take them from the file (paths only).
    output : path
        OME-Zarr output folder, on a file system shared by all workers.
    client : distributed.Client, optional
        An existing client (not closed here). Otherwise ``scheduler`` or a local cluster
        of ``n_workers`` is used and closed at the end.
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``) or its scheduler file
        (``*.json``), e.g. one started by dask-jobqueue on Slurm/PBS or by the dask
        Kubernetes operator.
    n_workers : int, optional
        Workers of a local cluster (default 1), one thread each.
    processes : bool, default True
        Local cluster workers as processes (True) or threads of this process.
    meta, chunks, block_shape, tile_shape, memory_budget_bytes, bytes_per_voxel, \
batch_size, pad_mode, compression, resume, overwrite, inputs
        As in :func:`~fluorecon.predict.stream.stream_predict`.
    blocks_per_task : int, default 1
        Blocks predicted by one task (raise it when blocks are small, to cut the
        scheduler's per-task overhead of a few milliseconds).
    retries : int, default 3
        Times a task that raised is retried before the run fails. (A task lost with its
        worker is rescheduled independently, up to dask's ``allowed-failures``.)
    progress : callable, optional
        ``progress(done, total)`` in blocks, as tasks complete.

    Returns
    -------
    Path
        The output path.

    Raises
    ------
    ConfigError
        dask.distributed missing, an unreachable scheduler, bad options.
    FluoreconError
        As :func:`~fluorecon.predict.stream.stream_predict` (raised on the worker and
        re-raised here after the retries).

    Notes
    -----
    The result is bit-identical to the in-process streamed run with the same plan: the
    same blocks are computed by the same code, only on other processes. Resuming works
    across both runners (the partial output is the same), so a run interrupted on a
    cluster can be finished on one machine and vice versa.
    """
    distributed = _import_distributed()
    if isinstance(blocks_per_task, bool) or not isinstance(blocks_per_task, int) \
            or blocks_per_task < 1:
        raise ConfigError(message(f"blocks_per_task={blocks_per_task!r}", "a positive "
                                  "integer", "Pass blocks_per_task=1."))
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(message(f"retries={retries!r}", "an integer >= 0",
                                  "Pass retries=3."))
    if isinstance(image, (str, os.PathLike)):
        from fluorecon.io import read_image

        src_path = str(Path(image).absolute())
        lazy, file_meta = read_image(src_path, axes=axes, lazy=True)
        axes = file_meta.axes
        meta = meta if meta is not None else file_meta
        source: Any = FileSource(src_path, axes)
        shape = tuple(int(s) for s in lazy.shape)
        src_desc = f"file:{src_path}:{shape}:{np.dtype(lazy.dtype).str}"
        inputs = [*inputs, src_path]
    else:
        if axes is None:
            raise ConfigError(message("an in-memory image without axes", "explicit axes",
                                      "Pass axes, e.g. 'ZYX'."))
        source = image
        shape = tuple(int(s) for s in image.shape)
        src_desc = describe_source(image)
    plan = plan_stream(method, shape, axes, chunks=chunks, block_shape=block_shape)
    tile = make_tile_options(tile_shape=tile_shape, memory_budget_bytes=memory_budget_bytes,
                             bytes_per_voxel=bytes_per_voxel, batch_size=batch_size,
                             pad_mode=pad_mode)
    meta = meta if meta is not None else ImageMeta(axes=plan.axes)
    target = open_stream_target(output, method, plan, meta, source=src_desc, tile=tile,
                                resume=resume, overwrite=overwrite, inputs=inputs,
                                compression=compression)
    done = target.done()
    todo = [b.id for b in plan.blocks if b.id not in done]
    groups = [todo[i:i + blocks_per_task] for i in range(0, len(todo), blocks_per_task)]
    total = len(plan.blocks)
    count = total - len(todo)
    if progress is not None:
        progress(count, total)
    own_client = client is None
    cluster = None
    if own_client:
        client, cluster = make_client(scheduler=scheduler, n_workers=n_workers,
                                      processes=processes)
    futures: list[Any] = []
    plugin_name = None
    try:
        if groups:
            import secrets

            plugin_name = f"fluorecon-stream-{secrets.token_hex(6)}"
            plugin = _StreamPlugin(plugin_name, _ship(method), target, source)
            client.register_plugin(plugin, name=plugin_name)
            futures = [client.submit(run_blocks, plugin_name, ids, tile, retries=retries,
                                     pure=False) for ids in groups]
            for fut in distributed.as_completed(futures):
                ids = fut.result()  # re-raises the task's error after its retries
                count += len(ids)
                if progress is not None:
                    progress(count, total)
    except BaseException:
        for fut in futures:
            fut.cancel()
        raise
    finally:
        if plugin_name is not None and not own_client:
            client.unregister_worker_plugin(plugin_name)
        if own_client:
            client.close()
            if cluster is not None:
                cluster.close()
    return target.finalize(overwrite=overwrite)

