"""ONNX export of trained fluorecon U-Nets, with a JSON sidecar holding the normalisation.

An ONNX file holds the network only: ``input`` ``(N, C_in, *spatial) float32`` in
normalised units to ``output`` ``(N, C_out, *spatial)`` (``2 C_out`` for probabilistic
models: means, then Laplace scales), with the batch and every spatial axis dynamic. Spatial
sizes must be multiples of ``2**depth``. The sidecar ``<name>.json`` says how to get from
image intensities to the network's units and back, exactly as fluorecon does::

    x_n = (x - lo_in) / (hi_in - lo_in + eps)          = gain_in  * x + offset_in
    mean = y * (hi_t - lo_t + eps) + lo_t              = gain_out * y + offset_out
    scale = b * (hi_t - lo_t + eps)                     (scales: slope only)

so any ONNX runtime (C++, C#, Java, the browser) reproduces fluorecon's prediction. The
export uses PyTorch's ``torch.export``-based exporter (``torch.onnx.export(dynamo=True)``)
and checks the file with :func:`onnx.checker.check_model`; :func:`check_onnx` compares
onnxruntime's output with PyTorch's.

References
----------
.. [1] ONNX: Open Neural Network Exchange, https://onnx.ai (operator sets, IR).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fluorecon.core.errors import ConfigError, DataError, message
from fluorecon.io import check_output_target, write_bytes_atomic
from fluorecon.methods.learned._base import LearnedMethod
from fluorecon.methods.learned.model_io import ModelConfig
from fluorecon.normalize import NormParams

#: ONNX operator set written by default (supported by onnxruntime >= 1.14).
DEFAULT_OPSET = 18
#: ``format`` entry of the JSON sidecar.
SIDECAR_FORMAT = "fluorecon-onnx"
INPUT_NAME = "input"
OUTPUT_NAME = "output"


@dataclass(frozen=True)
class OnnxExport:
    """Result of :func:`export_onnx`.

    Attributes
    ----------
    onnx_path, sidecar_path : Path
        The ``.onnx`` file and its JSON sidecar.
    max_abs_diff : float
        Largest absolute difference between onnxruntime and PyTorch on the check input
        (network units), ``nan`` when the check was skipped.
    """

    onnx_path: Path
    sidecar_path: Path
    max_abs_diff: float


def affine_coefficients(params: NormParams) -> tuple[list[float], list[float]]:
    """Gain and offset of ``normalize`` written as ``gain * x + offset`` (per channel).

    Returns
    -------
    gain, offset : list of float
        ``gain = 1 / (hi - lo + eps)``, ``offset = -lo * gain``, one entry per channel of
        ``params`` (one for pooled parameters).
    """
    gain = [1.0 / s for s in params.scale]
    return gain, [-lo * g for lo, g in zip(params.lo, gain)]


def resolve_method(model: LearnedMethod | str | os.PathLike[str], *,
                   device: str | None = None) -> LearnedMethod:
    """A trained :class:`LearnedMethod` from itself or from a model folder."""
    if isinstance(model, LearnedMethod):
        model._require_trained()
        return model
    from fluorecon.methods.learned import load_model_method

    return load_model_method(model, device=device)


def cpu_network(method: LearnedMethod) -> nn.Module:
    """A CPU float32 copy of the method's network in eval mode (the original is untouched)."""
    import copy

    net, _ = method._require_trained()
    return copy.deepcopy(net).to("cpu").float().eval()


def example_input(mc: ModelConfig, *, batch: int = 1, size: int | None = None,
                  seed: int = 0) -> torch.Tensor:
    """A small random network input ``(batch, C_in, *spatial)`` in normalised units."""
    div = mc.unet.divisible_by
    n = size if size is not None else max(2 * div, 16 if mc.unet.ndim == 3 else 32)
    n = -(-n // div) * div
    gen = torch.Generator().manual_seed(seed)
    return torch.rand((batch, mc.unet.in_channels) + (n,) * mc.unet.ndim, generator=gen)


def write_onnx_network(net: nn.Module, mc: ModelConfig, path: str | os.PathLike[str], *,
                       opset: int = DEFAULT_OPSET) -> Path:
    """Export the network (normalised units in and out) to ``path`` with dynamic axes.

    Parameters
    ----------
    net : torch.nn.Module
        The U-Net (CPU, eval mode).
    mc : ModelConfig
        Its model config (architecture and axes).
    path : path
        Destination ``.onnx`` file (written atomically).
    opset : int
        ONNX operator set (>= 17 for the exporter used).

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    The batch axis and every spatial axis are exported as dynamic dimensions
    (``torch.export.Dim.AUTO``), so the file accepts any batch size and any spatial size
    that is a multiple of ``2**depth``. The graph is traced with autograd enabled, i.e.
    through the network's plain (training) forward path. PyTorch's deprecation and
    tracing warnings raised inside the exporter are silenced locally; the graph is
    checked with :func:`onnx.checker.check_model`.
    """
    import onnx
    from torch.export import Dim

    if opset < 17:
        raise ConfigError(message(f"opset {opset}", "opset >= 17",
                                  f"Use the default opset {DEFAULT_OPSET}."))
    x = example_input(mc, batch=2)
    dyn = {0: Dim.AUTO, **{2 + i: Dim.AUTO for i in range(mc.unet.ndim)}}
    # Traced with autograd enabled: the U-Net's memory-lean no-grad path writes into
    # preallocated buffers in place, which does not export with dynamic shapes.
    with warnings.catch_warnings(), torch.enable_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(net, (x,), dynamo=True, dynamic_shapes=(dyn,),
                                    opset_version=opset, input_names=[INPUT_NAME],
                                    output_names=[OUTPUT_NAME], verbose=False)
    if program is None:  # pragma: no cover - the dynamo exporter always returns a program
        raise RuntimeError("torch.onnx.export returned no program")
    proto = program.model_proto
    onnx.checker.check_model(proto, full_check=True)
    return write_bytes_atomic(Path(path), proto.SerializeToString(), overwrite=True)


def run_onnx(path: str | os.PathLike[str], batch: np.ndarray) -> np.ndarray:
    """Run an exported network with onnxruntime on a ``(N, C, *spatial)`` float32 batch."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    threads = os.environ.get("FLUORECON_NUM_THREADS")
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), sess_options=opts,
                                providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {sess.get_inputs()[0].name:
                                      np.ascontiguousarray(batch, np.float32)})[0])


def check_onnx(net: nn.Module, path: str | os.PathLike[str], x: torch.Tensor) -> float:
    """Largest absolute difference between onnxruntime and PyTorch on ``x``."""
    with torch.no_grad():
        ref = net(x).numpy()
    out = run_onnx(path, x.numpy())
    if out.shape != ref.shape:
        raise DataError(message(f"an ONNX output of shape {out.shape}",
                                f"the PyTorch output shape {ref.shape}",
                                "Report this as a fluorecon bug (export mismatch)."))
    return float(np.max(np.abs(out - ref)))


def sidecar(mc: ModelConfig, *, onnx_file: str, opset: int,
            receptive_field: int | None) -> dict[str, Any]:
    """The JSON sidecar of an ONNX export (see the module docstring)."""
    gain_in, off_in = affine_coefficients(mc.input_norm)
    gain_t, off_t = affine_coefficients(mc.target_norm)
    sp = mc.axes.replace("C", "")
    return {
        "format": SIDECAR_FORMAT, "version": 1, "onnx_file": onnx_file, "opset": opset,
        "method": mc.method, "input_name": INPUT_NAME, "output_name": OUTPUT_NAME,
        "tensor_axes": "NC" + sp, "image_axes": mc.axes, "ndim": mc.unet.ndim,
        "in_channels": mc.unet.in_channels, "out_channels": mc.unet.out_channels,
        "probabilistic": mc.unet.probabilistic,
        "output_channels": (["mean"] * mc.unet.out_channels
                            + (["laplace_scale"] * mc.unet.out_channels
                               if mc.unet.probabilistic else [])),
        "divisible_by": mc.unet.divisible_by, "halo": receptive_field,
        "pad_mode": "reflect",
        "preprocessing": {"gain": gain_in, "offset": off_in, "clip": mc.input_norm.clip,
                          "formula": "x_n = gain * x + offset (per channel)"},
        "postprocessing": {"gain": [1.0 / g for g in gain_t], "offset": mc.target_norm.lo,
                           "formula": "mean = y * gain + offset; laplace_scale = b * gain"},
        "input_norm": mc.input_norm.to_dict(), "target_norm": mc.target_norm.to_dict(),
        "unet": mc.unet.model_dump(mode="json"), "seed": mc.seed, "versions": mc.versions,
    }


def export_onnx(model: LearnedMethod | str | os.PathLike[str], out: str | os.PathLike[str],
                *, opset: int = DEFAULT_OPSET, check: bool = True,
                overwrite: bool = False) -> OnnxExport:
    """Export a trained learned model to ONNX plus a JSON sidecar with its normalisation.

    Parameters
    ----------
    model : LearnedMethod or path
        A trained method or a model folder (``config.json`` + ``weights.safetensors``).
    out : path
        The ``.onnx`` file to write (``.onnx`` is appended when missing); the sidecar is
        written next to it as ``<stem>.json``.
    opset : int, default 18
        ONNX operator set.
    check : bool, default True
        Run the file with onnxruntime on a random input and require agreement with
        PyTorch to 1e-4 (normalised units).
    overwrite : bool
        Replace existing files.

    Returns
    -------
    OnnxExport

    Raises
    ------
    OutputExistsError
        ``out`` or the sidecar exists and ``overwrite`` is False, or is the model.
    DataError
        onnxruntime disagrees with PyTorch by more than 1e-4.

    Examples
    --------
    >>> export_onnx("care_model", "care.onnx")                 # doctest: +SKIP
    OnnxExport(onnx_path=PosixPath('care.onnx'), sidecar_path=PosixPath('care.json'), ...)
    """
    method = resolve_method(model)
    _, mc = method._require_trained()
    path = Path(out)
    if path.suffix.lower() != ".onnx":
        path = path.with_name(path.name + ".onnx")
    side = path.with_suffix(".json")
    inputs = [] if isinstance(model, LearnedMethod) else [Path(model)]
    for p in (path, side):
        check_output_target(p, overwrite=overwrite, inputs=inputs)
    net = cpu_network(method)
    write_onnx_network(net, mc, path, opset=opset)
    diff = float("nan")
    if check:
        diff = check_onnx(net, path, example_input(mc, batch=1, seed=1))
        if not diff <= 1e-4:
            path.unlink(missing_ok=True)
            raise DataError(message(f"an ONNX export differing from PyTorch by {diff:.3g}",
                                    "agreement within 1e-4", "Report this as a fluorecon "
                                    "bug, or try another opset."))
    meta = sidecar(mc, onnx_file=path.name, opset=opset,
                   receptive_field=method.receptive_field)
    write_bytes_atomic(side, (json.dumps(meta, indent=2) + "\n").encode(), overwrite=True)
    return OnnxExport(onnx_path=path, sidecar_path=side, max_abs_diff=diff)
