"""Benchmark: Adam's learning rate for Noise2Void at the default batch of 16 patches.

fluorecon's default peak learning rate is ``1e-3`` up to 32 patches per step and grows with
the square root of the batch above that (``training.default_learning_rate``). One seed of
a simulated case trained unstably at batch 16 and ``1e-3`` (``docs/benchmarks.md``,
"structN2V on noise correlated along X"), which the square-root rule extended below 32
patches (``1e-3 * sqrt(16 / 32) = 7.07e-4``) would have avoided. This script trains N2V
at each ``--lrs`` on three kinds of data, several seeds each, and scores the denoised
images against their references:

- ``w2s``: the five real W2S widefield pairs of ``../shared/data`` (trained on the five
  noisy images, applied to them, normalised PSNR/SSIM against the 400-frame averages);
- ``fmd``: the two real FMD pairs (the same, against the 50-frame averages);
- ``sim``: four simulated cell-like phantoms of 256 x 256 with shot noise and Gaussian
  read noise (``bench_struct_n2v``'s white-noise case, seed 1 data), scored against the
  noise-free phantoms.

U-Net depth 2, ``--filters`` filters, batch norm, CAREamics' channel layout (the
architecture of ``bench_learned.py``), patch ``--patch``, batch ``--batch-size``,
``--steps`` steps with fluorecon's cosine schedule and best-validation weights. Only
quality is measured (the wall times are for orientation).

Usage::

    python benchmarks/bench_lr_batch.py [--lrs 1e-3,7.07e-4] [--seeds 1,2,3]
        [--datasets w2s,fmd,sim] [--steps 300] [--batch-size 16] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "denoise_w2s_fmd_8bit"
FMD_PAIRS = (("image_R_1_001.png", "image_R_1_avg50.png"),
             ("Confocal_FISH_3_raw.png", "Confocal_FISH_3_gt.png"))


def _datasets(names: list[str]) -> dict[str, tuple[list[np.ndarray], list[np.ndarray], bool]]:
    """name -> (noisy images, references, whether references need normalised scoring)."""
    out = {}
    if "w2s" in names:
        from bench_learned import _read_w2s  # benchmarks/ is on sys.path when run

        pairs = _read_w2s(DATA / "w2s")
        out["w2s"] = ([p[0] for p in pairs.values()], [p[1] for p in pairs.values()], True)
    if "fmd" in names:
        import imageio.v3 as iio

        xs = [iio.imread(DATA / "fmd" / a).astype(np.float32) for a, _ in FMD_PAIRS]
        ys = [iio.imread(DATA / "fmd" / b).astype(np.float32) for _, b in FMD_PAIRS]
        out["fmd"] = (xs, ys, True)
    if "sim" in names:
        from bench_struct_n2v import _simulate

        sim = _simulate(argparse.Namespace(size=256, images=4, photons=30.0, read_noise=4.0,
                                           seed=1))
        out["sim"] = (list(sim["white"]), list(sim["clean"]), False)
    return out


def _score(preds: list[np.ndarray], refs: list[np.ndarray], normalised: bool
           ) -> tuple[float, float]:
    from fluorecon.metrics import evaluate, psnr, ssim

    ps, ss = [], []
    for p, r in zip(preds, refs):
        if normalised:  # 8-bit files stretched independently: affine fit to the reference
            s = evaluate(p, r, axes="YX")
            ps.append(s["psnr_normalized"])
            ss.append(s["ssim_normalized"])
        else:
            rng = float(r.max() - r.min())
            ps.append(psnr(p, r, data_range=rng))
            ss.append(ssim(p, r, data_range=rng))
    return float(np.mean(ps)), float(np.mean(ss))


def n2v_sweep_args(ap: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Add the options shared with ``bench_precision.py``, parse ``argv`` and set the
    thread count (torch and fluorecon)."""
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--datasets", default="w2s,fmd,sim")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--filters", type=int, default=32)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--quick", action="store_true", help="10 steps, one seed: a smoke run")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--json", type=Path, help="also write every run's scores here")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.seeds = 10, args.seeds.split(",")[0]
    import torch

    torch.set_num_threads(args.threads)
    os.environ["FLUORECON_NUM_THREADS"] = str(args.threads)
    return args


def n2v_sweep(args: argparse.Namespace, key: str, values: list[Any]
              ) -> tuple[list[str], list[dict[str, Any]], list[float]]:
    """Train and score N2V for every data set x seed x ``values`` of the config field
    ``key`` (the values alternate within each seed). Returns the data names, one record
    per run and the 1-min loads seen."""
    from fluorecon.methods.learned import Noise2Void

    seeds = [int(v) for v in args.seeds.split(",")]
    data = _datasets(args.datasets.split(","))
    runs: list[dict[str, Any]] = []
    load = [os.getloadavg()[0]]
    for name, (xs, refs, normalised) in data.items():
        for seed in seeds:
            for value in values:
                m = Noise2Void(depth=2, base_filters=args.filters, norm="batch", taper=True,
                               patch_size=args.patch, batch_size=args.batch_size,
                               steps=args.steps, seed=seed, **{key: value})
                t0 = time.perf_counter()
                m.fit(xs, axes="YX")
                train_s = time.perf_counter() - t0
                preds = [m.predict(x, "YX") for x in xs]
                p, s = _score(preds, refs, normalised)
                res = m.train_result
                # "precision" is the resolved one (also when key is "precision": auto)
                runs.append({"data": name, "seed": seed, key: value, "psnr": p, "ssim": s,
                             "best_step": res.best_step, "precision": res.precision,
                             "train_s": train_s, "s_per_step": train_s / res.steps_done})
                print(json.dumps(runs[-1]), flush=True)
                load.append(os.getloadavg()[0])
    return list(data), runs, load


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lrs", default="1e-3,7.07e-4")
    args = n2v_sweep_args(ap, argv)
    lrs = [float(v) for v in args.lrs.split(",")]
    data, runs, load = n2v_sweep(args, "learning_rate", lrs)
    from bench_learned import run_header  # benchmarks/ is on sys.path when run

    return sweep_report(args, [*run_header(__file__, argv, args.threads, load)],
                        "then the mean over seeds", data, runs, "learning_rate",
                        [(f"{lr:.3g}", lr) for lr in lrs],
                        ("worst PSNR", lambda rows: f"{min(r['psnr'] for r in rows):.2f}"))


def sweep_report(args: argparse.Namespace, head: list[str], what: str, data: list[str],
                 runs: list[dict[str, Any]], key: str, values: list[tuple[str, Any]],
                 last: tuple[str, Callable[[list[dict[str, Any]]], str]]) -> int:
    """Print (and write to ``--out``/``--json``) the table of a :func:`n2v_sweep`: one row
    per data set and ``(label, value)`` of ``key``, the seeds' PSNR / SSIM, their means
    and a ``last`` column (header, function of the row's runs)."""
    seeds = [int(v) for v in args.seeds.split(",")]
    lines = [*head,
             f"N2V, U-Net depth 2, {args.filters} filters, batch norm, CAREamics layout; patch "
             f"{args.patch}, batch {args.batch_size}, {args.steps} steps. PSNR dB / SSIM per "
             f"seed (best validation step in brackets), {what}.", "",
             f"| data | {key.replace('_', ' ')} | " + " | ".join(f"seed {s}" for s in seeds)
             + f" | mean PSNR | mean SSIM | {last[0]} |",
             "|---|---|" + "---|" * (len(seeds) + 3)]
    for name in data:
        for label, value in values:
            rows = [r for r in runs if r["data"] == name and r[key] == value]
            cells = [f"{r['psnr']:.2f} / {r['ssim']:.3f} ({r['best_step']})" for r in rows]
            ps = [float(r["psnr"]) for r in rows]
            ss = [float(r["ssim"]) for r in rows]
            lines.append(f"| {name} | {label} | " + " | ".join(cells)
                         + f" | {np.mean(ps):.2f} | {np.mean(ss):.3f} | {last[1](rows)} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
