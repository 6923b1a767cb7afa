"""Benchmark: automatic tile sizing of 3D prediction, in fresh processes.

A 3D U-Net's receptive field (23 voxels per side at depth 2) is paid on every interior
tile boundary, so tiles sized to a fixed 256 MiB budget are mostly halo in 3D, or do not
fit at all. This runs the default 3D CARE network (depth 2, 32 filters; weights after one
training step on random data: timing does not depend on content) on stacks of a few
shapes, each variant in its own process:

- ``budget 256 MiB``: ``memory_budget_bytes=2**28``, a hard limit (the old default);
- ``default``: no budget given (256 MiB, raised where tiles would compute more than 1.3x
  the stack, up to a quarter of the available memory);
- ``whole``: one tile (``tile_shape`` = the stack), where it fits in memory.

For each: the tiles the network was called on (count and window), the voxels computed
per stack voxel, seconds (best of the repeats, after a warm-up on a small stack), MVox/s
of the stack, the process's peak RSS, and the largest difference to the whole-stack
prediction (same process kind, exact tiling: expected at float rounding).

Usage::

    python benchmarks/bench_tiling.py [--shapes 32x256x256,48x384x384] [--repeats 2]
        [--variants 'budget 256 MiB,default,whole'] [--threads 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_learned import _peak_rss_mb, emit_report, run_header  # benchmarks/ on sys.path

VARIANTS = ("budget 256 MiB", "default", "whole")


def _model(folder: Path) -> None:
    from fluorecon.methods import create

    rng = np.random.default_rng(0)
    x = rng.random((32, 64, 64)).astype(np.float32)
    method = create("care", depth=2, base_filters=32, patch_size=32, batch_size=2, steps=1,
                    validation_interval=1, seed=0)
    method.fit(x, x, "ZYX")
    method.save(folder, overwrite=True)


def _worker(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    from fluorecon.core.errors import FluoreconError
    from fluorecon.methods.learned import load_model_method
    from fluorecon.predict import predict_method_tiled

    torch.set_num_threads(job["threads"])
    method = load_model_method(job["model"])
    shape = tuple(job["shape"])
    stack = np.random.default_rng(1).random(shape).astype(np.float32)
    kw: dict[str, Any] = {"default": {}, "budget 256 MiB": {"memory_budget_bytes": 2**28},
                          "whole": {"tile_shape": shape}}[job["variant"]]
    calls: list[tuple[int, ...]] = []
    inner = method.predict_batch

    def counting(batch: np.ndarray, axes: str) -> np.ndarray:
        calls.append(tuple(batch.shape))
        return inner(batch, axes)

    method.predict_batch = counting  # type: ignore[method-assign]
    try:
        predict_method_tiled(method, stack[:16, :64, :64], "ZYX", **kw)  # warm-up
        times = []
        for _ in range(job["repeats"]):
            calls.clear()
            t0 = time.perf_counter()
            out = predict_method_tiled(method, stack, "ZYX", **kw)
            times.append(time.perf_counter() - t0)
    except (FluoreconError, MemoryError) as err:
        return {"error": str(err).split(";")[0][:160], "peak_mb": _peak_rss_mb()}
    np.save(job["out"], out)
    computed = sum(math.prod(c[1:]) * c[0] for c in calls)
    return {"tiles": sum(c[0] for c in calls), "window": list(calls[0][1:]),
            "computed": computed / stack.size, "s": min(times),
            "mvox_s": stack.size / 1e6 / min(times), "peak_mb": _peak_rss_mb()}


def _run(job: dict[str, Any]) -> dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS=str(job["threads"]), PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)],
                          capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        return {"error": f"worker exit {proc.returncode}: {proc.stderr.strip()[-160:]}"}
    return json.loads(lines[-1][len("RESULT "):])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default="32x256x256,48x384x384")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--whole-max-mvox", type=float, default=4.0,
                    help="skip whole-stack prediction above this many MVox (memory)")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="comma-separated subset of: " + ", ".join(VARIANTS))
    ap.add_argument("--out", type=Path)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(_worker(json.loads(args.worker))))
        return 0
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",") if s]
    tmp = Path(tempfile.mkdtemp(prefix="bench_tiling_"))
    _model(tmp / "model")
    load = [os.getloadavg()[0]]
    rows = []
    for shape in shapes:
        outs: dict[str, Path] = {}
        for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
            if variant == "whole" and math.prod(shape) / 1e6 > args.whole_max_mvox:
                rows.append((shape, variant, {"error": "skipped (--whole-max-mvox)"}, None))
                continue
            out = tmp / f"{'x'.join(map(str, shape))}_{variant.split()[0]}.npy"
            res = _run({"model": str(tmp / "model"), "shape": shape, "variant": variant,
                        "threads": args.threads, "repeats": args.repeats, "out": str(out)})
            load.append(os.getloadavg()[0])
            if "error" not in res:
                outs[variant] = out
            rows.append((shape, variant, res, out))
            print(variant, shape, res, flush=True)
        ref = np.load(outs["whole"]) if "whole" in outs else None
        for i, (shp, variant, res, out) in enumerate(rows):
            if shp == shape and ref is not None and variant in outs and variant != "whole":
                diff = float(np.abs(np.load(out) - ref).max() / np.abs(ref).max())
                rows[i] = (shp, variant, {**res, "diff": diff}, out)
    lines = [*run_header(__file__, argv, args.threads, load),
             "3D CARE, U-Net depth 2, 32 filters (receptive field 23 voxels per side); "
             "best of the repeats after a warm-up; each variant in a fresh process.", "",
             "| stack (ZYX) | variant | tiles | window | voxels computed per stack "
             "voxel | s | MVox/s | peak RSS MB | max diff to whole / max |",
             "|---|---|---|---|---|---|---|---|---|"]
    for shape, variant, res, _ in rows:
        name = "x".join(map(str, shape))
        if "error" in res:
            lines.append(f"| {name} | {variant} | {res['error']} | | | | | "
                         f"{res.get('peak_mb', float('nan')):.0f} | |")
            continue
        diff = f"{res['diff']:.1e}" if "diff" in res else ""
        lines.append(f"| {name} | {variant} | {res['tiles']} | "
                     f"{'x'.join(map(str, res['window']))} | {res['computed']:.2f} | "
                     f"{res['s']:.1f} | {res['mvox_s']:.3f} | {res['peak_mb']:.0f} | {diff} |")
    return emit_report(lines, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
