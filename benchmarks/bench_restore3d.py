"""Learned deconvolution, upsampling and isotropic restoration against their classical baselines.

On held-out simulated data (phantoms the networks never saw, degraded by the same physical
forward model) and on the real data in ``../shared/data``:

1. **2D deconvolution** (widefield Born-Wolf PSF, NA 1.2, 520 nm, 65 nm pixels, sCMOS noise
   at 200 peak photons): raw input, Wiener (balance estimated from the image), Richardson-
   Lucy (30 iterations), RL-TV (30 iterations, lambda 0.002) and ``deconv`` trained on
   ``mixed`` phantoms.
2. **Upsampling** 2x and 4x (lateral binning of blurred phantoms, 200 peak photons): cubic
   spline interpolation ("bicubic") and ``upsample``.
3. **Isotropic restoration** of a simulated 3D stack (beads and cell-like structures,
   isotropic truth, axial blur + every 4th plane kept, Poisson noise): the Z-interpolated
   stack and ``iso`` trained on the stack itself; bead FWHM anisotropy (axial / lateral)
   and PSNR against the isotropic truth.
4. **Real data**: flowdec "hollow bars" (synthetic object with exact ground truth, shipped
   PSF; scale-invariant normalised PSNR/SSIM), the PSF distilled from the real flowdec bead
   stack against the shipped PSF, and ``iso`` on the real deconwolf DAPI stack (no ground
   truth: single-image FRC of a central XZ slice, optimistic for processed images).

Reports PSNR / SSIM against the ground truth, FRC resolution (single-image, 1/7
threshold) and seconds per megapixel of prediction (per voxel-megapixel in 3D; training
time separately). Run::

    nice -n 5 python benchmarks/bench_restore3d.py --out /tmp/bench_restore3d.md
    python benchmarks/bench_restore3d.py --quick          # a few minutes

Prints markdown tables (and writes them to ``--out`` if given).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _table(title: str, header: list[str], rows: list[list[str]]) -> str:
    out = [f"### {title}", "", "| " + " | ".join(header) + " |",
           "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def _frc_nm(img: np.ndarray, spacing: float) -> str:
    from fluorecon.metrics.fourier_correlation import single_image_frc

    res = single_image_frc(img, spacing=spacing)
    r = res.resolution_1_7
    if np.isnan(r):  # never drops below 1/7: finer than the split can show
        return f"< {1000 / res.frequencies[-1]:.0f}"
    return "inf" if not np.isfinite(r) else f"{1000 * r:.0f}"


def _learned_kwargs(steps: int, ndim: int, patch: int = 64) -> dict:
    if ndim == 2:
        return dict(steps=steps, patch_size=patch, batch_size=16, depth=2, base_filters=16,
                    learning_rate=1e-3, validation_interval=max(25, steps // 10),
                    validation_patches=16, lr_schedule="cosine", keep_best=True)
    return dict(steps=steps, patch_size=(16, 32, 32), batch_size=8, depth=2, base_filters=8,
                learning_rate=1e-3, validation_interval=max(25, steps // 10),
                validation_patches=8, lr_schedule="cosine", keep_best=True)


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


# -- 1. 2D deconvolution --------------------------------------------------------------------
def bench_deconv2d(args: argparse.Namespace) -> str:
    from fluorecon.methods.classical.deconvolution import richardson_lucy, wiener
    from fluorecon.methods.learned import LearnedDeconvolution
    from fluorecon.metrics import psnr, ssim
    from fluorecon.simulate.psf import widefield_psf
    from fluorecon.simulate.semisynthetic import degrade, phantom_images

    n = 128 if args.quick else 256
    psf = widefield_psf((33, 33), na=1.2, wavelength=0.52, pixel_size=0.065)
    train = phantom_images("mixed", (n, n), 4 if args.quick else 8, seed=1)
    test = phantom_images("mixed", (n, n), 2, seed=100)
    raws = [degrade(t, psf=psf, photons=200.0, rng=200 + i) for i, t in enumerate(test)]
    dec = LearnedDeconvolution(photons=200.0, **_learned_kwargs(args.steps, 2))
    _, t_train = _timed(dec.fit, train, "YX", psf=psf)
    methods = {
        "raw input": lambda r: r,
        "Wiener (auto balance)": lambda r: wiener(r, psf),
        "Richardson-Lucy (30 it)": lambda r: richardson_lucy(np.clip(r, 0, None), psf,
                                                             iterations=30),
        "RL-TV (30 it, 0.002)": lambda r: richardson_lucy(np.clip(r, 0, None), psf,
                                                          iterations=30, tv_weight=0.002),
        f"deconv (learned, {args.steps} steps)": lambda r: dec.predict(r, "YX"),
    }
    rows = []
    for name, fn in methods.items():
        ps, ss, fr, secs = [], [], [], 0.0
        for raw, truth in zip(raws, test):
            out, dt = _timed(fn, raw)
            secs += dt
            ps.append(psnr(out, truth))
            ss.append(ssim(out, truth))
            fr.append(_frc_nm(out, 0.065))
        mp = len(raws) * n * n / 1e6
        rows.append([name, f"{np.mean(ps):.2f}", f"{np.mean(ss):.3f}", fr[0],
                     "-" if name == "raw input" else f"{secs / mp:.2f}"])
    return _table(f"2D deconvolution, held-out phantoms ({len(test)} x {n}x{n}, widefield NA 1.2,"
                  f" 200 photons); learned training {t_train:.0f} s",
                  ["method", "PSNR (dB)", "SSIM", "FRC 1/7 (nm, image 1)", "s / MP"], rows)


# -- 2. upsampling ----------------------------------------------------------------------------
def bench_upsample(args: argparse.Namespace) -> str:
    from fluorecon.methods.learned import LearnedUpsampling
    from fluorecon.metrics import psnr, ssim
    from fluorecon.simulate.degrade import blur, downsample
    from fluorecon.simulate.psf import gaussian_psf
    from fluorecon.simulate.semisynthetic import add_camera_noise, camera_preset, phantom_images

    n = 128 if args.quick else 256
    psf = gaussian_psf((15, 15), 1.0)
    train = [blur(p, psf) for p in phantom_images("filaments", (n, n), 4 if args.quick else 8,
                                                  seed=3)]
    test = [blur(p, psf) for p in phantom_images("filaments", (n, n), 2, seed=300)]
    rows = []
    for factor in (2, 4):
        up = LearnedUpsampling(factor=factor, photons=200.0, **_learned_kwargs(args.steps, 2))
        _, t_train = _timed(up.fit, train, "YX")
        lows = [add_camera_noise(downsample(t, factor), photons=200.0,
                                 camera=camera_preset("scmos"), rng=400 + i)
                for i, t in enumerate(test)]
        for name, fn in (("bicubic (cubic spline)", lambda x: up.interpolate(x, "YX")),
                         (f"upsample (learned, {args.steps} steps)",
                          lambda x: up.predict(x, "YX"))):
            ps, ss, secs = [], [], 0.0
            for low, truth in zip(lows, test):
                out, dt = _timed(fn, low)
                secs += dt
                ps.append(psnr(out, truth))
                ss.append(ssim(out, truth))
            mp = len(lows) * n * n / 1e6
            rows.append([f"{factor}x", name, f"{np.mean(ps):.2f}", f"{np.mean(ss):.3f}",
                         f"{secs / mp:.2f}", f"{t_train:.0f}" if "learned" in name else "-"])
    return _table(f"Upsampling, held-out filaments ({len(test)} x {n}x{n} targets, 200 photons)",
                  ["factor", "method", "PSNR (dB)", "SSIM", "s / output MP", "training s"],
                  rows)


# -- 3. isotropic restoration ---------------------------------------------------------------
def _anisotropy(vol: np.ndarray, centres: np.ndarray, half: int = 6) -> float:
    from fluorecon.core import DataError
    from fluorecon.simulate.psf import psf_fwhm

    bg = np.median(vol)
    ws = []
    for c in centres:
        if np.any(c < half) or np.any(c >= np.array(vol.shape) - half):
            continue
        sl = tuple(slice(int(x) - half, int(x) + half + 1) for x in c)
        try:
            ws.append(psf_fwhm(np.clip(vol[sl] - bg, 0, None)))
        except DataError:
            continue
    w = np.median(np.array(ws), axis=0)
    return float(w[0] / w[1:].mean())


def bench_iso(args: argparse.Namespace) -> str:
    from fluorecon.methods.learned import IsotropicCARE
    from fluorecon.metrics import psnr, ssim
    from fluorecon.simulate.degrade import axial_anisotropy, blur
    from fluorecon.simulate.phantoms import make_phantom
    from fluorecon.simulate.psf import gaussian_psf

    rng = np.random.default_rng(5)
    f = 4
    shape = (64, 96, 96) if args.quick else (96, 128, 128)
    pts = np.zeros(shape, np.float32)
    centres = rng.integers(6, np.array(shape) - 6, (80, 3))
    pts[tuple(centres.T)] = 1.0
    obj = 0.7 * make_phantom("mixed", shape, seed=6) + pts
    truth = blur(obj, gaussian_psf((15, 15, 15), 1.2))
    stack = np.clip(axial_anisotropy(truth, f), 0, None)
    scale = 300.0 / stack.max()
    stack = rng.poisson(stack * scale + 5).astype(np.float32)
    iso = IsotropicCARE(factor=f, **_learned_kwargs(args.steps, 2, patch=48))
    _, t_train = _timed(iso.fit, stack, "ZYX")
    ref = truth[: (shape[0] - 1) // f * f + 1] * scale + 5
    rows = []
    for name, fn in (("Z-interpolated (cubic)", lambda s: iso.interpolate(s, "ZYX")),
                     (f"iso (learned, {args.steps} steps)", lambda s: iso.predict(s, "ZYX"))):
        out, dt = _timed(fn, stack)
        vmp = out.size / 1e6
        rows.append([name, f"{_anisotropy(out, centres):.2f}", f"{psnr(out, ref):.2f}",
                     f"{ssim(out, ref):.3f}", f"{dt / vmp:.2f}"])
    rows.append(["isotropic truth", f"{_anisotropy(ref, centres):.2f}", "-", "-", "-"])
    return _table(f"Isotropic restoration, simulated stack {stack.shape} -> "
                  f"{ref.shape} (factor {f}); learned training {t_train:.0f} s",
                  ["method", "bead FWHM z / xy", "PSNR (dB)", "SSIM", "s / voxel-MP"], rows)


# -- 4. real data ---------------------------------------------------------------------------
def bench_real(args: argparse.Namespace) -> str:
    import tifffile

    from fluorecon.methods.classical.deconvolution import richardson_lucy, wiener
    from fluorecon.methods.classical.psf_beads import psf_from_beads
    from fluorecon.methods.learned import IsotropicCARE, LearnedDeconvolution
    from fluorecon.metrics import normalized_psnr, normalized_ssim
    from fluorecon.simulate.psf import psf_fwhm
    from fluorecon.simulate.semisynthetic import phantom_images

    parts = []
    bars = DATA / "flowdec_widefield_decon" / "bars-25pct"
    if bars.is_dir():
        data = tifffile.imread(bars / "data.tif").astype(np.float32)
        actual = tifffile.imread(bars / "actual.tif").astype(np.float32)
        kernel = tifffile.imread(bars / "kernel.tif").astype(np.float32)
        kernel = np.clip(kernel, 0, None)
        # The learned model never sees the bars: it trains on phantoms blurred by the
        # shipped PSF, at a photon level matched to the data's peak.
        train = phantom_images("mixed", data.shape, 2 if args.quick else 4, seed=11,
                               peak=float(actual.max()))
        dec = LearnedDeconvolution(photons=float(max(data.max(), 1.0)), camera="ideal",
                                   **_learned_kwargs(args.steps, 3))
        _, t_train = _timed(dec.fit, train, "ZYX", psf=kernel)
        methods = {
            "raw input": lambda: data,
            "Wiener (auto balance)": lambda: wiener(data, kernel),
            "Richardson-Lucy (30 it)": lambda: richardson_lucy(np.clip(data, 0, None), kernel,
                                                               iterations=30),
            "RL-TV (30 it, 0.002)": lambda: richardson_lucy(np.clip(data, 0, None), kernel,
                                                            iterations=30, tv_weight=0.002),
            f"deconv (learned on phantoms, {args.steps} steps)": lambda: dec.predict(data,
                                                                                     "ZYX"),
        }
        rows = []
        for name, fn in methods.items():
            out, dt = _timed(fn)
            rows.append([name, f"{normalized_psnr(out, actual):.2f}",
                         f"{normalized_ssim(out, actual):.3f}",
                         "-" if name == "raw input" else f"{dt / (data.size / 1e6):.2f}"])
        parts.append(_table(f"Real data: flowdec hollow bars {data.shape} (exact ground truth, "
                            f"shipped PSF); learned training {t_train:.0f} s",
                            ["method", "normalised PSNR (dB)", "normalised SSIM",
                             "s / voxel-MP"], rows))
    bead = DATA / "flowdec_widefield_decon" / "bead-25pct"
    if bead.is_dir():
        stack = tifffile.imread(bead / "data.tif").astype(np.float32)
        shipped = tifffile.imread(bead / "kernel.tif").astype(np.float32)
        res, dt = _timed(psf_from_beads, stack, psf_shape=(41, 41, 41))
        ship = psf_fwhm(shipped)
        rows = [["shipped PSF (kernel.tif)"] + [f"{v:.2f}" for v in ship] + ["-"],
                [f"psf_from_beads on data.tif ({res.n_beads} bead)"]
                + [f"{v:.2f}" for v in res.fwhm] + [f"{dt:.2f}"]]
        parts.append(_table("Real data: PSF distilled from the flowdec bead stack (64^3, pixels;"
                            " the bead is not sub-resolution, so it is wider than the PSF)",
                            ["PSF", "FWHM z (px)", "FWHM y (px)", "FWHM x (px)", "seconds"],
                            rows))
    dapi = DATA / "widefield_dapi_deconwolf" / "dapi_001.tif"
    if dapi.is_file():
        stack = tifffile.imread(dapi).astype(np.float32)
        f = 0.300 / 0.130
        iso = IsotropicCARE(factor=f, **_learned_kwargs(args.steps, 2))
        _, t_train = _timed(iso.fit, stack, "ZYX")
        rows = []
        for name, fn in (("Z-interpolated (cubic)", lambda: iso.interpolate(stack, "ZYX")),
                         (f"iso (learned, {args.steps} steps)", lambda: iso.predict(stack,
                                                                                   "ZYX"))):
            out, dt = _timed(fn)
            xz = out[:, out.shape[1] // 2, :]
            n = min(xz.shape)
            rows.append([name, str(out.shape), _frc_nm(xz[:n, :n], 0.130),
                         f"{dt / (out.size / 1e6):.2f}"])
        parts.append(_table(f"Real data: deconwolf DAPI stack {stack.shape} (z 300 nm, xy 130 nm,"
                            f" factor {f:.2f}); learned training {t_train:.0f} s",
                            ["method", "output shape", "XZ single-image FRC 1/7 (nm)",
                             "s / voxel-MP"], rows))
    if not parts:
        parts.append("(../shared/data absent: real-data tables skipped)\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, few steps")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps per network (default 800, quick 150)")
    parser.add_argument("--only", nargs="+", default=None,
                        choices=["deconv2d", "upsample", "iso", "real"])
    parser.add_argument("--out", type=Path, default=None, help="also write the tables here")
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = 150 if args.quick else 800
    os.environ.setdefault("FLUORECON_NUM_THREADS", "1")
    load = os.getloadavg()
    t0 = time.perf_counter()
    sections = {"deconv2d": bench_deconv2d, "upsample": bench_upsample, "iso": bench_iso,
                "real": bench_real}
    out = []
    for key, fn in sections.items():
        if args.only is None or key in args.only:
            out.append(fn(args))
    head = (f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"torch threads {os.environ['FLUORECON_NUM_THREADS']}; "
            f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
            f"command: python {' '.join(sys.argv)}; load average at start "
            f"{load[0]:.2f}, at end {os.getloadavg()[0]:.2f}; total "
            f"{time.perf_counter() - t0:.0f} s\n")
    text = head + "\n" + "\n".join(out)
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
