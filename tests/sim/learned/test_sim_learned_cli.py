"""``fluorecon sim train|predict`` and ``fluorecon lightfield train|predict`` (tiny runs)."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from fluorecon.cli.app import app
from fluorecon.io import read_image


def test_sim_train_then_predict(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["sim", "train", str(tmp_path / "m"), "--steps", "2", "--images",
                              "2", "--size", "64", "--frames", "0,4,8", "-q"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "m" / "weights.safetensors").exists()
    res = runner.invoke(app, ["sim", "simulate", str(tmp_path / "s"), "--size", "64"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["sim", "predict", str(tmp_path / "s" / "raw.ome.tif"), "-m",
                              str(tmp_path / "m"), "-o", str(tmp_path / "p.ome.tif"),
                              "--offset", "100", "--gain", "1.78", "--background", "10"])
    assert res.exit_code == 0, res.output
    image, meta = read_image(tmp_path / "p.ome.tif")
    assert image.shape == (128, 128) and np.all(np.isfinite(image))
    res = runner.invoke(app, ["sim", "train", str(tmp_path / "m"), "--steps", "2"])
    assert res.exit_code == 2 and "error:" in res.output
    res = runner.invoke(app, ["sim", "train", str(tmp_path / "m2"), "--frames", "0,99"])
    assert res.exit_code == 2 and "frames" in res.output


def test_lightfield_train_then_predict(tmp_path):
    runner = CliRunner()
    common = ["--planes", "5", "--views", "5", "--kernel", "9"]
    res = runner.invoke(app, ["lightfield", "train", str(tmp_path / "m"), "--steps", "2",
                              "--volumes", "2", "--lenslets", "64", "-q", *common])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["lightfield", "simulate", str(tmp_path / "lf"), "--lenslets",
                              "24", *common])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["lightfield", "predict", str(tmp_path / "lf" / "lenslet.ome.tif"),
                              "-m", str(tmp_path / "m"), "-o", str(tmp_path / "v.ome.tif")])
    assert res.exit_code == 0, res.output
    vol, meta = read_image(tmp_path / "v.ome.tif")
    assert vol.shape == (5, 24, 24) and meta.axes == "ZYX"
