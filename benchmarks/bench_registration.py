"""Registration benchmark: drift-estimation error and frames per second of fluorecon's
stabiliser (translation, rigid, flow) next to scikit-image's phase_cross_correlation, on
simulated drifting time-lapses at several photon levels. Prints a markdown table.

    python benchmarks/bench_registration.py [--quick]

No real time-lapse with motion is in ../shared/data (the STORM movies are of blinking
emitters, uncorrelated between frames), so the real-data part is reported as absent.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage
from scipy.signal import windows
from skimage.registration import phase_cross_correlation

from fluorecon.methods.classical.registration import apply_motion, estimate_motion
from fluorecon.simulate.motion import random_drift, simulate_timelapse
from fluorecon.simulate.phantoms import make_phantom


def _residual(s: object, corrected: np.ndarray) -> float:
    ref = corrected[0]
    m = 8
    core = (slice(1, None), slice(m, -m), slice(m, -m))
    diff = corrected[core] - ref[core[1:]]
    return float(np.sqrt(np.mean(diff ** 2)) / np.sqrt(np.mean(ref[core[1:]] ** 2)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller images, fewer frames")
    ap.add_argument("--net-steps", type=int, default=0, help="also train the learned "
                    "registration net for this many steps on each time-lapse (torch)")
    args = ap.parse_args()
    size, frames = (96, 8) if args.quick else (192, 20)
    big = ndimage.gaussian_filter(make_phantom("mixed", (int(size * 1.5),) * 2, seed=0), 1.5)
    drift = random_drift(frames, 2, step=1.5, seed=1)
    mats = np.tile(np.eye(3), (frames, 1, 1))
    mats[:, :2, 2] = drift
    print(f"Drift of {frames} frames of {size}x{size} px (random walk, 1.5 px rms per frame), "
          "error of the estimated translation per frame against the truth; frames/s of "
          "estimation; residual = RMS difference between the noise-free frames corrected "
          "with the estimate and the reference frame (interior), relative to the "
          "reference's RMS.\n")
    print("| photons | method | mean error (px) | max error (px) | residual | frames/s |")
    print("|---|---|---|---|---|---|")
    for photons in (None, 300.0, 50.0):
        s = simulate_timelapse(big, matrices=mats, shape=(size, size), photons=photons,
                               background=5.0, seed=2)
        label = "noise-free" if photons is None else f"{photons:g}"
        rows = []
        residual: dict[str, float] = {}
        t0 = time.perf_counter()
        sk = np.array([[0.0, 0.0]] + [-phase_cross_correlation(s.frames[0], s.frames[t],
                                                               upsample_factor=100)[0]
                                      for t in range(1, frames)])
        rows.append(("skimage phase_cross_correlation", sk, time.perf_counter() - t0))
        # fairer: the same Hann apodisation applied before scikit-image's estimator
        win = np.outer(windows.hann(size), windows.hann(size))
        t0 = time.perf_counter()
        skw = np.array([[0.0, 0.0]] + [-phase_cross_correlation(
            s.frames[0] * win, s.frames[t] * win, upsample_factor=100)[0]
            for t in range(1, frames)])
        rows.append(("skimage phase_cross_correlation + Hann window", skw,
                     time.perf_counter() - t0))
        for name, kw in (("fluorecon phase correlation (no refine)",
                          dict(model="translation", refine=False)),
                         ("fluorecon translation (refined)", dict(model="translation")),
                         ("fluorecon rigid", dict(model="rigid")),
                         ("fluorecon flow (rigid + TV-L1)", dict(model="flow"))):
            t0 = time.perf_counter()
            est = estimate_motion(s.frames, "TYX", **kw)
            rows.append((name, est.translations(), time.perf_counter() - t0))
            residual[name] = _residual(s, apply_motion(s.clean, "TYX", est, order=3))
        if args.net_steps:
            from fluorecon.methods.learned.registration_net import RegistrationNet

            t0 = time.perf_counter()
            net = RegistrationNet(steps=args.net_steps, patch_size=64).fit(s.frames, "TYX")
            t1 = time.perf_counter()
            est = net.estimate(s.frames, "TYX")
            name = f"fluorecon learned net ({args.net_steps} steps, {t1 - t0:.0f} s training)"
            rows.append((name, est.translations(), time.perf_counter() - t1))
            residual[name] = _residual(s, apply_motion(s.clean, "TYX", est, order=3))
        for name, tr, dt in rows:
            err = np.abs(tr - drift)[1:].max(axis=1)
            res = residual.get(name)
            print(f"| {label} | {name} | {err.mean():.3f} | {err.max():.3f} | "
                  f"{'-' if res is None else f'{res:.4f}'} | {frames / dt:.1f} |")


if __name__ == "__main__":
    main()
