"""``fluorecon export`` and ``fluorecon predict --model PACKAGE`` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("bioimageio.core")

from fluorecon.cli.app import app  # noqa: E402
from fluorecon.core import ImageMeta  # noqa: E402
from fluorecon.io import read_image, write_image  # noqa: E402

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(result, needle: str = "") -> None:
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    assert needle in err, err


@pytest.fixture(scope="module")
def model_dir(care2d, tmp_path_factory):
    return care2d.save(tmp_path_factory.mktemp("m") / "care")


def test_export_bioimageio_then_predict_matches_model_folder(model_dir, tmp_path, rng):
    pkg = tmp_path / "care.zip"
    res = run("export", model_dir, pkg, "--weights", "pytorch_state_dict", "--author",
              "A. Person", "--tag", "synthetic")
    assert res.exit_code == 0, res.output
    assert pkg.is_file() and "bioimageio.core test: passed" in res.stderr
    image = rng.normal(100.0, 10.0, (50, 41)).astype(np.float32)
    src = write_image(tmp_path / "in.tif", image, ImageMeta(axes="YX"))
    a, b = tmp_path / "pkg.tif", tmp_path / "folder.tif"
    assert run("predict", src, "--model", pkg, "-o", a, "--tile", "24", "-q").exit_code == 0
    assert run("predict", src, "--model", model_dir, "-o", b, "--tile", "24",
               "-q").exit_code == 0
    ya, _ = read_image(a)
    yb, _ = read_image(b)
    np.testing.assert_allclose(ya, yb, rtol=0, atol=2e-6 * float(np.abs(yb).max()))
    assert_one_line_error(run("export", model_dir, pkg, "--no-test"), "already exists")
    assert_one_line_error(run("predict", src, "--model", pkg, "-o", tmp_path / "t.tif",
                              "--tta"), "--tta")
    assert_one_line_error(run("export", model_dir, tmp_path / "x.zip", "--weights",
                              "keras_hdf5", "--no-test"), "--weights keras_hdf5")


def test_export_onnx_cli(model_dir, tmp_path):
    out = tmp_path / "care.onnx"
    res = run("export", model_dir, out, "--format", "onnx", "-q")
    assert res.exit_code == 0, res.output
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["method"] == "care" and meta["onnx_file"] == "care.onnx"
    assert_one_line_error(run("export", model_dir, tmp_path / "b.onnx", "--format", "onnx",
                              "--author", "X"), "--format onnx")
