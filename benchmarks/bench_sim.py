"""SIM benchmark: resolution (FRC) and fidelity (PSNR/SSIM) of widefield vs Wiener-SIM.

Simulates filament phantoms (2x finer truth grid), raw 3x3 (or 3x5) TIRF-like SIM frames
(NA 1.4, 520 nm emission, 62.6 nm camera pixels, pattern at 0.85 of the OTF cutoff,
modulation 0.8, sCMOS noise) at several photon levels, estimates the pattern from the
frames, and reconstructs by generalised Wiener-SIM. For every method it reports

- FRC resolution (1/7, two independent noise realisations of the same field, per seed),
  evaluated up to just inside each image's passband (raw Nyquist for the widefield, the
  OTF cutoff for the deconvolved widefield, ``f_c + |k|`` for SIM: beyond it the spectra are
  zero and only window leakage correlates); ``<= x`` means the curve stayed above 1/7 up to
  that edge, so the band limit sets the resolution,
- PSNR and SSIM against the ground truth after percentile normalisation
  (``fluorecon.metrics.normalized_psnr/ssim``), on the central region (borders faded),
- seconds per reconstruction (estimation + Wiener, one thread).

With ``--learned-steps N`` (needs torch) a :class:`~fluorecon.methods.learned.sim_net.SIMNet`
is trained for ``N`` steps on separately simulated images (other seeds, photons drawn over
the benchmarked range) and evaluated on the same test acquisitions (its FRC from the two
noise realisations, like the others). With ``--real`` Wiener-SIM also runs on the
real rDL-SIM TIRF frames in ``../shared/data`` (estimated parameters; decorrelation
resolution of the SIM image vs the Wiener-deconvolved widefield; residual spectral peak at
the pattern frequencies).

Run::

    nice -n 5 python benchmarks/bench_sim.py --quick
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from fluorecon.methods.classical.sim import RadialOTF, read_mrc, sim_reconstruct
from fluorecon.metrics import frc
from fluorecon.metrics.fidelity import normalized_psnr, normalized_ssim
from fluorecon.simulate.camera import camera_inverse
from fluorecon.simulate.phantoms import filaments
from fluorecon.simulate.sim import simulate_sim

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "sim_rdl_microtubules"


def _frc_limit(a: np.ndarray, b: np.ndarray, spacing: float, fmax: float) -> str:
    """FRC 1/7 resolution in nm, or ``<= x`` when the curve stays above 1/7 up to the edge
    ``fmax`` of the image's passband (the resolution is then set by the band limit)."""
    r = frc(a, b, spacing=spacing, max_frequency=fmax)
    below = np.nonzero((r.correlation < 1 / 7) & (r.frequencies > 0.5))[0]
    if below.size:
        return f"{1000.0 / float(r.frequencies[below[0]]):.0f}"
    return f"<= {1000.0 / float(r.frequencies[-1]):.0f}"


def train_net(size: int, photons: list[float], n_phases: int, steps: int) -> Any:
    from fluorecon.methods.learned.sim_net import SIMNet

    t0 = time.perf_counter()
    net = SIMNet(n_phases=n_phases, image_size=min(size, 128), n_images=16, steps=steps,
                 base_filters=16,
                 photons=(min(photons), max(photons)), seed=1000).fit()
    print(f"SIM-net: {steps} steps, 16 images of {min(size, 128)} px, trained in "
          f"{time.perf_counter() - t0:.0f} s")
    return net


def run(size: int, photons: list[float], seeds: list[int], n_phases: int,
        net: Any = None) -> list[str]:
    rows = []
    for ph in photons:
        acc: dict[str, list[tuple[float, float, float, float]]] = {}
        frcs: dict[str, list[str]] = {}
        for seed in seeds:
            truth = filaments((2 * size, 2 * size), seed=seed, thickness=1.2)
            a = simulate_sim(truth, rng=seed + 100, photons=ph, n_phases=n_phases)
            b = simulate_sim(truth, rng=seed + 200, photons=ph, n_phases=n_phases,
                             pattern=a.pattern)
            otf = RadialOTF.from_optics(na=a.na, wavelength=a.wavelength, pixel_size=a.pixel_size)
            recs, secs = [], 0.0
            for s in (a, b):
                t0 = time.perf_counter()
                recs.append(sim_reconstruct(camera_inverse(s.frames, s.camera),
                                            pixel_size=s.pixel_size, otf=otf, n_phases=n_phases,
                                            background=s.background))
                secs += (time.perf_counter() - t0) / 2
            c = slice(40, -40)
            # Each image's passband edge: raw Nyquist, OTF cutoff, extended SIM support.
            edges = {"widefield": 0.5 / a.pixel_size, "widefield_deconvolved": otf.cutoff,
                     "image": recs[0].support}
            for name, attr in (("widefield", "widefield"),
                               ("widefield + Wiener deconvolution", "widefield_deconvolved"),
                               ("Wiener-SIM (estimated pattern)", "image")):
                i0, i1 = getattr(recs[0], attr), getattr(recs[1], attr)
                frcs.setdefault(name, []).append(
                    _frc_limit(i0, i1, recs[0].pixel_size, 0.97 * edges[attr]))
                acc.setdefault(name, []).append((
                    0.0,
                    normalized_psnr(i0[c, c], a.truth[c, c]),
                    normalized_ssim(i0[c, c], a.truth[c, c]),
                    secs if attr == "image" else float("nan")))
            if net is not None:
                preds, t_net = [], 0.0
                for s in (a, b):
                    t0 = time.perf_counter()
                    preds.append(net.predict(camera_inverse(s.frames, s.camera),
                                             background=s.background))
                    t_net += (time.perf_counter() - t0) / 2
                name = "learned SIM (U-Net, simulated training)"
                frcs.setdefault(name, []).append(
                    _frc_limit(preds[0], preds[1], recs[0].pixel_size,
                               0.97 * 0.5 / recs[0].pixel_size))
                acc.setdefault(name, []).append((
                    0.0, normalized_psnr(preds[0][c, c], a.truth[c, c]),
                    normalized_ssim(preds[0][c, c], a.truth[c, c]), t_net))
        for name, vals in acc.items():
            v = np.array(vals)
            sec = "-" if np.isnan(v[0, 3]) else f"{v[:, 3].mean():.2f}"
            rows.append(f"| {ph:g} | {name} | {', '.join(frcs[name])} | {v[:, 1].mean():.2f} | "
                        f"{v[:, 2].mean():.3f} | {sec} |")
    return rows


def real() -> list[str]:
    """Wiener-SIM on the real rDL-SIM TIRF frames: estimated parameters and image-based
    resolution (decorrelation analysis) against the Wiener-deconvolved widefield."""
    from fluorecon.methods.classical.sim.quality import (
        decorrelation_resolution,
        pattern_peak_ratio,
    )

    if not (SHARED / "MT.mrc").exists():
        return ["(real data absent)"]
    raw = read_mrc(SHARED / "MT.mrc")
    o = read_mrc(SHARED / "TIRF488_cam1_0_z30_OTF2d.mrc")
    otf = RadialOTF.from_profile(o.data.ravel(), o.spacing[2])
    lines = [f"rDL-SIM MT.mrc (9 x 256 x 256, 62.6 nm pixels), measured OTF, cutoff "
             f"{otf.cutoff:.2f} /um; expected pattern period 488 nm / (2 x 1.35) = "
             f"{488 / 2.7:.1f} nm", "",
             "| setting | periods (nm) | angles (deg) | modulation | peak/background | "
             "problems | decorrelation res. SIM / deconv. widefield (nm) | residual peak "
             "at +-k; +-2k (x ring) | s |", "|---|---|---|---|---|---|---|---|---|"]
    for label, kw in (("auto background, regular geometry", {}),
                      ("free geometry (no prior)", {"geometry": "free"}),
                      ("wiener 0.1, OTF attenuation 0.99", {"wiener": 0.1,
                                                             "attenuation_strength": 0.99})):
        t0 = time.perf_counter()
        rec = sim_reconstruct(raw.data, pixel_size=raw.spacing[2], otf=otf, background="auto",
                              **kw)
        sec = time.perf_counter() - t0
        est = rec.estimate
        assert est is not None
        p = est.pattern
        r_sim = decorrelation_resolution(rec.image, pixel_size=rec.pixel_size)
        r_wf = decorrelation_resolution(rec.widefield_deconvolved, pixel_size=rec.pixel_size)
        peaks = [pattern_peak_ratio(rec.image, m * p.wavevectors, pixel_size=rec.pixel_size)
                 for m in (1, 2)]
        lines.append(
            f"| {label} | {np.round(p.periods * 1000, 1).tolist()} | "
            f"{np.round(np.mod(np.degrees(p.angles), 180), 2).tolist()} | "
            f"{np.round(p.modulation, 2).tolist()} | {np.round(est.peak_ratio, 1).tolist()} "
            f"(prior: {est.constrained.astype(int).tolist()}) | "
            f"{'; '.join(est.problems()) or 'none'} | {1000 * r_sim:.0f} / {1000 * r_wf:.0f} | "
            f"{np.round(peaks[0], 1).tolist()}; {np.round(peaks[1], 1).tolist()} | {sec:.2f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="128-pixel frames, one seed.")
    ap.add_argument("--phases", type=int, default=3)
    ap.add_argument("--real", action="store_true", help="Also run on the shared real frames.")
    ap.add_argument("--learned-steps", type=int, default=0,
                    help="Train and add a learned SIM network (0: skip).")
    args = ap.parse_args()
    size, seeds = (128, [0]) if args.quick else (256, [0, 1, 2])
    photons = [50.0, 300.0] if args.quick else [30.0, 100.0, 300.0, 1000.0]
    net = train_net(size, photons, args.phases, args.learned_steps) if args.learned_steps \
        else None
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; load "
          f"{os.getloadavg()[0]:.2f}; frames {size}x{size}, 3x{args.phases}, seeds {seeds}")
    print()
    print("| photons | method | FRC resolution per seed (nm) | PSNR (dB) | SSIM "
          "| s / reconstruction |")
    print("|---|---|---|---|---|---|")
    for row in run(size, photons, seeds, args.phases, net):
        print(row)
    if args.real:
        print()
        for line in real():
            print(line)


if __name__ == "__main__":
    main()
