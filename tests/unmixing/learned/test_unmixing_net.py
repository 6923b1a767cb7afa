"""Learned unmixing net: training on simulation, residual design, model folder."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.core.errors import ConfigError, DataError
from fluorecon.methods.classical.unmixing import linear_unmix
from fluorecon.methods.learned.unmixing_net import UnmixingNet, UnmixingNetConfig
from fluorecon.simulate.camera import camera_inverse
from fluorecon.simulate.spectra import Channel, abundance_maps, simulate_spectral

BANDS = [(490, 540), (540, 590), (590, 640), (640, 690)]
FL = ["EGFP", "mCherry"]


@pytest.fixture(scope="module")
def trained():
    return UnmixingNet(fluorophores=FL, bands=BANDS, steps=40, n_images=3, image_size=64,
                       patch_size=32, batch_size=4).fit()


def test_training_lowers_the_loss_and_roundtrips(trained, tmp_path):
    hist = trained.history
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    a = abundance_maps((40, 40), 2, seed=7)
    s = simulate_spectral(a, FL, [Channel(*b) for b in BANDS], photons=800.0, seed=7)
    y = camera_inverse(s.image, s.camera)
    res = trained.unmix(y, "CYX")
    assert res.abundances.shape == (2, 40, 40) and res.abundances.dtype == np.float32
    assert res.abundances.min() >= 0
    for k in range(2):
        assert np.corrcoef(res.abundances[k].ravel(), s.abundances[k].ravel())[0, 1] > 0.9
    # brightness-independent: unmixing is linear, the net rescales per image
    res2 = trained.unmix(3.0 * y, "CYX")
    np.testing.assert_allclose(res2.abundances, 3.0 * res.abundances, rtol=1e-3, atol=1e-2)
    trained.save(tmp_path / "net")
    again = UnmixingNet.load(tmp_path / "net")
    np.testing.assert_array_equal(again.unmix(y, "CYX").abundances, res.abundances)
    # T axis looped, channel axis anywhere
    stack = np.stack([y, y]).transpose(0, 2, 3, 1)  # TYXC
    out = trained.unmix(stack, "TYXC").abundances
    np.testing.assert_allclose(out[1].transpose(2, 0, 1), res.abundances, rtol=1e-5,
                               atol=1e-4)
    assert linear_unmix(y, trained.spectra, "CYX").abundances.shape == res.abundances.shape


def test_errors(trained):
    with pytest.raises(DataError):
        trained.unmix(np.ones((3, 16, 16), np.float32), "CYX")
    with pytest.raises(ConfigError):
        UnmixingNetConfig.build(fluorophores=["EGFP"], bands=[(500, 550)], patch_size=30)
    with pytest.raises(ConfigError):
        UnmixingNetConfig.build(fluorophores=["EGFP"], bands=[(500, 550)], image_size=40)
    with pytest.raises(ConfigError):
        UnmixingNet(fluorophores=["nope"], bands=[(500, 550)])
    with pytest.raises(ConfigError):
        UnmixingNet(fluorophores=FL, bands=BANDS).unmix(np.ones((4, 8, 8)), "CYX")


def test_cli_unmix_with_net(trained, tmp_path):
    from typer.testing import CliRunner

    from fluorecon.cli.app import app
    from fluorecon.core.meta import ImageMeta
    from fluorecon.io import read_image, write_image

    a = abundance_maps((32, 32), 2, seed=8)
    s = simulate_spectral(a, FL, [Channel(*b) for b in BANDS], photons=500.0, seed=8)
    src = tmp_path / "in.tif"
    write_image(src, s.image, ImageMeta(axes="CYX"))
    trained.save(tmp_path / "model")
    out = tmp_path / "ab.ome.tif"
    r = CliRunner().invoke(app, ["unmix", str(src), "-o", str(out), "-m", "net", "--net",
                                 str(tmp_path / "model"), "--background", "100", "-q"])
    assert r.exit_code == 0, r.output
    ab, meta = read_image(out)
    assert ab.shape == (2, 32, 32) and meta.channel_names == ["EGFP", "mCherry"]


def test_cli_unmix_train(tmp_path):
    from typer.testing import CliRunner

    from fluorecon.cli.app import app

    r = CliRunner().invoke(app, ["unmix-train", "-o", str(tmp_path / "m"), "-f",
                                 "EGFP,mCherry", "--bands", "490-540,540-590,590-640",
                                 "--steps", "3", "-q"])
    assert r.exit_code == 0, r.output
    net = UnmixingNet.load(tmp_path / "m")
    assert net.config.steps == 3 and len(net.config.bands) == 3
    r = CliRunner().invoke(app, ["unmix-train", "-o", str(tmp_path / "m"), "-f", "EGFP",
                                 "--bands", "490-540", "--steps", "3", "-q"])
    assert r.exit_code == 2 and "error:" in r.output
