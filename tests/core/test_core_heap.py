"""Scoped glibc heap reuse: settings on entry, restored and trimmed on the outermost exit."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from fluorecon.core import heap


class _FakeLibc:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int] | tuple[str, int]] = []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("malloc_trim", pad))
        return 1


@pytest.fixture
def fake(monkeypatch):
    lib = _FakeLibc()
    monkeypatch.setattr(heap, "_libc", lib)
    monkeypatch.delenv("FLUORECON_HEAP_REUSE", raising=False)
    return lib


def test_outermost_block_sets_restores_and_trims(fake):
    with heap.heap_reuse():
        assert fake.calls == [("mallopt", heap._M_MMAP_THRESHOLD, heap._LARGE),
                              ("mallopt", heap._M_TRIM_THRESHOLD, heap._LARGE)]
        with heap.heap_reuse():  # nested: no further calls
            pass
        assert len(fake.calls) == 2
    assert fake.calls[2:] == [("mallopt", heap._M_MMAP_THRESHOLD, heap._GLIBC_DEFAULT),
                              ("mallopt", heap._M_TRIM_THRESHOLD, heap._GLIBC_DEFAULT),
                              ("malloc_trim", 0)]
    assert heap._depth == 0


def test_restored_after_an_exception_and_as_decorator(fake):
    @heap.heap_reuse()
    def boom() -> None:
        raise ValueError("x")

    with pytest.raises(ValueError):
        boom()
    assert fake.calls[-1] == ("malloc_trim", 0) and heap._depth == 0
    boom_calls = len(fake.calls)
    with pytest.raises(ValueError):
        boom()  # a decorator makes a fresh context on every call
    assert len(fake.calls) == 2 * boom_calls


def test_switched_off_by_environment(fake, monkeypatch):
    monkeypatch.setenv("FLUORECON_HEAP_REUSE", "0")
    assert not heap.heap_reuse_enabled()
    with heap.heap_reuse():
        pass
    assert fake.calls == []


def test_concurrent_blocks_share_one_setting(fake):
    inside = threading.Barrier(3)

    def work() -> None:
        with heap.heap_reuse():
            inside.wait()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    with heap.heap_reuse():
        inside.wait()
    for t in threads:
        t.join()
    assert [c[0] for c in fake.calls].count("malloc_trim") <= 3
    assert fake.calls[-1] == ("malloc_trim", 0) and heap._depth == 0
    # the last restore leaves glibc's defaults
    assert fake.calls[-3:-1] == [("mallopt", heap._M_MMAP_THRESHOLD, heap._GLIBC_DEFAULT),
                                 ("mallopt", heap._M_TRIM_THRESHOLD, heap._GLIBC_DEFAULT)]


def test_real_allocations_are_unchanged():
    """On the real C library (or a no-op elsewhere) the block changes no results."""
    rng = np.random.default_rng(0)
    a = rng.random((512, 512))
    with heap.heap_reuse():
        b = sum(np.fft.rfft2(a + k).real.sum() for k in range(3))
    c = sum(np.fft.rfft2(a + k).real.sum() for k in range(3))
    assert b == c
