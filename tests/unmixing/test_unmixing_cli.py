"""``fluorecon unmix`` and ``fluorecon stabilize`` end to end (classical methods)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from fluorecon.cli.app import app
from fluorecon.core.meta import ImageMeta
from fluorecon.io import read_image, write_image
from fluorecon.simulate.motion import random_drift, simulate_timelapse
from fluorecon.simulate.phantoms import make_phantom
from fluorecon.simulate.spectra import abundance_maps, band_channels, simulate_spectral

runner = CliRunner()
BANDS = "490-540,540-590,590-640,640-690"


@pytest.fixture
def spectral_file(tmp_path):
    a = abundance_maps((48, 48), 2, seed=0)
    s = simulate_spectral(a, ["EGFP", "mCherry"], band_channels(BANDS), photons=500, seed=0)
    path = tmp_path / "spectral.tif"
    write_image(path, s.image, ImageMeta(axes="CYX"))
    return path, s


def test_unmix_nnls_writes_abundances_spectra_residual(spectral_file, tmp_path):
    path, s = spectral_file
    out = tmp_path / "ab.ome.tif"
    r = runner.invoke(app, ["unmix", str(path), "-o", str(out), "-f", "EGFP,mCherry",
                            "--bands", BANDS, "--background", "100", "-q"])
    assert r.exit_code == 0, r.output
    ab, meta = read_image(out)
    assert meta.axes == "CYX" and ab.shape == (2, 48, 48)
    assert meta.channel_names == ["EGFP", "mCherry"]
    # camera gain ~2.17 ADU/e-, QE 0.82: abundances in ADU above offset
    gain = s.camera.total_gain * s.camera.quantum_efficiency
    rel = np.sqrt(np.mean((ab / gain - s.abundances) ** 2)) / 500
    assert rel < 0.05
    spectra = (tmp_path / "ab.spectra.csv").read_text().splitlines()
    assert spectra[0] == "channel,EGFP,mCherry" and len(spectra) == 5
    assert (tmp_path / "ab.residual.ome.tif").exists()
    # refuses to overwrite; one-line error, exit 2
    r = runner.invoke(app, ["unmix", str(path), "-o", str(out), "-m", "nmf", "-k", "2", "-q"])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "error:" in r.output


def test_unmix_errors(spectral_file, tmp_path):
    path, _ = spectral_file
    r = runner.invoke(app, ["unmix", str(path), "-o", str(tmp_path / "x.tif"), "-m", "nnls"])
    assert r.exit_code == 2 and "without spectra" in r.output
    r = runner.invoke(app, ["unmix", str(path), "-o", str(tmp_path / "x.tif"), "-f", "EGFP",
                            "--bands", "500-550"])
    assert r.exit_code == 2 and "1 bands for an image with 4 channels" in r.output
    r = runner.invoke(app, ["unmix", str(path), "-o", str(tmp_path / "x.tif"), "-f", "GFPX",
                            "--bands", BANDS])
    assert r.exit_code == 2 and "fluorophore" in r.output


def test_unmix_spectra_csv_and_nmf(spectral_file, tmp_path):
    path, s = spectral_file
    csv = tmp_path / "ref.csv"
    csv.write_text("channel,EGFP,mCherry\n" + "\n".join(
        f"{i},{s.mixing[i, 0]},{s.mixing[i, 1]}" for i in range(4)) + "\n")
    r = runner.invoke(app, ["unmix", str(path), "-o", str(tmp_path / "a.tif"), "--spectra",
                            str(csv), "-m", "phasor", "--background", "100", "-q"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["unmix", str(path), "-o", str(tmp_path / "n.tif"), "-m", "nmf",
                            "-k", "2", "--background", "100", "-q"])
    assert r.exit_code == 0, r.output
    est = np.loadtxt(tmp_path / "n.spectra.csv", delimiter=",", skiprows=1)[:, 1:]
    np.testing.assert_allclose(est.sum(axis=0), 1.0, atol=1e-6)


def test_stabilize_cli(tmp_path):
    big = ndimage.gaussian_filter(make_phantom("mixed", (112, 112), seed=0), 1.5)
    drift = random_drift(4, 2, step=2.0, seed=3)
    mats = np.tile(np.eye(3), (4, 1, 1))
    mats[:, :2, 2] = drift
    s = simulate_timelapse(big, matrices=mats, shape=(64, 64), photons=300.0, seed=0)
    src = tmp_path / "tl.tif"
    write_image(src, s.frames, ImageMeta(axes="TYX", pixel_size={"Y": 0.1, "X": 0.1}))
    out = tmp_path / "stab.ome.tif"
    r = runner.invoke(app, ["stabilize", str(src), "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    img, meta = read_image(out)
    assert img.shape == s.frames.shape and meta.axes == "TYX"
    rows = np.loadtxt(tmp_path / "stab.motion.csv", delimiter=",", skiprows=1)
    assert np.abs(rows[:, 1:3] - drift).max() < 0.1
    np.testing.assert_allclose(rows[:, 3:5], rows[:, 1:3] * 0.1, atol=1e-5)
    assert json.loads((tmp_path / "stab.motion.json").read_text())["format"] == \
        "fluorecon-motion"
    r = runner.invoke(app, ["stabilize", str(src), "-o", str(tmp_path / "f.tif"), "-m",
                            "flow", "-q"])
    assert r.exit_code == 0, r.output
    flow, fmeta = read_image(tmp_path / "f.flow.ome.tif")
    assert fmeta.axes == "TCYX" and flow.shape == (4, 2, 64, 64)
    r = runner.invoke(app, ["stabilize", str(src), "-o", str(tmp_path / "g.tif"),
                            "--reference", "later"])
    assert r.exit_code == 2 and "error:" in r.output
    r = runner.invoke(app, ["stabilize", str(src), "-o", str(src), "--overwrite"])
    assert r.exit_code == 2
