"""Run bioimage.io model packages (2D/3D image-to-image restoration networks) as fluorecon
methods, with fluorecon's exact tiled prediction.

:class:`BioimageioModel` reads a local package (``.zip``, package folder or ``rdf.yaml``;
spec 0.4 descriptions are converted to 0.5 by bioimageio.spec), checks that it maps one
image to one image of the same spatial size, and applies

1. the input's declared pre-processing, evaluated in NumPy: ``ensure_dtype``,
   ``scale_linear``, ``fixed_zero_mean_unit_variance``, ``clip``, ``sigmoid``, and the
   sample-statistics operations ``scale_range``, ``zero_mean_unit_variance`` and
   percentile ``clip``;
2. the network, through bioimageio.core's model adapters (``pytorch_state_dict``,
   ``torchscript``, ``onnx``; others if their framework is installed), on inputs padded
   to the declared ``min + n * step`` sizes and cropped back;
3. the output's declared post-processing (``scale_linear``, ``fixed_zero_mean_unit_
   variance``, ``clip``, ``sigmoid``, ``ensure_dtype``).

Tiling. The halo declared on the output axes is the method's :attr:`receptive_field`
and the input ``step`` its :attr:`divisible_by`, so
:func:`fluorecon.predict.predict_method_tiled` cuts, pads and stitches exactly as for
fluorecon's own networks. Operations with sample statistics (percentiles, mean, std)
would give every tile different statistics; fluorecon computes them **once on the whole
image** (:meth:`BioimageioModel.with_statistics`, which freezes them into fixed affine
maps) before tiling, as it does for its own normalisation. Without frozen statistics the
receptive field is reported unbounded and tiled prediction runs on whole blocks, where
each block's statistics are those of the block (bioimage.io's per-sample semantics).

References
----------
.. [1] W. Ouyang et al., "BioImage Model Zoo: a community-driven resource for accessible
   deep learning in bioimage analysis", bioRxiv (2022), doi:10.1101/2022.06.07.495102.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
import weakref
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from fluorecon.core.axes import check_axes, spatial_axes
from fluorecon.core.dtypes import as_float32
from fluorecon.core.errors import AxesError, ConfigError, DataError, InputFileError, message
from fluorecon.methods.base import Method, MethodConfig
from fluorecon.methods.learned._base import predict_joint_channels

#: Working memory per input voxel assumed for tile sizing (bytes): unknown networks are
#: treated like a 32-filter U-Net (see ``LearnedMethod.bytes_per_voxel``).
BYTES_PER_VOXEL = 1024.0
#: Largest number of values per channel used for whole-image statistics (a regular
#: lattice subsample beyond it, as in :func:`fluorecon.normalize.compute_norm_params`).
MAX_STAT_SAMPLES = 1 << 24
_SPACE = {"z": "Z", "y": "Y", "x": "X"}


# -- processing steps --------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """One processing operation on a ``(B, C, *spatial)`` float32 array.

    ``kind`` is ``"affine"`` (``gain * x + offset`` per channel), ``"clip"``
    (``lo``/``hi`` per channel, None for no bound), ``"sigmoid"``, or a sample-statistics
    operation ``"scale_range"`` / ``"zmuv"`` / ``"clip_percentile"`` that
    :func:`freeze` turns into ``"affine"``/``"clip"`` with statistics of a given image.
    """

    kind: str
    gain: tuple[float, ...] = (1.0,)
    offset: tuple[float, ...] = (0.0,)
    lo: tuple[float | None, ...] = (None,)
    hi: tuple[float | None, ...] = (None,)
    q_lo: float | None = None
    q_hi: float | None = None
    per_channel: bool = False
    eps: float = 1e-6

    @property
    def needs_statistics(self) -> bool:
        """Whether the step depends on statistics of the image it is applied to."""
        return self.kind in ("scale_range", "zmuv", "clip_percentile")


def _per_channel(values: tuple[Any, ...], n: int) -> np.ndarray:
    arr = np.asarray(values, dtype=object if None in values else np.float64)
    return arr if len(values) == n else np.repeat(arr[:1], n)


def _bshape(ndim: int) -> tuple[int, ...]:
    return (1, -1) + (1,) * (ndim - 2)


def _statistic_values(x: np.ndarray, step: Step) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (or pooled) statistics of ``x`` ``(B, C, *spatial)`` for ``step``."""
    c = x.shape[1]
    groups = [x[:, i] for i in range(c)] if step.per_channel else [x]
    lows, highs = [], []
    for g in groups:
        flat = np.asarray(g, np.float64).ravel()
        if flat.size > MAX_STAT_SAMPLES:
            flat = flat[:: -(-flat.size // MAX_STAT_SAMPLES)]
        if step.kind == "zmuv":
            lows.append(float(flat.mean()))
            highs.append(float(flat.std()))
        else:
            q = [0.0 if step.q_lo is None else step.q_lo,
                 100.0 if step.q_hi is None else step.q_hi]
            lo, hi = np.percentile(flat, q)
            lows.append(float(lo))
            highs.append(float(hi))
    return np.repeat(lows, c // len(lows)), np.repeat(highs, c // len(highs))


def freeze(step: Step, x: np.ndarray) -> Step:
    """``step`` with the statistics of ``x`` ``(B, C, *spatial)`` fixed (pointwise)."""
    if not step.needs_statistics:
        return step
    a, b = _statistic_values(x, step)
    if step.kind == "scale_range":  # (x - lower) / (upper - lower + eps)
        gain = 1.0 / (b - a + step.eps)
        return Step("affine", gain=tuple(gain), offset=tuple(-a * gain))
    if step.kind == "zmuv":  # (x - mean) / (std + eps)
        gain = 1.0 / (b + step.eps)
        return Step("affine", gain=tuple(gain), offset=tuple(-a * gain))
    return Step("clip", lo=tuple(a) if step.q_lo is not None else (None,),
                hi=tuple(b) if step.q_hi is not None else (None,))


def apply_steps(steps: Sequence[Step], x: np.ndarray) -> np.ndarray:
    """Apply ``steps`` in order to ``x`` ``(B, C, *spatial)`` (float32 result)."""
    y = np.asarray(x, np.float32)
    c = y.shape[1]
    for step in steps:
        step = freeze(step, y) if step.needs_statistics else step
        if step.kind == "affine":
            g = _per_channel(step.gain, c).astype(np.float32).reshape(_bshape(y.ndim))
            o = _per_channel(step.offset, c).astype(np.float32).reshape(_bshape(y.ndim))
            y = y * g + o
        elif step.kind == "clip":
            lo, hi = _per_channel(step.lo, c), _per_channel(step.hi, c)
            y = np.stack([np.clip(y[:, i], None if lo[i] is None else np.float32(lo[i]),
                                  None if hi[i] is None else np.float32(hi[i]))
                          for i in range(c)], axis=1)
        elif step.kind == "sigmoid":
            y = (1.0 / (1.0 + np.exp(-y))).astype(np.float32)
        else:  # pragma: no cover - parse_steps produces only the kinds above
            raise ValueError(step.kind)
    return np.asarray(y, np.float32)


def _channel_values(kwargs: Any, name: str) -> tuple[float, ...]:
    v = getattr(kwargs, name)
    return tuple(float(e) for e in v) if isinstance(v, (list, tuple)) else (float(v),)


def parse_steps(ops: Sequence[Any], *, where: str, tensor_id: str) -> list[Step]:
    """Translate bioimage.io processing descriptions into :class:`Step` objects."""
    steps: list[Step] = []
    for op in ops:
        oid = getattr(op, "id", None)
        kw = getattr(op, "kwargs", None)
        if oid == "ensure_dtype":
            if kw.dtype not in ("float32", "float64"):
                raise ConfigError(message(f"{where} ensure_dtype {kw.dtype!r} of tensor "
                                          f"{tensor_id!r}", "float32 (restoration "
                                          "output)", "Use a restoration model."))
            continue
        if oid == "scale_linear":
            steps.append(Step("affine", gain=_channel_values(kw, "gain"),
                              offset=_channel_values(kw, "offset")))
        elif oid == "fixed_zero_mean_unit_variance":
            mean = _channel_values(kw, "mean")
            std = _channel_values(kw, "std")
            gain = tuple(1.0 / (s + 1e-6) for s in std)
            steps.append(Step("affine", gain=gain,
                              offset=tuple(-m * g for m, g in zip(mean, gain))))
        elif oid == "sigmoid":
            steps.append(Step("sigmoid"))
        elif oid == "clip" and kw.min_percentile is None and kw.max_percentile is None:
            steps.append(Step("clip", lo=(kw.min,), hi=(kw.max,)))
        elif oid in ("scale_range", "zero_mean_unit_variance", "clip") and where == "pre":
            ref = getattr(kw, "reference_tensor", None)
            if ref is not None and str(ref) != tensor_id:
                raise ConfigError(message(f"{oid} with reference tensor {ref!s}",
                                          "statistics of the input itself",
                                          "Use a package with one input."))
            axes = [str(a) for a in (kw.axes or [])]
            per_channel = bool(axes) and "channel" not in axes
            if oid == "scale_range":
                steps.append(Step("scale_range", q_lo=kw.min_percentile,
                                  q_hi=kw.max_percentile, per_channel=per_channel,
                                  eps=kw.eps))
            elif oid == "zero_mean_unit_variance":
                steps.append(Step("zmuv", per_channel=per_channel, eps=kw.eps))
            else:
                steps.append(Step("clip_percentile", q_lo=kw.min_percentile,
                                  q_hi=kw.max_percentile, per_channel=per_channel))
        else:
            raise ConfigError(message(f"{where}-processing {oid!r} of tensor {tensor_id!r}",
                                      "ensure_dtype, scale_linear, (fixed_)zero_mean_unit_"
                                      "variance, scale_range, clip or sigmoid",
                                      "Run this package with bioimageio.core instead."))
    return steps


# -- the method ----------------------------------------------------------------------------
class BioimageioConfig(MethodConfig):
    """Settings of :class:`BioimageioModel`."""

    source: str = Field(description="bioimage.io package: .zip, folder or rdf.yaml (local).")
    weight_format: Literal["auto", "pytorch_state_dict", "torchscript", "onnx"] = Field(
        default="auto", description="Weights to run; auto: the first of pytorch_state_dict, "
                                    "torchscript, onnx in the package.")
    halo: int | None = Field(default=None, ge=0, description="Override the declared halo "
                             "(pixels); default: the largest halo of the output axes.")
    output_channels: list[int] | None = Field(
        default=None, description="Output channels to return; default all (for "
        "probabilistic fluorecon exports: the means).")
    device: str | None = Field(default=None, description="Device: cpu, cuda, ...; default "
                                                         "cpu.")


@dataclass(frozen=True)
class _Layout:
    in_dims: tuple[str, ...]       # described input axes (ids), e.g. batch, channel, y, x
    out_dims: tuple[str, ...]
    spatial: str                    # fluorecon spatial axes, e.g. "YX"
    in_channels: int
    out_channels: int
    min_size: tuple[int, ...]       # per spatial axis (fluorecon order)
    step: tuple[int, ...]
    halo: int
    pad_mode: str


def resolve_source(source: str | os.PathLike[str]) -> Path:
    """Check a local package path: a ``.zip``, a folder with ``rdf.yaml`` or the yaml."""
    p = Path(source)
    if not p.exists():
        raise InputFileError(message(f"bioimage.io package {p} that does not exist",
                                     "a local .zip, package folder or rdf.yaml",
                                     "Check the path (downloads are not supported)."))
    if p.is_dir():
        for name in ("rdf.yaml", "bioimageio.yaml"):
            if (p / name).is_file():
                return p / name
        hits = sorted(p.glob("*.bioimageio.yaml")) + sorted(p.glob("*rdf.yaml"))
        if hits:
            return hits[0]
        raise InputFileError(message(f"folder {p} without rdf.yaml", "a package folder "
                                     "with rdf.yaml", "Point to the package's .zip or "
                                     "rdf.yaml."))
    if p.suffix.lower() == ".zip" and not zipfile.is_zipfile(p):
        raise InputFileError(message(f"{p}, which is not a zip file", "a bioimage.io .zip "
                                     "package", "Restore the file."))
    return p


def load_description(source: str | os.PathLike[str] | zipfile.ZipFile) -> Any:
    """Load and validate a bioimage.io model description (offline, latest format).

    Parameters
    ----------
    source : path or zipfile.ZipFile
        A package folder, ``rdf.yaml`` or ``.zip``. Pass an open :class:`zipfile.ZipFile`
        to control when the zip is closed: for a zip *path*, the description keeps a zip
        handle open until it is garbage collected.

    Returns
    -------
    bioimageio.spec.model.v0_5.ModelDescr
    """
    from bioimageio.spec import InvalidDescr, load_model_description
    from bioimageio.spec.model import v0_5

    from fluorecon.methods.learned._bioimageio_compat import closing_readers, ensure_compatible

    ensure_compatible()
    path: Any = source if isinstance(source, zipfile.ZipFile) else resolve_source(source)
    with closing_readers(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            descr = load_model_description(path, format_version="latest",
                                           perform_io_checks=True)
        except (ValueError, OSError) as exc:
            raise InputFileError(message(f"a bioimage.io package {path} that cannot be read "
                                         f"({' '.join(str(exc).split())[:200]})",
                                         "a valid model package", "Validate it with "
                                         "`bioimageio validate`.")) from None
    if isinstance(descr, InvalidDescr) or not isinstance(descr, v0_5.ModelDescr):
        summary = getattr(descr, "validation_summary", None)
        first = ""
        if summary is not None:
            errs = [e for d in summary.details for e in d.errors]
            first = f": {errs[0].loc}: {errs[0].msg}" if errs else ""
        raise InputFileError(message(f"an invalid bioimage.io model description in "
                                     f"{path}{' '.join(first.split())[:200]}",
                                     "a valid model package", "Validate it with "
                                     "`bioimageio validate`."))
    return descr


def _layout(descr: Any, halo_override: int | None) -> _Layout:
    from bioimageio.spec.model import v0_5

    if len(descr.inputs) != 1 or len(descr.outputs) != 1:
        raise ConfigError(message(f"a package with {len(descr.inputs)} inputs and "
                                  f"{len(descr.outputs)} outputs", "one input and one output "
                                  "(image restoration)", "Run it with bioimageio.core."))
    tin, tout = descr.inputs[0], descr.outputs[0]
    in_dims, out_dims = [], []
    sp_in: dict[str, Any] = {}
    cin = cout = 1
    for ax in tin.axes:
        aid = str(ax.id)
        in_dims.append(aid)
        if isinstance(ax, v0_5.BatchAxis):
            continue
        if isinstance(ax, v0_5.ChannelAxis):
            cin = len(ax.channel_names)
        elif isinstance(ax, v0_5.SpaceInputAxis) and aid in _SPACE:
            sp_in[aid] = ax
        else:
            raise ConfigError(message(f"input axis {aid!r} ({ax.type})", "batch, channel "
                                      "and space axes z, y, x", "Use a 2D/3D image model."))
    halos: list[int] = []
    for ax in tout.axes:
        aid = str(ax.id)
        out_dims.append(aid)
        if isinstance(ax, v0_5.BatchAxis):
            continue
        if isinstance(ax, v0_5.ChannelAxis):
            cout = len(ax.channel_names)
            continue
        size = getattr(ax, "size", None)
        ok = (aid in sp_in and isinstance(size, v0_5.SizeReference)
              and str(size.tensor_id) == str(tin.id) and str(size.axis_id) == aid
              and size.offset == 0 and math.isclose(ax.scale, sp_in[aid].scale))
        if not ok:
            raise ConfigError(message(f"output axis {aid!r} whose size is not that of input "
                                      f"axis {aid!r}", "an output on the input's pixel grid",
                                      "Models that change the image size (upsampling, "
                                      "cropping) are not supported; run it with "
                                      "bioimageio.core."))
        halos.append(int(getattr(ax, "halo", 0) or 0))
    spatial = "".join(_SPACE[a] for a in ("z", "y", "x") if a in sp_in)
    if len(spatial) not in (2, 3) or len(halos) != len(spatial):
        raise ConfigError(message(f"a package with spatial axes {sorted(sp_in)} in and "
                                  f"{len(halos)} out", "2 or 3 spatial axes in and out",
                                  "Use a 2D/3D image restoration model."))
    mins, steps = [], []
    for a in spatial.lower():
        size = sp_in[a].size
        if isinstance(size, v0_5.ParameterizedSize):
            mins.append(int(size.min))
            steps.append(int(size.step))
        elif isinstance(size, int):
            raise ConfigError(message(f"input axis {a!r} of fixed size {size}",
                                      "parameterised sizes (min, step)",
                                      "Run fixed-size models with bioimageio.core."))
        else:
            raise ConfigError(message(f"input axis {a!r} with size {size}", "parameterised "
                                      "sizes (min, step)", "Use an image-to-image model."))
    pad = getattr(tin, "pad", None)
    pad_mode = getattr(pad, "mode", "reflect") if pad is not None else "reflect"
    halo = halo_override if halo_override is not None else max(halos)
    return _Layout(in_dims=tuple(in_dims), out_dims=tuple(out_dims), spatial=spatial,
                   in_channels=cin, out_channels=cout, min_size=tuple(mins),
                   step=tuple(steps), halo=halo, pad_mode=pad_mode)


class BioimageioModel(Method):
    """A bioimage.io model package used as a fluorecon :class:`~fluorecon.methods.Method`.

    Parameters
    ----------
    config : BioimageioConfig, optional
    **kwargs
        Config fields; ``source`` (the package path) is required.

    Notes
    -----
    Single-channel packages (one input and one returned output channel) treat a ``C``
    axis like ``S``/``T``; multi-channel ones take ``C`` jointly (``channel_counts``).
    :meth:`predict` gives each ``S``/``T`` block its own sample statistics (bioimage.io
    semantics); for tiled prediction of large images use :meth:`with_statistics` first so
    that statistics come from the whole image, then
    :func:`fluorecon.predict.predict_method_tiled`.

    Examples
    --------
    >>> model = BioimageioModel(source="care.zip")                       # doctest: +SKIP
    >>> from fluorecon.predict import predict_method_tiled               # doctest: +SKIP
    >>> out = predict_method_tiled(model.with_statistics(img, "ZYX"), img, "ZYX",
    ...                            tile_shape=64)                         # doctest: +SKIP
    """

    name: ClassVar[str] = "bioimageio"
    kind: ClassVar[str] = "restore"
    Config: ClassVar[type[BioimageioConfig]] = BioimageioConfig  # type: ignore[assignment]
    summary: ClassVar[str] = "A bioimage.io model package (image restoration)."
    config: BioimageioConfig

    def __init__(self, config: BioimageioConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        path = resolve_source(self.config.source)
        self._zip: zipfile.ZipFile | None = None
        if zipfile.is_zipfile(path):
            self._zip = zipfile.ZipFile(path)
            weakref.finalize(self, self._zip.close)
        self.description = load_description(self._zip or path)
        self.layout = _layout(self.description, self.config.halo)
        self.spatial_dims = (len(self.layout.spatial),)  # type: ignore[misc]
        tin, tout = self.description.inputs[0], self.description.outputs[0]
        self.preprocessing = parse_steps(tin.preprocessing, where="pre",
                                         tensor_id=str(tin.id))
        self.postprocessing = parse_steps(tout.postprocessing, where="post",
                                          tensor_id=str(tout.id))
        self.weight_format = self._choose_format()
        sel = self.config.output_channels
        if sel is None:
            sel = self._default_output_channels()
        if any(not 0 <= c < self.layout.out_channels for c in sel):
            raise ConfigError(message(f"output_channels {sel}", f"indices below "
                                      f"{self.layout.out_channels}", "Pick existing output "
                                      "channels."))
        self.output_channels = list(sel)
        self._adapter: Any = None

    # -- metadata --------------------------------------------------------------------
    @property
    def fluorecon_config(self) -> dict[str, Any] | None:
        """The fluorecon model config stored by fluorecon's export, if any."""
        cfg = getattr(self.description.config, "model_extra", None) or {}
        fl = cfg.get("fluorecon") if isinstance(cfg, dict) else None
        mc = fl.get("model_config") if isinstance(fl, dict) else None
        return mc if isinstance(mc, dict) else None

    def _default_output_channels(self) -> list[int]:
        mc = self.fluorecon_config
        n = self.layout.out_channels
        if mc and mc.get("unet", {}).get("probabilistic"):
            return list(range(int(mc["unet"]["out_channels"])))
        return list(range(n))

    def _choose_format(self) -> str:
        available = [f for f in ("pytorch_state_dict", "torchscript", "onnx",
                                 "tensorflow_saved_model_bundle", "keras_hdf5", "keras_v3")
                     if getattr(self.description.weights, f, None) is not None]
        want = self.config.weight_format
        if want != "auto":
            if want not in available:
                raise ConfigError(message(f"weight_format {want!r}", f"one of {available}",
                                          "Choose a format the package has."))
            return want
        if not available:
            raise ConfigError(message("a package without supported weights",
                                      "pytorch_state_dict, torchscript or onnx weights",
                                      "Use another package."))
        return available[0]

    @property
    def may_hallucinate(self) -> bool:
        """True when fluorecon's export recorded adversarial training."""
        mc = self.fluorecon_config or {}
        td = mc.get("training_data") or {}
        return bool(td.get("adversarial"))

    @property
    def needs_statistics(self) -> bool:
        """Whether pre-processing uses statistics of the image (not yet frozen)."""
        return any(s.needs_statistics for s in self.preprocessing)

    @property
    def receptive_field(self) -> int | None:
        """The declared halo (pixels); None (whole blocks) when no halo is declared or
        sample statistics are not frozen (see :meth:`with_statistics`)."""
        if self.needs_statistics or self.layout.halo <= 0:
            return None
        return self.layout.halo

    @property
    def divisible_by(self) -> int:
        """Least common multiple of the declared input size steps."""
        return math.lcm(*self.layout.step)

    @property
    def bytes_per_voxel(self) -> float:
        """Assumed working memory per input voxel (see :data:`BYTES_PER_VOXEL`)."""
        return BYTES_PER_VOXEL * max(1, self.layout.in_channels)

    @property
    def channel_counts(self) -> tuple[int, int] | None:
        """``(in, out)`` for multi-channel packages (``C`` taken jointly), else None."""
        cout = len(self.output_channels)
        if self.layout.in_channels == 1 and cout == 1:
            return None
        return self.layout.in_channels, cout

    # -- statistics --------------------------------------------------------------------
    def with_statistics(self, image: Any, axes: str) -> "BioimageioModel":
        """A copy whose sample-statistics pre-processing uses statistics of ``image``.

        Parameters
        ----------
        image : array_like
            The whole image to be predicted (NumPy, dask, zarr; a regular lattice of at
            most :data:`MAX_STAT_SAMPLES` values per channel is read).
        axes : str

        Returns
        -------
        BioimageioModel
            ``self`` when nothing depends on statistics; otherwise a copy with fixed
            affine/clip steps (pointwise, so tiles stitch exactly), sharing the network.
        """
        if not self.needs_statistics:
            return self
        up = check_axes(axes, ndim=len(image.shape))
        sp = spatial_axes(up)
        n = int(np.prod(image.shape))
        stride = max(1, int(math.ceil((n / MAX_STAT_SAMPLES) ** (1 / max(1, len(sp))))))
        index = tuple(slice(None, None, stride) if a in sp else slice(None) for a in up)
        arr = as_float32(np.asarray(image[index]))
        lead = [i for i, a in enumerate(up) if a not in sp and a != "C"]
        order = lead + ([up.index("C")] if "C" in up else []) + [up.index(a) for a in sp]
        arr = np.transpose(arr, order)
        arr = arr.reshape((-1,) + ((arr.shape[len(lead)],) if "C" in up else (1,))
                          + arr.shape[len(order) - len(sp):])
        if self.channel_counts is None and arr.shape[1] > 1:
            arr = arr.reshape((-1, 1) + arr.shape[2:])
        frozen = []
        x = arr
        for step in self.preprocessing:
            frozen.append(freeze(step, x))
            x = apply_steps([frozen[-1]], x)
        out = copy.copy(self)
        out.preprocessing = frozen
        return out

    # -- network -----------------------------------------------------------------------
    def _adapter_or_load(self) -> Any:
        if self._adapter is None:
            from bioimageio.core.backends import create_model_adapter

            devices = [self.config.device] if self.config.device else None
            if self.weight_format == "onnx" and devices == ["cpu"]:
                devices = None
            from fluorecon.methods.learned._bioimageio_compat import closing_readers

            with closing_readers(), warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                try:
                    self._adapter = create_model_adapter(
                        self.description, devices=devices,
                        weight_format_priority_order=[self.weight_format])
                except Exception as exc:  # framework errors vary (ImportError, RuntimeError)
                    raise ConfigError(message(
                        f"{self.weight_format} weights that fail to load "
                        f"({type(exc).__name__}: {' '.join(str(exc).split())[:160]})",
                        "loadable weights", "Try another weight_format.")) from None
        return self._adapter

    def _valid_size(self, n: int, k: int) -> int:
        lo, st = self.layout.min_size[k], self.layout.step[k]
        return lo + max(0, -(-(n - lo) // st)) * st

    def _network(self, x: np.ndarray) -> np.ndarray:
        """Network on ``(B, C_in, *spatial)`` normalised input -> ``(B, C_out, *spatial)``."""
        lay = self.layout
        sp_shape = x.shape[2:]
        target = [self._valid_size(n, k) for k, n in enumerate(sp_shape)]
        pads = [(0, 0), (0, 0)] + [(0, t - n) for n, t in zip(sp_shape, target)]
        if any(p[1] for p in pads):
            mode = lay.pad_mode
            if mode == "reflect" and any(p[1] >= n for p, n in zip(pads[2:], sp_shape)):
                mode = "symmetric"
            x = np.pad(x, pads, mode=mode)  # type: ignore[call-overload]
        dims = ["batch", "channel"] + [a.lower() for a in lay.spatial]
        if "channel" not in lay.in_dims:
            x = x[:, 0]
            dims.remove("channel")
        if "batch" not in lay.in_dims and x.shape[0] != 1:
            out = np.concatenate([self._network_unpadded(x[i:i + 1], dims)
                                  for i in range(x.shape[0])])
        else:
            out = self._network_unpadded(x, dims)
        crop = (slice(None), slice(None)) + tuple(slice(0, n) for n in sp_shape)
        return out[crop]

    def _network_unpadded(self, x: np.ndarray, dims: list[str]) -> np.ndarray:
        from bioimageio.core import Tensor
        from bioimageio.spec.model.v0_5 import AxisId

        lay = self.layout
        adapter = self._adapter_or_load()
        arr = x if "batch" in lay.in_dims else x[0]
        use_dims = dims if "batch" in lay.in_dims else dims[1:]
        tin = self.description.inputs[0].id
        tout = self.description.outputs[0].id
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            res = adapter.forward({tin: Tensor(np.ascontiguousarray(arr, np.float32),
                                               dims=[AxisId(d) for d in use_dims])})
        out = res[tout]
        want = [d for d in ("batch", "channel", "z", "y", "x")
                if d in lay.out_dims and (d not in _SPACE or _SPACE[d] in lay.spatial)]
        data = np.asarray(out.data.transpose(*[AxisId(d) for d in want]).values, np.float32)
        if "batch" not in want:
            data = data[None]
        if "channel" not in want:
            data = data[:, None]
        return data

    # -- prediction ----------------------------------------------------------------------
    def predict_batch(self, batch: np.ndarray, axes: str) -> np.ndarray:
        """Apply pre-processing, network and post-processing to equally shaped blocks.

        Parameters
        ----------
        batch : ndarray
            ``(B, *block)`` with block axes ``"YX"``/``"ZYX"`` (single-channel packages)
            or ``"CYX"``/``"CZYX"`` (multi-channel), raw intensities.
        axes : str
            Axes of one block.

        Returns
        -------
        ndarray, float32
            ``(B, *block_out)``: the selected output channels along ``C`` (multi-channel),
            same spatial shape.
        """
        up = check_axes(axes)
        sp = spatial_axes(up)
        if sp != self.layout.spatial or up not in (sp, "C" + sp):
            raise AxesError(message(f"block axes {axes!r} for a package with spatial axes "
                                    f"{self.layout.spatial!r}", f"{self.layout.spatial!r} "
                                    f"or 'C{self.layout.spatial}'", "Pass --axes matching "
                                    "the model."))
        x = as_float32(batch)
        if x.ndim != len(up) + 1:
            raise AxesError(message(f"a batch of {x.ndim - 1}D blocks with axes {up!r}",
                                    f"{len(up)}D blocks after the batch axis",
                                    "Pass blocks shaped like the axes."))
        if not up.startswith("C"):
            x = x[:, None]
        if x.shape[1] != self.layout.in_channels:
            raise DataError(message(f"a block with {x.shape[1]} channels",
                                    f"{self.layout.in_channels} input channels",
                                    "Pass the channels the model expects."))
        xn = apply_steps(self.preprocessing, x)
        y = self._network(xn)
        y = apply_steps(self.postprocessing, y)[:, self.output_channels]
        return y if up.startswith("C") else y[:, 0]

    def predict_block(self, block: np.ndarray, axes: str) -> np.ndarray:
        """:meth:`predict_batch` on one block."""
        return self.predict_batch(np.asarray(block)[None], axes)[0]

    def predict(self, image: Any, axes: str, *,
                progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Predict whole blocks (each ``S``/``T`` block with its own statistics).

        Multi-channel packages take the ``C`` axis jointly and return the selected output
        channels along it; single-channel ones loop over ``C`` like ``S``/``T``.
        """
        if self.channel_counts is None:
            return super().predict(image, axes, progress=progress)
        axes = self.check_input(image, axes)
        if "C" not in axes:
            raise AxesError(message(f"axes {axes!r} for a package with "
                                    f"{self.layout.in_channels} input channels", "a C axis",
                                    "Pass e.g. axes='CYX'."))
        return predict_joint_channels(self.predict_block, image, axes,
                                      out_channels=len(self.output_channels),
                                      progress=progress)

    def __repr__(self) -> str:
        return (f"BioimageioModel(source={self.config.source!r}, "
                f"weight_format={self.weight_format!r}, name={self.description.name!r})")


def load_bioimageio(source: str | os.PathLike[str], **kwargs: Any) -> BioimageioModel:
    """Load a bioimage.io package as a :class:`BioimageioModel` (see its config fields)."""
    return BioimageioModel(source=str(source), **kwargs)


__all__ = ["BioimageioConfig", "BioimageioModel", "Step", "apply_steps", "freeze",
           "load_bioimageio", "load_description", "parse_steps",
           "resolve_source"]

