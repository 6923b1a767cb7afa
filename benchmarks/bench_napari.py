"""Benchmark: does the napari Restore widget keep the viewer responsive, and how fast does
Cancel stop a run?

A 10 ms ``QTimer`` stands in for the viewer's event loop (repaints, mouse, sliders); the
gaps between its ticks measure how long the GUI thread was blocked. The same
Richardson-Lucy deconvolution of the simulated 3D sample (``deconvolve_3d`` of the plugin's
sample data) runs

- ``gui thread``: called directly in the GUI thread (what a plugin without a worker does);
- ``widget``: through the Restore widget (napari worker thread, progress via a queued
  Qt signal).

For the widget, Cancel is then clicked mid-run and the time until ``job_finished``
("cancelled") is reported: the job checks its token after every RL iteration.

Headless (``QT_QPA_PLATFORM=offscreen``), against a ``napari.components.ViewerModel``.

Usage::

    python benchmarks/bench_napari.py [--quick] [--iterations N]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import shlex
import sys
import time
import warnings

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402


def _ticker(app):  # noqa: ANN001
    from qtpy.QtCore import QTimer

    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    return timer, ticks


def _gaps(ticks: list[float], t0: float, t1: float) -> tuple[float, float]:
    """Largest gap and 95th percentile (ms) between ticks within [t0, t1], counting the
    ends as ticks (a fully blocked loop has one gap of the whole run)."""
    inner = [t for t in ticks if t0 <= t <= t1]
    points = np.array([t0, *inner, t1])
    gaps = np.diff(points) * 1e3
    return float(gaps.max()), float(np.percentile(gaps, 95))


def _wait(app, cond, timeout: float = 600.0) -> None:  # noqa: ANN001
    end = time.perf_counter() + timeout
    while not cond():
        app.processEvents()
        time.sleep(0.001)
        if time.perf_counter() > end:
            raise TimeoutError("the job did not finish")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2D 256x256 sample instead of "
                        "the 3D 32x128x128 one.")
    parser.add_argument("--iterations", type=int, default=None,
                        help="RL iterations (default 40, quick 60).")
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from napari.components import ViewerModel
        from qtpy.QtWidgets import QApplication

        from fluorecon.napari import _sample_data
        from fluorecon.napari._jobs import restore
        from fluorecon.napari._widgets import RestoreWidget

    app = QApplication.instance() or QApplication([])
    sample = _sample_data.deconvolve_2d() if args.quick else _sample_data.deconvolve_3d()
    iters = args.iterations or (60 if args.quick else 40)
    noisy, _, psf = sample
    viewer = ViewerModel()
    layers = [viewer.add_image(d, **kw) for d, kw, _ in sample]
    widget = RestoreWidget(viewer)
    widget.image_combo.setCurrentText(layers[0].name)
    widget.source_combo.setCurrentText("rl")
    widget.psf_combo.setCurrentText(layers[2].name)
    widget.params.set_value("iterations", iters)
    widget.params.set_value("background", 50.0)
    axes = "YX" if noisy[0].ndim == 2 else "ZYX"
    timer, ticks = _ticker(app)
    timer.start()
    rows = []

    # warm-up (FFT plans, imports), not measured
    restore(noisy[0], axes, method="rl", params={"iterations": 2, "background": 50.0},
            psf=psf[0])

    # 1. blocking call in the GUI thread
    app.processEvents()
    t0 = time.perf_counter()
    restore(noisy[0], axes, method="rl", params={"iterations": iters, "background": 50.0},
            psf=psf[0])
    t1 = time.perf_counter()
    app.processEvents()
    rows.append(("gui thread", t1 - t0, *_gaps(ticks, t0, t1), "-"))

    # 2. the widget (worker thread)
    outcome: list[str] = []
    widget.job_finished.connect(outcome.append)
    t0 = time.perf_counter()
    widget.run_button.click()
    _wait(app, lambda: bool(outcome))
    t1 = time.perf_counter()
    rows.append(("widget", t1 - t0, *_gaps(ticks, t0, t1), outcome[-1]))

    # 3. cancel mid-run: wait for the first progress report, then click Cancel
    outcome.clear()
    widget.run_button.click()
    _wait(app, lambda: widget.progress_bar.maximum() > 1 and widget.progress_bar.value() > 0)
    t0 = time.perf_counter()
    widget.cancel_button.click()
    _wait(app, lambda: bool(outcome))
    t1 = time.perf_counter()
    timer.stop()
    cancel_ms = (t1 - t0) * 1e3

    shape = "x".join(str(s) for s in noisy[0].shape)
    print(f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}; "
          f"Python {platform.python_version()}")
    print(f"- date: {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC; load "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    command = " ".join(["python", f"benchmarks/{os.path.basename(__file__)}",
                        *([shlex.join(argv if argv is not None else sys.argv[1:])]
                          if (argv if argv is not None else sys.argv[1:]) else [])])
    print(f"- command: `{command}`")
    print(f"- data: simulated {shape} ({axes}) deconvolution sample, RL {iters} iterations, "
          f"FLUORECON_NUM_THREADS={os.environ.get('FLUORECON_NUM_THREADS', 'unset')}")
    print()
    print("| run | wall s | max GUI gap ms | p95 GUI gap ms | outcome |")
    print("|---|---:|---:|---:|---|")
    for name, wall, gmax, g95, out in rows:
        print(f"| {name} | {wall:.2f} | {gmax:.0f} | {g95:.0f} | {out} |")
    print()
    print(f"Cancel clicked mid-run -> job_finished({outcome[-1]!r}) after {cancel_ms:.0f} ms; "
          f"layers added by the cancelled run: {len(viewer.layers) - len(layers) - 1}")
    widget.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
