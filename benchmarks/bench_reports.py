"""Benchmark: HTML report generation (time, single-file size) and the automatic profile
line (angle and position error on noisy synthetic filaments).

Three figures, printed as markdown tables:

1. ``fluorecon.report.evaluation.evaluation_report`` on simulated 2D and 3D denoising
   pairs, with and without a reference: seconds and kilobytes of the self-contained page.
2. ``fluorecon.report.training.training_report`` of a model folder (written here without
   torch) with example patches: seconds and kilobytes.
3. ``auto_profile_line`` on random straight filaments (Gaussian ridges, random angle and
   width) plus Poisson noise: median and 95th percentile of the angle between the line and
   the true normal, and of the distance from the line's centre to the filament's axis.

Usage::

    python benchmarks/bench_reports.py [--quick] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fluorecon.methods import create
from fluorecon.report.evaluation import auto_profile_line, evaluation_report
from fluorecon.report.training import TrainingExample, read_training_record, training_report
from fluorecon.simulate.pairs import simulate_pair


def _eval_rows(quick: bool) -> list[list[str]]:
    shapes = [(256, 256)] if quick else [(256, 256), (1024, 1024), (32, 256, 256)]
    rows = []
    for shape in shapes:
        axes = "YX" if len(shape) == 2 else "ZYX"
        pair = simulate_pair("denoise", shape, photons=20, seed=0)
        out = create("gaussian", sigma=1.0).predict(pair.input, axes)
        for with_ref in (True, False):
            t = time.perf_counter()
            page = evaluation_report(pair.input, out, axes=axes,
                                     reference=pair.target if with_ref else None)
            dt = time.perf_counter() - t
            rows.append(["x".join(map(str, shape)), "yes" if with_ref else "no",
                         f"{dt:.2f}", f"{len(page.encode()) / 1024:.0f}"])
    return rows


def _training_row() -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        folder.mkdir()
        cfg = {"format": "fluorecon-model", "method": "care", "axes": "YX", "seed": 0,
               "unet": {"ndim": 2, "depth": 2, "base_filters": 32},
               "method_config": {"patch_size": 64, "validation_fraction": 0.1},
               "provenance": {"best_step": 2000}, "training_data": {}}
        (folder / "config.json").write_text(json.dumps(cfg))
        lines = ["step,train_loss,val_loss,lr,time_s"] + [
            f"{s},{1 / s:.6f},{1.1 / s + 1e-4 * s / 100:.6f},0.0004,{s / 10}"
            for s in range(100, 10001, 100)]
        (folder / "history.csv").write_text("\n".join(lines) + "\n")
        rng = np.random.default_rng(0)
        exs = [TrainingExample(input=rng.random((64, 64), np.float32),
                               prediction=rng.random((64, 64), np.float32),
                               target=rng.random((64, 64), np.float32), axes="YX",
                               source=f"patch {i}") for i in range(3)]
        t = time.perf_counter()
        page = training_report(read_training_record(folder), examples=exs)
        dt = time.perf_counter() - t
    return ["100 history points, 3 patches of 64x64", f"{dt:.2f}",
            f"{len(page.encode()) / 1024:.0f}"]


def _profile_rows(quick: bool) -> list[list[str]]:
    rng = np.random.default_rng(0)
    n = 50 if quick else 400
    out = []
    for photons in (100.0, 20.0, 5.0):
        ang, dist = [], []
        for _ in range(n):
            theta = rng.uniform(0, np.pi)
            width = rng.uniform(1.0, 3.0)
            cy, cx = rng.uniform(24, 40, 2)
            yy, xx = np.mgrid[:64, :64].astype(np.float64)
            d = -(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)
            img = photons * np.exp(-0.5 * (d / width) ** 2) + 1.0
            noisy = rng.poisson(img).astype(np.float32)
            (y0, x0), (y1, x1) = auto_profile_line(noisy, length=24)
            v = np.array([y1 - y0, x1 - x0]) / math.hypot(y1 - y0, x1 - x0)
            normal = np.array([np.cos(theta), -np.sin(theta)])
            ang.append(math.degrees(math.acos(min(1.0, abs(float(v @ normal))))))
            my, mx = (y0 + y1) / 2, (x0 + x1) / 2
            dist.append(abs(-(mx - cx) * np.sin(theta) + (my - cy) * np.cos(theta)))
        out.append([f"{photons:g}", str(n), f"{np.median(ang):.1f}",
                    f"{np.percentile(ang, 95):.1f}", f"{np.median(dist):.2f}",
                    f"{np.percentile(dist, 95):.2f}"])
    return out


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="Small sizes and fewer trials.")
    ap.add_argument("--out", type=Path, help="Also write the markdown to this file.")
    args = ap.parse_args(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    parts = [
        f"Machine: {platform.machine()} {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; date {_dt.date.today()}; load before the run "
        f"{load:.2f}; command `python {shlex.join(['benchmarks/bench_reports.py', *(argv if argv is not None else sys.argv[1:])])}`",
        "",
        "Evaluation report (gaussian denoiser output, simulated filaments):",
        "",
        _table(["shape", "reference", "seconds", "page (KiB)"], _eval_rows(args.quick)),
        "",
        "Training report:",
        "",
        _table(["content", "seconds", "page (KiB)"], [_training_row()]),
        "",
        "Automatic profile line on noisy straight filaments (64x64, line length 24 px):",
        "",
        _table(["peak photons", "trials", "angle error median (deg)", "angle error p95 (deg)",
                "centre offset median (px)", "centre offset p95 (px)"],
               _profile_rows(args.quick)),
    ]
    text = "\n".join(parts)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
