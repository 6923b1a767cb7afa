"""Rendering, merging, RCC drift correction, filters and ThunderSTORM CSV tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fluorecon.core.errors import DataError, InputFileError, OutputExistsError
from fluorecon.methods.classical.smlm import (
    apply_drift,
    drift_rcc,
    filter_localizations,
    merge_localizations,
    read_csv,
    render_gaussian,
    render_histogram,
    to_csv_text,
    write_csv,
)
from fluorecon.simulate.smlm import Localizations, SMLMConfig, simulate_smlm


def test_histogram_counts_land_in_the_right_pixels() -> None:
    locs = Localizations.build(frame=[0, 0, 1, 3], x=[5.0, 15.0, 15.0, 99.0],
                               y=[5.0, 5.0, 5.0, 25.0])
    img = render_histogram(locs, pixel_size=10.0, shape=(3, 10))
    assert img.dtype == np.float32 and img.sum() == 4
    assert img[0, 0] == 1 and img[0, 1] == 2 and img[2, 9] == 1


def test_gaussian_render_conserves_mass_and_widths() -> None:
    locs = Localizations.build(frame=[0, 0], x=[300.0, 700.0], y=[500.0, 500.0],
                               uncertainty=[10.0, 40.0])
    img = render_gaussian(locs, pixel_size=5.0, field_nm=(1000.0, 1000.0))
    assert img.sum() == pytest.approx(2.0, rel=1e-3)
    assert img[:, :100].max() > 10 * img[:, 100:].max()  # narrower one is the brighter peak
    col = img[:, 130:150].sum(axis=1)
    y = (np.arange(200) + 0.5) * 5
    sd = np.sqrt((col * (y - 500) ** 2).sum() / col.sum())
    assert sd == pytest.approx(40.0, rel=0.05)


def test_merge_links_consecutive_frames_only() -> None:
    # molecule A on in frames 0-2 (10 nm jitter), molecule B at frame 5 near A, C far
    locs = Localizations.build(frame=[0, 1, 2, 5, 1], x=[100.0, 108.0, 95.0, 102.0, 900.0],
                               y=[100.0, 96.0, 104.0, 100.0, 900.0],
                               photons=[1000.0, 1100.0, 900.0, 800.0, 500.0],
                               uncertainty=[10.0, 10.0, 10.0, 10.0, 10.0])
    m = merge_localizations(locs, radius=30.0, max_gap=1)
    assert len(m) == 3
    a = m.select(m.extra["n_merged"] == 3)
    assert len(a) == 1 and a.photons[0] == pytest.approx(3000.0)
    assert a.x[0] == pytest.approx(101.0) and a.uncertainty[0] == pytest.approx(10 / np.sqrt(3))
    assert list(m.frame) == [0, 1, 5]
    assert len(merge_localizations(locs, radius=30.0, max_gap=3)) == 2  # gap of 3 bridged
    assert len(merge_localizations(locs, radius=5.0)) == 5


def test_rcc_recovers_a_known_drift_and_correction_sharpens() -> None:
    cfg = SMLMConfig(frames=1000, shape=(48, 48), structure="clusters", density=0.3,
                     k_on=0.05, k_bleach=0.0)
    truth = simulate_smlm(cfg, seed=3).truth
    drift = np.column_stack([np.linspace(0, 120, 1000), 60 * np.sin(np.linspace(0, 3, 1000))])
    moved = truth.with_columns(x=truth.x + drift[truth.frame, 0],
                               y=truth.y + drift[truth.frame, 1])
    res = drift_rcc(moved, segments=10, n_frames=1000)
    err = res.drift - (drift - drift[0])
    assert np.abs(err).max() < 25.0  # piecewise-linear drift of 10 segments
    fixed = apply_drift(moved, res)
    assert np.sqrt(np.mean((fixed.x - truth.x - (fixed.x - truth.x).mean()) ** 2)) < 12.0
    with pytest.raises(DataError):
        apply_drift(moved, np.zeros((10, 2)))


def test_filters() -> None:
    locs = Localizations.build(frame=[0, 1, 2], x=[1.0, 2.0, 3.0], y=[1.0, 2.0, 3.0],
                               photons=[100.0, 500.0, 1000.0], uncertainty=[30.0, 10.0, 5.0])
    assert len(filter_localizations(locs, min_photons=400)) == 2
    assert len(filter_localizations(locs, max_uncertainty=10.0, frames=(0, 1))) == 1
    with pytest.raises(DataError):
        filter_localizations(locs, z_range=(0, 1))


def test_csv_roundtrip_with_thunderstorm_names(tmp_path: Path) -> None:
    locs = Localizations.build(frame=[0, 4], x=[10.5, 20.25], y=[1.0, 2.0], z=[-50.0, 75.0],
                               photons=[1000.0, 2000.0], background=[10.0, 12.0],
                               sigma=[130.0, 131.0], uncertainty=[5.0, 6.0],
                               extra={"n_merged": [1, 2]})
    text = to_csv_text(locs)
    header = text.splitlines()[0].split(",")
    assert header[:6] == ["id", "frame", "x [nm]", "y [nm]", "z [nm]", "sigma [nm]"]
    assert "intensity [photon]" in header and "offset [photon]" in header
    assert text.splitlines()[1].startswith("1,1,")  # ThunderSTORM frames count from 1
    path = write_csv(tmp_path / "t.csv", locs)
    back = read_csv(path)
    np.testing.assert_array_equal(back.frame, locs.frame)
    for name in ("x", "y", "z", "photons", "background", "sigma", "uncertainty"):
        np.testing.assert_allclose(getattr(back, name), getattr(locs, name))
    np.testing.assert_allclose(back.extra["n_merged"], [1, 2])
    with pytest.raises(OutputExistsError):
        write_csv(path, locs)
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputFileError):
        read_csv(tmp_path / "bad.csv")
    (tmp_path / "ts.csv").write_text('"id","frame","x [nm]","y [nm]","uncertainty_xy [nm]"\n'
                                     '1,3,100.5,200.5,7.5\n')
    ts = read_csv(tmp_path / "ts.csv")
    assert ts.frame[0] == 2 and ts.uncertainty[0] == 7.5
