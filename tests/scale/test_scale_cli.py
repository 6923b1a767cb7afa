"""``fluorecon stream``: classical methods block by block into OME-Zarr from the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fluorecon.cli.app import app
from fluorecon.core.meta import ImageMeta
from fluorecon.io import read_image, write_image
from fluorecon.methods import get_method
from fluorecon.simulate.psf import gaussian_psf

runner = CliRunner()


def run(*args: object):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_stream_command_matches_library_and_resumes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image = rng.poisson(80.0, size=(10, 70, 60)).astype(np.uint16)
    src = write_image(tmp_path / "in.tif", image, ImageMeta(axes="ZYX",
                                                            pixel_size={"Z": 0.3, "Y": 0.1,
                                                                        "X": 0.1}))
    psf = gaussian_psf((5, 7, 7), (0.8, 1.2, 1.2)).astype(np.float32)
    psf_path = write_image(tmp_path / "psf.tif", psf, ImageMeta(axes="ZYX"))
    out = tmp_path / "out.ome.zarr"
    args = ["stream", "wiener", src, "-o", out, "--psf", psf_path, "-p", "balance=0.02",
            "-p", "threads=1", "-p", "fft_backend=scipy", "--chunks", "4x32x32", "-q"]
    res = run(*args)
    assert res.exit_code == 0, res.output
    got, meta = read_image(out)
    assert meta.axes == "ZYX" and meta.pixel_size == {"Z": 0.3, "Y": 0.1, "X": 0.1}
    assert meta.extra["command"] == "stream" and meta.extra["method"] == "wiener"
    method = get_method("wiener")(psf=psf, balance=0.02, threads=1, fft_backend="scipy")
    from fluorecon.predict.stream import stream_predict

    ref = stream_predict(method, image, "ZYX", tmp_path / "ref.zarr", chunks=(4, 32, 32))
    np.testing.assert_array_equal(got, read_image(ref)[0])

    res = run(*args)  # the output exists
    assert res.exit_code == 2 and res.stderr.startswith("error:")
    assert len(res.stderr.strip().splitlines()) == 1
    res = run(*args, "--overwrite", "--resume")  # nothing to resume: runs afresh
    assert res.exit_code == 0, res.output
    res = run("stream", "wiener", src, "-o", tmp_path / "x.npy", "--psf", psf_path, "-q")
    assert res.exit_code == 2 and "OME-Zarr" in res.stderr
    res = run("stream", "wiener", src, "-o", tmp_path / "y.zarr", "--psf", psf_path,
              "--chunks", "4x0", "-q")
    assert res.exit_code == 2 and "--chunks" in res.stderr


def test_interrupted_command_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fluorecon.predict.stream as stream

    image = np.random.default_rng(1).poisson(50.0, size=(3, 64, 64)).astype(np.uint16)
    src = write_image(tmp_path / "in.ome.zarr", image, ImageMeta(axes="TYX"))
    psf_path = write_image(tmp_path / "psf.tif", gaussian_psf((7, 7), 1.0).astype(np.float32),
                           ImageMeta(axes="YX"))
    args = ["stream", "wiener", src, "--psf", psf_path, "-p", "balance=0.05", "-p",
            "fft_backend=scipy", "--chunks", "1x32x32", "-q"]
    assert run(*args, "-o", tmp_path / "full.zarr").exit_code == 0
    real = stream.predict_block_region
    calls = {"n": 0}

    def flaky(*a: object, **k: object) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(stream, "predict_block_region", flaky)
    res = run(*args, "-o", tmp_path / "out.zarr")
    assert res.exit_code == 130 and "--resume" in res.stderr
    assert not (tmp_path / "out.zarr").exists()
    res = run(*args, "-o", tmp_path / "out.zarr")  # neither --resume nor --overwrite
    assert res.exit_code == 2 and "--resume" in res.stderr
    monkeypatch.setattr(stream, "predict_block_region", real)
    assert run(*args, "-o", tmp_path / "out.zarr", "--resume").exit_code == 0
    np.testing.assert_array_equal(read_image(tmp_path / "out.zarr")[0],
                                  read_image(tmp_path / "full.zarr")[0])
