"""napari tests that train or load networks: skipped where torch is not installed (the
root conftest pins torch to one thread)."""

import pytest

pytest.importorskip("torch")
