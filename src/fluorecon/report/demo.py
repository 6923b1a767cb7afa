"""The built-in demo: simulate data, run the classical (and, with torch, two small learned)
methods, evaluate, write a report.

Everything is generated on the fly with fixed seeds; no file or network is needed. The
learned methods (Noise2Void trained on the noisy test image itself, CARE trained on
separately simulated pairs) run with a short training budget; torch uses every CPU core
or ``$FLUORECON_NUM_THREADS`` threads.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fluorecon.core.errors import OutputExistsError, message
from fluorecon.core.meta import ImageMeta
from fluorecon.io import write_image
from fluorecon.methods import Method, available, create
from fluorecon.metrics import evaluate
from fluorecon.report.figures import image_panel, line_profiles
from fluorecon.report.html import Section, Table, render_html, write_html
from fluorecon.simulate.camera import camera_inverse
from fluorecon.simulate.pairs import SimulatedPair, simulate_pair

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class DemoCase:
    """One demo dataset: how to simulate it and which methods to run on it."""

    key: str
    title: str
    task: str
    shape: tuple[int, ...]
    phantom: str
    photons: float
    seed: int
    methods: tuple[str, ...]
    description: str
    learned: tuple[str, ...] = ()
    """Learned methods (``"n2v"``, ``"care"``) trained within the demo; empty without torch."""
    learned_note: str = ""
    """Sentence added to the section about the learned results (or their absence)."""


#: Training settings of the demo's learned methods: a tiny U-Net and a short budget, chosen so
#: that N2V and CARE together train in about 20 s on 2 CPU cores. 32-pixel patches (not 64)
#: keep the pixel throughput per second; the network's receptive field is unchanged.
LEARNED_SETTINGS: dict[str, Any] = {
    "steps": 200, "patch_size": 32, "batch_size": 16, "depth": 2, "base_filters": 16,
    "learning_rate": 1e-3, "validation_interval": 50, "seed": 0,
}

#: Number of simulated training pairs for the demo's CARE model.
CARE_TRAINING_PAIRS = 2

#: Offset of the CARE training-pair seeds from the case seed (never the test image's seed).
CARE_SEED_OFFSET = 1000


def torch_available() -> bool:
    """Whether torch is installed (checked without importing it)."""
    return importlib.util.find_spec("torch") is not None


def demo_cases() -> list[DemoCase]:
    """The datasets of the demo (a 2D denoising, a 2D and a small 3D deconvolution case)."""
    denoisers = tuple(m for m in ("gaussian", "tv", "nlm", "bm3d", "auto")
                      if m in available("denoise") and _usable(m))
    deconv = ("wiener", "rl", "rl-tv")
    steps = LEARNED_SETTINGS["steps"]
    if torch_available():
        learned: tuple[str, ...] = ("n2v", "care")
        note = (f"Learned rows come from a short demo budget ({steps} optimiser steps of a "
                f"small 2-level U-Net with {LEARNED_SETTINGS['base_filters']} filters) and are "
                "not what these methods reach with full training. N2V is trained "
                "self-supervised on the noisy test image itself. CARE is trained on "
                f"{CARE_TRAINING_PAIRS} separately simulated pairs (same phantom kind, photons "
                "and camera, other seeds) and never sees this target; it scores well here "
                "because training and test data come from the same simulator, and a CARE "
                "model applied to real data that differ from its training pairs can "
                "hallucinate structure: check it on held-out real pairs.")
    else:
        learned = ()
        note = ("Learned methods (N2V, CARE) were skipped because torch is not installed "
                "(pip install 'fluorecon[torch]').")
    return [
        DemoCase("denoise2d", "2D denoising: filaments, low light", "denoise", (256, 256),
                 "filaments", 20.0, 0, denoisers,
                 "Widefield image of filaments at 20 photons peak, sCMOS camera noise. "
                 "Target: the noise-free blurred image. Every classical denoiser calibrates "
                 "itself on the noisy image alone (J-invariant loss); none sees the target.",
                 learned=learned, learned_note=note),
        DemoCase("deconv2d", "2D deconvolution: mixed structures", "deconvolve", (256, 256),
                 "mixed", 300.0, 1, deconv,
                 "Widefield-blurred image (Born-Wolf PSF, NA 1.2, 520 nm, 100 nm pixels) at 300 "
                 "photons peak. Target: the object before blurring. The input is converted "
                 "from camera ADU to photons with the camera model first."),
        DemoCase("deconv3d", "3D deconvolution: beads", "deconvolve", (32, 64, 64), "beads",
                 300.0, 2, deconv,
                 "A small 3D widefield stack of beads. Target: the object before blurring; "
                 "figures show the middle Z slice."),
    ]


def _usable(name: str) -> bool:
    if name != "bm3d":
        return True
    try:
        import bm3d  # noqa: F401
    except ImportError:
        return False
    return True


def _method_for(name: str, pair: SimulatedPair) -> Method:
    if pair.task == "deconvolve":
        kwargs: dict[str, Any] = {"psf": pair.psf}
        if name in ("rl", "rl-tv"):
            kwargs["iterations"] = 40
        return create(name, **kwargs)
    return create(name)


def _run_learned(name: str, case: DemoCase, data: np.ndarray, axes: str
                 ) -> tuple[np.ndarray, str]:
    """Train the learned method ``name`` for ``case`` and apply it to ``data``.

    Returns the result and the parameter description. N2V trains on ``data`` itself; CARE
    on :data:`CARE_TRAINING_PAIRS` pairs simulated like ``case`` with seeds
    ``case.seed + CARE_SEED_OFFSET + k`` (the test image's ground truth is never used).
    """
    method: Any = create(name, **LEARNED_SETTINGS)  # a LearnedMethod: has fit()
    steps = LEARNED_SETTINGS["steps"]
    if name == "care":
        train = [simulate_pair(case.task, case.shape, phantom=case.phantom,
                               photons=case.photons, seed=case.seed + CARE_SEED_OFFSET + k)
                 for k in range(CARE_TRAINING_PAIRS)]
        method.fit([_model_input(p) for p in train], [p.target for p in train], axes)
        where = f"trained on {CARE_TRAINING_PAIRS} simulated pairs"
    else:
        method.fit(data, axes)
        where = "trained on the image"
    result = method.predict(data, axes)
    mc = getattr(method, "model_config", None)
    threads = mc.provenance.get("torch_threads") if mc is not None else None
    detail = f"{steps} steps, {where}"
    if threads:
        detail += f" ({threads} CPU thread{'s' if threads != 1 else ''})"
    return result, detail


def _model_input(pair: SimulatedPair) -> np.ndarray:
    if pair.task == "deconvolve":
        # Richardson-Lucy expects non-negative photon counts: remove offset and gain.
        return np.clip(camera_inverse(pair.input, pair.camera), 0, None).astype(np.float32)
    return pair.input


def run_case(case: DemoCase, out_dir: Path, *, overwrite: bool = False,
             progress: Progress | None = None) -> Section:
    """Run one demo case, write its images and figures into ``out_dir``, return its section."""
    pair = simulate_pair(case.task, case.shape, phantom=case.phantom, photons=case.photons,
                         seed=case.seed)
    data = _model_input(pair)
    axes = pair.axes
    images: dict[str, np.ndarray] = {"input": data, "ground truth": pair.target}
    rows: list[list[object]] = []
    scores_in = evaluate(data, pair.target)
    rows.append(["input", scores_in["psnr_normalized"], scores_in["ssim_normalized"],
                 scores_in["nrmse_normalized"], 0.0, "-"])
    names = case.methods + case.learned
    for i, name in enumerate(names):
        t0 = time.perf_counter()
        if name in case.learned:
            result, detail = _run_learned(name, case, data, axes)
        else:
            method = _method_for(name, pair)
            result = method.predict(data, axes)
            detail = _describe(method)
        seconds = time.perf_counter() - t0
        images[name] = result
        s = evaluate(result, pair.target)
        rows.append([name, s["psnr_normalized"], s["ssim_normalized"], s["nrmse_normalized"],
                     seconds, detail])
        write_image(out_dir / "data" / f"{case.key}_{name}.ome.tif", result,
                    _meta(pair, name), overwrite=overwrite)
        if progress is not None:
            progress(i + 1, len(names))
    for key, arr in (("input", data), ("target", pair.target)):
        write_image(out_dir / "data" / f"{case.key}_{key}.ome.tif", arr, _meta(pair, key),
                    overwrite=overwrite)
    panel = image_panel(images, out_dir / f"{case.key}_panel.png", axes=axes,
                        reference="ground truth", overwrite=overwrite)
    profile = line_profiles({k: images[k] for k in images}, out_dir / f"{case.key}_profile.png",
                            axes=axes, reference="ground truth", overwrite=overwrite)
    best = 1 + int(np.argmax([r[1] for r in rows[1:]]))
    table = Table(["method", "PSNR (dB, normalised)", "SSIM (normalised)", "NRMSE (normalised)",
                   "seconds", "parameters"], rows, best_row=best,
                  caption="Metrics against the ground truth after percentile normalisation of "
                          "the reference and a least-squares affine fit of each image to it. "
                          "Seconds include training for learned methods.")
    paragraphs = (case.description,) + ((case.learned_note,) if case.learned_note else ())
    return Section(case.title, paragraphs=paragraphs, tables=(table,),
                   figures=((panel.name, "Input, ground truth and results, each fitted to the "
                             "ground truth and shown with its display range."),
                            (profile.name, "Intensity along one row through the brightest "
                             "ground-truth pixel.")))


def _meta(pair: SimulatedPair, what: str) -> ImageMeta:
    return pair.meta.model_copy(update={"extra": {"demo": what}})


def _describe(method: Method) -> str:
    calib = getattr(method, "calibration_", None)
    if calib is not None and hasattr(calib, "summary"):
        return "calibrated " + str(calib.summary())
    info = getattr(method, "last_result_", None)
    if info is not None and hasattr(info, "iterations"):
        return f"{info.iterations} iterations, {info.boundary} boundary"
    if info is not None and hasattr(info, "balance"):
        return f"balance={info.balance:.3g}" + (" (GCV)" if getattr(info, "automatic", False) else "")
    return ""


def run_demo(out_dir: str | Path, *, overwrite: bool = False,
             progress: Progress | None = None) -> Path:
    """Run every demo case and write ``report.html`` with figures into ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Output folder, created if needed. An existing ``report.html`` there is only
        replaced with ``overwrite=True``.
    overwrite : bool
        Replace files of an earlier demo run.
    progress : callable, optional
        ``progress(done, total)`` over all method runs (learned ones include training).

    Returns
    -------
    pathlib.Path
        The path of ``report.html``.
    """
    out = Path(out_dir)
    report = out / "report.html"
    if report.exists() and not overwrite:
        raise OutputExistsError(message(f"output folder '{out}' with an earlier report.html",
                                        "a new folder", "Choose another --out or pass --overwrite."))
    out.mkdir(parents=True, exist_ok=True)
    cases = demo_cases()
    total = sum(len(c.methods) + len(c.learned) for c in cases)
    done = 0
    sections = []
    for case in cases:
        def sub(d: int, _t: int, base: int = done) -> None:
            if progress is not None:
                progress(base + d, total)
        sections.append(run_case(case, out, overwrite=overwrite, progress=sub))
        done += len(case.methods) + len(case.learned)
    page = render_html(
        "fluorecon demo: reconstruction on simulated data", sections,
        intro="All data are simulated with fixed seeds from physical models (scalar-diffraction "
              "PSF, Poisson shot noise, sCMOS read noise, offset, gain and quantisation), so every "
              "result can be compared with the true object. The best row by normalised PSNR is "
              "highlighted. Images in data/ are OME-TIFF with pixel sizes.")
    return write_html(report, page, overwrite=overwrite)
