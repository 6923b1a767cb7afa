"""Streamed (chunked, bounded-memory, resumable) prediction into OME-Zarr."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fluorecon.core.errors import (
    ConfigError,
    InputFileError,
    OutputExistsError,
)
from fluorecon.core.meta import ImageMeta
from fluorecon.io import OutputPathError, read_image, write_image
from fluorecon.predict.stream import partial_dir_for, plan_stream, stream_predict

CASES = [  # axes, shape, chunks (NGFF order)
    ("YX", (61, 83), (16, 16)),
    ("TYX", (2, 45, 50), (1, 16, 32)),
    ("ZYX", (19, 37, 41), (8, 16, 16)),
    ("ZCYX", (9, 2, 30, 27), (1, 4, 16, 16)),
]


def _image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).gamma(2.0, 50.0, size=shape).astype(np.float32)


@pytest.mark.parametrize(("axes", "shape", "chunks"), CASES)
def test_streamed_equals_in_memory(tmp_path: Path, box: Any, axes: str,
                                   shape: tuple[int, ...], chunks: tuple[int, ...]) -> None:
    image = _image(shape)
    before = image.copy()
    meta = ImageMeta(axes=axes, pixel_size={"Y": 0.1, "X": 0.1})
    out = stream_predict(box, image, axes, tmp_path / "out.ome.zarr", meta=meta,
                         chunks=chunks)
    got, got_meta = read_image(out)
    expected = box.predict(image, axes)
    order = [axes.index(a) for a in got_meta.axes]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.transpose(expected, order))
    assert sorted(got_meta.axes) == sorted(axes)
    assert got_meta.pixel_size == {"Y": 0.1, "X": 0.1}
    np.testing.assert_array_equal(image, before)
    assert not partial_dir_for(out).exists()


@pytest.mark.parametrize(("axes", "shape", "chunks"), CASES[:3])
def test_plan_blocks_partition_chunks(box: Any, axes: str, shape: tuple[int, ...],
                                      chunks: tuple[int, ...]) -> None:
    plan = plan_stream(box, shape, axes, chunks=chunks, block_shape=20)
    cover = np.zeros(shape, np.int32)
    sp_chunks = chunks[-len(plan.spatial):]
    for block in plan.blocks:
        cover[plan.output_index(block)] += 1  # output axes == input axes here
        for r, w, c, b, d in zip(block.read, block.write, sp_chunks, plan.block_shape,
                                 plan.spatial):
            n = shape[d]
            assert w.start % c == 0 and w.start % b == 0  # whole chunks only
            assert w.stop == min(w.start + b, n)
            assert r.start == max(w.start - plan.halo, 0) // plan.divisible_by \
                * plan.divisible_by
            assert r.stop == min(w.stop + plan.halo, n)
    assert (cover == 1).all()


def test_reads_are_bounded_by_the_block(tmp_path: Path, box: Any) -> None:
    """Only one block plus its halo is ever read: memory does not grow with the image."""
    image = _image((40, 96, 96))

    class Recorder:
        shape, dtype, ndim = image.shape, image.dtype, image.ndim
        largest = 0

        def __getitem__(self, index: Any) -> np.ndarray:
            part = image[index]
            Recorder.largest = max(Recorder.largest, part.size)
            return part

    stream_predict(box, Recorder(), "ZYX", tmp_path / "o.zarr", chunks=(8, 32, 32),
                   block_shape=(8, 32, 32))
    h = box.receptive_field
    assert Recorder.largest <= (8 + 2 * h) * (32 + 2 * h) ** 2
    assert Recorder.largest < image.size / 10


def test_lazy_file_input(tmp_path: Path, box: Any) -> None:
    image = _image((12, 70, 66))
    src = write_image(tmp_path / "in.ome.zarr", image, ImageMeta(axes="ZYX"),
                      chunks=(4, 32, 32))
    lazy, meta = read_image(src, lazy=True)
    out = stream_predict(box, lazy, meta.axes, tmp_path / "out.zarr", meta=meta,
                         inputs=[src], source=str(src))
    np.testing.assert_array_equal(read_image(out)[0], box.predict(image, "ZYX"))
    with pytest.raises(OutputExistsError):
        stream_predict(box, lazy, meta.axes, src, inputs=[src], overwrite=True)


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path: Path, box: Any) -> None:
    image = _image((3, 64, 80))
    kw: dict[str, Any] = {"chunks": (1, 16, 16), "block_shape": 16}
    full = stream_predict(box, image, "TYX", tmp_path / "full.zarr", **kw)
    n_blocks = len(plan_stream(box, image.shape, "TYX", **kw).blocks)
    out = tmp_path / "resumed.zarr"

    def stop_after(k: int) -> Any:
        def progress(done: int, total: int) -> None:
            if done >= k:
                raise KeyboardInterrupt
        return progress

    with pytest.raises(KeyboardInterrupt):
        stream_predict(box, image, "TYX", out, progress=stop_after(7), **kw)
    partial = partial_dir_for(out)
    assert partial.is_dir() and not out.exists()
    done = sorted(int(p.name) for p in (partial / "done").iterdir())
    assert len(done) == 7
    # a writer killed half-way: garbage in a chunk of a block without marker (block 8:
    # T=0, chunk row 1, column 3), and the last marker lost before it was written
    chunk = partial / "image.zarr" / "0" / "0" / "1" / "3"
    chunk.parent.mkdir(parents=True, exist_ok=True)
    chunk.write_bytes(b"\x00truncated")
    (partial / "done" / str(done[-1])).unlink()

    with pytest.raises(OutputExistsError, match="resume"):
        stream_predict(box, image, "TYX", out, **kw)
    with pytest.raises(InputFileError, match="other data"):
        stream_predict(type(box)(size=5), image, "TYX", out, resume=True, **kw)

    type(box).calls = 0
    seen: list[tuple[int, int]] = []
    stream_predict(box, image, "TYX", out, resume=True,
                   progress=lambda d, t: seen.append((d, t)), **kw)
    assert seen[0] == (6, n_blocks) and seen[-1] == (n_blocks, n_blocks)
    assert type(box).calls == n_blocks - 6  # done blocks were skipped
    np.testing.assert_array_equal(read_image(out)[0], read_image(full)[0])
    assert not partial.exists()


def test_output_checks(tmp_path: Path, box: Any) -> None:
    image = _image((40, 40))
    with pytest.raises(OutputPathError):
        stream_predict(box, image, "YX", tmp_path / "out.npy")
    out = stream_predict(box, image, "YX", tmp_path / "o.zarr")
    with pytest.raises(OutputExistsError):
        stream_predict(box, image, "YX", out)
    stream_predict(type(box)(size=3), image, "YX", out, overwrite=True)
    np.testing.assert_array_equal(read_image(out)[0], type(box)(size=3).predict(image, "YX"))
    with pytest.raises(ConfigError, match="looped axis"):
        stream_predict(box, _image((2, 20, 20)), "TYX", tmp_path / "c.zarr",
                       chunks=(2, 16, 16))
    with pytest.raises(ConfigError, match="batch_size"):
        stream_predict(box, image, "YX", tmp_path / "d.zarr", batch_size=0)


def test_unbounded_method_runs_whole_planes(tmp_path: Path) -> None:
    from fluorecon.methods import get_method

    method = get_method("gaussian")(sigma=1.5)
    assert method.receptive_field is None
    image = _image((2, 48, 40))
    plan = plan_stream(method, image.shape, "TYX", chunks=(1, 16, 16))
    assert len(plan.blocks) == 2 and plan.block_shape == (48, 40)
    out = stream_predict(method, image, "TYX", tmp_path / "g.zarr", chunks=(1, 16, 16))
    np.testing.assert_allclose(read_image(out)[0], method.predict(image, "TYX"), rtol=1e-6)
    with pytest.raises(ConfigError, match="unbounded"):
        plan_stream(method, image.shape, "TYX", chunks=(1, 16, 16), block_shape=16)


def test_chunk_cache_reads_each_chunk_once(tmp_path: Path, box: Any) -> None:
    import dask.array as da

    from fluorecon.predict.stream import ChunkCache

    image = _image((20, 64, 64))
    lazy = da.from_array(image, chunks=(8, 16, 16))
    cache = ChunkCache(lazy, max_bytes=image.nbytes)
    np.testing.assert_array_equal(cache[3:17, 5:60, 1], image[3:17, 5:60, 1])
    np.testing.assert_array_equal(cache[:, 40:41, 7:63], image[:, 40:41, 7:63])
    out = stream_predict(box, lazy, "ZYX", tmp_path / "o.zarr", chunks=(8, 16, 16),
                         block_shape=16)
    np.testing.assert_array_equal(read_image(out)[0], box.predict(image, "ZYX"))
    # blocks of one chunk with a halo touch up to 27 chunks each; through the cache the
    # streamed run decodes every chunk of the input once
    cache = ChunkCache(lazy, max_bytes=image.nbytes)
    plan = plan_stream(box, image.shape, "ZYX", chunks=(8, 16, 16), block_shape=16)
    for block in plan.blocks:
        cache[plan.input_index(block)]
    assert cache.decoded == 3 * 4 * 4
    small = ChunkCache(lazy, max_bytes=1)  # keeps one chunk: still correct
    np.testing.assert_array_equal(small[2:19, 3:50, 9:40], image[2:19, 3:50, 9:40])


def test_tiff_output(tmp_path: Path, box: Any) -> None:
    image = _image((2, 30, 40, 50))
    meta = ImageMeta(axes="CZYX", pixel_size={"Z": 0.5, "Y": 0.2, "X": 0.2},
                     channel_names=["a", "b"])
    out = stream_predict(box, image, "CZYX", tmp_path / "o.ome.tif", meta=meta,
                         chunks=(1, 8, 16, 16))
    got, got_meta = read_image(out)
    np.testing.assert_array_equal(got, box.predict(image, "CZYX"))
    assert got_meta.axes == "CZYX" and got_meta.channel_names == ["a", "b"]
    assert got_meta.pixel_size == {"Z": 0.5, "Y": 0.2, "X": 0.2}
    assert not partial_dir_for(out).exists()
