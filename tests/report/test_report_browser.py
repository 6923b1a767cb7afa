"""Both reports rendered once in headless Chromium: they load offline with no console
error or failed request, every figure decodes, and the expected sections and tables exist."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from fluorecon.report.evaluation import TrustMaps, write_evaluation_report
from fluorecon.report.training import TrainingExample, write_training_report
from fluorecon.simulate.pairs import simulate_pair

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _reports(tmp_path: Path, make_model_folder) -> dict[str, tuple[Path, list[str], int]]:
    """Write a training and an evaluation report; return path, section ids, table count."""
    make_model_folder(tmp_path / "model", adversarial=True)
    pair = simulate_pair("denoise", (48, 48), photons=20, seed=7)
    rng = np.random.default_rng(0)
    out = pair.target + rng.normal(0, 0.3, pair.target.shape).astype(np.float32)
    ex = [TrainingExample(input=pair.input[:16, :16], prediction=out[:16, :16],
                          target=pair.target[:16, :16], axes="YX", source="a [Y 0:16]")]
    train = write_training_report(tmp_path / "model", tmp_path / "train.html", examples=ex)
    maps = TrustMaps(std=np.full(out.shape, 0.2, np.float32),
                     residual=rng.normal(size=out.shape).astype(np.float32),
                     flagged=rng.random(out.shape) > 0.99, description="maps")
    ev = write_evaluation_report(tmp_path / "eval.html", pair.input, out, axes="YX",
                                 reference=pair.target, trust=maps, source={"input": "sim"})
    return {"train": (train, ["model", "loss-curves", "example-patches"], 3),
            "eval": (ev, ["run", "before-and-after", "metrics-against-the-reference",
                          "noise-and-resolution-no-reference-needed", "line-profile",
                          "differences", "trust-maps"], 4)}


def test_reports_render_in_headless_chromium(tmp_path, make_model_folder):
    if not Path(CHROMIUM).is_file() or shutil.which(CHROMIUM) is None:
        pytest.skip(f"Chromium not installed at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    reports = _reports(tmp_path, make_model_folder)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            for key, (path, sections, n_tables) in reports.items():
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                errors: list[str] = []
                failed: list[str] = []
                requests: list[str] = []
                page.on("console", lambda m: errors.append(m.text) if m.type == "error"
                        else None)
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.on("requestfailed", lambda r: failed.append(r.url))
                page.on("request", lambda r: requests.append(r.url))
                page.goto(path.resolve().as_uri(), wait_until="load")
                assert errors == [] and failed == [], (key, errors, failed)
                # nothing but the page itself and its embedded data: URIs is requested
                assert [u for u in requests if not u.startswith(("file://", "data:"))] == []
                assert [u for u in requests if u.startswith("file://")] == [path.resolve().as_uri()]
                widths = page.eval_on_selector_all(
                    "img", "els => els.map(e => e.complete ? e.naturalWidth : 0)")
                assert len(widths) >= 2 and min(widths) > 0, (key, widths)
                ids = page.eval_on_selector_all("h2", "els => els.map(e => e.id)")
                assert ids == sections, (key, ids)
                assert page.locator("table").count() == n_tables
                assert page.locator("table tbody tr").count() >= n_tables
                if key == "train":
                    assert page.locator("p.warning").count() >= 1
                page.screenshot(path=str(tmp_path / f"{key}.png"), full_page=True)
                assert (tmp_path / f"{key}.png").stat().st_size > 10_000
                page.close()
        finally:
            browser.close()
