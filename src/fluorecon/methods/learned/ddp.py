"""Multi-process training with PyTorch DistributedDataParallel (gloo on CPU, NCCL on GPU).

:func:`fit_data_parallel` trains any learned method in ``devices`` processes per node
(``nodes`` nodes), each running the ordinary training engine
(:func:`~fluorecon.methods.learned.training.train`) on its share of every batch:

- every rank builds the same network from the same seed (DDP also broadcasts rank 0's
  weights at the start), draws the same global batch of ``batch_size`` patches from the
  same random generator and keeps its slice of ``batch_size / world_size`` patches;
- DDP averages the gradients over the ranks during ``backward``, so each optimiser step
  uses the gradient of the whole global batch, as one process would: for supervised
  methods (CARE, N2N) the run follows the single-process run with the same config up to
  floating-point summation order; for masked methods (N2V, N2S) each rank draws its own
  masks, which changes the random draws but not the objective;
- validation runs on every rank on the same fixed patches (identical weights give
  identical losses, so learning-rate and early-stopping decisions agree); only rank 0
  writes checkpoints, every rank reads one to resume;
- rank 0 sends progress to the launching process and, at the end, the trained weights,
  which the launching process loads into ``method``.

On one node the processes are started here (``torch.multiprocessing``, spawn) and
rendezvous on a free local port. On several nodes, run the same command on every node
with the same ``MASTER_ADDR``/``MASTER_PORT`` (node 0's address and a free port) and
``NODE_RANK`` set to 0 ... ``nodes - 1`` (Slurm: ``SLURM_NODEID``); node 0 gets the model.
"""

from __future__ import annotations

import os
import socket
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from fluorecon.core import errors as _errors
from fluorecon.core.errors import ConfigError, message
from fluorecon.methods.learned.training import PARALLEL, PatchSampler, ProgressFn, TrainingConfig
from fluorecon.methods.learned.unet import UNet

#: Seconds a rank waits for the others at the rendezvous and in collectives.
TIMEOUT_S = 1800


class _DDP(DistributedDataParallel):
    """DDP whose state dict is the wrapped module's (no ``module.`` prefix), so
    checkpoints and best weights are interchangeable with single-process training."""

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True,  # type: ignore[override]
                        assign: bool = False) -> Any:
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)


class RankShard:
    """This rank's slice of every global batch of a :class:`PatchSampler`.

    All ranks hold generators in the same state, draw the same ``batch_size *
    world_size`` patches and keep patches ``[rank * batch_size, (rank + 1) * batch_size)``.
    """

    def __init__(self, sampler: PatchSampler, rank: int, world_size: int) -> None:
        self.sampler, self.rank, self.world_size = sampler, rank, world_size

    def train_batch(self, batch_size: int, rng: np.random.Generator, *, augment: bool,
                    rotate: bool = True) -> tuple[np.ndarray, np.ndarray]:
        xb, yb = self.sampler.train_batch(batch_size * self.world_size, rng, augment=augment,
                                          rotate=rotate)
        part = slice(self.rank * batch_size, (self.rank + 1) * batch_size)
        return np.ascontiguousarray(xb[part]), np.ascontiguousarray(yb[part])

    def validation_set(self, n: int, rng: np.random.Generator
                       ) -> tuple[np.ndarray, np.ndarray] | None:
        return self.sampler.validation_set(n, rng)

    def describe(self) -> dict[str, Any]:
        return self.sampler.describe()


@dataclass(frozen=True)
class RankContext:
    """What :func:`~fluorecon.methods.learned.training.train` needs to run as one rank."""

    rank: int
    world_size: int
    device: str

    @property
    def writes_checkpoints(self) -> bool:
        return self.rank == 0

    def prepare(self, net: nn.Module, sampler: PatchSampler, config: TrainingConfig,
                device: Any) -> tuple[nn.Module, RankShard, TrainingConfig, torch.device]:
        """Move ``net`` to this rank's device, wrap it in DDP, shard the batches."""
        dev = torch.device(self.device)
        net.to(dev)
        wrapped = _DDP(net, device_ids=[dev.index] if dev.type == "cuda" else None)
        local = config.model_copy(update={"batch_size": config.batch_size // self.world_size})
        return wrapped, RankShard(sampler, self.rank, self.world_size), local, dev


def free_port() -> int:
    """A free TCP port on this machine (for a single-node rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class _Launch:
    devices: int
    nodes: int
    node_rank: int
    master_addr: str
    master_port: int
    backend: str
    device_type: str
    threads: int | None


def _worker(local_rank: int, launch: _Launch, method: Any, args: tuple[Any, ...],
            kwargs: dict[str, Any], queue: Any) -> None:
    """Body of one spawned process: join the group, train, send rank 0's result."""
    rank = launch.node_rank * launch.devices + local_rank
    world = launch.nodes * launch.devices
    if launch.threads is not None:
        os.environ["FLUORECON_NUM_THREADS"] = str(launch.threads)
        torch.set_num_threads(launch.threads)
    device = f"cuda:{local_rank}" if launch.device_type == "cuda" else "cpu"
    if launch.device_type == "cuda":
        torch.cuda.set_device(local_rank)
    import datetime

    dist.init_process_group(launch.backend, init_method=f"tcp://{launch.master_addr}:"
                            f"{launch.master_port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=TIMEOUT_S))
    token = PARALLEL.set(RankContext(rank, world, device))
    try:
        def progress(step: int, total: int, logs: dict[str, float]) -> None:
            queue.put(("progress", step, total, dict(logs)))

        method.fit(*args, progress=progress if rank == 0 else None, device=device,
                   **kwargs)
        if rank == 0:
            state = {k: v.detach().cpu().numpy() for k, v in method.net.state_dict().items()}
            queue.put(("done", method.model_config, state, method.history,
                       method.train_result))
    except _errors.FluoreconError as exc:
        queue.put(("error", type(exc).__name__, str(exc)))
    except KeyboardInterrupt:
        queue.put(("interrupted",))
        raise
    except BaseException:
        queue.put(("crash", traceback.format_exc(limit=8)))
        raise
    finally:
        PARALLEL.reset(token)
        if dist.is_initialized():
            dist.destroy_process_group()


def fit_data_parallel(method: Any, *args: Any, devices: int, nodes: int = 1,
                      node_rank: int | None = None, master_addr: str | None = None,
                      master_port: int | None = None, device: str | None = None,
                      progress: ProgressFn | None = None, **kwargs: Any) -> Any:
    """Train ``method`` with DistributedDataParallel in ``devices`` processes per node.

    Parameters
    ----------
    method : LearnedMethod
        An untrained learned method (CARE, N2N, N2V, N2S, ...). Its ``batch_size`` is the
        *global* batch, split evenly over the ``devices * nodes`` processes.
    *args
        Positional arguments of ``method.fit`` (the training data).
    devices : int
        Processes on this node: GPUs with ``device="cuda"``, CPU processes otherwise.
        ``devices=1`` with ``nodes=1`` trains in this process (plain ``method.fit``).
    nodes : int, default 1
        Nodes taking part; the same call runs on each (see Notes).
    node_rank : int, optional
        This node's index, 0 ... ``nodes - 1``; default ``$NODE_RANK`` (else
        ``$SLURM_NODEID``, else 0).
    master_addr, master_port : optional
        Rendezvous address of node 0; default ``$MASTER_ADDR`` / ``$MASTER_PORT``, on one
        node ``127.0.0.1`` and a free port.
    device : {"cpu", "cuda"}, optional
        Default: CUDA when available. Backend: NCCL on CUDA, gloo on CPU.
    progress : callable, optional
        ``progress(step, total, logs)`` with rank 0's logs, called in this process.
    **kwargs
        Keyword arguments of ``method.fit`` (``checkpoint_dir``, ``resume``,
        ``target_axes``, ...).

    Returns
    -------
    LearnedMethod
        ``method``, trained (on nodes other than 0 it stays untrained: node 0 holds the
        model). ``model_config.provenance["data_parallel"]`` records the world size.

    Raises
    ------
    ConfigError
        Bad counts, a batch size not divisible by the number of processes, more CUDA
        processes than GPUs, or missing rendezvous settings on several nodes.
    FluoreconError
        As ``method.fit`` (raised in a rank and re-raised here with the same type).
    KeyboardInterrupt
        Ctrl-C: rank 0 saved its checkpoint (when ``checkpoint_dir`` was given).

    Notes
    -----
    With ``W`` processes and global batch ``B``, step ``t`` of every rank draws the same
    ``B`` patches; rank ``r`` computes the mean loss :math:`L_r` of its ``B/W`` patches
    and DDP all-reduces :math:`\\frac{1}{W} \\sum_r \\nabla L_r`, which is the gradient
    of the mean loss over all ``B`` patches: the update of single-process training with
    batch ``B``. Training is therefore as good as one process's, and up to ``W`` times
    faster when the per-step compute dominates. CPU processes get
    ``cpu_count // devices`` torch threads each unless ``$FLUORECON_NUM_THREADS`` is set.

    References
    ----------
    .. [1] S. Li et al., "PyTorch Distributed: experiences on accelerating data parallel
       training", Proc. VLDB Endow. 13, 3005-3018 (2020).
    """
    for name, val in (("devices", devices), ("nodes", nodes)):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ConfigError(message(f"{name}={val!r}", "a positive integer",
                                      f"Pass --{name} 2, for instance."))
    dev_type = (device or ("cuda" if torch.cuda.is_available() else "cpu")).split(":")[0]
    if dev_type not in ("cpu", "cuda"):
        raise ConfigError(message(f"device={device!r} for data-parallel training",
                                  "cpu or cuda", "Pass --device cpu or --device cuda."))
    world = devices * nodes
    batch = int(method.config.batch_size)
    if batch % world:
        fixed = max(world, batch - batch % world)
        raise ConfigError(message(f"batch_size={batch} over {world} processes",
                                  f"a batch size divisible by {world} (the global batch is "
                                  "split evenly)", f"Pass --batch-size {fixed}."))
    if world == 1:
        return method.fit(*args, progress=progress, device=device, **kwargs)
    if dev_type == "cuda" and devices > torch.cuda.device_count():
        raise ConfigError(message(f"devices={devices} on a node with "
                                  f"{torch.cuda.device_count()} GPUs", "at most one process "
                                  "per GPU", f"Pass --devices {torch.cuda.device_count()}."))
    rank0 = node_rank if node_rank is not None else int(
        os.environ.get("NODE_RANK", os.environ.get("SLURM_NODEID", "0")))
    if not 0 <= rank0 < nodes:
        raise ConfigError(message(f"node rank {rank0} with nodes={nodes}",
                                  f"0 ... {nodes - 1}", "Set NODE_RANK on every node."))
    addr = master_addr or os.environ.get("MASTER_ADDR")
    port_env = os.environ.get("MASTER_PORT")
    port = master_port if master_port is not None else (int(port_env) if port_env else None)
    if nodes > 1 and (addr is None or port is None):
        raise ConfigError(message(f"nodes={nodes} without a rendezvous address",
                                  "MASTER_ADDR and MASTER_PORT (node 0's host and a free "
                                  "port) on every node", "export MASTER_ADDR=<node 0> "
                                  "MASTER_PORT=29500 NODE_RANK=<i> before the command."))
    addr = addr or "127.0.0.1"
    port = port or free_port()
    threads = None
    if dev_type == "cpu" and not os.environ.get("FLUORECON_NUM_THREADS"):
        threads = max(1, (os.cpu_count() or 1) // devices)
    launch = _Launch(devices=devices, nodes=nodes, node_rank=rank0, master_addr=addr,
                     master_port=port, backend="nccl" if dev_type == "cuda" else "gloo",
                     device_type=dev_type, threads=threads)
    ctx = torch.multiprocessing.get_context("spawn")
    queue = ctx.SimpleQueue()
    procs = torch.multiprocessing.start_processes(
        _worker, args=(launch, method, args, kwargs, queue), nprocs=devices, join=False,
        start_method="spawn")
    outcome: tuple[Any, ...] | None = None

    def drain() -> None:
        nonlocal outcome
        while not queue.empty():
            msg = queue.get()
            if msg[0] == "progress":
                if progress is not None:
                    progress(msg[1], msg[2], msg[3])
            elif outcome is None or outcome[0] not in ("error", "crash"):
                outcome = msg

    try:
        while True:
            drain()
            if outcome is not None and outcome[0] == "error":
                break  # the other ranks may wait in a collective for the failed one
            try:
                finished = procs.join(timeout=0.2)
            except Exception:
                drain()
                # a rank's error, or a crash after rank 0 sent the trained model (e.g. in
                # the process group's teardown), ends the run with what was received
                if outcome is not None and outcome[0] in ("error", "done"):
                    break
                detail = outcome[1] if outcome is not None and outcome[0] == "crash" else ""
                raise RuntimeError(f"a training process failed:\n{detail}") from None
            if finished:
                drain()
                break
    except KeyboardInterrupt:
        for p in procs.processes:  # ranks got SIGINT too: rank 0 saves its checkpoint
            p.join(timeout=60)
        for p in procs.processes:
            if p.is_alive():
                p.terminate()
        raise
    for p in procs.processes:  # normally all have exited; never leave one behind
        p.join(timeout=10)
        if p.is_alive():
            p.terminate()
    if outcome is not None and outcome[0] == "error":
        cls = getattr(_errors, outcome[1], _errors.FluoreconError)
        raise cls(outcome[2])
    if outcome is not None and outcome[0] == "interrupted":
        raise KeyboardInterrupt
    if outcome is None:  # a node other than 0: the model is on node 0
        return method
    _, model_config, state, history, result = outcome
    net = UNet(model_config.unet)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    dev = torch.device("cpu")
    method.net = net.to(dev).eval()
    method._device = dev
    method._inference = None
    method.history = history
    method.train_result = result
    method.model_config = model_config.model_copy(update={"provenance": {
        **model_config.provenance, "device": f"{dev_type} x {world}",
        "data_parallel": {"world_size": world, "nodes": nodes, "devices_per_node": devices,
                          "backend": launch.backend}}})
    return method
