"""Reports of a real (tiny) trained model: example patches from the held-out slab, the
evaluation of ``--model``, and the validation slab computed as training cuts it."""

from __future__ import annotations

import re

import numpy as np
import pytest
from typer.testing import CliRunner

from fluorecon.cli.app import app
from fluorecon.io import write_image
from fluorecon.report.html import external_references
from fluorecon.report.training import validation_region
from fluorecon.simulate.pairs import simulate_pair

runner = CliRunner()


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("shape,patch", [((64, 100), (32, 32)), ((48, 40), (16, 16)),
                                         ((12, 40, 40), (8, 16, 16))])
def test_validation_region_equals_the_samplers(shape, patch):
    from fluorecon.methods.learned.training import PatchSampler

    x = np.zeros((1, *shape), np.float32)
    s = PatchSampler([x], [x], patch, validation_fraction=0.1)
    (r,) = s.val_regions
    expected = tuple(slice(a, a + n) for a, n in zip(r.start, r.shape))
    assert validation_region(shape, patch, fraction=0.1) == expected


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("care")
    for i in range(2):
        p = simulate_pair("denoise", (64, 64), photons=20, seed=i)
        write_image(root / f"in{i}.tif", p.input, p.meta)
        write_image(root / f"gt{i}.tif", p.target, p.target_meta)
    res = run("train", "care", root / "in0.tif", root / "in1.tif", "--target", root / "gt0.tif",
              "--target", root / "gt1.tif", "-o", root / "model", "--steps", "20",
              "--patch-size", "32", "--batch-size", "4", "--depth", "1", "--filters", "8",
              "--probabilistic", "-p", "validation_interval=10", "-q")
    assert res.exit_code == 0, res.output
    return root


def test_train_report_shows_held_out_examples(trained):
    out = trained / "train.html"
    res = run("report", "train", trained / "model", "-o", out, "-q")
    assert res.exit_code == 0, res.output
    page = out.read_text()
    assert external_references(page) == []
    assert page.count("data:image/png;base64,") == 2
    rows = re.findall(r"<td>(in\d\.tif \[Y [^<]*)</td><td>held-out</td><td>([-\d.]+)</td>", page)
    assert len(rows) == 3, rows
    for src, _ in rows:  # every window lies in the last 32 columns (the validation slab)
        x0 = int(re.search(r"X (\d+):", src).group(1))
        assert x0 >= 32, src
    assert "never seen in training" in page and "<td>care</td>" in page
    assert "none (uncertainty unverified)" in page  # probabilistic, not calibrated


def test_train_report_on_a_supplied_image_checks_distribution(trained):
    out = trained / "img.html"
    res = run("report", "train", trained / "model", "--image", trained / "in1.tif",
              "--target", trained / "gt1.tif", "--examples", "2", "-o", out, "-q")
    assert res.exit_code == 0, res.output
    page = out.read_text()
    assert "<td>supplied</td>" in page and "id='out-of-distribution-check'" in page


def test_evaluate_report_runs_the_model(trained):
    out = trained / "eval.html"
    res = run("report", "evaluate", trained / "in0.tif", "--model", trained / "model",
              "-r", trained / "gt0.tif", "--consistency", "--uncertainty", "probabilistic",
              "-o", out, "-q")
    assert res.exit_code == 0, res.output
    page = out.read_text()
    assert external_references(page) == []
    assert "<td>care</td>" in page and "id='trust-maps'" in page
    assert "reduced chi-square" in page and "Predictive std (probabilistic)" in page
