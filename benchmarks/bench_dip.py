"""Benchmark: Deep Image Prior on real noisy / high-SNR pairs: quality, the stopping rule
against the oracle iteration, and seconds per iteration.

For each noisy image with a high-SNR reference in ``../shared/data/denoise_w2s_fmd_8bit``
(the five W2S fields and the two FMD fields; a central crop, default 256x256, to keep the
per-image fits short) fluorecon's ``dip`` runs with its defaults (held-out pixels decide
when to stop) and a monitor that scores the averaged output against the reference at
every iteration. Reported per image: normalised PSNR / SSIM of the noisy input, of the
calibrated classical denoisers (``gaussian``, ``tv``) and of DIP's returned output; the
iteration DIP stopped at and the one it returned; the oracle iteration (the monitored
average with the highest PSNR, within the iterations run: unknowable without the
reference) and its PSNR; and seconds per iteration. Each precision runs in its own
process (``--precisions fp32,bf16``).

Usage::

    python benchmarks/bench_dip.py [--crop 256] [--precisions fp32] [--max-iterations 3000]
        [--threads 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_learned import _run_worker, emit_report, run_header  # benchmarks/ on sys.path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / ".." / "shared" / "data" / "denoise_w2s_fmd_8bit"


def _pairs(data: Path, crop: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``name -> (noisy, reference)``, float32, centrally cropped to ``crop``."""
    import tifffile
    from skimage import io as skio

    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for noisy in sorted((data / "w2s").glob("input_avg1_*.tif")):
        ident = noisy.stem.removeprefix("input_avg1_")
        out[f"w2s {ident}"] = (tifffile.imread(noisy),
                               tifffile.imread(data / "w2s" / f"target_avg400_{ident}.tif"))
    fmd = data / "fmd"
    for raw, ref in (("Confocal_FISH_3_raw.png", "Confocal_FISH_3_gt.png"),
                     ("image_R_1_001.png", "image_R_1_avg50.png")):
        if (fmd / raw).exists():
            out[f"fmd {raw.split('.')[0]}"] = (skio.imread(fmd / raw), skio.imread(fmd / ref))
    cropped = {}
    for name, (x, y) in out.items():
        x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
        if x.ndim == 3:  # RGB(A) copies of grey images
            x, y = x[..., 0], y[..., 0]
        c = [max((n - crop) // 2, 0) for n in x.shape]
        sl = tuple(slice(a, a + min(crop, n)) for a, n in zip(c, x.shape))
        cropped[name] = (x[sl], y[sl])
    return cropped


def _worker(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    from fluorecon.methods import create
    from fluorecon.methods.learned import DIPConfig, deep_image_prior
    from fluorecon.metrics import evaluate, normalized_psnr

    torch.set_num_threads(job["threads"])
    pairs = _pairs(Path(job["data"]), job["crop"])
    rows: dict[str, Any] = {}
    cfg = DIPConfig(precision=job["precision"], max_iterations=job["max_iterations"])
    for name, (noisy, ref) in pairs.items():
        row: dict[str, Any] = {}
        for label, img in [("noisy", noisy)] + [
                (m, create(m).predict(noisy, "YX")) for m in job["classical"]]:
            s = evaluate(img, ref, axes="YX")
            row[label] = (s["psnr_normalized"], s["ssim_normalized"])
        curve: list[float] = []
        t0 = time.perf_counter()
        out, res = deep_image_prior(noisy, config=cfg, monitor=lambda it, avg: curve.append(
            normalized_psnr(avg, ref, axes="YX")))
        seconds = time.perf_counter() - t0
        s = evaluate(out, ref, axes="YX")
        oracle = int(np.argmax(curve))
        row.update(dip=(s["psnr_normalized"], s["ssim_normalized"]),
                   stopped=res.iterations, returned=res.best_iteration,
                   oracle=oracle + 1, oracle_psnr=curve[oracle],
                   s_per_it=seconds / res.iterations, precision=job["precision"])
        rows[name] = row
        print(name, row, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--precisions", default="fp32")
    ap.add_argument("--max-iterations", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(_worker(json.loads(args.job))))
        return 0
    if not (args.data / "w2s").is_dir():
        print(f"no data at {args.data}", file=sys.stderr)
        return 1
    classical = ["gaussian", "tv"]
    results: dict[str, dict[str, Any]] = {}
    load = [os.getloadavg()[0]]
    for precision in [p.strip() for p in args.precisions.split(",") if p.strip()]:
        job = {"data": str(args.data.resolve()), "crop": args.crop, "threads": args.threads,
               "precision": precision, "max_iterations": args.max_iterations,
               "classical": classical}
        results[precision] = _run_worker(sys.executable, "dip", job, script=__file__)
        load.append(os.getloadavg()[0])
    out = [*run_header(__file__, argv, args.threads, load),
           f"Central {args.crop}x{args.crop} crops; normalised PSNR dB / SSIM against the "
           "high-SNR reference; DIP defaults (depth 3, 16 filters, held-out 10 %, patience "
           "200); oracle = best monitored average within the iterations run.", "",
           "| image | precision | noisy | gaussian | tv | DIP | stopped / returned | oracle "
           "iteration | oracle PSNR | s / iteration |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    means: dict[str, list[list[float]]] = {}
    for precision, rows in results.items():
        for name, r in rows.items():
            cells = [f"{r[k][0]:.2f} / {r[k][1]:.3f}" for k in ["noisy", *classical, "dip"]]
            out.append(f"| {name} | {precision} | {' | '.join(cells)} | {r['stopped']} / "
                       f"{r['returned']} | {r['oracle']} | {r['oracle_psnr']:.2f} | "
                       f"{r['s_per_it']:.4f} |")
            means.setdefault(precision, []).append(
                [r["noisy"][0], *(r[k][0] for k in classical), r["dip"][0], r["oracle_psnr"],
                 r["s_per_it"]])
    for precision, vals in means.items():
        m = np.mean(np.asarray(vals), axis=0)
        out.append(f"| mean PSNR | {precision} | {m[0]:.2f} | {m[1]:.2f} | {m[2]:.2f} | "
                   f"{m[3]:.2f} | | | {m[4]:.2f} | {m[5]:.4f} |")
    return emit_report(out, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
