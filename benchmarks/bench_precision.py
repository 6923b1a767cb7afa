"""Benchmark: training in bf16 autocast against fp32 - quality and step time of Noise2Void.

``TrainingConfig.precision="bf16"`` trains with bfloat16 autocast (weights, gradients,
Adam and the loss stay fp32); ``"auto"`` does so only where the device computes bf16
natively (CPUs with AMX, CUDA GPUs with bf16); the default is ``"fp32"``. This script
trains N2V in each of ``--precisions`` on three kinds of data, several seeds each, and
reports the denoised images' scores and the seconds per training step:

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
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    # benchmarks/ is on sys.path when run
    from bench_learned import run_header
    from bench_lr_batch import n2v_sweep, n2v_sweep_args, sweep_report

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--precisions", default="fp32,bf16")
    args = n2v_sweep_args(ap, argv)
    import torch

    from fluorecon.methods.learned.training import native_bf16

    data, runs, load = n2v_sweep(args, "precision", args.precisions.split(","))
    head = [*run_header(__file__, argv, args.threads, load),
            f"CPU bf16: native (AMX) {native_bf16(torch.device('cpu'))}; "
            f"AVX512-BF16 {bool(getattr(torch.cpu, '_is_avx512_bf16_supported', bool)())}."]
    resolved = sorted({str(r["precision"]) for r in runs}, reverse=True)  # auto resolved
    return sweep_report(args, head, "the means over seeds, and the mean seconds per step "
                        "of the whole fit (validation included)", data, runs, "precision",
                        [(p, p) for p in resolved],
                        ("s/step", lambda rows: f"{np.mean([r['s_per_step'] for r in rows]):.3f}"))


if __name__ == "__main__":
    sys.exit(main())
