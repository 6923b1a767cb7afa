"""``fluorecon predict --stream`` and ``fluorecon train --devices`` on tiny data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from fluorecon.cli.app import app
from fluorecon.core.meta import ImageMeta
from fluorecon.io import read_image, write_image
from fluorecon.methods.learned import CARE
from fluorecon.simulate import simulate_pair

runner = CliRunner()


def run(*args: object) -> Any:
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli")
    pairs = [simulate_pair("denoise", (64, 64), photons=20.0, seed=s) for s in (1, 2)]
    for i, p in enumerate(pairs):
        write_image(d / "lo" / f"{i}.tif", p.input, ImageMeta(axes="YX"))
        write_image(d / "hi" / f"{i}.tif", p.target, ImageMeta(axes="YX"))
    care = CARE(steps=4, patch_size=16, batch_size=4, depth=2, base_filters=4,
                validation_patches=2).fit([p.input for p in pairs],
                                          [p.target for p in pairs], "YX", device="cpu")
    care.save(d / "model")
    image = np.random.default_rng(0).poisson(30.0, size=(2, 90, 70)).astype(np.uint16)
    write_image(d / "in.tif", image, ImageMeta(axes="TYX", pixel_size={"Y": 0.1, "X": 0.1}))
    return {"dir": d, "model": d / "model", "input": d / "in.tif"}


def test_predict_stream_equals_in_memory(files: dict[str, Path], tmp_path: Path) -> None:
    res = run("predict", files["input"], "-m", files["model"], "-o", tmp_path / "a.tif",
              "--device", "cpu", "-q")
    assert res.exit_code == 0, res.output
    res = run("predict", files["input"], "-m", files["model"], "-o", tmp_path / "b.zarr",
              "--stream", "--device", "cpu", "-q")
    assert res.exit_code == 0, res.output
    a, _ = read_image(tmp_path / "a.tif")
    b, meta = read_image(tmp_path / "b.zarr")
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-4)
    assert meta.axes == "TYX" and meta.pixel_size == {"Y": 0.1, "X": 0.1}
    assert meta.extra["streamed"] is True and meta.extra["method"] == "care"
    res = run("predict", files["input"], "-m", files["model"], "-o", tmp_path / "c.zarr",
              "--stream", "--tta", "-q")
    assert res.exit_code == 2 and res.stderr.startswith("error:") and "--tta" in res.stderr


def test_train_devices_options(files: dict[str, Path], tmp_path: Path) -> None:
    d = files["dir"]
    res = run("train", "care", "--help")
    assert "--devices" in res.output and "--nodes" in res.output
    res = run("train", "care", d / "lo", "-t", d / "hi", "-o", tmp_path / "m",
              "--devices", "3", "--batch-size", "8", "--device", "cpu", "-q")
    assert res.exit_code == 2 and "divisible by 3" in res.stderr
    assert not (tmp_path / "m").exists()
