"""Training report of a model folder: model summary, provenance, loss curves with the best
step marked, example patches from held-out data, and warnings.

The report reads the folder (``config.json``, ``history.csv``, the header of
``weights.safetensors``) with the standard library only, so it needs no torch. Example
patches need predictions: the caller (``fluorecon report train``) runs the model and passes
:class:`TrainingExample` objects; :func:`validation_region` and :func:`example_windows`
say where to cut them so that they come from the part of each training image the training
never saw (the held-out validation slab of
:class:`~fluorecon.methods.learned.training.PatchSampler`).
"""

from __future__ import annotations

import csv
import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fluorecon.core.axes import check_axes
from fluorecon.core.errors import ConfigError, InputFileError, message
from fluorecon.metrics import normalized_psnr
from fluorecon.report.figures import display_limits, plane_at, png_bytes
from fluorecon.report.html import Section, Table, embed_png, render_html, write_html

__all__ = ["TrainingExample", "TrainingRecord", "example_windows", "read_training_record",
           "training_report", "training_warnings", "validation_region",
           "write_training_report"]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
HISTORY_CSV = "history.csv"
_MODEL_FORMAT = "fluorecon-model"


@dataclass(frozen=True)
class TrainingRecord:
    """What a model folder records about its training (read without torch).

    Attributes
    ----------
    folder : Path
    config : dict
        ``config.json`` as parsed JSON.
    history : list of dict
        Rows of ``history.csv`` (``step``, ``train_loss``, ``val_loss``, ``lr``,
        ``time_s``); empty when the file is missing.
    parameters : int or None
        Number of network parameters (from the safetensors header), None when unreadable.
    """

    folder: Path
    config: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    parameters: int | None = None

    @property
    def training_data(self) -> dict[str, Any]:
        """``config["training_data"]`` (empty dict if absent)."""
        return dict(self.config.get("training_data") or {})

    @property
    def provenance(self) -> dict[str, Any]:
        """``config["provenance"]`` (empty dict if absent)."""
        return dict(self.config.get("provenance") or {})

    @property
    def may_hallucinate(self) -> bool:
        """Whether the model was trained with an adversarial loss (upsample ``--gan``)."""
        adv = self.training_data.get("adversarial")
        return bool(isinstance(adv, Mapping) and adv.get("may_hallucinate"))

    @property
    def best_step(self) -> int | None:
        """Step of the lowest validation loss, from the provenance or the history."""
        best = self.provenance.get("best_step")
        if isinstance(best, int) and best > 0:
            return best
        val = [(r["val_loss"], int(r["step"])) for r in self.history
               if math.isfinite(r.get("val_loss", math.nan))]
        return min(val)[1] if val else None


@dataclass(frozen=True)
class TrainingExample:
    """One example patch: the network's input, its prediction and (supervised) the target.

    Arrays are spatial (``YX`` or ``ZYX``; 3D patches show ``z`` or their middle slice),
    in their own units: the input in input units, prediction and target in target units.
    """

    input: np.ndarray
    prediction: np.ndarray
    target: np.ndarray | None
    axes: str
    source: str
    """Where the patch comes from (file and window), shown in the report."""
    held_out: bool = True
    """Whether the patch lies in data the training never saw."""

    def __post_init__(self) -> None:
        ax = check_axes(self.axes, ndim=np.ndim(self.input))
        if ax not in ("YX", "ZYX"):
            raise ConfigError(message(f"an example patch with axes {ax!r}", "a spatial "
                                      "patch, YX or ZYX", "Take one channel/frame first."))
        shapes = [np.shape(self.prediction)] + ([] if self.target is None
                                                else [np.shape(self.target)])
        if any(len(s) != len(ax) for s in shapes):
            raise ConfigError(message(f"input {np.shape(self.input)}, prediction and target "
                                      f"of shapes {shapes}", f"{len(ax)}D arrays like the "
                                      "input", "Pass the prediction of this patch."))


def _bad(path: Path, what: str, fix: str) -> InputFileError:
    return InputFileError(message(f"{path} {what}", "a model folder written by fluorecon "
                                  "(config.json, weights.safetensors, history.csv)", fix))


def _safetensors_parameters(path: Path) -> int | None:
    """Sum of the element counts of all tensors in a safetensors file, from its header."""
    try:
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n <= 0 or n > 100_000_000:
                return None
            header = json.loads(fh.read(n))
    except (OSError, struct.error, ValueError):
        return None
    total = 0
    for name, spec in header.items():
        if name == "__metadata__" or name.endswith("num_batches_tracked"):
            continue
        shape = spec.get("shape") if isinstance(spec, dict) else None
        if not isinstance(shape, list):
            return None
        total += int(np.prod(shape, dtype=np.int64))
    return total


def _read_history(path: Path) -> list[dict[str, float]]:
    rows: list[dict[str, float]] = []
    try:
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                rows.append({k: (float(v) if v not in ("", None) else math.nan)
                             for k, v in row.items() if k is not None})
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise _bad(path, f"that cannot be read ({exc})", "Restore history.csv.") from None
    except ValueError as exc:
        raise _bad(path, f"with a non-numeric value ({exc})", "Restore history.csv.") from None
    if rows and not {"step", "train_loss"} <= set(rows[0]):
        raise _bad(path, f"with columns {sorted(rows[0])}", "Restore history.csv (columns "
                   "step, train_loss, val_loss, lr, time_s).")
    return rows


def read_training_record(folder: str | Path) -> TrainingRecord:
    """Read a model folder's config, history and parameter count (no torch needed).

    Raises
    ------
    InputFileError
        A missing folder or ``config.json``, unreadable JSON, a config that is not a
        fluorecon model, or an unreadable ``history.csv``.
    """
    path = Path(folder)
    cfg_path = path / CONFIG_FILE
    if not path.is_dir():
        raise InputFileError(message(f"model folder {path} that does not exist"
                                     if not path.exists() else f"{path}, which is not a folder",
                                     "a model folder with config.json", "Check the path (a "
                                     "model is a folder written by fluorecon train)."))
    if not cfg_path.is_file():
        raise _bad(path, "without config.json", "Point to a folder written by fluorecon train.")
    try:
        config = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(cfg_path, f"that is not valid JSON ({' '.join(str(exc).split())})",
                   "Restore config.json from the original model.") from None
    if not isinstance(config, dict) or config.get("format") != _MODEL_FORMAT:
        raise _bad(cfg_path, f"without format {_MODEL_FORMAT!r}", "Point to a folder written "
                   "by fluorecon train (ensembles: one member's folder).")
    hist = path / HISTORY_CSV
    history = _read_history(hist) if hist.is_file() else []
    weights = path / WEIGHTS_FILE
    params = _safetensors_parameters(weights) if weights.is_file() else None
    return TrainingRecord(folder=path, config=config, history=history, parameters=params)


# -- where example patches come from ----------------------------------------------------------
def validation_region(spatial_shape: Sequence[int], patch_shape: Sequence[int], *,
                      fraction: float) -> tuple[slice, ...] | None:
    """The held-out validation slab of one training image, as training cut it.

    Mirrors :class:`~fluorecon.methods.learned.training.PatchSampler`: the last
    ``max(ceil(fraction * n), patch)`` pixels along the longest spatial axis (the last
    such axis on ties). None when ``fraction`` is 0 or the image has no room for it.

    Parameters
    ----------
    spatial_shape : sequence of int
        ``(Y, X)`` or ``(Z, Y, X)`` of the training image.
    patch_shape : sequence of int
        Training patch shape, same length.
    fraction : float
        The model's ``validation_fraction``.
    """
    sp = tuple(int(s) for s in spatial_shape)
    patch = tuple(int(p) for p in patch_shape)
    if len(sp) != len(patch):
        raise ConfigError(message(f"an image of shape {sp} and a patch of shape {patch}",
                                  "as many patch sizes as spatial axes",
                                  "Pass the model's patch shape."))
    if fraction <= 0 or any(s < p for s, p in zip(sp, patch)):
        return None
    ax = max(range(len(sp)), key=lambda a: (sp[a], a))
    n_val = max(math.ceil(fraction * sp[ax]), patch[ax])
    if sp[ax] - n_val < patch[ax]:
        return None
    return tuple(slice(sp[a] - n_val, sp[a]) if a == ax else slice(0, sp[a])
                 for a in range(len(sp)))


def example_windows(score: np.ndarray, patch_shape: Sequence[int], *, n: int = 3,
                    region: Sequence[slice] | None = None) -> list[tuple[slice, ...]]:
    """Windows of ``patch_shape`` inside ``region`` of ``score``, from brightest to typical.

    Candidate windows lie on a lattice with half-patch spacing; each is scored by the mean
    of ``score`` (usually the target, else the input) inside it. The windows returned are
    the candidates at the quantiles ``1, ..., 0.5`` of the scores (evenly spaced; ``n = 1``:
    the brightest), so a report shows the richest structure and a typical, median patch
    rather than only the most flattering one.

    Parameters
    ----------
    score : ndarray, spatial
    patch_shape : sequence of int
        Window shape (clipped to the region).
    n : int
        Number of windows (fewer when the region holds fewer candidates).
    region : sequence of slice, optional
        Part of ``score`` to cut from (default all of it).

    Returns
    -------
    list of tuple of slice
        Windows in ``score``'s coordinates, distinct.
    """
    arr = np.asarray(score, np.float64)
    if n < 1:
        raise ConfigError(message(f"n={n} example windows", "n >= 1", "Ask for at least one."))
    reg = tuple(region) if region is not None else tuple(slice(0, s) for s in arr.shape)
    starts = [r.start or 0 for r in reg]
    sizes = [(r.stop if r.stop is not None else s) - st
             for r, s, st in zip(reg, arr.shape, starts)]
    patch = [min(int(p), s) for p, s in zip(patch_shape, sizes)]
    grids = [np.unique(np.r_[np.arange(0, s - p + 1, max(1, p // 2)), s - p])
             for s, p in zip(sizes, patch)]
    cands = []
    for corner in np.array(np.meshgrid(*grids, indexing="ij")).reshape(len(grids), -1).T:
        win = tuple(slice(st + int(c), st + int(c) + p) for st, c, p in zip(starts, corner,
                                                                              patch))
        cands.append((float(np.nanmean(arr[win])), win))
    cands.sort(key=lambda t: -t[0])
    if n == 1:
        picks = [0]
    else:
        half = (len(cands) - 1) / 2.0
        picks = sorted({int(round(k * half / (n - 1))) for k in range(n)})
    return [cands[i][1] for i in picks]


# -- figures ----------------------------------------------------------------------------------
def _loss_png(history: Sequence[Mapping[str, float]], best_step: int | None,
              title: str) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.4), dpi=100, layout="constrained")
    ax, ax_lr = fig.subplots(1, 2, width_ratios=(2, 1))
    steps = np.array([r["step"] for r in history], float)
    tr = np.array([r.get("train_loss", math.nan) for r in history], float)
    va = np.array([r.get("val_loss", math.nan) for r in history], float)
    ax.plot(steps, tr, marker=".", label="training (mean since last point)")
    if np.isfinite(va).any():
        ax.plot(steps, va, marker=".", label="validation (held-out patches)")
    if best_step is not None:
        ax.axvline(best_step, color="0.4", ls="--", lw=1)
        hit = np.flatnonzero(steps == best_step)
        if hit.size and np.isfinite(va[hit[0]]):
            ax.plot([best_step], [va[hit[0]]], "*", color="crimson", ms=12,
                    label=f"best step {best_step}")
        else:
            ax.plot([], [], "--", color="0.4", label=f"best step {best_step}")
    finite = np.concatenate([tr[np.isfinite(tr)], va[np.isfinite(va)]])
    if finite.size and (finite > 0).all() and finite.max() / finite.min() > 3:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    lr = np.array([r.get("lr", math.nan) for r in history], float)
    ax_lr.plot(steps, lr, color="0.3", marker=".")
    good = lr[np.isfinite(lr)]
    if good.size and (good > 0).all() and good.max() / good.min() > 10:
        ax_lr.set_yscale("log")
    ax_lr.set_xlabel("step")
    ax_lr.set_ylabel("learning rate")
    return png_bytes(fig)


def _examples_png(examples: Sequence[TrainingExample], percentiles: tuple[float, float],
                  cmap: str) -> bytes:
    from matplotlib.figure import Figure

    cols = 3 if any(e.target is not None for e in examples) else 2
    fig = Figure(figsize=(2.9 * cols + 0.4, 2.9 * len(examples) + 0.2), dpi=100,
                 layout="constrained")
    axs = fig.subplots(len(examples), cols, squeeze=False)
    for row, ex in zip(axs, examples):
        for ax in row:
            ax.set_axis_off()
        xin = plane_at(ex.input, ex.axes)
        pred = plane_at(ex.prediction, ex.axes)
        tgt = None if ex.target is None else plane_at(ex.target, ex.axes)
        in_lim = display_limits(xin, percentiles)
        out_lim = display_limits(tgt if tgt is not None else xin, percentiles)
        row[0].imshow(xin, cmap=cmap, vmin=in_lim[0], vmax=in_lim[1], interpolation="nearest")
        row[0].set_title("input", fontsize=9)
        row[1].imshow(pred, cmap=cmap, vmin=out_lim[0], vmax=out_lim[1],
                      interpolation="nearest")
        row[1].set_title("prediction", fontsize=9)
        if tgt is not None and cols == 3:
            row[2].imshow(tgt, cmap=cmap, vmin=out_lim[0], vmax=out_lim[1],
                          interpolation="nearest")
            row[2].set_title("target", fontsize=9)
    return png_bytes(fig)


# -- the report -------------------------------------------------------------------------------
def _json(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


def _summary_rows(rec: TrainingRecord) -> list[list[object]]:
    c = rec.config
    unet = c.get("unet") or {}
    mcfg = c.get("method_config") or {}
    arch = (f"{unet.get('ndim', '?')}D U-Net, depth {unet.get('depth', '?')}, "
            f"{unet.get('base_filters', '?')} base filters, kernel {unet.get('kernel_size', '?')}"
            f", norm {unet.get('norm', '?')}, {unet.get('in_channels', '?')} -> "
            f"{unet.get('out_channels', '?')} channels"
            + (", residual" if unet.get("residual") else "")
            + (", probabilistic (Laplace scale)" if unet.get("probabilistic") else "")
            + (", N2V2 (blur-pool, no top skip)" if unet.get("n2v2") else ""))

    def norm(n: Any) -> str:
        if not isinstance(n, Mapping):
            return "none recorded"
        return (f"percentiles {n.get('low')}-{n.get('high')} -> lo {n.get('lo')}, hi "
                f"{n.get('hi')}")

    prov = rec.provenance
    td = rec.training_data
    data = {k: v for k, v in td.items() if k not in ("files", "adversarial")}
    return [
        ["method", c.get("method")],
        ["architecture", arch],
        ["parameters", f"{rec.parameters:,}" if rec.parameters is not None else "unknown"],
        ["axes of one block", c.get("axes")],
        ["input normalisation", norm(c.get("input_norm"))],
        ["target normalisation", norm(c.get("target_norm"))],
        ["loss", prov.get("loss", mcfg.get("loss"))],
        ["steps done", prov.get("steps_done")],
        ["best step / validation loss", f"{prov.get('best_step')} / {prov.get('best_val_loss')}"],
        ["weights kept", prov.get("final_weights")],
        ["stopped early", prov.get("stopped_early")],
        ["training time (s)", prov.get("training_time_s")],
        ["device / threads", f"{prov.get('device')} / {prov.get('torch_threads')}"],
        ["seed", c.get("seed")],
        ["created", prov.get("created")],
        ["command", prov.get("command", "library call")],
        ["training data", _json(data) if data else "none recorded"],
        ["training files", _json(td.get("files")) if td.get("files") else "not recorded "
         "(trained from arrays)"],
        ["noise model", _json(c.get("noise_model")) if c.get("noise_model") else "none"],
        ["calibration", "stored" if c.get("calibration") else "none (uncertainty unverified)"
         if (c.get("unet") or {}).get("probabilistic") else "n/a"],
        ["versions", _json(c.get("versions") or {})],
        ["method config", _json(mcfg)],
    ]


def _history_rows(rec: TrainingRecord) -> list[list[object]]:
    h = rec.history
    if not h:
        return []
    picks = {"first": h[0], "last": h[-1]}
    best = rec.best_step
    for r in h:
        if best is not None and int(r["step"]) == best:
            picks["best"] = r
    return [[k, int(r["step"]), r.get("train_loss", math.nan), r.get("val_loss", math.nan),
             r.get("lr", math.nan), r.get("time_s", math.nan)] for k, r in picks.items()]


def training_warnings(rec: TrainingRecord, *, overfit_tolerance: float = 0.1) -> list[str]:
    """Warnings a reader of the training report must see.

    Hallucination risk (adversarial training), no validation data, validation loss that
    rose by more than ``overfit_tolerance`` (relative) after its best step, non-finite
    losses, and the absence of training input statistics (no out-of-distribution check).
    """
    out: list[str] = []
    td = rec.training_data
    if rec.may_hallucinate:
        adv = td.get("adversarial") or {}
        out.append("MAY HALLUCINATE: " + str(adv.get("warning", "trained with an adversarial "
                                                     "loss")) + f" (weight {adv.get('weight')}, "
                   f"{adv.get('steps')} adversarial steps). Check outputs against the "
                   "measurement (fluorecon qc) before interpreting fine detail.")
    val = [r["val_loss"] for r in rec.history if math.isfinite(r.get("val_loss", math.nan))]
    if rec.history and not val:
        out.append("No validation loss was recorded (validation_fraction 0 or too little "
                   "data): the kept weights were not selected on held-out data, and "
                   "over-fitting cannot be seen here.")
    if val:
        best = min(val)
        last = val[-1]
        if best > 0 and last > best * (1 + overfit_tolerance):
            kept = rec.provenance.get("final_weights")
            out.append(f"The validation loss rose from {best:.4g} (step {rec.best_step}) to "
                       f"{last:.4g} at the end: over-fitting to the training patches. "
                       + ("The best weights were kept." if kept == "best" else
                          "The final weights were kept, not the best ones."))
    if any(not math.isfinite(r.get("train_loss", math.nan)) for r in rec.history):
        out.append("Non-finite training losses were recorded: training diverged at some "
                   "point; lower the learning rate.")
    if not rec.config.get("input_stats"):
        out.append("No training input statistics are stored: inputs unlike the training data "
                   "cannot be flagged (retrain with the current fluorecon train).")
    return out


def training_report(record: TrainingRecord, *, examples: Sequence[TrainingExample] = (),
                    examples_note: str = "", ood: Any = None,
                    percentiles: tuple[float, float] = (0.3, 99.7), cmap: str = "magma",
                    title: str | None = None) -> str:
    """Render the training report of a model as a self-contained HTML page.

    Parameters
    ----------
    record : TrainingRecord
        From :func:`read_training_record`.
    examples : sequence of TrainingExample
        Example patches with the model's predictions (none: the section says why, see
        ``examples_note``).
    examples_note : str
        Where the examples come from, or why there are none.
    ood : fluorecon.trust.ood.OODReport, optional
        Out-of-distribution check of an image the model is meant for
        (:func:`fluorecon.trust.ood.check_ood` against ``config["input_stats"]``).
    percentiles : (float, float)
        Display percentiles of the example patches.
    title : str, optional

    Returns
    -------
    str
        The page; figures embedded as ``data:`` URIs.

    Notes
    -----
    Example patches: prediction and target are drawn with one display range, the
    ``percentiles`` of the target (self-supervised models: of the input, shared by input
    and prediction); the input of a supervised model is in other units (the raw
    measurement) and uses its own percentiles. Intensities are never rescaled.
    """
    c = record.config
    method = str(c.get("method", "model"))
    sections: list[Section] = []
    warns = training_warnings(record)
    if ood is not None:
        warns += [f"Out of distribution: {w}" for w in getattr(ood, "warnings", [])]
    sections.append(Section("Model", warnings=warns, tables=[Table(
        ["field", "value"], _summary_rows(record), caption=f"{record.folder}",
        text=True)]))
    if record.history:
        hist_rows = _history_rows(record)
        sections.append(Section("Loss curves", paragraphs=[
            "Training loss: mean over the steps since the previous point; validation loss: "
            "on a fixed set of patches cut from the held-out slab of every training image "
            "(never seen in training). The dashed line marks the best validation step; its "
            "weights are the model's unless the summary says 'final'."],
            tables=[Table(["point", "step", "train loss", "validation loss", "learning rate",
                           "time (s)"], hist_rows,
                          best_row=next((i for i, r in enumerate(hist_rows) if r[0] == "best"),
                                        None))],
            figures=[(embed_png(_loss_png(record.history, record.best_step,
                                          f"{method} training")),
                      "loss (left) and learning rate (right) per step"
                      + (f"; best validation loss at step {record.best_step}"
                         if record.best_step is not None else ""))]))
    else:
        sections.append(Section("Loss curves", paragraphs=[
            "No history.csv in the model folder: the training curves are unknown."]))
    if examples:
        rows = []
        for ex in examples:
            score: object = "n/a (no target)"
            if ex.target is not None and ex.target.shape == ex.prediction.shape:
                score = normalized_psnr(ex.prediction, ex.target, axes=ex.axes)
            rows.append([ex.source, "held-out" if ex.held_out else "supplied", score])
        sup = any(e.target is not None for e in examples)
        lim = ("prediction and target share one display range, the "
               f"{percentiles[0]:g}-{percentiles[1]:g} percentiles of the target; the input "
               "(raw units) uses its own percentiles" if sup else
               "input and prediction share one display range, the "
               f"{percentiles[0]:g}-{percentiles[1]:g} percentiles of the input")
        sections.append(Section("Example patches", paragraphs=[examples_note] if
                                examples_note else [],
                                tables=[Table(["patch", "data", "normalised PSNR (dB)"],
                                              rows, caption="one row per patch, top to "
                                              "bottom")],
                                figures=[(embed_png(_examples_png(examples, percentiles,
                                                                  cmap)),
                                          f"One row per patch: {lim}. 3D patches: middle Z "
                                          "slice.")]))
    else:
        sections.append(Section("Example patches", paragraphs=[
            examples_note or "No example patches: pass an image (and target) to show "
                             "predictions."]))
    if ood is not None:
        from fluorecon.trust.ood import InputStats, features_table

        stats = c.get("input_stats")
        if stats:
            sections.append(Section("Out-of-distribution check", paragraphs=(
                ["The supplied image's intensity, noise level and spectral content lie within "
                 "the training range."] if not ood.warnings else
                [f"{len(ood.warnings)} departure(s) from the training data: predictions on "
                 "such images are extrapolations."]),
                tables=[Table(["statistic", "image", "training min", "training max",
                               "status"], features_table(ood, InputStats.build(**stats)))]))
    return render_html(title or f"fluorecon training report: {method}", sections,
                       intro=f"How the {method} model in {record.folder.name} was trained, "
                             "what it learned on held-out patches, and what to watch for.")


def write_training_report(folder: str | Path, path: str | Path, *,
                          examples: Sequence[TrainingExample] = (), examples_note: str = "",
                          ood: Any = None, overwrite: bool = False, **kwargs: Any) -> Path:
    """Read the model ``folder`` and write its :func:`training_report` to ``path``
    atomically (never inside the model folder's own files)."""
    rec = read_training_record(folder)
    page = training_report(rec, examples=examples, examples_note=examples_note, ood=ood,
                           **kwargs)
    protected = [p for p in Path(folder).iterdir()] if Path(folder).is_dir() else []
    return write_html(path, page, overwrite=overwrite, inputs=protected)

