"""Unmixing benchmark: abundance RMSE of NNLS, least squares, phasor, blind NMF and (with
torch) the learned unmixing net, at several photon levels and spectral overlaps, on
simulated samples whose spectra are perturbed from the library (as in real samples).
Also a blind check on the real PICASSO spinal-cord image when ../shared/data is present.
Prints markdown tables.

    python benchmarks/bench_unmix.py [--quick] [--no-net]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from fluorecon.methods.classical.unmixing import linear_unmix, nmf_unmix, phasor_unmix
from fluorecon.simulate.camera import camera_inverse
from fluorecon.simulate.spectra import (
    Channel,
    abundance_maps,
    mixing_matrix,
    simulate_spectral,
)

CASES = {
    "low overlap (EGFP, mCherry)": ["EGFP", "mCherry"],
    "high overlap (EGFP, Alexa Fluor 488)": ["EGFP", "Alexa Fluor 488"],
    "3 dyes (DAPI, EGFP, tdTomato)": ["DAPI", "EGFP", "tdTomato"],
}
BANDS = [(450 + 25 * i, 475 + 25 * i) for i in range(10)]  # 450-700 nm, 10 channels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-net", action="store_true", help="skip the learned net")
    args = ap.parse_args()
    size = 64 if args.quick else 128
    steps = 150 if args.quick else 600
    chans = [Channel(lo, hi) for lo, hi in BANDS]
    print("Relative abundance RMSE (RMSE / photons at the map maximum), spectra perturbed "
          "by 3 nm peak shift and 8% width change; unmixing uses the library spectra.\n")
    print("| case | photons | nnls | ls | phasor | nmf (blind) | net |")
    print("|---|---|---|---|---|---|---|")
    for case, fl in CASES.items():
        net = None
        if not args.no_net:
            try:
                from fluorecon.methods.learned.unmixing_net import UnmixingNet

                t0 = time.perf_counter()
                net = UnmixingNet(fluorophores=fl, bands=BANDS, steps=steps, n_images=6,
                                  image_size=64).fit()
                train_s = time.perf_counter() - t0
            except ImportError:
                net = None
        lib = mixing_matrix(fl, chans)
        for photons in (50.0, 300.0, 2000.0):
            a = abundance_maps((size, size), len(fl), seed=11)
            s = simulate_spectral(a, fl, chans, photons=photons, peak_shift=3.0,
                                  width_change=0.08, autofluorescence=0.02 * photons, seed=12)
            y = camera_inverse(s.image, s.camera)

            def rel(est: np.ndarray) -> str:
                return f"{np.sqrt(np.mean((est - s.abundances) ** 2)) / photons:.4f}"

            cells = [rel(linear_unmix(y, lib, "CYX").abundances),
                     rel(linear_unmix(y, lib, "CYX", method="ls").abundances),
                     rel(phasor_unmix(y, lib, "CYX").abundances) if len(fl) <= 3 else "-"]
            nmf = nmf_unmix(y, "CYX", len(fl))
            # NMF's components come in its own order: match them to the truth by spectrum
            truth = s.mixing / s.mixing.sum(axis=0)
            cost = ((nmf.spectra[:, :, None] - truth[:, None, :]) ** 2).sum(axis=0)
            rows, cols = linear_sum_assignment(cost)
            matched = np.empty_like(nmf.abundances)
            matched[cols] = nmf.abundances[rows]
            cells.append(rel(matched))
            cells.append(rel(net.unmix(y, "CYX").abundances) if net is not None else "-")
            print(f"| {case} | {photons:g} | " + " | ".join(cells) + " |")
        if net is not None:
            print(f"|  (net trained {steps} steps in {train_s:.0f} s) | | | | | | |")
    real = Path(__file__).resolve().parents[2] / "shared" / "data" / \
        "spectral_picasso_spillover" / "mouse_spinalcord_small.tiff"
    if real.is_file():
        import tifffile

        img = tifffile.imread(real, key=range(4)).astype(np.float32)
        bg = np.percentile(img.reshape(4, -1), 1, axis=1)
        res = nmf_unmix(img, "CYX", 4, background=bg)
        corr_in = np.corrcoef(img.reshape(4, -1))
        corr_out = np.corrcoef(res.abundances.reshape(4, -1))
        print("\nReal PICASSO spinal cord (4 channels, no ground truth): Pearson correlation "
              "of channel pairs with spill-over (558->610 nm = channels 0-1, 687->740 nm = "
              "2-3), before and after blind NMF unmixing (4 components):\n")
        print("| pair | raw channels | NMF components |")
        print("|---|---|---|")
        for i, j in ((0, 1), (2, 3)):
            print(f"| {i}-{j} | {corr_in[i, j]:.3f} | {corr_out[i, j]:.3f} |")
    else:
        print("\n(real data absent: ../shared/data/spectral_picasso_spillover)")


if __name__ == "__main__":
    main()
