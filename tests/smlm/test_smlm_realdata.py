"""Classical localisation on the shared SMLM files (simulated by other packages, exact truth)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from fluorecon.core.errors import InputFileError
from fluorecon.methods.classical.smlm import LocalizeConfig, localize, read_insight3
from fluorecon.metrics.smlm import localization_scores
from fluorecon.simulate.camera import CameraModel
from fluorecon.simulate.smlm import PSFModel


@pytest.mark.realdata
def test_storm_analysis_movie_against_its_truth(shared_data: Path) -> None:
    d = shared_data / "smlm_storm_analysis" / "sim_test"
    movie = np.fromfile(d / "test.dax", ">u2").reshape(10, 256, 256)
    truth = read_insight3(d / "test_olist.bin", pixel_size=160.0)
    assert len(truth) == 2000 and truth.n_frames == 10
    cam = CameraModel.ideal()  # gain/offset unknown: the offset is absorbed by the background
    # the PSF width is self-calibrated on the movie (free-sigma fits), not taken from the truth
    free = localize(movie, camera=cam, config=LocalizeConfig(pixel_size=160.0, fit_sigma=True,
                                                             threshold=2.0))
    sigma = float(np.median(free.sigma))
    locs = localize(movie, camera=cam, config=LocalizeConfig(pixel_size=160.0,
                                                             psf=PSFModel(sigma=sigma)))
    s = localization_scores(locs, truth, tolerance=160.0)
    assert s.jaccard > 0.8 and s.rmse_lateral < 40.0
    assert abs(s.bias_x) < 5.0 and abs(s.bias_y) < 5.0  # coordinate conventions agree


@pytest.mark.realdata
def test_picasso_localisations_sit_on_the_binding_sites(shared_data: Path) -> None:
    d = shared_data / "smlm_picasso_sim"
    meta = {k.strip(): v.strip() for k, _, v in
            (ln.partition(":") for ln in (d / "testdata.yaml").read_text().splitlines())}
    n, size, px = int(meta["Frames"]), int(meta["Height"]), float(meta["Camera.Pixelsize"])
    movie = np.fromfile(d / "testdata.raw", "<u2").reshape(n, size, size)
    hx = [float(v) for v in meta["Structure.HandleX"].split(",") if v.strip()]
    hy = [float(v) for v in meta["Structure.HandleY"].split(",") if v.strip()]
    sites = np.column_stack([hx, hy]) * px
    locs = localize(movie, camera=CameraModel.ideal(), config=LocalizeConfig(
        pixel_size=px, psf=PSFModel(sigma=float(meta["Imager.PSF"]) * px)))
    assert len(locs) >= 20
    dist, _ = cKDTree(sites).query(locs.positions())
    assert np.mean(dist < 30.0) > 0.9


def test_insight3_reader_rejects_other_files(tmp_path: Path) -> None:
    (tmp_path / "x.bin").write_bytes(b"NOPE" + bytes(20))
    with pytest.raises(InputFileError):
        read_insight3(tmp_path / "x.bin", pixel_size=100.0)
    (tmp_path / "t.bin").write_bytes(b"M425" + np.array([1, 6, 5], "<i4").tobytes())
    with pytest.raises(InputFileError):
        read_insight3(tmp_path / "t.bin", pixel_size=100.0)
