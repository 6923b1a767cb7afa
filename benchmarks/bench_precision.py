"""Benchmark: training in bf16 autocast against fp32 - quality and step time of Noise2Void.

``TrainingConfig.precision="auto"`` (the default) trains with bfloat16 autocast where the
device computes bf16 natively (CPUs with AMX, CUDA GPUs with bf16) and in fp32 elsewhere;
weights, gradients, Adam and the loss stay fp32. This script trains N2V in each of
``--precisions`` on three kinds of data, several seeds each, and reports the denoised
images' scores and the seconds per training step:

- ``w2s``: the five real W2S widefield pairs of ``../shared/data`` (trained on the five
  noisy images, applied to them, normalised PSNR/SSIM against the 400-frame averages);
- ``fmd``: the two real FMD pairs (the same, against the 50-frame averages);
- ``sim``: four simulated cell-like phantoms of 256 x 256 with shot noise and Gaussian
  read noise, scored against the noise-free phantoms.

U-Net depth 2, ``--filters`` filters, batch norm, CAREamics' channel layout (the
architecture of ``bench_learned.py``), patch ``--patch``, batch ``--batch-size``,
``--steps`` steps. The precisions alternate within each seed, so both see the same
machine load; the machine's bf16 capability is printed in the header (bf16 is several
times slower than fp32 on CPUs without AMX or AVX512-BF16).

Usage::

    python benchmarks/bench_precision.py [--precisions fp32,bf16] [--seeds 1,2,3]
        [--datasets w2s,fmd,sim] [--steps 300] [--batch-size 16] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--precisions", default="fp32,bf16")
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

    # benchmarks/ is on sys.path when run
    from bench_learned import run_header
    from bench_lr_batch import _datasets, _score

    from fluorecon.methods.learned import Noise2Void
    from fluorecon.methods.learned.training import native_bf16

    torch.set_num_threads(args.threads)
    os.environ["FLUORECON_NUM_THREADS"] = str(args.threads)
    precisions = args.precisions.split(",")
    seeds = [int(v) for v in args.seeds.split(",")]
    data = _datasets(args.datasets.split(","))
    runs: list[dict[str, object]] = []
    load = [os.getloadavg()[0]]
    for name, (xs, refs, normalised) in data.items():
        for seed in seeds:
            for precision in precisions:
                m = Noise2Void(depth=2, base_filters=args.filters, norm="batch", taper=True,
                               patch_size=args.patch, batch_size=args.batch_size,
                               steps=args.steps, seed=seed, precision=precision)
                t0 = time.perf_counter()
                m.fit(xs, axes="YX")
                train_s = time.perf_counter() - t0
                preds = [m.predict(x, "YX") for x in xs]
                p, s = _score(preds, refs, normalised)
                res = m.train_result
                runs.append({"data": name, "seed": seed, "precision": res.precision,
                             "psnr": p, "ssim": s, "best_step": res.best_step,
                             "train_s": train_s, "s_per_step": train_s / res.steps_done})
                print(json.dumps(runs[-1]), flush=True)
                load.append(os.getloadavg()[0])
    lines = [*run_header(__file__, argv, args.threads, load),
             f"CPU bf16: native (AMX) {native_bf16(torch.device('cpu'))}; "
             f"AVX512-BF16 {bool(getattr(torch.cpu, '_is_avx512_bf16_supported', bool)())}.",
             f"N2V, U-Net depth 2, {args.filters} filters, batch norm, CAREamics layout; patch "
             f"{args.patch}, batch {args.batch_size}, {args.steps} steps. PSNR dB / SSIM per "
             "seed (best validation step in brackets), the means over seeds, and the mean "
             "seconds per step of the whole fit (validation included).", "",
             "| data | precision | " + " | ".join(f"seed {s}" for s in seeds)
             + " | mean PSNR | mean SSIM | s/step |",
             "|---|---|" + "---|" * (len(seeds) + 3)]
    for name in data:
        for precision in sorted({str(r["precision"]) for r in runs}, reverse=True):
            rows = [r for r in runs if r["data"] == name and r["precision"] == precision]
            cells = [f"{r['psnr']:.2f} / {r['ssim']:.3f} ({r['best_step']})" for r in rows]
            ps = [float(r["psnr"]) for r in rows]  # type: ignore[arg-type]
            ss = [float(r["ssim"]) for r in rows]  # type: ignore[arg-type]
            sp = [float(r["s_per_step"]) for r in rows]  # type: ignore[arg-type]
            lines.append(f"| {name} | {precision} | " + " | ".join(cells)
                         + f" | {np.mean(ps):.2f} | {np.mean(ss):.3f} | {np.mean(sp):.3f} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
