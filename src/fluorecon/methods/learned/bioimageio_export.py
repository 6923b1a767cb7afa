"""Export trained fluorecon models as BioImage Model Zoo packages (bioimage.io spec 0.5).

A package is a zip (or folder) with ``rdf.yaml`` and the files it names:

- ``weights.pt``: the PyTorch state dict, with ``fluorecon_unet.py``, a self-contained
  torch module (generated from :mod:`fluorecon.methods.learned.unet`, needs only torch)
  and the architecture's keyword arguments;
- ``weights.onnx`` (ONNX, dynamic batch and spatial axes) and/or ``weights.torchscript``
  (traced), converted from the state dict (``parent: pytorch_state_dict``);
- ``test_input.npy`` / ``test_output.npy``: a seeded test image in the model's input
  units and fluorecon's own prediction of it;
- ``README.md`` (what the model was trained on, how it normalises, limitations), a cover
  image, citations of the method's papers, licence and authors.

Normalisation is written as the spec's own operations so that any bioimage.io consumer
(bioimageio.core, deepImageJ, ilastik, QuPath, BiaPy) reproduces fluorecon's output:
fluorecon normalises with percentiles of the *training* data, stored in the model, so the
pre-processing is the fixed affine map ``scale_linear`` with
``gain = 1 / (hi - lo + eps)``, ``offset = -lo * gain`` (``clip`` to [0, 1] if the model
clips), and the post-processing ``scale_linear`` maps back to the targets' units
(``gain = hi_t - lo_t + eps``, ``offset = lo_t``; probabilistic models' Laplace-scale
channels get offset 0). Both are pointwise, so tiled prediction is exact.

The description is built with bioimageio.spec's Python classes (``ModelDescr``), not
written by hand, validated on construction (file hashes included, offline), and
:func:`check_bioimageio_package` runs ``bioimageio.core.test_model``, which reproduces the
test output with every weight format.

References
----------
.. [1] W. Ouyang et al., "BioImage Model Zoo: a community-driven resource for accessible
   deep learning in bioimage analysis", bioRxiv (2022), doi:10.1101/2022.06.07.495102.
.. [2] bioimage.io model specification 0.5,
   https://bioimage-io.github.io/spec-bioimage-io/ (format of ``rdf.yaml``).
"""

from __future__ import annotations

import datetime
import inspect
import json
import os
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from fluorecon.core.errors import ConfigError, message
from fluorecon.io import check_output_target
from fluorecon.methods.learned import unet as unet_module
from fluorecon.methods.learned._base import LearnedMethod
from fluorecon.methods.learned._bioimageio_compat import closing_readers, ensure_compatible
from fluorecon.methods.learned.model_io import ModelConfig
from fluorecon.methods.learned.onnx_export import (
    DEFAULT_OPSET,
    affine_coefficients,
    cpu_network,
    resolve_method,
    write_onnx_network,
)

WeightFormat = Literal["pytorch_state_dict", "torchscript", "onnx"]
#: Weight formats written by default (the state dict is always written: it is the parent).
DEFAULT_WEIGHT_FORMATS: tuple[WeightFormat, ...] = ("pytorch_state_dict", "onnx")
ALL_WEIGHT_FORMATS: tuple[WeightFormat, ...] = ("pytorch_state_dict", "torchscript", "onnx")
#: Name of the generated architecture file and its callable.
ARCHITECTURE_FILE = "fluorecon_unet.py"
ARCHITECTURE_CALLABLE = "FluoreconUNet"
#: Methods that can be exported, with their task tag.
EXPORTABLE = {"care": "restoration", "n2n": "denoising", "n2v": "denoising",
              "n2v2": "denoising", "n2s": "denoising", "deconv": "deconvolution"}
#: Why other learned methods are refused (one line each).
NOT_EXPORTABLE = {
    "upsample": "its prediction interpolates onto a finer grid (cubic spline) before the "
                "network, which a bioimage.io package cannot express",
    "iso": "its prediction interpolates along Z and fuses XZ and YZ slice predictions, "
           "which a bioimage.io package cannot express",
}

_UNET_PAPER = ("O. Ronneberger, P. Fischer, T. Brox. U-Net: convolutional networks for "
               "biomedical image segmentation. MICCAI 2015.", "10.1007/978-3-319-24574-4_28")
_CARE_PAPER = ("M. Weigert et al. Content-aware image restoration: pushing the limits of "
               "fluorescence microscopy. Nature Methods 15, 1090-1097 (2018).",
               "10.1038/s41592-018-0216-7")
_N2V_PAPER = ("A. Krull, T.-O. Buchholz, F. Jug. Noise2Void - learning denoising from "
              "single noisy images. CVPR 2019.", "10.1109/CVPR.2019.00223")
#: Papers to cite per method: (text, DOI).
CITATIONS: dict[str, list[tuple[str, str]]] = {
    "care": [_CARE_PAPER, _UNET_PAPER],
    "deconv": [_CARE_PAPER, _UNET_PAPER],
    "n2n": [("J. Lehtinen et al. Noise2Noise: learning image restoration without clean "
             "data. ICML 2018.", "10.48550/arXiv.1803.04189"), _CARE_PAPER],
    "n2v": [_N2V_PAPER, _UNET_PAPER],
    "n2v2": [("E. Höck et al. N2V2 - fixing Noise2Void checkerboard artifacts with modified "
              "sampling strategies and a tweaked network architecture. ECCV Workshops "
              "2022.", "10.1007/978-3-031-25069-9_33"), _N2V_PAPER],
    "n2s": [("J. Batson, L. Royer. Noise2Self: blind denoising by self-supervision. "
             "ICML 2019.", "10.48550/arXiv.1901.11365"), _UNET_PAPER],
}
_TITLES = {"care": "CARE restoration", "n2n": "Noise2Noise denoising",
           "n2v": "Noise2Void denoising", "n2v2": "N2V2 denoising",
           "n2s": "Noise2Self denoising", "deconv": "learned deconvolution"}


@dataclass(frozen=True)
class BioimageioExport:
    """Result of :func:`export_bioimageio`.

    Attributes
    ----------
    path : Path
        The written package (``.zip`` file or folder with ``rdf.yaml``).
    weight_formats : tuple of str
        Weight formats in the package.
    validation : str
        Status of the bioimage.io validation of the description (``"valid-format"``,
        ``"passed"``).
    warnings : list of str
        Validation warnings (empty when none).
    """

    path: Path
    weight_formats: tuple[str, ...]
    validation: str
    warnings: list[str] = field(default_factory=list)


# -- the architecture file ------------------------------------------------------------
_ARCH_HEADER = '''\
\"\"\"U-Net of fluorecon {version} as a self-contained PyTorch module (needs only torch).

Generated by fluorecon's bioimage.io export from fluorecon/methods/learned/unet.py: the
classes and functions below are copied verbatim, with a plain-Python stand-in for the
pydantic ``UNetConfig``. ``{callable}(**kwargs)`` builds the network whose state dict is
in the package's weights; kwargs are the fields of ``UNetConfig`` (see rdf.yaml).
\"\"\"

from __future__ import annotations
'''

def _arch_config_source() -> str:
    """A plain-Python stand-in for the pydantic ``UNetConfig``, with its fields' defaults
    read from the model class (so new architecture fields travel automatically)."""
    defaults = {name: f.default for name, f in unet_module.UNetConfig.model_fields.items()}
    return f'''\
class UNetConfig:
    """Architecture settings (the fields of fluorecon's pydantic UNetConfig)."""

    _DEFAULTS = {defaults!r}

    def __init__(self, **kwargs):
        unknown = sorted(set(kwargs) - set(self._DEFAULTS))
        if unknown:
            raise TypeError(f"unknown U-Net settings {{unknown}}")
        for key, value in {{**self._DEFAULTS, **kwargs}}.items():
            setattr(self, key, value)
        if self.ndim not in (2, 3) or self.kernel_size % 2 == 0 or self.depth < 1:
            raise ValueError(f"invalid U-Net settings ndim={{self.ndim}}, "
                             f"depth={{self.depth}}, kernel_size={{self.kernel_size}}")

    @property
    def divisible_by(self):
        return 2 ** self.depth

    @property
    def n_outputs(self):
        return self.out_channels * (2 if self.probabilistic else 1)
'''


_ARCH_FOOTER = '''

class {callable}(UNet):
    """``UNet(UNetConfig(**kwargs))``: the entry point named in rdf.yaml."""

    def __init__(self, **kwargs):
        super().__init__(UNetConfig(**kwargs))
'''


def standalone_unet_source() -> str:
    """Source of a torch-only module defining :data:`ARCHITECTURE_CALLABLE`.

    Every top-level class, function and constant of :mod:`fluorecon.methods.learned.unet`
    is copied verbatim (so the state dict's names and the arithmetic are the same),
    except the pydantic ``UNetConfig``, which a plain-Python stand-in replaces, and the
    imports of fluorecon and pydantic.
    """
    import ast

    from fluorecon import __version__

    src = inspect.getsource(unet_module)
    lines = src.splitlines()
    parts = [_ARCH_HEADER.format(version=__version__, callable=ARCHITECTURE_CALLABLE)]
    kept_imports: list[str] = []
    for node in ast.parse(src).body:
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        text = "\n".join(lines[start - 1:node.end_lineno])
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names])
            if not any(n.split(".")[0] in ("fluorecon", "pydantic", "__future__")
                       for n in names):
                kept_imports.append(text)
        elif isinstance(node, ast.ClassDef) and node.name == "UNetConfig":
            continue
        elif isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.Assign, ast.AnnAssign)):
            parts.append(text)
    parts.insert(1, "\n".join(kept_imports))
    parts.insert(2, _arch_config_source())
    parts.append(_ARCH_FOOTER.format(callable=ARCHITECTURE_CALLABLE))
    return "\n\n\n".join(p.strip("\n") for p in parts) + "\n"


def architecture_kwargs(mc: ModelConfig) -> dict[str, Any]:
    """Keyword arguments of :data:`ARCHITECTURE_CALLABLE` for the model's U-Net."""
    return {k: v for k, v in mc.unet.model_dump(mode="json").items() if k != "version"}


# -- checks ----------------------------------------------------------------------------
def check_exportable(method: LearnedMethod) -> ModelConfig:
    """Refuse, with one line, models a bioimage.io package cannot reproduce."""
    _, mc = method._require_trained()
    if mc.method in NOT_EXPORTABLE:
        raise ConfigError(message(f"a {mc.method!r} model ({NOT_EXPORTABLE[mc.method]})",
                                  f"one of {', '.join(sorted(EXPORTABLE))}",
                                  "Predict it with fluorecon (fluorecon predict)."))
    if mc.method not in EXPORTABLE:
        raise ConfigError(message(f"a {mc.method!r} model", "one of "
                                  f"{', '.join(sorted(EXPORTABLE))}", "Export a U-Net "
                                  "restoration model."))
    if getattr(method.config, "j_invariant_prediction", False):
        raise ConfigError(message(f"an {mc.method!r} model with j_invariant_prediction=True "
                                  "(grid_spacing**ndim masked passes per prediction)",
                                  "single-pass prediction", "Load it, set "
                                  "j_invariant_prediction=False and save it, or predict "
                                  "with fluorecon."))
    return mc


# -- test data -------------------------------------------------------------------------
def minimum_input_size(divisible_by: int, halo: int) -> int:
    """Smallest input size declared in the package: the first multiple of
    ``divisible_by`` that leaves at least one pixel after cropping ``halo`` on both sides
    (bioimage.io requires ``min - 2 * halo >= 1``)."""
    return (2 * halo // divisible_by + 1) * divisible_by


def synthetic_test_input(mc: ModelConfig, *, seed: int = 0,
                         size: int | Sequence[int] | None = None,
                         halo: int = 0) -> np.ndarray:
    """A seeded test image in the model's input units, ``(C_in, *spatial)`` float32.

    Smooth random structure (Gaussian-filtered noise, rescaled to ``[lo, hi]`` of the
    training inputs' percentiles) plus Gaussian noise of 5 % of that range, so that the
    network sees values like its training data. The spatial size is a multiple of
    ``2**depth``: 64 in 2D, 32 in 3D by default, at least :func:`minimum_input_size` for
    the given ``halo``.
    """
    from scipy import ndimage

    ndim, div = mc.unet.ndim, mc.unet.divisible_by
    if size is None:
        shape = (64,) * ndim if ndim == 2 else (32,) * ndim
    else:
        shape = (size,) * ndim if isinstance(size, int) else tuple(size)
    shape = tuple(max(-(-int(n) // div) * div, minimum_input_size(div, halo))
                  for n in shape)
    rng = np.random.default_rng(seed)
    cin = mc.unet.in_channels
    out = np.empty((cin,) + shape, np.float32)
    norm = mc.input_norm
    for c in range(cin):
        lo = norm.lo[min(c, norm.n_channels - 1)]
        hi = norm.hi[min(c, norm.n_channels - 1)]
        base = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=2.0)
        base = (base - base.min()) / max(float(np.ptp(base)), 1e-12)
        img = lo + (hi - lo) * base + 0.05 * (hi - lo) * rng.standard_normal(shape)
        out[c] = img.astype(np.float32)
    return out


def _as_network_block(method: LearnedMethod, image: np.ndarray) -> np.ndarray:
    """fluorecon's own prediction of ``(C_in, *spatial)``, as ``(C_out', *spatial)``.

    ``C_out'`` is ``C_out`` (means) or ``2 C_out`` (means, then Laplace scales) for
    probabilistic models, in target units.
    """
    _, mc = method._require_trained()
    sp = mc.axes.replace("C", "")
    multi = "C" in mc.axes
    block_axes = ("C" if multi else "") + sp
    batch = image[None] if multi else image
    mean, scale = method._forward_batch(batch, block_axes)
    if not multi:
        mean = mean[:, None]
        scale = None if scale is None else scale[:, None]
    if scale is not None:
        mean = np.concatenate([mean, scale], axis=1)
    return mean[0]


# -- description -----------------------------------------------------------------------
def _norm_statistic(params: Any) -> str:
    """Words for how ``lo``/``hi`` of normalisation parameters were estimated."""
    if getattr(params, "statistic", "percentile") == "meanstd":
        return "the mean (lo) and the mean plus one standard deviation (hi)"
    return f"the {params.low} and {params.high} percentiles"


def _readme(mc: ModelConfig, method: LearnedMethod, *, name: str, formats: Sequence[str],
            halo: int, extra: str | None) -> str:
    td = mc.training_data
    prov = mc.provenance
    gain_in, off_in = affine_coefficients(mc.input_norm)
    lines = [f"# {name}", "",
             f"A {mc.unet.ndim}D {_TITLES[mc.method]} model trained with "
             f"fluorecon {mc.versions.get('fluorecon', 'unknown')},"
             f" method `{mc.method}`, exported to the bioimage.io format.", ""]
    adversarial = td.get("adversarial") if isinstance(td, dict) else None
    if adversarial or td.get("may_hallucinate"):
        lines += ["> **Warning: may hallucinate.** This model was trained with an "
                  "adversarial loss; its outputs can contain plausible but invented "
                  "structure. Do not use it for quantification without validation.", ""]
    if extra:
        lines += [extra.strip(), ""]
    lines += ["## Training", ""]
    shown = {k: v for k, v in td.items() if k not in ("fingerprint", "files")
             and isinstance(v, (str, int, float, bool))}
    if shown:
        lines += [f"- {k}: {v}" for k, v in sorted(shown.items())]
    files = td.get("files")
    if isinstance(files, dict):
        for role, paths in files.items():
            if isinstance(paths, list):
                lines.append(f"- {role}: {len(paths)} file(s), e.g. "
                             f"`{Path(str(paths[0])).name}`" if paths else f"- {role}: none")
    if isinstance(td.get("masking"), dict):
        lines.append(f"- masking: {json.dumps(td['masking'], sort_keys=True)}")
    lines += [f"- training data fingerprint: `{td.get('fingerprint', 'unknown')}`",
              f"- steps: {prov.get('steps_done', 'unknown')} (best step "
              f"{prov.get('best_step', 'unknown')}, validation loss "
              f"{prov.get('best_val_loss', 'unknown')}), loss {prov.get('loss', 'unknown')}",
              f"- seed: {mc.seed}; trained {prov.get('created', 'unknown')} on "
              f"{prov.get('device', 'unknown')}",
              "- packages: " + ", ".join(f"{k} {v}" for k, v in sorted(mc.versions.items())),
              "", "## Network", "",
              f"U-Net ({mc.unet.ndim}D, depth {mc.unet.depth}, {mc.unet.base_filters} "
              f"filters, {mc.unet.kernel_size}-pixel kernels, normalisation "
              f"`{mc.unet.norm}`{', tapered' if mc.unet.taper else ''}"
              f"{', residual' if mc.unet.residual else ''}"
              f"{', N2V2 blur pooling without top skip' if mc.unet.n2v2 else ''}). "
              f"Spatial sizes must be multiples of {mc.unet.divisible_by}; an output pixel "
              f"depends on input within {halo} pixels (the halo to crop between tiles)."
              + (" Group normalisation couples whole tiles, so tiled prediction is only "
                 "approximate." if mc.unet.norm == "group" else ""),
              "", "## Normalisation", "",
              f"Inputs are normalised with {_norm_statistic(mc.input_norm)} of the "
              "training inputs, stored in the model (not "
              "recomputed per image): `x_n = (x - lo) / (hi - lo + eps)` with lo = "
              f"{mc.input_norm.lo}, hi = {mc.input_norm.hi}, written as `scale_linear` "
              f"(gain {gain_in}, offset {off_in})"
              + (" followed by `clip` to [0, 1]" if mc.input_norm.clip else "") + ". "
              "The output is mapped back to the training targets' units with lo = "
              f"{mc.target_norm.lo}, hi = {mc.target_norm.hi}.",
              ""]
    if mc.unet.probabilistic:
        lines += ["The output has, per target channel, the predicted mean and then the "
                  "Laplace scale b of the per-pixel predictive distribution (standard "
                  "deviation sqrt(2) b), both in target units.", ""]
    lines += ["## Limitations", "",
              "- Restores images like its training data (microscope, sample, labelling, "
              "noise level, pixel size). On other data it can fail silently; check with "
              "`fluorecon qc` or against a held-out ground truth.",
              "- Intensities are not rescaled: feed raw images in the units the model was "
              "trained on.",
              ]
    if mc.method in ("n2v", "n2v2", "n2s"):
        lines.append("- Self-supervised denoising assumes pixel-wise independent, zero-mean "
                     "noise; correlated noise (e.g. after camera processing) remains.")
    if mc.calibration:
        lines.append("- fluorecon recalibrated the predicted uncertainty on held-out data; "
                     "the factor is in `config.fluorecon.model_config.calibration` and is "
                     "not applied by bioimage.io consumers.")
    lines += ["", "## Weights", "",
              "Formats: " + ", ".join(f"`{f}`" for f in formats) + ". The state dict "
              f"loads into `{ARCHITECTURE_CALLABLE}` from `{ARCHITECTURE_FILE}` (torch "
              "only); the other formats were converted from it and checked against it.",
              "", "## Use", "",
              "```",
              "fluorecon predict image.tif --model this_package.zip -o restored.tif",
              "bioimageio test this_package.zip",
              "bioimageio predict this_package.zip --inputs image.tif",
              "```", ""]
    return "\n".join(lines)


def _cover(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    """Write a PNG cover: test input (left) and output (right), mid-plane, 8 bit."""
    from matplotlib.image import imsave

    def plane(a: np.ndarray) -> np.ndarray:
        a = a[0]
        while a.ndim > 2:
            a = a[a.shape[0] // 2]
        lo, hi = np.percentile(a, [1, 99.8])
        return np.clip((a - lo) / max(hi - lo, 1e-12), 0, 1)

    left, right = plane(x), plane(y)
    gap = np.ones((left.shape[0], max(2, left.shape[1] // 16)))
    img = np.concatenate([left, gap, right], axis=1)
    reps = max(1, 256 // img.shape[0])
    img = np.kron(img, np.ones((reps, reps)))
    imsave(path, (img * 255 + 0.5).astype(np.uint8), cmap="gray", vmin=0, vmax=255,
           format="png")
    return path


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _processing(kind: Literal["pre", "post"], mc: ModelConfig) -> list[Any]:
    from bioimageio.spec.model import v0_5 as bio

    ops: list[Any] = []
    if kind == "pre":
        gain, offset = affine_coefficients(mc.input_norm)
        cin = mc.unet.in_channels
        if len(gain) == 1:
            ops.append(bio.ScaleLinearDescr(kwargs=bio.ScaleLinearKwargs(
                gain=gain[0], offset=offset[0])))
        else:
            ops.append(bio.ScaleLinearDescr(kwargs=bio.ScaleLinearAlongAxisKwargs(
                axis=bio.AxisId("channel"), gain=gain[:cin], offset=offset[:cin])))
        if mc.input_norm.clip:
            ops.append(bio.ClipDescr(kwargs=bio.ClipKwargs(min=0.0, max=1.0)))
        return ops
    tn = mc.target_norm
    cout = mc.unet.out_channels
    d = [tn.scale[min(c, tn.n_channels - 1)] for c in range(cout)]
    lo = [tn.lo[min(c, tn.n_channels - 1)] for c in range(cout)]
    gain = d + (d if mc.unet.probabilistic else [])
    offset = lo + ([0.0] * cout if mc.unet.probabilistic else [])
    if len(set(gain)) == 1 and len(set(offset)) == 1:
        ops.append(bio.ScaleLinearDescr(kwargs=bio.ScaleLinearKwargs(gain=gain[0],
                                                                     offset=offset[0])))
    else:
        ops.append(bio.ScaleLinearDescr(kwargs=bio.ScaleLinearAlongAxisKwargs(
            axis=bio.AxisId("channel"), gain=gain, offset=offset)))
    ops.append(bio.EnsureDtypeDescr(kwargs=bio.EnsureDtypeKwargs(dtype="float32")))
    return ops


def _pixel_sizes(mc: ModelConfig) -> dict[str, tuple[float, str | None]]:
    """Pixel sizes per spatial axis recorded with the training data, if any."""
    td = mc.training_data
    sizes = td.get("pixel_sizes") if isinstance(td, dict) else None
    out: dict[str, tuple[float, str | None]] = {}
    if isinstance(sizes, dict):
        for a, v in sizes.items():
            if isinstance(v, (int, float)) and v > 0 and a.upper() in "ZYX":
                out[a.upper()] = (float(v), "micrometer")
    return out


def build_model_description(mc: ModelConfig, method: LearnedMethod, folder: Path, *,
                            files: dict[str, Path], formats: Sequence[str], name: str,
                            description: str, authors: Sequence[str], license: str,
                            tags: Sequence[str], halo: int, opset: int) -> Any:
    """Build and validate the ``ModelDescr`` of the files in ``folder`` (see module)."""
    from bioimageio.spec import ValidationContext

    # Files are named relative to ``folder`` with hashes computed here: validation then
    # checks them against ``known_files`` instead of reopening every file (bioimageio.spec
    # leaves those readers to the garbage collector).
    hashes = {k: _sha256(p) for k, p in files.items()}
    known = {p.name: hashes[k] for k, p in files.items()}
    with ValidationContext(root=folder, perform_io_checks=True, raise_errors=True,
                           log_warnings=False, known_files=known):
        return _describe(mc, files=files, hashes=hashes, formats=formats, name=name,
                         description=description, authors=authors, license=license,
                         tags=tags, halo=halo, opset=opset)


def _describe(mc: ModelConfig, *, files: dict[str, Path], hashes: dict[str, str],
              formats: Sequence[str], name: str, description: str, authors: Sequence[str],
              license: str, tags: Sequence[str], halo: int, opset: int) -> Any:
    """The ``ModelDescr`` (called inside the validation context)."""
    from bioimageio.spec.generic.v0_3 import Author, CiteEntry, Doi
    from bioimageio.spec.model import v0_5 as bio

    sp = mc.axes.replace("C", "")
    div = mc.unet.divisible_by
    cin, cout = mc.unet.in_channels, mc.unet.out_channels
    pix = _pixel_sizes(mc)
    in_id = bio.TensorId("input")
    in_axes: list[Any] = [bio.BatchAxis(), bio.ChannelAxis(channel_names=[
        f"channel{c}" for c in range(cin)])]
    out_names = ([f"mean{c}" for c in range(cout)]
                 + ([f"laplace_scale{c}" for c in range(cout)] if mc.unet.probabilistic
                    else []))
    if len(out_names) == 1:
        out_names = ["restored"]
    out_axes: list[Any] = [bio.BatchAxis(), bio.ChannelAxis(channel_names=out_names)]
    # the smallest valid size leaves at least one pixel after cropping the halo
    min_size = minimum_input_size(div, halo)
    for a in sp:
        scale, unit = pix.get(a, (1.0, None))
        aid = bio.AxisId(a.lower())
        in_axes.append(bio.SpaceInputAxis(id=aid, size=bio.ParameterizedSize(
            min=min_size, step=div), scale=scale, unit=unit))
        ref = bio.SizeReference(tensor_id=in_id, axis_id=aid)
        if halo > 0:
            out_axes.append(bio.SpaceOutputAxisWithHalo(id=aid, size=ref, halo=halo,
                                                        scale=scale, unit=unit))
        else:
            out_axes.append(bio.SpaceOutputAxis(id=aid, size=ref, scale=scale, unit=unit))

    def fdescr(key: str) -> Any:
        return bio.FileDescr(source=files[key].name, sha256=bio.Sha256(hashes[key]))

    inputs = [bio.InputTensorDescr(
        id=in_id, axes=in_axes, test_tensor=fdescr("test_input"),
        description="raw image in the units of the training inputs",
        data=bio.IntervalOrRatioDataDescr(type="float32"),
        preprocessing=_processing("pre", mc))]
    outputs = [bio.OutputTensorDescr(
        id=bio.TensorId("output"), axes=out_axes, test_tensor=fdescr("test_output"),
        description="restored image in the units of the training targets",
        data=bio.IntervalOrRatioDataDescr(type="float32"),
        postprocessing=_processing("post", mc))]
    torch_version = bio.Version(torch.__version__.split("+")[0])
    def src(key: str) -> dict[str, Any]:
        return {"source": files[key].name, "sha256": bio.Sha256(hashes[key])}

    weights: dict[str, Any] = {"pytorch_state_dict": bio.PytorchStateDictWeightsDescr(
        **src("pytorch_state_dict"), pytorch_version=torch_version,
        architecture=bio.ArchitectureFromFileDescr(
            **src("architecture"), callable=bio.Identifier(ARCHITECTURE_CALLABLE),
            kwargs=architecture_kwargs(mc)))}
    if "torchscript" in formats:
        weights["torchscript"] = bio.TorchscriptWeightsDescr(
            **src("torchscript"), pytorch_version=torch_version, parent="pytorch_state_dict")
    if "onnx" in formats:
        weights["onnx"] = bio.OnnxWeightsDescr(**src("onnx"), opset_version=opset,
                                               parent="pytorch_state_dict")
    cites = [CiteEntry(text=text, doi=Doi(doi)) for text, doi in CITATIONS[mc.method]]
    fl_config = {"model_config": json.loads(mc.to_json()), "halo": halo,
                 "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(
                     timespec="seconds")}
    model_tags = list(dict.fromkeys(["fluorecon", EXPORTABLE[mc.method], mc.method,
                                     f"{mc.unet.ndim}d", "unet", "pytorch",
                                     "fluorescence-light-microscopy", *tags]))
    return bio.ModelDescr(
        name=name, description=description,
        authors=[Author(name=a) for a in authors],
        cite=cites, license=license, tags=model_tags,
        documentation=fdescr("readme"), covers=[fdescr("cover")],
        inputs=inputs, outputs=outputs,
        weights=bio.WeightsDescr(**weights),
        version=bio.Version("0.1.0"),
        config=bio.Config(**{"fluorecon": fl_config}),
    )


def export_bioimageio(model: LearnedMethod | str | os.PathLike[str],
                      out: str | os.PathLike[str], *,
                      weight_formats: Sequence[WeightFormat] = DEFAULT_WEIGHT_FORMATS,
                      name: str | None = None, description: str | None = None,
                      authors: Sequence[str] = (), license: str = "CC-BY-4.0",
                      tags: Sequence[str] = (), test_input: np.ndarray | None = None,
                      notes: str | None = None, opset: int = DEFAULT_OPSET,
                      overwrite: bool = False,
                      progress: Callable[[int, int], None] | None = None
                      ) -> BioimageioExport:
    """Write a trained fluorecon model as a bioimage.io model package (spec 0.5).

    Parameters
    ----------
    model : LearnedMethod or path
        A trained method or a model folder (``config.json`` + ``weights.safetensors``).
        Methods: care, n2n, n2v, n2v2, n2s (single-pass prediction), deconv; 2D or 3D,
        any channel counts, probabilistic or not.
    out : path
        ``*.zip``: a zipped package; any other name: a package folder with ``rdf.yaml``.
    weight_formats : sequence of {"pytorch_state_dict", "torchscript", "onnx"}
        Formats to include; the state dict is always included (the others are converted
        from it). Default: state dict and ONNX.
    name, description : str, optional
        Defaults describe the method, dimensionality and training.
    authors : sequence of str
        Author names (default ``["fluorecon user"]``; set them for a zoo upload).
    license : str, default "CC-BY-4.0"
        SPDX licence identifier of the weights.
    tags : sequence of str
        Extra tags (the method, task, dimensionality and "fluorecon" are always set).
    test_input : ndarray, optional
        Test image ``(C_in, *spatial)`` (or ``spatial`` for one channel) in input units,
        spatial sizes multiples of ``2**depth`` and at least :func:`minimum_input_size`;
        default :func:`synthetic_test_input`.
    notes : str, optional
        Markdown added to the README after the summary (e.g. sample, microscope).
    opset : int, default 18
        ONNX operator set.
    overwrite : bool
        Replace an existing ``out``.
    progress : callable, optional
        ``progress(done, total)`` after each step.

    Returns
    -------
    BioimageioExport

    Raises
    ------
    ConfigError
        A method that cannot be expressed as a package (upsample, iso, J-invariant
        Noise2Self, DIP), an unknown weight format, a bad test input or licence.
    OutputExistsError
        ``out`` exists and ``overwrite`` is False, or ``out`` is the model folder.

    Notes
    -----
    The test output is fluorecon's own prediction of the test input (whole block, no
    padding since the size is a multiple of ``2**depth``); ``bioimageio.core`` must
    reproduce it from the package alone (see :func:`check_bioimageio_package`). The
    halo written on the output axes is the network's receptive field
    (:attr:`UNetConfig.receptive_field`, 0 with group norm) and the input sizes are
    ``min = step = 2**depth``.

    Examples
    --------
    >>> export_bioimageio("care_model", "care.zip", authors=["A. Person"])  # doctest: +SKIP
    """
    from bioimageio.spec import save_bioimageio_yaml_only

    from fluorecon.io.atomic import replace_path

    ensure_compatible()
    formats = tuple(dict.fromkeys(["pytorch_state_dict", *weight_formats]))
    bad = [f for f in formats if f not in ALL_WEIGHT_FORMATS]
    if bad:
        raise ConfigError(message(f"weight format {bad[0]!r}",
                                  f"one of {', '.join(ALL_WEIGHT_FORMATS)}",
                                  "Pass e.g. weight_formats=('pytorch_state_dict', 'onnx')."))
    method = resolve_method(model)
    mc = check_exportable(method)
    dst = Path(out)
    inputs = [] if isinstance(model, LearnedMethod) else [Path(model)]
    check_output_target(dst, overwrite=overwrite, inputs=inputs)
    total = 4 + len(formats)
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    sp = mc.axes.replace("C", "")
    cin = mc.unet.in_channels
    halo = method.receptive_field or 0
    min_size = minimum_input_size(mc.unet.divisible_by, halo)
    if test_input is None:
        x = synthetic_test_input(mc, seed=mc.seed, halo=halo)
    else:
        x = np.asarray(test_input, dtype=np.float32)
        if x.ndim == len(sp):
            x = x[None]
        if x.ndim != len(sp) + 1 or x.shape[0] != cin:
            raise ConfigError(message(f"a test input of shape {x.shape}",
                                      f"(C_in={cin}, *{len(sp)} spatial sizes)",
                                      "Pass one image in the model's layout."))
        div = mc.unet.divisible_by
        if any(n % div or n < min_size for n in x.shape[1:]) or not np.all(np.isfinite(x)):
            raise ConfigError(message(f"a test input of spatial shape {x.shape[1:]}"
                                      + ("" if np.all(np.isfinite(x)) else " with NaN/inf"),
                                      f"finite values, sizes multiples of {div} and at "
                                      f"least {min_size} (twice the halo {halo})",
                                      f"Crop it to a multiple of {div}, or pass a larger "
                                      "image."))
    y = _as_network_block(method, x)
    step()
    net = cpu_network(method)
    title = name or f"fluorecon {mc.unet.ndim}D {_TITLES[mc.method]}"
    task = _TITLES[mc.method]
    descr_text = description or (
        f"{task[0].upper() + task[1:]} of {mc.unet.ndim}D fluorescence images "
        f"({mc.unet.in_channels} -> {mc.unet.out_channels} channels), U-Net trained with "
        f"fluorecon.")
    with tempfile.TemporaryDirectory(prefix=".fluorecon-bioimageio-",
                                     dir=dst.absolute().parent) as tmpdir:
        folder = Path(tmpdir)
        files = {"architecture": folder / ARCHITECTURE_FILE,
                 "pytorch_state_dict": folder / "weights.pt",
                 "test_input": folder / "test_input.npy",
                 "test_output": folder / "test_output.npy",
                 "readme": folder / "README.md", "cover": folder / "cover.png"}
        files["architecture"].write_text(standalone_unet_source())
        torch.save({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
                   files["pytorch_state_dict"])
        np.save(files["test_input"], x[None])
        np.save(files["test_output"], y[None].astype(np.float32))
        step()
        xt = torch.from_numpy(np.ascontiguousarray(
            mc.input_norm.normalize(x, axes="C" + sp if mc.input_norm.n_channels > 1
                                    else None), dtype=np.float32)[None])
        if "torchscript" in formats:
            files["torchscript"] = folder / "weights.torchscript"
            with warnings.catch_warnings(), torch.enable_grad():  # plain forward path
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(net, xt, check_trace=False)
                traced.save(str(files["torchscript"]))
            step()
        if "onnx" in formats:
            files["onnx"] = folder / "weights.onnx"
            write_onnx_network(net, mc, files["onnx"], opset=opset)
            step()
        files["readme"].write_text(_readme(mc, method, name=title, formats=formats,
                                           halo=halo, extra=notes))
        _cover(files["cover"], x, y)
        step()
        with closing_readers():
            descr = build_model_description(
                mc, method, folder, files=files, formats=formats, name=title,
                description=descr_text, authors=list(authors) or ["fluorecon user"],
                license=license, tags=tags, halo=halo, opset=opset)
            summary = descr.validation_summary
            warn = [f"{d.loc}: {d.msg}" for det in summary.details for d in det.warnings]
            save_bioimageio_yaml_only(descr, file=folder / "rdf.yaml")
            del descr
        step()
        if dst.suffix.lower() == ".zip":
            staging = folder / ".package.zip"
            members = sorted(p for p in folder.iterdir() if p != staging)
            with zipfile.ZipFile(staging, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for path in members:
                    zf.write(path, arcname=path.name)
            replace_path(staging, dst.absolute())
        else:
            replace_path(folder, dst.absolute())
            folder.mkdir()  # the temporary directory context removes it again
        step()
    return BioimageioExport(path=dst, weight_formats=formats, validation=summary.status,
                            warnings=warn)


def check_bioimageio_package(path: str | os.PathLike[str], *,
                            weight_format: WeightFormat | None = None) -> Any:
    """Run ``bioimageio.core.test_model`` on a package (offline) and return its summary.

    Parameters
    ----------
    path : path
        ``.zip`` package, package folder or its ``rdf.yaml``.
    weight_format : str, optional
        Test one format only (default: every format in the package).

    Returns
    -------
    bioimageio.spec.summary.ValidationSummary
        ``summary.status`` is ``"passed"`` when every format reproduces the test output
        within the package's tolerance (default 1e-3 relative and absolute).
    """
    from bioimageio.core import test_model

    ensure_compatible()
    with closing_readers(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return test_model(str(path), weight_format=weight_format)


__all__ = ["ALL_WEIGHT_FORMATS", "BioimageioExport", "CITATIONS", "DEFAULT_WEIGHT_FORMATS",
           "EXPORTABLE", "NOT_EXPORTABLE", "build_model_description", "check_exportable",
           "export_bioimageio", "standalone_unet_source", "synthetic_test_input",
           "check_bioimageio_package"]
