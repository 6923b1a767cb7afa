"""Benchmark: bioimage.io export and import of a fluorecon model, on a real image.

Trains Noise2Void on the real FMD confocal image ``fmd/Confocal_FISH_3_raw.png`` of
``../shared/data/denoise_w2s_fmd_8bit`` (512 x 512, uint8; a seeded synthetic image when the
folder is absent), or takes an existing model folder (``--model``), then measures

- export time of the bioimage.io package per weight format (state dict + torchscript +
  ONNX), its size, and the time of ``bioimageio.core``'s test of it;
- tiled prediction of the whole image (256-pixel tiles, exact crop-and-stitch) with
  fluorecon's own model and with the package re-imported (each weight format): wall time,
  and the largest absolute difference from fluorecon's prediction (8-bit units).

Usage::

    nice -n 5 python benchmarks/bench_model_zoo.py [--quick] [--steps 200] [--model DIR]
        [--threads 2] [--out FILE]

``--quick`` trains a small network (depth 2, 16 filters) for 30 steps.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "denoise_w2s_fmd_8bit"


def _image() -> tuple[np.ndarray, str]:
    path = DATA / "fmd" / "Confocal_FISH_3_raw.png"
    if path.is_file():
        from fluorecon.io import read_image

        img, _ = read_image(path)
        return np.asarray(img, np.float32), f"real: {path.relative_to(DATA.parent)}"
    from fluorecon.simulate.phantoms import make_phantom

    rng = np.random.default_rng(0)
    clean = np.asarray(make_phantom("filaments", (512, 512), seed=0), np.float32)
    clean = 200.0 * clean / max(float(clean.max()), 1e-6)
    return (clean + rng.normal(0, 10, clean.shape)).astype(np.float32), \
        "synthetic filaments (shared data absent)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small network, 30 steps")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--model", type=Path, default=None, help="existing N2V/CARE model folder")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = ap.parse_args()
    os.environ.setdefault("FLUORECON_NUM_THREADS", str(args.threads))
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    from fluorecon.methods.learned import Noise2Void, load_model_method
    from fluorecon.methods.learned.bioimageio_export import (
        check_bioimageio_package,
        export_bioimageio,
    )
    from fluorecon.methods.learned.bioimageio_import import BioimageioModel
    from fluorecon.predict import predict_method_tiled

    image, source = _image()
    t0 = time.perf_counter()
    if args.model is not None:
        method = load_model_method(args.model)
        train_s = float("nan")
    else:
        steps = 30 if args.quick else args.steps
        method = Noise2Void(steps=steps, patch_size=64, batch_size=16, depth=2,
                            base_filters=16 if args.quick else 32, seed=0)
        method.fit(image, axes="YX")
        train_s = time.perf_counter() - t0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        pkgs = {}
        for formats in (("pytorch_state_dict",), ("pytorch_state_dict", "torchscript"),
                        ("pytorch_state_dict", "onnx")):
            path = Path(tmp) / f"{'-'.join(formats)}.zip"
            t = time.perf_counter()
            export_bioimageio(method, path, weight_formats=formats)
            pkgs[formats[-1]] = (path, time.perf_counter() - t)
        t = time.perf_counter()
        summary = check_bioimageio_package(pkgs["onnx"][0])
        test_s = time.perf_counter() - t
        t = time.perf_counter()
        ref = predict_method_tiled(method, image, "YX", tile_shape=256)
        ref_s = time.perf_counter() - t
        rows.append(("fluorecon model folder", "-", "-", f"{ref_s:.2f}", "0"))
        for fmt, (path, export_s) in pkgs.items():
            model = BioimageioModel(source=str(path), weight_format=fmt)
            model.predict_block(image[:64, :64], "YX")  # load the weights once
            t = time.perf_counter()
            out = predict_method_tiled(model, image, "YX", tile_shape=256)
            pred_s = time.perf_counter() - t
            rows.append((f"package, {fmt}", f"{export_s:.2f}",
                         f"{path.stat().st_size / 1e6:.2f}", f"{pred_s:.2f}",
                         f"{float(np.abs(out - ref).max()):.2g}"))
    load = os.getloadavg()
    lines = [f"Machine: {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} CPU cores, no GPU; torch threads {args.threads}; "
             f"date {_dt.date.today()}; load average {load[0]:.2f} {load[1]:.2f} "
             f"{load[2]:.2f}",
             f"Image: {source} {image.shape}; model: "
             f"{method.model_config.method} depth {method.config.depth}, "
             f"{method.config.base_filters} filters"
             + ("" if args.model else f", trained {method.config.steps} steps in "
                                      f"{train_s:.1f} s"),
             f"bioimageio.core test of the ONNX package: {summary.status} in {test_s:.1f} s",
             "",
             "| prediction with | export (s) | package (MB) | tiled prediction 512x512 (s) "
             "| max abs diff vs fluorecon |",
             "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
