"""``fluorecon smlm`` end to end on tiny simulated movies (classical path; no torch)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fluorecon.cli.app import app
from fluorecon.io import read_image
from fluorecon.methods.classical.smlm import read_csv

runner = CliRunner()


def run(*args: object):
    return runner.invoke(app, ["smlm", *[str(a) for a in args]], catch_exceptions=False)


def one_line_error(result, needle: str = "") -> None:
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    assert needle in err


@pytest.mark.parametrize("command", ["simulate", "train", "localize", "render", "evaluate",
                                     "calibrate"])
def test_help(command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0 and "Usage" in result.output


def test_simulate_localize_render_evaluate(tmp_path: Path) -> None:
    movie, truth = tmp_path / "movie.tif", tmp_path / "truth.csv"
    r = run("simulate", movie, "--truth", truth, "--frames", 60, "--shape", "32x32",
            "--density", 0.4, "--camera", "scmos", "--structure", "clusters", "-q")
    assert r.exit_code == 0, r.output
    data, meta = read_image(movie)
    assert data.shape == (60, 32, 32) and meta.axes == "TYX"
    assert meta.pixel_size["X"] == pytest.approx(0.1)
    locs_csv = tmp_path / "locs.csv"
    r = run("localize", movie, locs_csv, "--camera", "scmos", "-q")
    assert r.exit_code == 0, r.output
    locs = read_csv(locs_csv)
    assert len(locs) > 20 and locs.uncertainty is not None
    r = run("evaluate", locs_csv, truth, "--tolerance", 100, "--json", tmp_path / "s.json")
    assert r.exit_code == 0, r.output
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["jaccard"] > 0.5 and scores["rmse_lateral"] < 40
    assert "| jaccard |" in r.stdout
    img_path = tmp_path / "render.tif"
    r = run("render", locs_csv, img_path, "--pixel-size", 20, "--merge", "--save-table",
            tmp_path / "merged.csv", "-q")
    assert r.exit_code == 0, r.output
    img, _ = read_image(img_path)
    merged = read_csv(tmp_path / "merged.csv")
    assert len(merged) < len(locs)
    assert float(np.asarray(img).sum()) == pytest.approx(len(merged), rel=0.05)
    # outputs are never written over existing files (or inputs) without --overwrite
    one_line_error(run("localize", movie, locs_csv, "-q"))
    one_line_error(run("render", locs_csv, locs_csv, "--overwrite", "-q"))


def test_errors_are_one_line(tmp_path: Path) -> None:
    one_line_error(run("localize", tmp_path / "missing.tif", tmp_path / "o.csv"))
    one_line_error(run("simulate", tmp_path / "m.tif", "--truth", tmp_path / "t.csv",
                       "--shape", "2x2"), "--shape")
    one_line_error(run("simulate", tmp_path / "m.tif", "--truth", tmp_path / "t.csv",
                       "--camera", "webcam"), "webcam")
    (tmp_path / "bad.csv").write_text("q,r\n1,2\n")
    one_line_error(run("render", tmp_path / "bad.csv", tmp_path / "r.tif"))
    one_line_error(run("train", tmp_path / "model", "--method", "palm"), "palm")


def test_calibrate_then_3d_simulate_and_localize(tmp_path: Path) -> None:
    from fluorecon.core.meta import ImageMeta
    from fluorecon.io import write_image
    from fluorecon.simulate.camera import CameraModel, camera_forward
    from fluorecon.simulate.smlm import Localizations, PSFModel, expected_photons

    psf = PSFModel(kind="astigmatic")
    zs = np.arange(-600.0, 601.0, 50.0)
    k = zs.size
    beads = Localizations.build(frame=np.repeat(np.arange(k), 2), x=np.tile([800.0, 2400.0], k),
                                y=np.tile([1600.0, 1600.0], k), z=np.repeat(zs, 2),
                                photons=np.full(2 * k, 20000.0))
    stack = camera_forward(expected_photons(beads, (32, 32), pixel_size=100.0, psf=psf) + 20,
                           CameraModel.scmos(), rng=0)
    write_image(tmp_path / "beads.tif", stack,
                ImageMeta(axes="ZYX", pixel_size={"Z": 0.05, "Y": 0.1, "X": 0.1}))
    calib = tmp_path / "calib.json"
    r = run("calibrate", tmp_path / "beads.tif", calib, "--z-step", 50)
    assert r.exit_code == 0, r.output
    fields = json.loads(calib.read_text())
    assert fields["c"] == pytest.approx(300.0, abs=20.0)
    movie, truth = tmp_path / "m3.tif", tmp_path / "t3.csv"
    assert run("simulate", movie, "--truth", truth, "--frames", 30, "--shape", "32x32",
               "--astigmatism", calib, "--density", 0.3, "--structure", "uniform",
               "-q").exit_code == 0
    r = run("localize", movie, tmp_path / "l3.csv", "--astigmatism", calib, "-q")
    assert r.exit_code == 0, r.output
    r = run("evaluate", tmp_path / "l3.csv", truth, "--tolerance", 150, "--axial-tolerance",
            300, "--json", tmp_path / "s3.json", "--frc-pixel", 0)
    scores = json.loads((tmp_path / "s3.json").read_text())
    assert scores["jaccard"] > 0.5 and scores["rmse_axial"] < 80.0
