"""Report tests that train or run a network: skipped where torch is not installed (the root
conftest pins torch to one thread)."""

import pytest

pytest.importorskip("torch")
