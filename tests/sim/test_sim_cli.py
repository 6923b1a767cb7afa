"""``fluorecon sim`` and ``fluorecon lightfield`` commands end to end (in process)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from fluorecon.cli.app import app
from fluorecon.io import read_image


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_sim_simulate_then_reconstruct(tmp_path, runner):
    res = runner.invoke(app, ["sim", "simulate", str(tmp_path / "s"), "--size", "128",
                              "--seed", "3"])
    assert res.exit_code == 0, res.output
    raw, meta = read_image(tmp_path / "s" / "raw.ome.tif")
    assert raw.shape == (9, 128, 128) and meta.axes == "CYX"
    truth_params = json.loads((tmp_path / "s" / "simulation.json").read_text())
    out = tmp_path / "rec.ome.tif"
    res = runner.invoke(app, ["sim", "reconstruct", str(tmp_path / "s" / "raw.ome.tif"),
                              "-o", str(out), "--background", "100", "-q"])
    assert res.exit_code == 0, res.output
    image, meta = read_image(out)
    assert image.shape == (256, 256) and meta.pixel_size["X"] == pytest.approx(0.0313)
    assert (tmp_path / "rec_widefield.ome.tif").exists()
    info = json.loads((tmp_path / "rec.json").read_text())
    np.testing.assert_allclose(info["pattern"]["periods_um"],
                               truth_params["pattern"]["periods_um"], rtol=0.01)
    # Existing output without --overwrite: one-line error, exit code 2.
    res = runner.invoke(app, ["sim", "reconstruct", str(tmp_path / "s" / "raw.ome.tif"),
                              "-o", str(out), "--background", "100", "-q"])
    assert res.exit_code == 2 and "error:" in res.output
    # A 2D image is not a raw SIM stack.
    res = runner.invoke(app, ["sim", "reconstruct", str(tmp_path / "s" / "truth.ome.tif"),
                              "-o", str(tmp_path / "x.ome.tif")])
    assert res.exit_code == 2 and "raw frames" in res.output


def test_lightfield_simulate_then_reconstruct(tmp_path, runner):
    common = ["--planes", "5", "--views", "5", "--kernel", "9"]
    res = runner.invoke(app, ["lightfield", "simulate", str(tmp_path / "lf"), "--lenslets",
                              "16", *common])
    assert res.exit_code == 0, res.output
    lenslet, _ = read_image(tmp_path / "lf" / "lenslet.ome.tif")
    assert lenslet.shape == (80, 80)
    out = tmp_path / "vol.ome.tif"
    res = runner.invoke(app, ["lightfield", "reconstruct", str(tmp_path / "lf" / "lenslet.ome.tif"),
                              "-o", str(out), "--iterations", "3", "-q", *common])
    assert res.exit_code == 0, res.output
    vol, meta = read_image(out)
    assert vol.shape == (5, 16, 16) and meta.axes == "ZYX" and np.all(vol >= 0)
    res = runner.invoke(app, ["lightfield", "reconstruct", str(tmp_path / "lf" / "lenslet.ome.tif"),
                              "-o", str(tmp_path / "v2.ome.tif"), "--views", "4"])
    assert res.exit_code == 2 and "error:" in res.output


@pytest.mark.realdata
def test_sim_reconstruct_real_tirf_frames(tmp_path, runner, shared_data):
    folder = shared_data / "sim_rdl_microtubules"
    if not folder.is_dir():
        pytest.skip("sim_rdl_microtubules absent")
    out = tmp_path / "mt.ome.tif"
    res = runner.invoke(app, ["sim", "reconstruct", str(folder / "MT.mrc"), "-o", str(out),
                              "--otf", str(folder / "TIRF488_cam1_0_z30_OTF2d.mrc"),
                              "--background", "auto"])
    assert res.exit_code == 0, res.output
    assert "warning" not in res.output
    info = json.loads((tmp_path / "mt.json").read_text())
    assert info["estimate"]["problems"] == [] and info["estimate"]["repaired_pixels"] > 0
    res = runner.invoke(app, ["sim", "reconstruct", str(folder / "MT.mrc"), "-o",
                              str(tmp_path / "x.ome.tif"), "--k-guess", "0.18"])
    assert res.exit_code == 2 and "PERIOD_UM,ANGLE_DEG" in res.output
