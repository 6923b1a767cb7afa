"""Benchmark: self-calibrated classical denoisers on real paired data (W2S, FMD).

For each noisy/target pair in ``denoise_w2s_fmd_8bit`` this runs every classical denoiser
of fluorecon (``gaussian``, ``tv``, ``nlm``, ``bm3d``, ``auto``; all self-calibrated, none
sees the target), scikit-image's ``calibrate_denoiser`` around ``denoise_tv_chambolle``
as a user would call it, and reports normalised PSNR/SSIM against the target plus
seconds per megapixel, as a markdown table.

The 8-bit files are contrast-stretched independently, so scores are *normalised*: the
target is percentile-normalised and the prediction least-squares affine-fitted to it
(``fluorecon.metrics.evaluate``, keys ``psnr_normalized``/``ssim_normalized``; a local
implementation of the same convention is used when that module is absent).

Usage::

    python benchmarks/bench_denoise.py [--data DIR] [--out FILE] [--methods auto,bm3d]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / ".." / "shared" / "data" / "denoise_w2s_fmd_8bit"
METHODS = ("gaussian", "tv", "nlm", "bm3d", "auto")
# scikit-image baseline: a user's grid over the TV weight, on img_as_float data in [0, 1].
SKIMAGE_TV_GRID = np.round(np.geomspace(0.005, 0.5, 15), 4)


def _pairs(data: Path) -> list[tuple[str, str, Path, Path]]:
    pairs = []
    for noisy in sorted((data / "w2s").glob("input_avg1_*.tif")):
        ident = noisy.stem.removeprefix("input_avg1_")
        pairs.append(("W2S", ident, noisy, data / "w2s" / f"target_avg400_{ident}.tif"))
    fmd = data / "fmd"
    for noisy, target in [("image_R_1_001.png", "image_R_1_avg50.png"),
                          ("Confocal_FISH_3_raw.png", "Confocal_FISH_3_gt.png")]:
        if (fmd / noisy).exists():
            pairs.append(("FMD", Path(noisy).stem, fmd / noisy, fmd / target))
    return pairs


def _read(path: Path) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        arr = tifffile.imread(path)
    else:
        from PIL import Image

        arr = np.asarray(Image.open(path))
    if arr.ndim == 3:  # RGB(A) PNG of a grey image
        arr = arr[..., 0]
    return arr


def _scores_fn():
    try:
        from fluorecon.metrics import evaluate

        def scores(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
            s = evaluate(pred, target, axes="YX")
            return s["psnr_normalized"], s["ssim_normalized"]

        return scores, "fluorecon.metrics.evaluate (psnr_normalized, ssim_normalized)"
    except ImportError:
        pass
    from skimage.metrics import structural_similarity

    def scores(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
        t = target.astype(np.float64)
        lo, hi = np.percentile(t, [1, 99.8])
        t = (t - lo) / (hi - lo)
        p = pred.astype(np.float64).ravel()
        A = np.stack([p, np.ones_like(p)], axis=1)
        coef, *_ = np.linalg.lstsq(A, t.ravel(), rcond=None)
        p = (A @ coef).reshape(t.shape)
        mse = float(np.mean((p - t) ** 2))
        return 10 * np.log10(1.0 / mse), float(structural_similarity(p, t, data_range=1.0))

    return scores, "local: target percentile (1, 99.8) + affine LS fit, data_range 1"


def _skimage_tv(noisy: np.ndarray) -> tuple[np.ndarray, float]:
    from skimage.restoration import calibrate_denoiser, denoise_tv_chambolle
    from skimage.util import img_as_float

    img = img_as_float(noisy)
    fn, (params, losses) = calibrate_denoiser(img, denoise_tv_chambolle,
                                              {"weight": SKIMAGE_TV_GRID}, extra_output=True)
    best = params[int(np.argmin(losses))]["weight"]
    return fn(img), float(best)


def _describe(name: str, method) -> str:
    cal = method.calibration_
    p = dict(cal.best_parameters)
    if name == "auto":
        chosen = p.pop("method")
        return chosen + "(" + ", ".join(f"{k}={v:.3g}" for k, v in p.items()) + ")"
    return ", ".join(f"{k}={v:.3g}" for k, v in p.items())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--methods", default=",".join(METHODS),
                    help="comma-separated fluorecon methods (default: all)")
    args = ap.parse_args(argv)
    data = args.data.resolve()
    if not data.is_dir():
        print(f"data folder {data} not found", file=sys.stderr)
        return 2

    from fluorecon.methods import create
    from fluorecon.methods.classical.denoising import bm3d_available

    methods = [m for m in args.methods.split(",") if m]
    if "bm3d" in methods and not bm3d_available():
        methods.remove("bm3d")
    scores, metric_desc = _scores_fn()
    pairs = _pairs(data)
    loads = [os.getloadavg()[0]]
    cols = ["noisy", "skimage TV"] + methods
    rows: list[dict] = []
    t_total = time.perf_counter()
    for group, ident, noisy_path, target_path in pairs:
        noisy, target = _read(noisy_path), _read(target_path)
        mp = noisy.size / 1e6
        row = {"group": group, "id": ident, "scores": {}, "sec_mp": {}, "params": {}}
        row["scores"]["noisy"] = scores(noisy.astype(np.float32), target)
        t = time.perf_counter()
        pred, w = _skimage_tv(noisy)
        row["sec_mp"]["skimage TV"] = (time.perf_counter() - t) / mp
        row["scores"]["skimage TV"] = scores(pred, target)
        row["params"]["skimage TV"] = f"weight={w:.3g}"
        for name in methods:
            m = create(name)
            t = time.perf_counter()
            pred = m.predict(noisy, "YX")
            row["sec_mp"][name] = (time.perf_counter() - t) / mp
            row["scores"][name] = scores(pred, target)
            row["params"][name] = _describe(name, m)
        nm = m.noise_model_
        row["noise"] = f"a={nm.a:.3g}, b={nm.b:.3g}"
        rows.append(row)
        loads.append(os.getloadavg()[0])
        print(f"  {group} {ident}: " + ", ".join(
            f"{c} {row['scores'][c][0]:.2f}" for c in cols), file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - t_total
    cmd_args = list(argv if argv is not None else sys.argv[1:])

    lines = [
        "## Classical denoising on real pairs (W2S, FMD; 8-bit copies)",
        "",
        f"- machine: {platform.node()} ({platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.platform()})",
        f"- date: {_dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- command: `python {shlex.join(['benchmarks/bench_denoise.py', *cmd_args])}`",
        f"- data: {data.name} ({len(pairs)} pairs); metric: {metric_desc}",
        f"- load average (1 min) during the run: min {min(loads):.2f}, max {max(loads):.2f}; "
        f"total wall time {elapsed:.0f} s",
        "- fluorecon methods are self-calibrated (J-invariant loss in the generalised-Anscombe "
        "domain, noise model estimated from the noisy image); none sees the target.",
        f"- skimage TV: `calibrate_denoiser(img_as_float(noisy), denoise_tv_chambolle, "
        f"{{'weight': np.geomspace(0.005, 0.5, 15)}})`, output of the returned (J-invariant) "
        f"function, as in scikit-image's documentation.",
        "",
        "### Normalised PSNR (dB) / SSIM",
        "",
        "| set | image | " + " | ".join(cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for r in rows:
        cells = [f"{r['scores'][c][0]:.2f} / {r['scores'][c][1]:.3f}" for c in cols]
        lines.append(f"| {r['group']} | {r['id']} | " + " | ".join(cells) + " |")
    for group in ("W2S", "FMD"):
        g = [r for r in rows if r["group"] == group]
        if g:
            cells = [f"**{np.mean([r['scores'][c][0] for r in g]):.2f} / "
                     f"{np.mean([r['scores'][c][1] for r in g]):.3f}**" for c in cols]
            lines.append(f"| {group} | **mean ({len(g)})** | " + " | ".join(cells) + " |")
    tcols = cols[1:]
    lines += ["", "### Seconds per megapixel (calibration included)", "",
              "| set | image | " + " | ".join(tcols) + " |", "|---|---|" + "---|" * len(tcols)]
    for r in rows:
        lines.append(f"| {r['group']} | {r['id']} | "
                     + " | ".join(f"{r['sec_mp'][c]:.1f}" for c in tcols) + " |")
    lines.append("| all | **mean** | " + " | ".join(
        f"**{np.mean([r['sec_mp'][c] for r in rows]):.1f}**" for c in tcols) + " |")
    lines += ["", "### Calibrated parameters and estimated noise model (var = a mean + b)", "",
              "| set | image | noise model | " + " | ".join(tcols) + " |",
              "|---|---|---|" + "---|" * len(tcols)]
    for r in rows:
        lines.append(f"| {r['group']} | {r['id']} | {r['noise']} | "
                     + " | ".join(r["params"][c] for c in tcols) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
