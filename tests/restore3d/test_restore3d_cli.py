"""``fluorecon psf-from-beads``, ``fluorecon train deconv|upsample|iso`` and ``fluorecon
predict`` of resampling models, end to end on tiny files."""

import importlib.util
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from fluorecon.cli.app import app
from fluorecon.core import ImageMeta
from fluorecon.io import read_image, write_image
from fluorecon.simulate.psf import gaussian_psf
from fluorecon.simulate.semisynthetic import phantom_images

runner = CliRunner()
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="torch not installed")
TINY = ["--steps", "20", "--patch-size", "32", "--batch-size", "4", "--depth", "1",
        "--filters", "4", "-p", "validation_interval=10", "-q"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result, needle=""):
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and needle in err, err


def test_psf_from_beads_command(tmp_path):
    rng = np.random.default_rng(0)
    psf = gaussian_psf((15, 15), 1.4)
    img = np.full((96, 96), 30.0)
    for y in (20, 48, 76):
        for x in (20, 48, 76):
            img[y - 7:y + 8, x - 7:x + 8] += 4e4 * psf
    src = tmp_path / "beads.tif"
    write_image(src, rng.poisson(img).astype(np.uint16),
                ImageMeta(axes="YX", pixel_size={"Y": 0.1, "X": 0.1}))
    out = tmp_path / "psf.tif"
    res = run("psf-from-beads", src, "-o", out, "--psf-shape", "15", "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["n_beads"] == 9
    assert report["fwhm"][0] == pytest.approx(2.3548 * 1.4 * 0.1, rel=0.05)  # µm
    arr, meta = read_image(out)
    assert arr.shape == (15, 15) and arr.sum() == pytest.approx(1.0, rel=1e-5)
    assert meta.pixel_size == {"Y": 0.1, "X": 0.1}
    one_line_error(run("psf-from-beads", src, "-o", out), "exists")
    flat = tmp_path / "flat.tif"
    write_image(flat, np.full((64, 64), 7, np.uint16), ImageMeta(axes="YX"))
    one_line_error(run("psf-from-beads", flat, "-o", tmp_path / "p2.tif"), "no bead")


@needs_torch
def test_train_and_predict_upsample(tmp_path):
    hq = tmp_path / "hq"
    for i, im in enumerate(phantom_images("filaments", (64, 64), 2, seed=2)):
        write_image(hq / f"im{i}.tif", im, ImageMeta(axes="YX", pixel_size={"Y": 0.05,
                                                                           "X": 0.05}))
    model = tmp_path / "up.model"
    res = run("train", "upsample", hq, "--out", model, "--factor", "2", *TINY)
    assert res.exit_code == 0, res.output
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["method"] == "upsample" and cfg["method_config"]["factor"] == 2
    assert cfg["training_data"]["simulation"]["subsample_axes"] == "YX"
    low = tmp_path / "low.tif"
    write_image(low, phantom_images("filaments", (40, 24), 1, seed=9)[0],
                ImageMeta(axes="YX", pixel_size={"Y": 0.1, "X": 0.1}))
    out = tmp_path / "up.npy"  # .npy keeps the provenance (extra) in its sidecar
    res = run("predict", low, "-m", model, "-o", out, "-q")
    assert res.exit_code == 0, res.output
    arr, meta = read_image(out)
    assert arr.shape == (80, 48) and meta.pixel_size == pytest.approx({"Y": 0.05, "X": 0.05})
    assert meta.extra["may_hallucinate"] is False
    # With an adversarial fine-tuning phase the model and its outputs are flagged.
    gan = tmp_path / "gan.model"
    res = run("train", "upsample", hq, "--out", gan, *TINY[:-1], "-p",
              "adversarial_weight=0.01", "-p", "adversarial_steps=5")
    assert res.exit_code == 0 and "adversarial" in res.stderr, res.output
    cfg = json.loads((gan / "config.json").read_text())
    assert cfg["training_data"]["adversarial"]["may_hallucinate"] is True
    res = run("predict", low, "-m", gan, "-o", tmp_path / "gan.npy")
    assert res.exit_code == 0 and "invented structure" in res.stderr, res.output
    assert read_image(tmp_path / "gan.npy")[1].extra["may_hallucinate"] is True
    one_line_error(run("predict", low, "-m", model, "-o", tmp_path / "t.tif", "--tta"), "tta")


@needs_torch
def test_train_deconv_needs_a_psf_and_iso_a_factor(tmp_path):
    src = tmp_path / "im.tif"
    write_image(src, phantom_images("mixed", (64, 64), 1)[0], ImageMeta(axes="YX"))
    one_line_error(run("train", "deconv", src, "--out", tmp_path / "m", *TINY), "--psf")
    stack = tmp_path / "stack.tif"
    write_image(stack, phantom_images("mixed", (8, 64, 64), 1)[0], ImageMeta(axes="ZYX"))
    one_line_error(run("train", "iso", stack, "--out", tmp_path / "m2", *TINY), "--factor")
    psf = tmp_path / "psf.tif"
    write_image(psf, gaussian_psf((9, 9), 1.5), ImageMeta(axes="YX"))
    res = run("train", "deconv", src, "--psf", psf, "--out", tmp_path / "dec", "--photons",
              "100", "--camera", "emccd", *TINY)
    assert res.exit_code == 0, res.output
    cfg = json.loads((tmp_path / "dec" / "config.json").read_text())
    assert cfg["method_config"]["camera"] == "emccd"
    assert cfg["training_data"]["files"]["psf"] == str(psf)


@needs_torch
def test_train_and_predict_iso(tmp_path):
    stack = tmp_path / "stack.tif"
    vol = phantom_images("mixed", (10, 64, 64), 1, seed=3)[0]
    write_image(stack, vol, ImageMeta(axes="ZYX", pixel_size={"Z": 0.4, "Y": 0.1, "X": 0.1}))
    model = tmp_path / "iso.model"
    res = run("train", "iso", stack, "--out", model, *TINY)  # factor 4 from the pixel sizes
    assert res.exit_code == 0, res.output
    assert json.loads((model / "config.json").read_text())["method_config"]["factor"] == 4.0
    out = tmp_path / "iso.tif"
    res = run("predict", stack, "-m", model, "-o", out, "-q")
    assert res.exit_code == 0, res.output
    arr, meta = read_image(out)
    assert arr.shape == (37, 64, 64) and meta.pixel_size["Z"] == pytest.approx(0.1)
