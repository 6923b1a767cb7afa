"""Fixtures of the learned-method tests: torch pinned to one thread (the test machine's two
cores are shared; determinism tests need a fixed thread count) and small simulated data."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="session", autouse=True)
def _torch_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLUORECON_NUM_THREADS", "1")
        torch.set_num_threads(1)
        yield
    torch.set_num_threads(before)
