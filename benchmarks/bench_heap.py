"""Benchmark: glibc heap reuse (``fluorecon.core.heap``) on and off, in fresh processes.

Each setting runs in its own process (``FLUORECON_HEAP_REUSE=1`` or ``0``): N2V training
steps of 128 patches of 64x64 with the CAREamics-sized U-Net (depth 2, 32 filters, batch
norm, tapered decoder) on the W2S images in ``../shared`` (random images of the same size
when they are absent: timing does not depend on content), then prediction of a 1024x1024
image with that model, whole image and with the default tiles (best of the repeats; each
call starts from a trimmed heap, as a user's call does). Peak RSS is the process's.

Usage::

    python benchmarks/bench_heap.py [--steps 12] [--repeats 3] [--threads 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from bench_learned import DEFAULT_DATA as DATA  # benchmarks/ is on sys.path when run
from bench_learned import _peak_rss_mb, emit_report


def _images() -> list[np.ndarray]:
    files = sorted(DATA.glob("input_avg1_*.tif")) if DATA.is_dir() else []
    if files:
        import tifffile

        return [tifffile.imread(f).astype(np.float32) for f in files]
    rng = np.random.default_rng(0)
    return [rng.poisson(20.0, (512, 512)).astype(np.float32) for _ in range(5)]


def _worker(args: argparse.Namespace) -> dict[str, float]:
    import torch

    from fluorecon.methods import create
    from fluorecon.predict import predict_method_tiled

    torch.set_num_threads(args.threads)
    xs = _images()
    method = create("n2v", depth=2, base_filters=32, norm="batch", taper=True, patch_size=64,
                    batch_size=128, steps=args.steps, seed=1)
    t0 = time.perf_counter()
    method.fit(xs, "YX")
    out = {"train_steps_s": args.steps / (time.perf_counter() - t0),
           "train_peak_mb": _peak_rss_mb()}
    big = np.block([[xs[0], xs[1 % len(xs)]], [xs[2 % len(xs)], xs[3 % len(xs)]]])
    for name, budget in (("whole", 2 << 30), ("tiles", None)):
        kw = {} if budget is None else {"memory_budget_bytes": budget}
        predict_method_tiled(method, big[:256, :256], "YX", **kw)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            predict_method_tiled(method, big, "YX", **kw)
            times.append(time.perf_counter() - t0)
        out[f"{name}_mpix_s"] = big.size / 1e6 / min(times)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(_worker(args)))
        return 0
    rows = []
    load = [os.getloadavg()[0]]
    for setting in ("0", "1", "0", "1"):
        env = dict(os.environ, FLUORECON_HEAP_REUSE=setting, PYTHONWARNINGS="ignore",
                   OMP_NUM_THREADS=str(args.threads))
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--steps",
               str(args.steps), "--repeats", str(args.repeats), "--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            sys.stderr.write(proc.stderr[-3000:])
            return 1
        rows.append((setting, json.loads(lines[-1][7:])))
        load.append(os.getloadavg()[0])
    text = [f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch threads "
            f"{args.threads}; date {_dt.datetime.now():%Y-%m-%d %H:%M}; 1-min load "
            f"{min(load):.1f}-{max(load):.1f}; data: "
            f"{'W2S' if DATA.is_dir() else 'random (no ../shared)'}",
            "Command: `python benchmarks/bench_heap.py " + " ".join(argv or sys.argv[1:]) + "`",
            "", "| heap reuse | train steps/s | train peak RSS MB | predict whole MPix/s | "
            "predict default tiles MPix/s |", "|---|---|---|---|---|"]
    for setting, r in rows:
        text.append(f"| {'on' if setting == '1' else 'off'} | {r['train_steps_s']:.3f} | "
                    f"{r['train_peak_mb']:.0f} | {r['whole_mpix_s']:.3f} | "
                    f"{r['tiles_mpix_s']:.3f} |")
    return emit_report(text, args.out)


if __name__ == "__main__":
    sys.exit(main())
