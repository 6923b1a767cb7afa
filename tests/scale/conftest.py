"""Fixtures of the scale tests: a small local method with a bounded receptive field."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest
from scipy import ndimage as ndi

from fluorecon.methods.base import Method, MethodConfig


class BoxConfig(MethodConfig):
    size: int = 5


class BoxFilter(Method):
    """Uniform filter of odd ``size`` with reflecting borders: receptive field size // 2.

    Counts the blocks it predicts (class-wide), so tests can see which work was redone.
    """

    name: ClassVar[str] = "box_test"
    kind: ClassVar[str] = "denoise"
    Config: ClassVar[type[MethodConfig]] = BoxConfig
    calls: ClassVar[int] = 0

    @property
    def receptive_field(self) -> int | None:
        return int(self.config.size) // 2  # type: ignore[attr-defined]

    def predict_block(self, block: np.ndarray, axes: str) -> np.ndarray:
        type(self).calls += 1
        return ndi.uniform_filter(block, int(self.config.size),  # type: ignore[attr-defined]
                                  mode="reflect")


@pytest.fixture
def box() -> Any:
    BoxFilter.calls = 0
    return BoxFilter(size=7)
