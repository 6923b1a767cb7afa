"""Benchmark: bounded-memory streaming and dask.distributed prediction.

Three figures, each printed as a markdown table:

1. **Peak memory against dataset size.** Synthetic float32 volumes (Z x 1024 x 1024;
   0.25 to 8 GB, generated chunk by chunk straight into OME-Zarr, never held in memory)
   are filtered by a local method (a Gaussian of sigma 2 px, receptive field 8 px) with
   :func:`fluorecon.predict.stream.stream_predict` into an OME-Zarr output (input and
   output compressed with ``--compression``, Blosc zstd by default). Each run is
   a fresh process; its peak resident set size (``ru_maxrss``, imports included) is
   reported beside the throughput. The volumes are deleted after each run.
2. **Throughput, 1 vs 2 local workers**, with
   :func:`fluorecon.predict.distributed.distributed_predict` on a ``LocalCluster`` of
   worker processes (one thread each); cluster start-up is timed separately.
3. **Overhead of the distributed path**: the same volume in-process
   (``stream_predict``) and on one local worker; overhead = the difference in wall time
   (start-up excluded), relative to in-process.

The method is deliberately cheap, so the figures show the streaming machinery (reads,
halos, compression, writes, scheduling) rather than a network's compute.

Usage::

    nice -n 5 python benchmarks/bench_scale.py [--quick] [--sizes 0.25 0.5 1 2 4 8]
        [--workdir /work/tmp-bench] [--throughput-gb 0.5]

``--quick`` runs 0.25 and 0.5 GB and a 0.125 GB throughput volume.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

SIGMA = 2.0
PLANE = (1024, 1024)


def _method() -> Any:
    """A Gaussian filter of ``SIGMA`` px with a bounded receptive field (4 sigma)."""
    from scipy import ndimage as ndi

    from fluorecon.methods.base import Method

    class GaussianFilter(Method):
        name: ClassVar[str] = "bench_gaussian"
        kind: ClassVar[str] = "denoise"

        @property
        def receptive_field(self) -> int:
            return int(math.ceil(4 * SIGMA))

        def predict_block(self, block: np.ndarray, axes: str) -> np.ndarray:
            return ndi.gaussian_filter(block, SIGMA, mode="reflect", truncate=4.0)

    return GaussianFilter()


COMPRESSION = "zstd"


def make_volume(path: Path, gb: float, seed: int = 0) -> tuple[int, ...]:
    """Write a float32 (Z, 1024, 1024) OME-Zarr of ``gb`` GB, 16 planes at a time."""
    from fluorecon.core.meta import ImageMeta
    from fluorecon.io.ome_zarr import create_ome_zarr

    nz = max(16, int(round(gb * 1e9 / (4 * PLANE[0] * PLANE[1]))))
    shape = (nz, *PLANE)
    arr = create_ome_zarr(path, shape=shape, dtype=np.float32,
                          meta=ImageMeta(axes="ZYX", pixel_size={"Z": 0.5, "Y": 0.1,
                                                                 "X": 0.1}),
                          chunks=(16, 256, 256), compression=COMPRESSION)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: PLANE[0], : PLANE[1]].astype(np.float32)
    base = 100 + 50 * np.sin(yy / 37.0) * np.cos(xx / 23.0)
    for z0 in range(0, nz, 16):
        n = min(16, nz - z0)
        slab = base[None] + rng.poisson(20.0, size=(n, *PLANE)).astype(np.float32)
        arr[z0:z0 + n] = slab
    return shape


def _child_stream(src: str, out: str, compression: str) -> None:
    """Run in a fresh process: stream the volume, print peak RSS and wall time as JSON."""
    from fluorecon.io import read_image
    from fluorecon.predict.stream import stream_predict

    image, meta = read_image(src, lazy=True)
    t0 = time.perf_counter()
    stream_predict(_method(), image, meta.axes, out, meta=meta, source=src,
                   compression=compression)
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall_s": wall, "peak_rss_mb": peak_mb,
                      "voxels": int(np.prod(image.shape))}))


def memory_table(sizes: list[float], workdir: Path) -> list[str]:
    rows = ["| dataset (GB) | shape (ZYX) | peak RSS (MB) | wall (s) | throughput (MVox/s) |",
            "|---:|---|---:|---:|---:|"]
    for gb in sizes:
        src, out = workdir / f"vol_{gb:g}.ome.zarr", workdir / f"out_{gb:g}.ome.zarr"
        try:
            shape = make_volume(src, gb)
            res = subprocess.run([sys.executable, __file__, "--child-stream", str(src),
                                  str(out), COMPRESSION], capture_output=True, text=True,
                                 check=True)
            info = json.loads(res.stdout.strip().splitlines()[-1])
            real_gb = np.prod(shape) * 4 / 1e9
            rows.append(f"| {real_gb:.2f} | {shape[0]} x {shape[1]} x {shape[2]} | "
                        f"{info['peak_rss_mb']:.0f} | {info['wall_s']:.1f} | "
                        f"{info['voxels'] / 1e6 / info['wall_s']:.1f} |")
            print(rows[-1], file=sys.stderr, flush=True)
        finally:
            shutil.rmtree(src, ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(out.parent / f".{out.name}.partial", ignore_errors=True)
    return rows


def cluster_tables(gb: float, workdir: Path) -> list[str]:
    from fluorecon.io import read_image
    from fluorecon.predict.distributed import distributed_predict, make_client
    from fluorecon.predict.stream import stream_predict

    src = workdir / "tp.ome.zarr"
    shape = make_volume(src, gb, seed=1)
    vox = int(np.prod(shape))
    method = _method()
    times: dict[str, float] = {}
    try:
        image, meta = read_image(src, lazy=True)
        t0 = time.perf_counter()
        stream_predict(method, image, meta.axes, workdir / "inproc.zarr", source=str(src),
                       compression=COMPRESSION)
        times["in-process"] = time.perf_counter() - t0
        for n in (1, 2):
            t0 = time.perf_counter()
            client, cluster = make_client(n_workers=n, processes=True)
            client.wait_for_workers(n)
            times[f"startup {n}"] = time.perf_counter() - t0
            try:
                t0 = time.perf_counter()
                distributed_predict(method, src, None, workdir / f"w{n}.zarr", client=client,
                                    compression=COMPRESSION)
                times[f"{n} workers"] = time.perf_counter() - t0
            finally:
                client.close()
                cluster.close()
    finally:
        for name in ("tp.ome.zarr", "inproc.zarr", "w1.zarr", "w2.zarr"):
            shutil.rmtree(workdir / name, ignore_errors=True)
    base = times["in-process"]
    rows = [f"Volume {shape[0]} x {shape[1]} x {shape[2]} float32 "
            f"({vox * 4 / 1e9:.2f} GB).", "",
            "| run | cluster start-up (s) | wall (s) | throughput (MVox/s) | "
            "vs in-process |", "|---|---:|---:|---:|---:|",
            f"| in-process `stream_predict` | - | {base:.1f} | {vox / 1e6 / base:.1f} | "
            "1.00x |"]
    for n in (1, 2):
        t = times[f"{n} workers"]
        rows.append(f"| LocalCluster, {n} worker{'s' if n > 1 else ''} | "
                    f"{times[f'startup {n}']:.1f} | {t:.1f} | {vox / 1e6 / t:.1f} | "
                    f"{base / t:.2f}x |")
    over = (times["1 workers"] - base) / base
    rows += ["", f"Distributed overhead (1 worker vs in-process, start-up excluded): "
                 f"{100 * over:+.0f} %; speed-up 2 vs 1 workers: "
                 f"{times['1 workers'] / times['2 workers']:.2f}x."]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--sizes", type=float, nargs="+",
                        default=[0.25, 0.5, 1.0, 2.0, 4.0, 8.0], help="dataset sizes, GB")
    parser.add_argument("--throughput-gb", type=float, default=0.5)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/fluorecon-bench-scale"))
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-cluster", action="store_true")
    parser.add_argument("--compression", default="zstd",
                        help="OME-Zarr compression of input and output (zstd, lz4, none)")
    parser.add_argument("--child-stream", nargs=3, metavar=("SRC", "OUT", "COMPRESSION"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_stream:
        _child_stream(*args.child_stream)
        return
    global COMPRESSION
    COMPRESSION = args.compression
    sizes = [0.25, 0.5] if args.quick else args.sizes
    tp_gb = 0.125 if args.quick else args.throughput_gb
    args.workdir.mkdir(parents=True, exist_ok=True)
    try:
        load = os.getloadavg()
        lines = [f"Machine: {platform.machine()} {os.cpu_count()}-core CPU, no GPU; "
                 f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC; "
                 f"load average at start {load[0]:.1f}.",
                 f"Command: `{' '.join([os.path.basename(sys.executable), *sys.argv])}`", ""]
        if not args.skip_memory:
            lines += ["### Peak memory against dataset size (stream_predict)", "",
                      *memory_table(sizes, args.workdir), ""]
        if not args.skip_cluster:
            lines += ["### Throughput and overhead of the distributed path", "",
                      *cluster_tables(tp_gb, args.workdir), ""]
        lines.append(f"Load average at end: {os.getloadavg()[0]:.1f}.")
        print("\n".join(lines))
    finally:
        shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
