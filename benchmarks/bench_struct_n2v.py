"""Benchmark: structN2V against plain N2V on noise correlated along X, beside CAREamics.

Noise2Void assumes pixel-independent noise. Camera line noise and line scanning give noise
correlated along rows, which N2V reads from the masked pixel's row neighbours and keeps as
signal; structN2V (Broaddus et al., ISBI 2020) also hides those neighbours. This script
simulates ``--images`` cell-like phantoms (``make_phantom("mixed")``, ``--photons`` at the
brightest pixel plus a background of 2) with shot noise plus Gaussian read noise of
standard deviation ``--read-noise``, for two cases:

- ``row-correlated``: the read noise is white noise smoothed along X by a 3-pixel box
  (kept at the same variance), so neighbouring pixels of a row share two thirds of it;
- ``white``: the same read noise without the smoothing (the control: what the struct mask
  costs where it is not needed).

For each case it trains plain N2V and structN2V (``struct_mask="horizontal"``, span 5) on
the noisy images and applies them to the same images (self-supervised use), and reports
PSNR and SSIM against the noise-free phantoms and the lag-1 correlations along X and Y of
the residual (prediction minus truth; the noise's own is about 0.57 along X in the
row-correlated case and 0 otherwise; a smooth prediction's residual is correlated along
both axes alike, correlated noise left in it only along X). With ``--careamics-python``
CAREamics 0.3.5 runs the same four trainings (``struct_n2v_axes="horizontal"``,
``struct_n2v_span=5``) at the same architecture (2D U-Net, depth 2, batch norm, CAREamics'
channel layout), patch, batch and steps, in its own process; both tools train structN2V
with mirror images only (90-degree turns would make the correlation run along Y) and plain
N2V with all 8 transforms.

Usage::

    python benchmarks/bench_struct_n2v.py [--careamics-python ../venvs/careamics/bin/python]
        [--steps 300] [--batch-size 16] [--filters 32] [--size 256] [--images 4] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_learned import _run_worker, emit_report, run_header  # benchmarks/ on sys.path

ROOT = Path(__file__).resolve().parents[1]
CASES = {"row-correlated": 3, "white": 1}  # read-noise box length along X
VARIANTS = ("n2v", "structn2v")


def _simulate(args: argparse.Namespace) -> dict[str, np.ndarray]:
    from scipy.ndimage import convolve1d

    from fluorecon.simulate.phantoms import make_phantom

    out: dict[str, np.ndarray] = {}
    shape = (args.size, args.size)
    clean = np.stack([make_phantom("mixed", shape, seed=args.seed * 100 + i)
                      for i in range(args.images)]) * args.photons + 2.0
    out["clean"] = clean.astype(np.float32)
    for case, box in CASES.items():
        rng = np.random.default_rng([args.seed, box])
        read = convolve1d(rng.normal(size=clean.shape), np.ones(box) / np.sqrt(box), axis=-1,
                          mode="wrap") * args.read_noise
        out[case] = (rng.poisson(clean) + read).astype(np.float32)
    return out


def _lag1(r: np.ndarray, axis: int) -> float:
    """Correlation of ``r`` with itself shifted by one pixel along ``axis``."""
    r = r - r.mean()
    n = r.shape[axis]
    a, b = np.take(r, range(1, n), axis=axis), np.take(r, range(n - 1), axis=axis)
    return float((a * b).mean() / (r * r).mean())


# ------------------------------------------------------------------------- workers ---
def _worker_fluorecon(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    from fluorecon.methods.learned import Noise2Void

    torch.set_num_threads(job["threads"])
    data = dict(np.load(job["data"]))
    preds, times = {}, {}
    for case in CASES:
        for variant in VARIANTS:
            m = Noise2Void(depth=2, base_filters=job["filters"], norm="batch", taper=True,
                           patch_size=job["patch"], batch_size=job["batch_size"],
                           steps=job["steps"], seed=job["seed"],
                           struct_mask="horizontal" if variant == "structn2v" else "none")
            t0 = time.perf_counter()
            m.fit(list(data[case]), axes="YX")
            times[f"{case}/{variant}"] = time.perf_counter() - t0
            preds[f"{case}/{variant}"] = np.stack([m.predict(im, "YX") for im in data[case]])
    np.savez(job["pred_file"], **{k.replace("/", "__"): v for k, v in preds.items()})
    return {"train_s": times, "versions": {"torch": torch.__version__}}


def _worker_careamics(job: dict[str, Any]) -> dict[str, Any]:
    import careamics
    import torch
    from careamics import CAREamist
    from careamics.config.factories.n2v_factory import create_advanced_n2v_config

    torch.set_num_threads(job["threads"])
    data = dict(np.load(job["data"]))
    preds, times = {}, {}
    for case in CASES:
        for variant in VARIANTS:
            struct = variant == "structn2v"
            cfg = create_advanced_n2v_config(
                experiment_name=f"{case}_{variant}", data_type="array", axes="SYX",
                patch_size=[job["patch"]] * 2, batch_size=job["batch_size"], logger="none",
                seed=job["seed"], model_params={"depth": 2, "num_channels_init": job["filters"]},
                num_epochs=job["steps"], trainer_params={"max_steps": job["steps"]},
                struct_n2v_axes="horizontal" if struct else "none", struct_n2v_span=5,
                augmentations=["x_flip", "y_flip"] if struct else None)
            cam = CAREamist(cfg, work_dir=Path(job["work_dir"]) / f"{case}_{variant}",
                            enable_progress_bar=False)
            t0 = time.perf_counter()
            cam.train(train_data=data[case])
            times[f"{case}/{variant}"] = time.perf_counter() - t0
            res = cam.predict(pred_data=data[case], axes="SYX")
            arr = res[0] if isinstance(res, tuple) else res
            arr = np.concatenate([np.asarray(a) for a in arr]) if isinstance(arr, list) else arr
            preds[f"{case}/{variant}"] = np.asarray(arr, np.float32).reshape(data[case].shape)
    np.savez(job["pred_file"], **{k.replace("/", "__"): v for k, v in preds.items()})
    return {"train_s": times, "versions": {"careamics": careamics.__version__,
                                           "torch": torch.__version__}}


# -------------------------------------------------------------------------- driver ---
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--filters", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--photons", type=float, default=30.0)
    ap.add_argument("--read-noise", type=float, default=4.0)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--careamics-python")
    ap.add_argument("--quick", action="store_true", help="20 steps, 2 images: a smoke run")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker = {"fluorecon": _worker_fluorecon, "careamics": _worker_careamics}[args.worker]
        print("RESULT " + json.dumps(worker(json.loads(args.job))))
        return 0
    if args.quick:
        args.steps, args.images = 20, 2
    from fluorecon.metrics import psnr, ssim

    tmp = Path(tempfile.mkdtemp(prefix="bench_struct_n2v_"))
    data = _simulate(args)
    np.savez(tmp / "data.npz", **data)
    job = {"data": str(tmp / "data.npz"), "steps": args.steps, "batch_size": args.batch_size,
           "patch": args.patch, "filters": args.filters, "threads": args.threads,
           "seed": args.seed}
    runs = [("fluorecon", sys.executable)] + (
        [("careamics", args.careamics_python)] if args.careamics_python else [])
    results, preds, load = {}, {}, []
    for tool, python in runs:
        load.append(os.getloadavg()[0])
        results[tool] = _run_worker(python, tool, dict(job, pred_file=str(tmp / f"{tool}.npz"),
                                                       work_dir=str(tmp / tool)),
                                    script=__file__)
        with np.load(tmp / f"{tool}.npz") as z:
            preds[tool] = {k.replace("__", "/"): z[k] for k in z.files}
    load.append(os.getloadavg()[0])

    clean = data["clean"]

    def score(stack: np.ndarray) -> str:
        p = [psnr(o, c, data_range=float(c.max() - c.min())) for o, c in zip(stack, clean)]
        s = [ssim(o, c, data_range=float(c.max() - c.min())) for o, c in zip(stack, clean)]
        r = stack - clean
        return (f"{np.mean(p):.2f} | {np.mean(s):.3f} | {_lag1(r, -1):.2f} / "
                f"{_lag1(r, -2):.2f}")

    lines = [*run_header(__file__, argv, args.threads, load),
             f"Data: {args.images} phantoms of {args.size}x{args.size}, {args.photons:g} photons "
             f"peak, read noise sd {args.read_noise:g}; U-Net depth 2, {args.filters} filters, "
             f"batch norm, CAREamics layout; patch {args.patch}, batch {args.batch_size}, "
             f"{args.steps} steps, seed {args.seed}.", "",
             "| case | method | PSNR dB | SSIM | residual lag-1 corr. X / Y | train s |",
             "|---|---|---|---|---|---|"]
    for case in CASES:
        lines.append(f"| {case} | noisy input | {score(data[case])} | |")
        for tool in results:
            for variant in VARIANTS:
                key = f"{case}/{variant}"
                lines.append(f"| {case} | {tool} {variant} | {score(preds[tool][key])} | "
                             f"{results[tool]['train_s'][key]:.0f} |")
    return emit_report(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
