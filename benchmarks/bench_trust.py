"""Benchmark: calibration of learned uncertainty, injected-hallucination detection and the
train-on-one-class generalisation table.

Four parts, each printed as a markdown table:

1. **Calibration, simulated** (denoising, ``mixed`` phantoms, sCMOS noise): an ensemble
   of probabilistic CARE models is trained, the recalibration factor of each uncertainty
   mode (probabilistic / ensemble / both) is fitted on validation images, and coverage of
   the 50/80/90/95 % central intervals and the expected calibration error (ECE, points)
   are measured on separate test images before and after.
2. **Calibration, real** (W2S widefield pairs of ``denoise_w2s_fmd_8bit``; the 8-bit files
   are contrast-stretched one by one, so every input and target is percentile-normalised
   (1, 99.8) on its own first): train on three fields of view, calibrate on a fourth,
   test on the fifth. The out-of-distribution check of the trained models is run on the
   W2S test field and on the two FMD images (another lab and microscope).
3. **Injected hallucinations**: beads / short filaments inserted into the honest ensemble
   mean (and into one member for the ensemble score) at several amplitudes; AUROC of the
   consistency score, the members' spread and their combination (simulated and real).
4. **Generalisation**: CARE trained on filaments, tested on filaments, beads, rings and
   nuclei: normalised PSNR/SSIM of input and prediction, invented and erased pixels.

Targets of the issue: ``|coverage - nominal| <= 3`` points at 90 % after recalibration,
detection AUROC >= 0.9.

Usage::

    python benchmarks/bench_trust.py [--quick] [--data DIR] [--parts 1,2,3,4]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / ".." / "shared" / "data" / "denoise_w2s_fmd_8bit"
LEVELS = (0.5, 0.8, 0.9, 0.95)
MODES = ("probabilistic", "ensemble", "both")


def _read(path: Path) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        arr = tifffile.imread(path)
    else:
        from PIL import Image

        arr = np.asarray(Image.open(path))
    if arr.ndim == 3:
        arr = arr[..., 0]
    return arr.astype(np.float32)


def _pnorm(x: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(x, [1.0, 99.8])
    return ((x - lo) / max(hi - lo, 1e-6)).astype(np.float32)


def _config(quick: bool, *, real: bool) -> dict:
    if quick:
        return dict(steps=300 if real else 250, patch_size=64 if real else 48, depth=2,
                    base_filters=16, batch_size=8, validation_interval=50,
                    probabilistic=True)
    return dict(steps=1500, patch_size=64, depth=2, base_filters=32, batch_size=16,
                validation_interval=100, probabilistic=True)


def _calibration_rows(ens, val, test, label: str) -> list[list[str]]:
    from fluorecon.trust.calibration import Predictive, coverage, expected_calibration_error
    from fluorecon.trust.ensembles import calibrate_uncertainty, predict_uncertainty

    rows = []
    for mode in MODES:
        rec = calibrate_uncertainty(ens, [v[0] for v in val], [v[1] for v in val], "YX",
                                    mode=mode)
        for stage in ("before", "after"):
            preds = [predict_uncertainty(ens, x, "YX", mode=mode, recalibrate=stage == "after")
                     for x, _ in test]
            d0 = preds[0].predictive
            if d0.is_mixture:
                loc = np.concatenate([p.predictive.loc.reshape(d0.loc.shape[0], -1)
                                      for p in preds], 1)
                sc = np.concatenate([p.predictive.scale.reshape(d0.loc.shape[0], -1)
                                     for p in preds], 1)
            else:
                loc = np.concatenate([p.predictive.loc.ravel() for p in preds])
                sc = np.concatenate([p.predictive.scale.ravel() for p in preds])
            truth = np.concatenate([t.ravel() for _, t in test])
            dist = Predictive(d0.family, loc, sc)
            cov = coverage(dist, truth, LEVELS)
            ece = expected_calibration_error(dist, truth)
            rows.append([label, mode, stage, f"{rec.factor:.3g}" if stage == "after" else "1",
                         *[f"{100 * cov[p]:.1f}" for p in LEVELS],
                         f"{100 * (cov[0.9] - 0.9):+.1f}", f"{100 * ece:.1f}"])
    return rows


def _table(columns: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _hallucination_rows(label: str, measurement, ens, quick: bool, seed: int
                        ) -> list[list[str]]:
    from fluorecon.trust.ensembles import predict_uncertainty
    from fluorecon.trust.hallucination import injected_hallucination_test

    res = predict_uncertainty(ens, measurement, "YX", mode="ensemble", recalibrate=False)
    rows = []
    amps = (0.1, 0.2, 0.3) if quick else (0.05, 0.1, 0.2, 0.3)
    for kind in ("beads", "filaments"):
        for amp in amps:
            r = injected_hallucination_test(measurement, res.mean, members=res.members,
                                            kind=kind, n=12, amplitude=amp, seed=seed)
            rows.append([label, kind, f"{amp:.2f}", f"{r.amplitude_sigma:.1f}",
                         f"{r.auroc['consistency']:.3f}", f"{r.auroc['ensemble_std']:.3f}",
                         f"{r.auroc['combined']:.3f}", f"{100 * r.detected_fraction:.0f}",
                         f"{100 * r.false_flag_fraction:.2f}"])
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--quick", action="store_true", help="small networks, few steps, K=3")
    ap.add_argument("--members", type=int, default=None, help="ensemble size (3 quick, 5)")
    ap.add_argument("--parts", default="1,2,3,4", help="comma-separated parts to run")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    parts = {int(p) for p in args.parts.split(",") if p}
    k = args.members or (3 if args.quick else 5)

    from fluorecon.methods.learned import CARE
    from fluorecon.simulate.pairs import simulate_pair
    from fluorecon.trust.ensembles import train_ensemble
    from fluorecon.trust.hallucination import generalisation_test
    from fluorecon.trust.ood import check_ood

    t0 = time.perf_counter()
    loads = [os.getloadavg()[0]]
    print(f"# bench_trust ({'quick' if args.quick else 'full'}), "
          f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"{platform.machine()} {os.cpu_count()} CPUs, torch threads "
          f"{os.environ.get('FLUORECON_NUM_THREADS', 'all')}")
    print(f"command: python {shlex.join(sys.argv)}\n")
    cal_cols = ["data", "mode", "stage", "factor", *[f"cov {int(100 * p)}%" for p in LEVELS],
                "90% gap (pts)", "ECE (pts)"]
    hal_cols = ["data", "structure", "amplitude (x range)", "peak / noise std",
                "AUROC consistency", "AUROC ensemble std", "AUROC combined",
                "detected %", "false flags %"]
    hal_rows: list[list[str]] = []
    shape = (128, 128) if args.quick else (256, 256)
    sim_ens = None
    if parts & {1, 3}:
        sim = lambda s: simulate_pair("denoise", shape, phantom="mixed",  # noqa: E731
                                      photons=20.0, seed=s)
        train = [sim(args.seed + s) for s in range(4)]
        val = [(p.input, p.target) for p in (sim(args.seed + 100 + s) for s in range(3))]
        test = [(p.input, p.target) for p in (sim(args.seed + 200 + s) for s in range(3))]
        t = time.perf_counter()
        sim_ens = train_ensemble("care", [p.input for p in train], [p.target for p in train],
                                 axes="YX", k=k, data_split="bootstrap", seed=args.seed,
                                 config=_config(args.quick, real=False))
        t_train = time.perf_counter() - t
        loads.append(os.getloadavg()[0])
        if 1 in parts:
            print(f"## 1. Calibration, simulated denoising ({k} members, {len(train)} "
                  f"training / {len(val)} validation / {len(test)} test images of {shape}, "
                  f"training {t_train:.0f} s)\n")
            print(_table(cal_cols, _calibration_rows(sim_ens, val, test, "simulated")))
            print()
        if 3 in parts:
            for j, (x, _) in enumerate(test[:2]):
                hal_rows += _hallucination_rows(f"simulated #{j}", x, sim_ens, args.quick,
                                                args.seed + j)
    data = args.data.resolve()
    if parts & {2, 3} and (data / "w2s").is_dir():
        ids = [p.stem.removeprefix("input_avg1_")
               for p in sorted((data / "w2s").glob("input_avg1_*.tif"))]
        pairs = {i: (_pnorm(_read(data / "w2s" / f"input_avg1_{i}.tif")),
                     _pnorm(_read(data / "w2s" / f"target_avg400_{i}.tif"))) for i in ids}
        tr_ids, val_id, test_id = ids[:3], ids[3], ids[4]
        t = time.perf_counter()
        real_ens = train_ensemble("care", [pairs[i][0] for i in tr_ids],
                                  [pairs[i][1] for i in tr_ids], axes="YX", k=k,
                                  data_split="none", seed=args.seed,
                                  config=_config(args.quick, real=True))
        t_train = time.perf_counter() - t
        loads.append(os.getloadavg()[0])
        if 2 in parts:
            print(f"## 2. Calibration, real W2S pairs (train {', '.join(tr_ids)}; calibrate "
                  f"{val_id}; test {test_id}; 512x512, percentile-normalised; {k} members, "
                  f"training {t_train:.0f} s)\n")
            print(_table(cal_cols, _calibration_rows(real_ens, [pairs[val_id]],
                                                     [pairs[test_id]], "W2S")))
            print()
            halves = [(x[:, :256], y[:, :256]) for x, y in (pairs[val_id], pairs[test_id])]
            others = [(x[:, 256:], y[:, 256:]) for x, y in (pairs[val_id], pairs[test_id])]
            print(f"Same fields, held-out pixels: calibrate on the left halves of {val_id} and "
                  f"{test_id}, test on their right halves:\n")
            print(_table(cal_cols, _calibration_rows(real_ens, halves, others, "W2S halves")))
            print()
            stats = real_ens.members[0].model_config.input_stats
            ood_rows = []
            tests = [(f"W2S {test_id}", pairs[test_id][0])]
            for name in ("image_R_1_001.png", "Confocal_FISH_3_raw.png"):
                if (data / "fmd" / name).exists():
                    tests.append((f"FMD {Path(name).stem}", _pnorm(_read(data / "fmd" / name))))
            for name, img in tests:
                rep = check_ood(img, "YX", stats)
                ood_rows.append([name, len(rep.warnings),
                                 "; ".join(w.quantity for w in rep.warnings) or "-"])
            print("Out-of-distribution check of the W2S-trained models:\n")
            print(_table(["input", "warnings", "quantities"], ood_rows))
            print()
        if 3 in parts:
            hal_rows += _hallucination_rows(f"W2S {test_id}", pairs[test_id][0], real_ens,
                                            args.quick, args.seed)
    if 3 in parts and hal_rows:
        print("## 3. Injected hallucinations (12 structures per image, width 1.5 px; amplitude "
              "as a fraction of the prediction's 0.1-99.9 percentile range)\n")
        print(_table(hal_cols, hal_rows))
        print()
    if 4 in parts:
        cfg = _config(args.quick, real=False)
        cfg.pop("probabilistic")
        t = time.perf_counter()
        gen = generalisation_test(lambda: CARE(**cfg), train_structure="filaments",
                                  test_structures=("filaments", "beads", "rings", "nuclei"),
                                  shape=shape, photons=20.0, n_train=4,
                                  n_test=2 if args.quick else 4, seed=args.seed)
        loads.append(os.getloadavg()[0])
        print(f"## 4. Generalisation: CARE trained on filaments ({time.perf_counter() - t:.0f}"
              " s; metrics after least-squares affine fit to the truth; invented/erased: "
              f"|prediction - truth| > {gen.tau:g} x truth range)\n")
        rows = [[r[0], r[1], f"{r[2]:.2f}", f"{r[3]:.2f}", f"{r[4]:.3f}", f"{r[5]:.3f}",
                 f"{r[6]:.2f}", f"{r[7]:.2f}"] for r in gen.table()]
        print(_table(["test structure", "in training", "PSNR input", "PSNR prediction",
                      "SSIM input", "SSIM prediction", "invented %", "erased %"], rows))
        print()
    print(f"total {time.perf_counter() - t0:.0f} s; load average (1 min) during the run: "
          f"{', '.join(f'{v:.2f}' for v in loads)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
