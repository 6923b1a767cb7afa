"""End-to-end tests of the ``fluorecon`` command on tiny simulated data."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from fluorecon.cli.app import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(result, needle: str = "") -> None:
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error:"), err
    assert "Traceback" not in result.output
    assert len(err.splitlines()) == 1, err
    assert needle in err


@pytest.mark.parametrize("command", ["", "simulate", "denoise", "deconvolve", "evaluate", "demo",
                                     "info", "methods"])
def test_help(command):
    result = run(*(([command] if command else []) + ["--help"]))
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_help_explains_units():
    out = run("deconvolve", "--help").output
    assert "units" in out and "PSF" in out
    assert "photons" in run("simulate", "--help").output


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "pair"
    result = run("simulate", "-o", out, "--task", "deconvolve", "--shape", "64x64",
                 "--phantom", "beads", "--photons", "200", "--seed", "3")
    assert result.exit_code == 0, result.output
    return out


def test_simulate_writes_pair(sim_dir):
    names = sorted(p.name for p in sim_dir.iterdir())
    assert names == ["input.ome.tif", "psf.ome.tif", "simulation.json", "target.ome.tif"]
    params = json.loads((sim_dir / "simulation.json").read_text())
    assert params["task"] == "deconvolve" and params["shape"] == [64, 64]
    assert tifffile.imread(sim_dir / "input.ome.tif").shape == (64, 64)


def test_denoise_then_evaluate(sim_dir, tmp_path):
    out = tmp_path / "den.tif"
    result = run("denoise", sim_dir / "input.ome.tif", "-o", out, "--method", "gaussian", "-q")
    assert result.exit_code == 0, result.output
    assert tifffile.imread(out).dtype == np.float32
    result = run("evaluate", out, "--reference", sim_dir / "input.ome.tif", "--json")
    scores = json.loads(result.stdout)
    assert set(scores) == {"psnr", "ssim", "nrmse", "psnr_normalized", "ssim_normalized",
                           "nrmse_normalized"}
    # the smoothed image is close to, but not equal to, its input
    assert 15 < scores["psnr_normalized"] < 60


def test_deconvolve_improves_on_input(sim_dir, tmp_path):
    out = tmp_path / "rl.ome.tif"
    result = run("deconvolve", sim_dir / "input.ome.tif", "-o", out, "--psf",
                 sim_dir / "psf.ome.tif", "--method", "rl", "--iterations", "30", "-q")
    assert result.exit_code == 0, result.output
    before = json.loads(run("evaluate", sim_dir / "input.ome.tif", "--reference",
                            sim_dir / "target.ome.tif", "--json").stdout)
    after = json.loads(run("evaluate", out, "--reference", sim_dir / "target.ome.tif",
                           "--json").stdout)
    assert after["psnr_normalized"] > before["psnr_normalized"] + 1.0


def test_output_rules(sim_dir, tmp_path):
    inp = sim_dir / "input.ome.tif"
    before = inp.read_bytes()
    assert_one_line_error(run("denoise", inp, "-o", inp, "--method", "gaussian", "-q",
                              "--overwrite"), "also an input")
    assert inp.read_bytes() == before
    out = tmp_path / "x.tif"
    out.write_bytes(b"keep")
    assert_one_line_error(run("denoise", inp, "-o", out, "--method", "gaussian", "-q"),
                          "--overwrite")
    assert out.read_bytes() == b"keep"


def test_bad_inputs_give_one_line(tmp_path, sim_dir):
    assert_one_line_error(run("denoise", tmp_path / "missing.tif", "-o", tmp_path / "o.tif"))
    text = tmp_path / "notes.tif"
    text.write_text("this is not a TIFF")
    assert_one_line_error(run("denoise", text, "-o", tmp_path / "o.tif"))
    nan = tmp_path / "nan.npy"
    np.save(nan, np.full((8, 8), np.nan, np.float32))
    assert_one_line_error(run("denoise", nan, "-o", tmp_path / "o.tif"), "NaN")
    assert_one_line_error(run("denoise", sim_dir / "input.ome.tif", "-o", tmp_path / "o.tif",
                              "--axes", "ZYX"))
    assert_one_line_error(run("denoise", sim_dir / "input.ome.tif", "-o", tmp_path / "o.tif",
                              "--method", "rl"), "denoise method")
    assert_one_line_error(run("denoise", sim_dir / "input.ome.tif", "-o", tmp_path / "o.tif",
                              "--method", "gaussian", "--param", "sigma=-3"), "sigma")
    assert_one_line_error(run("simulate", "-o", tmp_path / "s", "--shape", "4x4"), "--shape")
    assert not (tmp_path / "o.tif").exists()


def test_methods_lists_registry():
    out = run("methods").output
    for name in ("gaussian", "tv", "nlm", "auto", "rl", "rl-tv", "wiener"):
        assert name in out
    assert "--param" in run("methods", "tv").output


def test_console_script_exit_code_without_traceback(tmp_path):
    res = subprocess.run([sys.executable, "-m", "fluorecon", "denoise", str(tmp_path / "nope.tif"),
                          "-o", str(tmp_path / "o.tif")], capture_output=True, text=True)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and res.stderr.startswith("error:")


def _table_rows(page: str, index: int) -> list[list[str]]:
    """Cell texts of the body rows of the ``index``-th table of an HTML report."""
    body = re.findall(r"<tbody>(.*?)</tbody>", page, flags=re.S)[index]
    return [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr[^>]*>(.*?)</tr>",
                                                                      body, flags=re.S)]


def test_demo_writes_report(tmp_path):
    out = tmp_path / "demo"
    result = run("demo", "--out", out, "-q")
    assert result.exit_code == 0, result.output
    report = out / "report.html"
    page = report.read_text()
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) >= 6
    for name in pngs:
        assert f"src='{name}'" in page
    assert page.count("<table>") == 3 and "ground truth" in page
    # the denoising table holds the learned rows when torch is installed, else a note
    rows = _table_rows(page, 0)
    psnr = {r[0]: float(r[1]) for r in rows}
    if importlib.util.find_spec("torch") is None:
        assert "n2v" not in psnr and "care" not in psnr
        assert "torch is not installed" in page
    else:
        assert {"n2v", "care"} <= set(psnr), sorted(psnr)
        for name in ("n2v", "care"):
            assert psnr[name] > psnr["input"] + 2.0, (name, psnr)
        assert (out / "data" / "denoise2d_n2v.ome.tif").exists()
        assert "trained on 2 simulated pairs" in page and "short demo budget" in page
    # a second run refuses to overwrite, then succeeds with --overwrite
    assert_one_line_error(run("demo", "--out", out, "-q"), "--overwrite")
