"""HTML QC report of one prediction: images, uncertainty, consistency map, flagged regions,
out-of-distribution warnings, calibration figures and the model card.

:func:`write_qc_report` writes a folder ``index.html`` + PNG figures (written atomically;
the page references them relatively, so the folder can be moved or zipped).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from fluorecon.core.errors import OutputExistsError, message
from fluorecon.io import write_bytes_atomic
from fluorecon.report.figures import _png_bytes, display_plane
from fluorecon.report.html import Section, Table, render_html, write_html
from fluorecon.trust.qc import QCResult

__all__ = ["calibration_figure", "qc_maps_figure", "write_qc_report"]


def _show(ax: Any, plane: np.ndarray, title: str, *, cmap: str = "magma",
          vmin: float | None = None, vmax: float | None = None, colorbar: bool = True) -> None:
    if vmin is None or vmax is None:
        lo, hi = np.percentile(plane, [0.3, 99.7])
        vmin, vmax = float(lo), float(hi if hi > lo else lo + 1)
    im = ax.imshow(plane, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02)


def qc_maps_figure(result: QCResult, path: str | Path, *, overwrite: bool = False) -> Path:
    """Input, prediction, uncertainty, standardised residual, local score and flags."""
    from matplotlib.figure import Figure

    sp = result.axes
    panels: list[tuple[str, np.ndarray, dict[str, Any]]] = [
        ("input", display_plane(result.input, sp), {}),
        ("prediction", display_plane(result.prediction, sp), {})]
    if result.uncertainty is not None:
        panels.append((f"std ({result.uncertainty.mode}"
                       f"{', recalibrated' if result.uncertainty.factor != 1 else ''})",
                       display_plane(result.uncertainty.std, sp), {"cmap": "viridis"}))
    cons = result.consistency
    if cons is not None:
        res_plane = display_plane(cons.residual, sp)
        panels.append(("standardised residual (data - model)", res_plane,
                       {"cmap": "RdBu_r", "vmin": -4.0, "vmax": 4.0}))
        score = display_plane(cons.score, sp)
        panels.append((f"local |z| (flag > {cons.threshold:.2f})", score,
                       {"cmap": "inferno", "vmin": 0.0,
                        "vmax": float(max(cons.threshold * 1.5, np.percentile(score, 99.9)))}))
    n = len(panels) + (1 if cons is not None else 0)
    cols = min(3, n)
    rows = -(-n // cols)
    fig = Figure(figsize=(4.0 * cols, 3.6 * rows), dpi=100, layout="constrained")
    axs = fig.subplots(rows, cols, squeeze=False)
    for ax in axs.flat:
        ax.set_axis_off()
    for ax, (title, plane, kw) in zip(axs.flat, panels):
        _show(ax, plane, title, **kw)
    if cons is not None:
        ax = axs.flat[len(panels)]
        pred_plane = display_plane(result.prediction, sp)
        _show(ax, pred_plane, f"flagged regions ({len(cons.regions)})", cmap="gray",
              colorbar=False)
        flag = display_plane(cons.flagged.astype(np.float32), sp)
        if cons.forward.get("forward") == "downsample" or flag.shape != pred_plane.shape:
            ax.set_title("flagged regions (measurement grid)", fontsize=10)
            ax.images[0].set_data(display_plane(result.input, sp))
        overlay = np.zeros(flag.shape + (4,), np.float32)
        overlay[flag > 0] = (1.0, 0.1, 0.1, 0.55)
        ax.imshow(overlay, interpolation="nearest")
    return write_bytes_atomic(path, _png_bytes(fig), overwrite=overwrite)


def calibration_figure(records: dict[str, Any], path: str | Path, *,
                       overwrite: bool = False) -> Path:
    """Coverage of central intervals vs nominal level, before and after recalibration."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * max(1, len(records)), 3.6), dpi=100, layout="constrained")
    axs = fig.subplots(1, max(1, len(records)), squeeze=False)
    for ax, (mode, rec) in zip(axs.flat, records.items()):
        ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="ideal")
        ax.plot(rec.levels, rec.coverage_before, "o-", label="before")
        ax.plot(rec.levels, rec.coverage_after, "s-", label=f"after (x{rec.factor:.3g})")
        ax.set_xlabel("nominal level")
        ax.set_ylabel("empirical coverage")
        ax.set_title(f"{mode}: ECE {100 * rec.ece_before:.1f} -> {100 * rec.ece_after:.1f} "
                     "points", fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
    return write_bytes_atomic(path, _png_bytes(fig), overwrite=overwrite)


def _card_rows(card: dict[str, Any]) -> list[list[object]]:
    rows: list[list[object]] = []
    for key in ("method", "kind", "members", "axes", "architecture", "seed", "intended_use"):
        rows.append([key.replace("_", " "), card.get(key)])
    for key in ("training_data", "noise_model", "provenance", "versions", "input_stats"):
        val = card.get(key)
        rows.append([key.replace("_", " "), "none recorded" if not val else
                     json.dumps(val, default=str, sort_keys=True)])
    return rows


def write_qc_report(result: QCResult, out_dir: str | Path, *, title: str = "fluorecon QC report",
                    source: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Write ``out_dir/index.html`` and its figures; return the page's path.

    Parameters
    ----------
    result : QCResult
        From :func:`fluorecon.trust.qc.run_qc`.
    out_dir : path
        Report folder (created). Existing files are refused unless ``overwrite``.
    title : str
    source : dict, optional
        Rows shown first (input path, model path, command).
    overwrite : bool
    """
    out = Path(out_dir)
    page = out / "index.html"
    if page.exists() and not overwrite:
        raise OutputExistsError(message(f"an existing report {page}", "a new report folder",
                                        "Pass --overwrite or choose another --out."))
    out.mkdir(parents=True, exist_ok=True)
    sections: list[Section] = []
    if source:
        sections.append(Section("Run", tables=[Table(["item", "value"],
                                                     [[k, v] for k, v in source.items()])]))
    qc_maps_figure(result, out / "maps.png", overwrite=True)
    summary = []
    if result.ood is not None:
        summary.append(f"{len(result.ood.warnings)} out-of-distribution warning(s).")
    cons = result.consistency
    if cons is not None:
        summary.append(f"{len(cons.regions)} region(s) inconsistent with the measurement "
                       f"({100 * cons.flagged_fraction:.2f} % of pixels); reduced chi-square "
                       f"{cons.reduced_chi2:.3f}.")
    sections.append(Section("Images and trust maps", paragraphs=[
        " ".join(summary),
        "The standardised residual compares the measurement with the prediction re-imaged "
        "through the forward model under the Poisson-Gaussian noise model; an honest "
        "reconstruction leaves unstructured noise (values mostly within +-3). Red areas "
        "are where the local mean residual exceeds the Bonferroni threshold: the data do "
        "not support the prediction there (blue residual: the prediction is brighter than "
        "the data allow, i.e. possibly invented; red residual: signal the prediction "
        "misses)."], figures=[("maps.png", "input, prediction, uncertainty, residual, "
                                            "local score and flagged regions")]))
    if cons is not None:
        rows = [[r.label, json.dumps(r.bbox()), r.size, r.peak_score,
                 "prediction too bright (invented?)" if r.sign < 0 else
                 "prediction too dark (erased?)"] for r in
                sorted(cons.regions, key=lambda r: -r.peak_score)[:50]]
        s = cons.summary()
        rc = cons.reduced_chi2
        verdict = ("The reduced chi-square is close to 1: the prediction explains the "
                   "measurement down to its noise." if 0.8 <= rc <= 1.25 else
                   "The reduced chi-square is well below 1: the prediction reproduces part "
                   "of the noise (it is closer to the raw input than a noise-free image "
                   "would be)." if rc < 0.8 else
                   "The reduced chi-square is above 1: the prediction misses or adds signal "
                   "that the measurement shows (see the residual map), or the noise model "
                   "underestimates the noise.")
        sections.append(Section("Data consistency", paragraphs=[
            f"Forward model: {cons.forward}. Units map measurement = {cons.alpha:.4g} x "
            f"forward(prediction) + {cons.beta:.4g}. Noise model var = {cons.noise.a:.4g} "
            f"x mean + {cons.noise.b:.4g}.", verdict], tables=[
            Table(["statistic", "value"], [[k, s[k]] for k in
                                           ("chi2", "dof", "reduced_chi2", "z_global",
                                            "p_value", "threshold", "flagged_fraction",
                                            "regions")]),
            *([Table(["region", "bbox [start, stop] per axis", "pixels", "peak |z|",
                      "direction"], rows, caption="Flagged regions (50 strongest)")]
              if rows else [])]))
    if result.uncertainty is not None:
        u = result.uncertainty
        sections.append(Section("Uncertainty", paragraphs=[
            f"Mode {u.mode}: " + {"probabilistic": "per-pixel Laplace scale predicted by "
                                                   "the network (aleatoric).",
                                  "ensemble": "spread of the ensemble members "
                                              "(epistemic).",
                                  "both": "mixture of the members' Laplace distributions "
                                          "(aleatoric + epistemic)."}[u.mode]
            + (f" Recalibration factor {u.factor:.4g} applied." if u.factor != 1 else
               " Not recalibrated."),
            f"Median std {float(np.median(u.std)):.4g}, 99th percentile "
            f"{float(np.percentile(u.std, 99)):.4g} (prediction units)."]))
    if result.calibration:
        calibration_figure(result.calibration, out / "calibration.png", overwrite=True)
        rows = []
        for mode, rec in result.calibration.items():
            for p, b, a in zip(rec.levels, rec.coverage_before, rec.coverage_after):
                rows.append([mode, p, b, a])
        sections.append(Section("Calibration", paragraphs=[
            "Coverage of central prediction intervals on held-out data with ground truth "
            "(fitted with fluorecon calibrate): the fraction of pixels whose truth falls "
            "inside the p-interval should equal p."],
            tables=[Table(["mode", "nominal", "coverage before", "coverage after"], rows)],
            figures=[("calibration.png", "coverage vs nominal level")]))
    else:
        sections.append(Section("Calibration", paragraphs=[
            "No calibration stored with this model: the uncertainty's scale is unverified. "
            "Run fluorecon calibrate on held-out pairs."]))
    if result.ood is not None and result.input_stats is not None:
        from fluorecon.trust.ood import features_table

        sections.append(Section("Out-of-distribution checks", paragraphs=(
            [f"WARNING: {w}" for w in result.ood.warnings] or
            ["The input's intensity, noise level and spectral content are within the "
             "training range."]),
            tables=[Table(["statistic", "input", "training min", "training max", "status"],
                          features_table(result.ood, result.input_stats))]))
    if result.sensitivity is not None:
        sv = result.sensitivity
        sections.append(Section("Perturbation sensitivity", paragraphs=[
            f"A perturbation within +-{sv.epsilon:g} noise std per pixel moves the output by "
            f"{sv.rms_change:.4g} RMS (max {sv.max_change:.4g}, {100 * sv.relative_change:.1f} "
            f"% of the output range); random perturbations of the same size move it by "
            f"{sv.random_rms_change:.4g} RMS: fragility {sv.fragility:.2f}x."]))
    card = result.card
    sections.append(Section("Model card", paragraphs=[f"Known limit: {t}" for t in
                                                      card.get("known_limits", [])],
                            tables=[Table(["field", "value"], _card_rows(card))]))
    if result.notes:
        sections.append(Section("Not checked", paragraphs=list(result.notes)))
    html = render_html(title, sections, intro="Trust report of one prediction: where the "
                                              "data support it, how uncertain it is, and "
                                              "whether the input is like the training data.")
    return write_html(page, html, overwrite=overwrite)
