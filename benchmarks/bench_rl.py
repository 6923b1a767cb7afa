"""Richardson-Lucy speed and quality: fluorecon vs scikit-image on a simulated widefield stack.

Simulates a cell-like phantom (``fluorecon.simulate.make_phantom("mixed")``) kept one PSF
half-width away from every border, blurs it with a scalar widefield PSF (NA 1.4 oil,
520 nm, 100 nm pixels, 200 nm planes) by linear ('same', zero-padded) convolution, adds
Poisson noise, and runs 30 RL iterations with

- ``skimage.restoration.richardson_lucy(image, psf, num_iter=30, clip=False)``,
- ``fluorecon`` ``richardson_lucy`` with its default ``boundary="auto"`` (which resolves to
  ``"periodic"`` here, the borders being dark) and with ``boundary="pad"`` forced,
  each first with an empty FFTW wisdom cache (planning counted) and then again with the
  wisdom in place (what every later run on this machine and shape costs).

Because nothing lies within a PSF half-width of the borders, scikit-image's zero-padded
model, the periodic model and the padded model are the same forward model here, so
PSNRs are comparable. PSNR is against the ground truth after the same least-squares
affine fit for every method.

Run::

    python benchmarks/bench_rl.py --out /tmp/bench_rl.md

Prints a markdown table (and writes it to ``--out`` if given).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _affine_psnr(est: np.ndarray, truth: np.ndarray) -> float:
    """PSNR (dB) of ``a * est + b`` against ``truth``, with (a, b) fitted by least squares."""
    e = est.astype(np.float64).ravel()
    t = truth.astype(np.float64).ravel()
    a, b = np.polyfit(e, t, 1)
    mse = float(np.mean((a * e + b - t) ** 2))
    return 10.0 * np.log10((t.max() - t.min()) ** 2 / mse)


def _simulate(shape: tuple[int, ...], psf_shape: tuple[int, ...], peak: float,
              seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from scipy.signal import fftconvolve

    from fluorecon.simulate.phantoms import make_phantom
    from fluorecon.simulate.psf import widefield_psf

    psf = widefield_psf(psf_shape, na=1.4, wavelength=0.52, pixel_size=0.1, z_step=0.2)
    margin = [m // 2 for m in psf_shape]
    inner = tuple(n - 2 * h for n, h in zip(shape, margin))
    truth = np.zeros(shape, np.float32)
    truth[tuple(slice(h, h + n) for h, n in zip(margin, inner))] = \
        make_phantom("mixed", inner, seed=seed) * np.float32(peak)
    blurred = np.maximum(fftconvolve(truth, psf, mode="same"), 0)
    image = np.random.default_rng(seed + 1).poisson(blurred).astype(np.float32)
    return truth, psf, image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs="+", default=[128, 256, 256])
    parser.add_argument("--psf-shape", type=int, nargs="+", default=[63, 63, 63])
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--peak", type=float, default=100.0,
                        help="phantom maximum in photons (before blur)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-skimage", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)

    # A fresh wisdom cache so that the first fluorecon run pays for planning honestly.
    with tempfile.TemporaryDirectory(prefix="fluorecon-bench-cache-") as cache:
        os.environ["FLUORECON_CACHE_DIR"] = cache
        return _run(args)


def _run(args: argparse.Namespace) -> int:

    from fluorecon.methods.classical.deconvolution import richardson_lucy_result
    from fluorecon.methods.fft_backend import default_threads, have_pyfftw

    shape, psf_shape, n_it = tuple(args.shape), tuple(args.psf_shape), args.iterations
    load_before = os.getloadavg()
    truth, psf, image = _simulate(shape, psf_shape, args.peak, args.seed)
    blurred_psnr = _affine_psnr(image, truth)

    rows = []
    sk_total = None
    sk_psnr = None
    if not args.skip_skimage:
        from skimage.restoration import richardson_lucy as sk_rl

        t0 = time.perf_counter()
        sk = sk_rl(image, psf, num_iter=n_it, clip=False)
        sk_total = time.perf_counter() - t0
        sk_psnr = _affine_psnr(sk, truth)
        rows.append(("scikit-image 0.%s richardson_lucy" % _skimage_minor(), "zero ('same')",
                     "-", sk_total, 0.0, sk_total / n_it, 1.0, sk_psnr))
        del sk

    for boundary in ("auto", "pad"):
        for wisdom in ("cold", "warm"):
            t0 = time.perf_counter()
            res = richardson_lucy_result(image, psf, iterations=n_it, boundary=boundary)
            total = time.perf_counter() - t0
            plan = res.info.planning_seconds
            psnr = _affine_psnr(res.image, truth)
            speed = sk_total / total if sk_total else float("nan")
            rows.append((f"fluorecon richardson_lucy ({res.info.fft_backend})",
                         f"{boundary}{'' if boundary == res.info.boundary else ' -> ' + res.info.boundary}"
                         f" {'x'.join(map(str, res.info.work_shape))}", wisdom,
                         total, plan, (total - plan) / n_it, speed, psnr))
    load_after = os.getloadavg()

    import numpy
    import scipy

    lines = [
        "### Richardson-Lucy: fluorecon vs scikit-image",
        "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} logical CPUs ({default_threads()} usable); load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after",
        f"- software: Python {platform.python_version()}, NumPy {numpy.__version__}, "
        f"SciPy {scipy.__version__}, pyFFTW {'yes' if have_pyfftw() else 'no'}",
        f"- command: `python {' '.join([Path(sys.argv[0]).as_posix()] + sys.argv[1:])}`",
        f"- data: {'x'.join(map(str, shape))} float32 'mixed' phantom (peak {args.peak:g} "
        f"photons, {min(m // 2 for m in psf_shape)}+ px from borders), widefield PSF "
        f"{'x'.join(map(str, psf_shape))} (NA 1.4, 520 nm, 100 nm px, 200 nm planes), "
        f"linear blur + Poisson noise; {n_it} iterations; blurred input PSNR "
        f"{blurred_psnr:.2f} dB",
        "- PSNR: against ground truth after a least-squares affine fit (same for all rows); "
        "cold = empty FFTW wisdom cache (planning included in total), warm = wisdom cached",
        "",
        "| implementation | boundary / FFT grid | wisdom | total s | planning s "
        "| s / iteration | speed-up | PSNR dB | dPSNR vs skimage |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, bnd, wis, total, plan, per_it, speed, psnr in rows:
        dpsnr = psnr - sk_psnr if sk_psnr is not None else float("nan")
        lines.append(f"| {name} | {bnd} | {wis} | {total:.2f} | {plan:.2f} | {per_it:.3f} "
                     f"| {speed:.1f}x | {psnr:.2f} | {dpsnr:+.3f} |")
    lines.append("")
    lines.append("s / iteration excludes FFT planning; speed-up is on total time.")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out is not None:
        args.out.write_text(table, encoding="utf-8")
    return 0


def _skimage_minor() -> str:
    import skimage

    return skimage.__version__.split(".", 1)[1]


if __name__ == "__main__":
    raise SystemExit(main())
