"""Benchmark: fluorecon's learned denoisers side by side with CAREamics, on real W2S pairs.

One run trains and predicts with both tools at the same architecture (2D U-Net, depth 2,
32 filters, batch norm, CSBDeep/CAREamics channel layout), patch size, batch size and
number of steps, each in its own fresh process, and reports:

- training steps per second (wall time of the whole ``fit``: data preparation,
  validation and checkpointing included) and the peak resident memory of training;
- prediction throughput in megapixels per second on a 1-MPix image (1024 x 1024, each
  tool's default prediction call after one warm-up call on a small image) and the peak
  resident memory of the whole prediction process: a fresh process loads the saved model
  (fluorecon's model folder, CAREamics' last checkpoint) and predicts, as a user's
  prediction job does (measuring in the training process would count what training
  left allocated);
- normalised PSNR/SSIM (``fluorecon.metrics.evaluate``: the 8-bit files are contrast
  stretched independently, so the prediction is affine-fitted to the percentile-normalised
  target) of N2V trained on the five noisy W2S images and applied to them (in-sample, as
  self-supervised denoisers are used); of N2S (fluorecon only: CAREamics has none); and of
  CARE trained on three pairs and tested on the other two (both tools without a residual
  connection, CAREamics' architecture; CAREamics' early stopping is held off so both
  train the same steps); beside the noisy input and the classical denoisers (fluorecon
  ``tv``, ``gaussian``, also scored on the two CARE test images; ``--classical-auto``
  adds the slow ``auto``).

CAREamics runs in its own virtual environment (it pins its own torch build, several GB,
so it is kept out of fluorecon's CI): ``--setup-careamics DIR`` creates it
(``python -m venv DIR && DIR/bin/pip install careamics==0.3.5``), or pass an existing
interpreter with ``--careamics-python``. Without either, only fluorecon runs.

Usage::

    python benchmarks/bench_learned.py --setup-careamics ../venvs/careamics \\
        [--steps 90] [--batch-size 128] [--patch 64] [--threads 2] [--quick] [--out FILE]

Noise2Noise needs two independent noisy frames of the same field; the shared W2S/FMD data
have one per field. ``--semi-synthetic PHOTONS`` therefore builds semi-synthetic data from
the real structure: every W2S reference (the 400-frame average) is scaled to ``PHOTONS``
expected photons at its 99.9th percentile, and two independent recordings are simulated
with fluorecon's sCMOS camera model (Poisson shot noise, Gaussian read noise, offset,
gain, rounding); the camera's noise-free mean is the reference. Both tools then train
N2N on the pairs (first frame in, second frame as target; each tool's default loss), N2V
on the first frames and CARE on three (first frame, reference) pairs, and every score is
against the noise-free reference. The data are made once by the driver and handed to both
tools' processes as arrays. Prediction throughput is not measured in this mode; the
scores add the mean error in photons against the reference, over all pixels and where it
expects less than one photon (a median-seeking loss such as MAE is biased there).

Variants for fluorecon alone: ``n2n-swap`` trains N2N on the pairs both ways round (twice
the pairs), and ``NAME:KEY=VALUE[:KEY=VALUE]`` trains NAME with other config values (for
example ``n2n:loss=mae``, CAREamics' N2N loss), so a difference between the tools can be
traced to a setting.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / ".." / "shared" / "data" / "denoise_w2s_fmd_8bit" / "w2s"
CAREAMICS_VERSION = "0.3.5"
CARE_TRAIN = ("020_1", "031_2", "035_1")
CARE_TEST = ("042_1", "044_0")


# --------------------------------------------------------------------------- helpers ---
def _peak_rss_mb() -> float:
    """Peak resident set size of this process since start or the last reset (MB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_header(script: str, argv: list[str] | None, threads: int, load: list[float]
               ) -> list[str]:
    """The machine and command lines a learned benchmark's output starts with."""
    rel = Path(script).resolve().relative_to(ROOT)
    args = argv if argv is not None else sys.argv[1:]
    return [f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"torch threads {threads}; date {_dt.datetime.now():%Y-%m-%d %H:%M}; 1-min load "
            f"{min(load):.1f}-{max(load):.1f}",
            "Command: `python " + " ".join(shlex.quote(a) for a in [str(rel), *args]) + "`"]


def emit_report(lines: list[str], out: Path | None) -> int:
    """Print a benchmark's report and write it to ``out`` when given; exit status 0."""
    text = "\n".join(lines)
    print(text)
    if out:
        out.write_text(text + "\n")
    return 0


def _reset_peak_rss() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0); silently a no-op elsewhere."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _read_w2s(data: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    import tifffile

    pairs = {}
    for noisy in sorted(data.glob("input_avg1_*.tif")):
        ident = noisy.stem.removeprefix("input_avg1_")
        pairs[ident] = (tifffile.imread(noisy).astype(np.float32),
                        tifffile.imread(data / f"target_avg400_{ident}.tif").astype(np.float32))
    return pairs


def _semi_camera() -> Any:
    """The camera of the semi-synthetic data: fluorecon's sCMOS preset."""
    from fluorecon.simulate.camera import CameraModel

    return CameraModel.scmos()


def semi_synthetic(pairs: dict[str, tuple[np.ndarray, np.ndarray]], photons: float,
                   seed: int) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]],
                                       dict[str, np.ndarray]]:
    """Two independent simulated sCMOS recordings of every reference, and their mean.

    Returns ``{field: (first noisy frame, noise-free mean)}`` and ``{field: second frame}``.
    The reference's 0.1-99.9 percentile range is mapped to 0-``photons`` expected photons
    (negative values clipped), so the brightest structures collect about ``photons``.
    """
    from fluorecon.simulate.camera import camera_forward, camera_mean

    cam = _semi_camera()
    rngs = np.random.default_rng(seed).spawn(2 * len(pairs))
    out, second = {}, {}
    for i, (ident, (_, ref)) in enumerate(sorted(pairs.items())):
        lo, hi = np.percentile(ref, [0.1, 99.9])
        lam = photons * np.clip((ref - lo) / max(hi - lo, 1e-6), 0, None)
        out[ident] = (camera_forward(lam, cam, rng=rngs[2 * i]), camera_mean(lam, cam))
        second[ident] = camera_forward(lam, cam, rng=rngs[2 * i + 1])
    return out, second


def _load_pairs(job: dict[str, Any]) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]],
                                              dict[str, np.ndarray]]:
    """The job's (noisy, reference) pairs and, for semi-synthetic data, the second frames."""
    if not job.get("pairs_file"):
        return _read_w2s(Path(job["data"])), {}
    with np.load(job["pairs_file"]) as z:
        idents = sorted(k.split("__", 1)[1] for k in z.files if k.startswith("clean__"))
        pairs = {i: (z[f"noisy__{i}"], z[f"clean__{i}"]) for i in idents}
        second = {i: z[f"second__{i}"] for i in idents}
    return pairs, second


def _big_image(pairs: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """1024 x 1024 test image: four noisy W2S fields side by side."""
    ims = [p[0] for p in list(pairs.values())[:4]]
    return np.block([[ims[0], ims[1]], [ims[2], ims[3]]]).astype(np.float32)


# ------------------------------------------------------------------------- workers ---
def _worker_fluorecon(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    from fluorecon.methods import create
    from fluorecon.predict import predict_method_tiled

    torch.set_num_threads(job["threads"])
    os.environ["FLUORECON_NUM_THREADS"] = str(job["threads"])
    pairs, second = _load_pairs(job)
    arch = dict(depth=2, base_filters=32, norm="batch", taper=True,
                patch_size=job["patch"], batch_size=job["batch_size"], steps=job["steps"],
                seed=job.get("seed", 1), precision=job.get("precision", "fp32"))
    out: dict[str, Any] = {"tool": "fluorecon", "versions": {"torch": torch.__version__}}
    preds: dict[str, dict[str, np.ndarray]] = {}
    for algo in job["algorithms"]:
        # "name:key=value[:key=value]" is a variant with other config values (fluorecon only)
        name, *extra = algo.split(":")
        settings = dict(arch, **dict(kv.split("=", 1) for kv in extra))
        if name == "care":
            # CAREamics' U-Net has no residual connection; fluorecon's CARE default (as
            # CSBDeep's) adds the input back, which the note in docs/benchmarks.md measures
            method = create("care", **{"residual": False, **settings})
            xs = [pairs[k][0] for k in CARE_TRAIN]
            ys = [pairs[k][1] for k in CARE_TRAIN]
            test = CARE_TEST
        elif name in ("n2n", "n2n-swap"):  # first frames in, second frames as targets
            method = create("n2n", **settings)
            xs = [pairs[k][0] for k in pairs]
            ys = [second[k] for k in pairs]
            if name == "n2n-swap":  # also second frames in, first as targets (fluorecon only)
                xs, ys = xs + ys, ys + xs
            test = tuple(pairs)
        else:
            method = create(name, **settings)
            xs, ys, test = [p[0] for p in pairs.values()], None, tuple(pairs)
        _reset_peak_rss()
        t0 = time.perf_counter()
        if ys is None:
            method.fit(xs, "YX")
        else:
            method.fit(xs, ys, "YX")
        train_s = time.perf_counter() - t0
        train_peak = _peak_rss_mb()
        preds[algo] = {k: predict_method_tiled(method, pairs[k][0], "YX") for k in test}
        row = {"train_s": train_s, "steps": method.train_result.steps_done,
               "train_peak_rss_mb": train_peak, "precision": method.train_result.precision}
        if algo == job["throughput_algorithm"]:
            folder = Path(job["work_dir"]) / f"model_{algo}"
            method.save(folder)
            row["model_path"] = str(folder)
        out[algo] = row
    np.savez(job["pred_file"], **{f"{a}__{k}": v for a, d in preds.items()
                                  for k, v in d.items()})
    return out


def _careamics_predict(cam: Any, img: np.ndarray) -> np.ndarray:
    """CAREamics' default prediction of one 2D image (the models were trained on SYX).

    CARE predicts from its best validated checkpoint; a run too short to have validated
    (``--quick``) has none, and then predicts with the last weights.
    """
    try:
        res = cam.predict(pred_data=img[None], axes="SYX")
    except ValueError as err:
        if "best" not in str(err):
            raise
        res = cam.predict(pred_data=img[None], axes="SYX", checkpoint="last")
    arr = res[0] if isinstance(res, tuple) else res
    arr = arr[0] if isinstance(arr, list) else arr
    return np.asarray(arr, np.float32).reshape(img.shape)


def _worker_careamics(job: dict[str, Any]) -> dict[str, Any]:
    import careamics
    import torch
    from careamics import CAREamist
    from careamics.config.factories.care_n2n_factory import (
        create_advanced_care_config,
        create_advanced_n2n_config,
    )
    from careamics.config.factories.n2v_factory import create_advanced_n2v_config

    torch.set_num_threads(job["threads"])
    pairs, second = _load_pairs(job)
    work = Path(job["work_dir"])
    out: dict[str, Any] = {"tool": "careamics", "versions": {"careamics": careamics.__version__,
                                                             "torch": torch.__version__}}
    preds: dict[str, dict[str, np.ndarray]] = {}
    for algo in job["algorithms"]:
        if algo not in ("n2v", "n2n", "care"):
            continue
        common = dict(experiment_name=f"bench_{algo}", data_type="array", axes="SYX",
                      patch_size=[job["patch"]] * 2, batch_size=job["batch_size"],
                      logger="none", seed=job.get("seed", 1),
                      model_params={"depth": 2, "num_channels_init": 32})
        if algo == "care":
            x = np.stack([pairs[k][0] for k in CARE_TRAIN])
            y = np.stack([pairs[k][1] for k in CARE_TRAIN])
            test = CARE_TEST
        elif algo == "n2n":
            x = np.stack([pairs[k][0] for k in pairs])
            y = np.stack([second[k] for k in pairs])
            test = tuple(pairs)
        else:
            x, y, test = np.stack([p[0] for p in pairs.values()]), None, tuple(pairs)
        # CAREamics counts epochs and holds some patches back for validation; Lightning's
        # max_steps ends its run at exactly the requested number of optimiser steps; CARE's
        # default early stopping (patience 3 validations) is held off for the same reason
        trainer = {"max_steps": job["steps"], "precision": job.get("careamics_precision",
                                                                   "32-true")}
        if algo == "care":
            cfg = create_advanced_care_config(
                num_epochs=job["steps"], trainer_params=trainer,
                early_stopping_params={"monitor": "val_loss", "mode": "min",
                                       "patience": job["steps"],
                                       "check_on_train_epoch_end": False}, **common)
        elif algo == "n2n":  # CAREamics has no early stopping for N2N
            cfg = create_advanced_n2n_config(num_epochs=job["steps"], trainer_params=trainer,
                                             **common)
        else:
            cfg = create_advanced_n2v_config(
                num_epochs=job["steps"], trainer_params=trainer, **common)
        cam = CAREamist(cfg, work_dir=work / algo, enable_progress_bar=False)
        _reset_peak_rss()
        t0 = time.perf_counter()
        if y is None:
            cam.train(train_data=x)
        else:
            cam.train(train_data=x, train_data_target=y)
        train_s = time.perf_counter() - t0
        train_peak = _peak_rss_mb()
        steps = int(cam.trainer.global_step)

        preds[algo] = {k: _careamics_predict(cam, pairs[k][0]) for k in test}
        row = {"train_s": train_s, "steps": steps, "train_peak_rss_mb": train_peak,
               "epochs": int(cam.trainer.current_epoch),
               "precision": str(cam.trainer.precision)}
        if algo == job["throughput_algorithm"]:
            ckpts = sorted((work / algo).rglob("*last*.ckpt")) or sorted(
                (work / algo).rglob("*.ckpt"), key=lambda q: q.stat().st_mtime)
            row["model_path"] = str(ckpts[-1])
        out[algo] = row
    np.savez(job["pred_file"], **{f"{a}__{k}": v for a, d in preds.items()
                                  for k, v in d.items()})
    return out


def _worker_predict(job: dict[str, Any]) -> dict[str, Any]:
    """Fresh process: load a saved model, predict the 1-MPix image; whole-process peak RSS."""
    import torch

    torch.set_num_threads(job["threads"])
    os.environ["FLUORECON_NUM_THREADS"] = str(job["threads"])
    big = _big_image(_read_w2s(Path(job["data"])))
    if job["tool"] == "fluorecon":
        from fluorecon.methods.learned import load_model_method
        from fluorecon.predict import predict_method_tiled

        method = load_model_method(job["model_path"])
        method.set_inference(**job.get("inference", {}))
        budget = job.get("budget")  # None: the default (auto from 256 MiB)

        def predict(img: np.ndarray) -> np.ndarray:
            return predict_method_tiled(method, img, "YX", memory_budget_bytes=budget)
    else:
        from careamics import CAREamist

        cam = CAREamist(checkpoint_path=job["model_path"], work_dir=job["work_dir"],
                        enable_progress_bar=False)

        def predict(img: np.ndarray) -> np.ndarray:
            return _careamics_predict(cam, img)

    predict(big[:256, :256])  # warm-up
    loaded = _peak_rss_mb()
    times = []
    for _ in range(job["repeats"]):
        t0 = time.perf_counter()
        predict(big)
        times.append(time.perf_counter() - t0)
    return {"mpix_s": big.size / 1e6 / min(times), "peak_rss_mb": _peak_rss_mb(),
            "warm_rss_mb": loaded}


# -------------------------------------------------------------------------- driver ---
def _run_worker(python: str, tool: str, job: dict[str, Any], *,
                script: str | os.PathLike[str] = __file__) -> dict[str, Any]:
    """Run ``script --worker TOOL --job JSON`` under ``python`` with ``job["threads"]``
    threads and return the JSON after its last ``RESULT `` line (stop on failure)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(job["threads"]),
               MKL_NUM_THREADS=str(job["threads"]), PYTHONWARNINGS="ignore")
    proc = subprocess.run([python, str(Path(script).resolve()), "--worker", tool,
                           "--job", json.dumps(job)], capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-5000:])
        raise SystemExit(f"{tool} worker failed (exit {proc.returncode})")
    return json.loads(lines[-1][len("RESULT "):])


def _setup_careamics(folder: Path) -> str:
    python = folder / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
        subprocess.run([str(folder / "bin" / "pip"), "install", "-q",
                        f"careamics=={CAREAMICS_VERSION}", "tifffile"], check=True)
    return str(python)


def _classical(pairs: dict[str, tuple[np.ndarray, np.ndarray]], names: list[str]
               ) -> dict[str, dict[str, np.ndarray]]:
    from fluorecon.methods import create

    out: dict[str, dict[str, np.ndarray]] = {}
    for name in names:
        method = create(name)
        out[name] = {k: method.predict(p[0], "YX") for k, p in pairs.items()}
    return out


def _score(preds: dict[str, np.ndarray], pairs: dict[str, tuple[np.ndarray, np.ndarray]]
           ) -> tuple[float, float, int]:
    from fluorecon.metrics import evaluate

    ps, ss = [], []
    for k, pred in preds.items():
        s = evaluate(pred, pairs[k][1], axes="YX")
        ps.append(s["psnr_normalized"])
        ss.append(s["ssim_normalized"])
    return float(np.mean(ps)), float(np.mean(ss)), len(ps)


def _camera_scale() -> tuple[float, float]:
    """Baseline (ADU at zero photons: offset and dark signal) and ADU per photon of the
    camera of :func:`semi_synthetic`."""
    cam = _semi_camera()
    return (cam.offset + cam.total_gain * cam.dark_current,
            cam.total_gain * cam.quantum_efficiency)


def _photon_error(preds: dict[str, np.ndarray],
                  pairs: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
    """Mean error in photons against the noise-free semi-synthetic reference: over all
    pixels, and over those where the reference expects less than one photon (where a
    median-seeking loss is biased for Poisson noise)."""
    baseline, adu_per_photon = _camera_scale()
    every, dark = [], []
    for k, pred in preds.items():
        ref = pairs[k][1]
        err = (np.asarray(pred, np.float64) - ref) / adu_per_photon
        every.append(err.mean())
        low = ref < baseline + adu_per_photon
        dark.append(err[low].mean() if low.any() else np.nan)
    return float(np.mean(every)), float(np.nanmean(dark))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--steps", type=int, default=90)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1, help="seed of both tools' training")
    ap.add_argument("--algorithms", help="comma-separated; default n2v,n2s,care (with "
                    "--semi-synthetic: n2n,n2v,care); fluorecon-only variants: n2n-swap "
                    "(pairs used both ways round) and NAME:KEY=VALUE[:KEY=VALUE] (other "
                    "config values, e.g. n2n:loss=mae)")
    ap.add_argument("--semi-synthetic", type=float, metavar="PHOTONS",
                    help="simulate two sCMOS recordings of every W2S reference at this peak "
                         "photon count (for N2N; see the module docstring)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"],
                    help="fluorecon's training precision (auto: bf16 on CPUs with AMX)")
    ap.add_argument("--careamics-precision", default="32-true",
                    help="CAREamics' (Lightning's) training precision, e.g. bf16-mixed")
    ap.add_argument("--careamics-python")
    ap.add_argument("--setup-careamics", type=Path)
    ap.add_argument("--classical-auto", action="store_true")
    ap.add_argument("--quick", action="store_true", help="10 steps, batch 16: a smoke run")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        job = json.loads(args.job)
        worker = {"fluorecon": _worker_fluorecon, "careamics": _worker_careamics,
                  "predict": _worker_predict}[args.worker]
        res = worker(job)
        print("RESULT " + json.dumps(res))
        return 0
    if not args.data.is_dir():
        print(f"no data at {args.data}", file=sys.stderr)
        return 1
    if args.quick:
        args.steps, args.batch_size, args.repeats = 10, 16, 1
    default_algos = "n2n,n2v,care" if args.semi_synthetic else "n2v,n2s,care"
    algos = [a.strip() for a in (args.algorithms or default_algos).split(",") if a.strip()]
    cam_python = args.careamics_python
    if args.setup_careamics is not None:
        cam_python = _setup_careamics(args.setup_careamics)
    pairs = _read_w2s(args.data)
    tmp = Path(tempfile.mkdtemp(prefix="bench_learned_"))
    pairs_file = None
    if args.semi_synthetic is not None and args.semi_synthetic <= 0:
        print("--semi-synthetic must be a positive photon count", file=sys.stderr)
        return 1
    if args.semi_synthetic:
        pairs, second = semi_synthetic(pairs, args.semi_synthetic, args.seed)
        pairs_file = str(tmp / "pairs.npz")
        np.savez(pairs_file, **{f"noisy__{k}": p[0] for k, p in pairs.items()},
                 **{f"clean__{k}": p[1] for k, p in pairs.items()},
                 **{f"second__{k}": v for k, v in second.items()})
    job = {"data": str(args.data.resolve()), "steps": args.steps, "batch_size": args.batch_size,
           "patch": args.patch, "threads": args.threads, "repeats": args.repeats,
           "algorithms": algos, "seed": args.seed, "pairs_file": pairs_file,
           "throughput_algorithm": "" if args.semi_synthetic else "n2v",
           "precision": args.precision, "careamics_precision": args.careamics_precision}
    predict_variants = {"fluorecon": {"default (256 MiB tile budget)": {},
                                      "512 MiB tile budget": {"budget": 512 << 20},
                                      "whole image (2 GiB budget)": {"budget": 2 << 30}},
                        "careamics": {"default": {}}}
    results: dict[str, dict[str, Any]] = {}
    preds: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    load = []
    runs = [("fluorecon", sys.executable)] + ([("careamics", cam_python)] if cam_python else [])
    for tool, python in runs:
        tj = dict(job, pred_file=str(tmp / f"{tool}.npz"), work_dir=str(tmp / tool))
        load.append(os.getloadavg()[0])
        results[tool] = _run_worker(python, tool, tj)
        with np.load(tmp / f"{tool}.npz") as z:
            for key in z.files:
                algo, ident = key.split("__", 1)
                preds.setdefault(tool, {}).setdefault(algo, {})[ident] = z[key]
        model_path = results[tool].get("n2v", {}).get("model_path")
        for name, extra in predict_variants[tool].items() if model_path else ():
            pj = dict(job, tool=tool, model_path=model_path, work_dir=str(tmp / tool), **extra)
            load.append(os.getloadavg()[0])
            results[tool]["n2v"][f"predict[{name}]"] = _run_worker(python, "predict", pj)
    load.append(os.getloadavg()[0])
    classical = _classical(pairs, ["gaussian", "tv"] + (["auto"] if args.classical_auto else []))

    if args.semi_synthetic:  # expected photons of every reference pixel
        baseline, adu_per_photon = _camera_scale()
        expected = np.concatenate([((p[1] - baseline) / adu_per_photon).ravel()
                                   for p in pairs.values()])
    lines = [*run_header(__file__, argv, args.threads, load),
             f"Settings: U-Net depth 2, 32 filters, batch norm, tapered decoder (CAREamics "
             f"layout); patch {args.patch}, batch {args.batch_size}, {args.steps} steps, "
             f"seed {args.seed}.",
             *([f"Data: semi-synthetic, two simulated sCMOS recordings of each W2S reference "
                f"at {args.semi_synthetic:g} photons (99.9th percentile; on average "
                f"{expected.mean():.2f} per pixel, {np.mean(expected < 1):.0%} of the pixels "
                f"below 1); scores against the noise-free mean."]
               if args.semi_synthetic else []), "",
             "| tool | method | precision | steps | train s | steps/s | train peak RSS MB |",
             "|---|---|---|---|---|---|---|"]
    for tool, res in results.items():
        for algo in algos:
            if algo in res:
                r = res[algo]
                lines.append(f"| {tool} | {algo} | {r.get('precision', '?')} | {r['steps']} | "
                             f"{r['train_s']:.1f} | "
                             f"{r['steps'] / r['train_s']:.3f} | {r['train_peak_rss_mb']:.0f} |")
    if job["throughput_algorithm"]:
        lines += ["", "Prediction: a fresh process loads the saved n2v model, predicts a "
                  "256x256 warm-up crop, then the 1024x1024 image (best of the repeats); peak "
                  "RSS is the whole process's (imports and model included), RSS after warm-up "
                  "beside it.", "", "| tool | prediction (1024x1024, n2v) | MPix/s | peak RSS MB "
                  "| RSS after warm-up MB |", "|---|---|---|---|---|"]
    for tool, res in results.items():
        for key, val in res.get("n2v", {}).items():
            if key.startswith("predict["):
                lines.append(f"| {tool} | {key[8:-1]} | {val['mpix_s']:.3f} | "
                             f"{val['peak_rss_mb']:.0f} | {val['warm_rss_mb']:.0f} |")
    semi = bool(args.semi_synthetic)
    lines += ["", "| method | images | PSNR (norm.) | SSIM (norm.) |"
              + (" mean error (photons) | error where < 1 photon expected |" if semi else ""),
              "|---|---|---|---|" + ("---|---|" if semi else "")]
    noisy = {k: p[0] for k, p in pairs.items()}
    rows = [("noisy input", noisy)]
    rows += [(f"fluorecon {n}", d) for n, d in classical.items()]
    for tool in results:
        rows += [(f"{tool} {a}", d) for a, d in preds.get(tool, {}).items()]
    for name, d in rows:
        p, s, n = _score(d, pairs)
        extra = ""
        if semi:
            every, dark = _photon_error(d, pairs)
            extra = f" {every:+.3f} | {dark:+.3f} |"
        lines.append(f"| {name} | {n} | {p:.2f} | {s:.4f} |{extra}")
    # CARE is scored on its two held-out images only: the same subset of the references
    for name, d in [("noisy input", noisy)] + [(f"fluorecon {n}", d)
                                               for n, d in classical.items()]:
        held_out = {k: d[k] for k in CARE_TEST}
        p, s, n = _score(held_out, pairs)
        extra = " {:+.3f} | {:+.3f} |".format(*_photon_error(held_out, pairs)) if semi else ""
        lines.append(f"| {name} (CARE test images) | {n} | {p:.2f} | {s:.4f} |{extra}")
    return emit_report(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
