"""Light-field benchmark: 3D Richardson-Lucy volume PSNR and seconds per volume.

Simulates bead volumes (40 beads, 9 planes 2 um apart, 48x48 lenslets of 1.5 um, 9x9 views, NA 0.8
water, 520 nm, sCMOS noise) through :mod:`fluorecon.simulate.lightfield`, and reconstructs
with :func:`fluorecon.methods.classical.lightfield.lightfield_richardson_lucy` for several
iteration counts. Reports volume PSNR / SSIM against the ground truth (percentile-normalised)
(plane by plane) and seconds per volume (one thread). The back-projection ``A^T y`` (one
adjoint) is
the non-iterative baseline. With ``--learned-steps N`` (needs torch; the U-Net takes at most 64
input channels, so the views are then 7x7) a VCD-Net-style
:class:`~fluorecon.methods.learned.lightfield_net.LightFieldNet` is trained on separately
simulated volumes and evaluated on the same test light fields.

Run::

    nice -n 5 python benchmarks/bench_lightfield.py --quick
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

import numpy as np

from fluorecon.methods.classical.lightfield import (
    LightFieldOperator,
    LightFieldOptics,
    lightfield_psf,
    lightfield_richardson_lucy,
)
from fluorecon.metrics.fidelity import normalized_psnr, normalized_ssim
from fluorecon.simulate.camera import camera_inverse
from fluorecon.simulate.lightfield import simulate_lightfield
from fluorecon.simulate.phantoms import beads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="32x32 lenslets, 5x5 views, 1 seed.")
    ap.add_argument("--learned-steps", type=int, default=0,
                    help="Train and add a learned light-field network (0: skip).")
    args = ap.parse_args()
    if args.quick:
        lenslets, views, planes, seeds = 32, 5, 5, [0]
    else:
        lenslets, views, planes, seeds = 48, (7 if args.learned_steps else 9), 9, [0, 1, 2]
    optics = LightFieldOptics(n_views=views, kernel_size=15)
    depths = 2.0 * (np.arange(planes) - (planes - 1) / 2)
    t0 = time.perf_counter()
    op = LightFieldOperator(lightfield_psf(optics, depths), (lenslets, lenslets))
    setup = time.perf_counter() - t0
    net = None
    if args.learned_steps:
        from fluorecon.methods.learned.lightfield_net import LightFieldNet

        t0 = time.perf_counter()
        net = LightFieldNet(optics=optics, planes=planes, z_step=2.0, lenslets=64,
                            n_volumes=16, patch_size=32, steps=args.learned_steps,
                            learning_rate=1e-3, seed=1000,
                            phantom_options={"n_beads": 40, "radius": (0.6, 1.2)}).fit()
        print(f"LightFieldNet: {args.learned_steps} steps, 16 volumes, trained in "
              f"{time.perf_counter() - t0:.0f} s")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; load "
          f"{os.getloadavg()[0]:.2f}; volume {planes}x{lenslets}x{lenslets}, {views}x{views} "
          f"views, operator setup {setup:.2f} s, seeds {seeds}")
    print()
    print("| photons | method | volume PSNR (dB) | volume SSIM | s / volume |")
    print("|---|---|---|---|---|")
    for photons in ([100.0, 1000.0] if args.quick else [50.0, 200.0, 1000.0]):
        res: dict[str, list[tuple[float, float, float]]] = {}
        for seed in seeds:
            vol = beads((planes, lenslets, lenslets), n_beads=40, radius=(0.6, 1.2), seed=seed)
            sim = simulate_lightfield(vol, optics=optics, depths=depths, photons=photons,
                                      rng=seed + 10)
            y = camera_inverse(sim.views, sim.camera)
            t0 = time.perf_counter()
            bp = op.adjoint(np.clip(y - sim.background, 0, None))
            t_bp = time.perf_counter() - t0
            res.setdefault("back-projection A^T y", []).append(
                (normalized_psnr(bp, sim.truth), normalized_ssim(bp, sim.truth, axes="TYX"), t_bp))
            if net is not None:
                t0 = time.perf_counter()
                pred = net.predict(y, background=sim.background)
                res.setdefault("learned (VCD-Net-style U-Net)", []).append(
                    (normalized_psnr(pred, sim.truth),
                     normalized_ssim(pred, sim.truth, axes="TYX"), time.perf_counter() - t0))
            for n in (10, 30, 100):
                rec = lightfield_richardson_lucy(y, op, n_iter=n, background=sim.background)
                res.setdefault(f"Richardson-Lucy {n} it.", []).append(
                    (normalized_psnr(rec.volume, sim.truth),
                     normalized_ssim(rec.volume, sim.truth, axes="TYX"), rec.seconds))
        for name, vals in res.items():
            v = np.array(vals).mean(axis=0)
            print(f"| {photons:g} | {name} | {v[0]:.2f} | {v[1]:.3f} | {v[2]:.3f} |")


if __name__ == "__main__":
    main()
