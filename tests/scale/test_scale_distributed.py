"""Streamed prediction on a dask.distributed LocalCluster: equal results, retries, worker loss."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from fluorecon.core.errors import ConfigError  # noqa: E402
from fluorecon.core.meta import ImageMeta  # noqa: E402
from fluorecon.io import read_image, write_image  # noqa: E402
from fluorecon.methods import get_method  # noqa: E402
from fluorecon.predict.distributed import distributed_predict, make_client  # noqa: E402
from fluorecon.predict.stream import partial_dir_for, stream_predict  # noqa: E402
from fluorecon.simulate.psf import gaussian_psf  # noqa: E402


class FlakyWiener(get_method("wiener")):  # type: ignore[misc]
    """Wiener deconvolution whose first call of every block fails (a transient fault)."""

    failed: ClassVar[set[tuple[int, ...]]] = set()

    def predict_block(self, block: np.ndarray, axes: str) -> np.ndarray:
        key = (block.shape, float(block[0, 0]))
        if key not in FlakyWiener.failed:
            FlakyWiener.failed.add(key)
            raise RuntimeError("transient failure")
        return super().predict_block(block, axes)


def _wiener(cls: Any = None) -> Any:
    cls = cls or get_method("wiener")
    return cls(psf=gaussian_psf((9, 9), 1.3), balance=0.02, fft_backend="scipy", threads=1)


def _image(shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.poisson(rng.uniform(20, 200, size=shape)).astype(np.uint16)


@pytest.fixture(scope="module")
def thread_client() -> Iterator[Any]:
    client, cluster = make_client(n_workers=2, processes=False)
    yield client
    client.close()
    cluster.close()


def test_cluster_equals_in_process(tmp_path: Path, thread_client: Any) -> None:
    image = _image((2, 70, 90))
    src = write_image(tmp_path / "in.ome.zarr", image,
                      ImageMeta(axes="TYX", pixel_size={"Y": 0.2, "X": 0.2}),
                      chunks=(1, 32, 32))
    lazy, meta = read_image(src, lazy=True)
    ref = stream_predict(_wiener(), lazy, "TYX", tmp_path / "ref.zarr", chunks=(1, 32, 32),
                         block_shape=32, meta=meta)
    seen: list[int] = []
    out = distributed_predict(_wiener(), src, None, tmp_path / "dist.ome.zarr",
                              client=thread_client, chunks=(1, 32, 32), block_shape=32,
                              blocks_per_task=2,
                              progress=lambda d, t: seen.append(d))
    got, got_meta = read_image(out)
    np.testing.assert_array_equal(got, read_image(ref)[0])
    assert got_meta.pixel_size == {"Y": 0.2, "X": 0.2}
    assert seen[-1] == 2 * 3 * 3 and seen == sorted(seen)
    assert not partial_dir_for(out).exists()
    assert not thread_client.run(lambda dask_worker: [
        k for k in dask_worker.plugins if k.startswith("fluorecon-stream")])[
        next(iter(thread_client.scheduler_info()["workers"]))]  # plugin unregistered


def test_failing_tasks_are_retried(tmp_path: Path, thread_client: Any) -> None:
    FlakyWiener.failed.clear()
    image = _image((60, 60)).astype(np.float32)
    ref = stream_predict(_wiener(), image, "YX", tmp_path / "ref.zarr", chunks=(32, 32),
                         block_shape=32)
    out = distributed_predict(_wiener(FlakyWiener), image, "YX", tmp_path / "o.zarr",
                              client=thread_client, chunks=(32, 32), block_shape=32, retries=1)
    np.testing.assert_array_equal(read_image(out)[0], read_image(ref)[0])
    FlakyWiener.failed.clear()
    with pytest.raises(RuntimeError, match="transient"):
        distributed_predict(_wiener(FlakyWiener), image, "YX", tmp_path / "p.zarr",
                            client=thread_client, chunks=(32, 32), block_shape=32, retries=0)
    # what finished stays recorded: a resumed run completes the output
    out = distributed_predict(_wiener(FlakyWiener), image, "YX", tmp_path / "p.zarr",
                              client=thread_client, chunks=(32, 32), block_shape=32, retries=1,
                              resume=True)
    np.testing.assert_array_equal(read_image(out)[0], read_image(ref)[0])


def test_bad_options(tmp_path: Path) -> None:
    image = np.ones((32, 32), np.float32)
    with pytest.raises(ConfigError, match="one of them"):
        make_client(scheduler="tcp://127.0.0.1:1", n_workers=2)
    with pytest.raises(ConfigError, match="explicit axes"):
        distributed_predict(_wiener(), image, None, tmp_path / "o.zarr", n_workers=1)
    with pytest.raises(ConfigError, match="blocks_per_task"):
        distributed_predict(_wiener(), image, "YX", tmp_path / "o.zarr", n_workers=1,
                            blocks_per_task=0)


@pytest.mark.slow
def test_worker_killed_mid_run(tmp_path: Path) -> None:
    """SIGKILL one of 2 worker processes mid-run: the run completes, identical output."""
    image = _image((3, 96, 96)).astype(np.float32)
    ref = stream_predict(_wiener(), image, "TYX", tmp_path / "ref.zarr", chunks=(1, 32, 32),
                         block_shape=32)
    client, cluster = make_client(n_workers=2, processes=True)
    killed: list[str] = []

    def kill_one(done: int, total: int) -> None:
        if done >= 3 and not killed:
            pids = client.run(os.getpid)
            victim = sorted(pids)[0]
            killed.append(victim)
            os.kill(pids[victim], signal.SIGKILL)

    try:
        out = distributed_predict(_wiener(), image, "TYX", tmp_path / "o.zarr", client=client,
                                  chunks=(1, 32, 32), block_shape=32, progress=kill_one)
    finally:
        client.close()
        cluster.close()
    assert killed
    np.testing.assert_array_equal(read_image(out)[0], read_image(ref)[0])
