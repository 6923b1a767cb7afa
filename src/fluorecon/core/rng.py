"""Seeded random generators: every random step in fluorecon takes a seed or a Generator."""

from __future__ import annotations

import numpy as np

SeedLike = int | np.random.Generator | None


def make_rng(seed: SeedLike = None) -> np.random.Generator:
    """Return a NumPy ``Generator`` from an int seed, an existing generator or ``None``.

    Examples
    --------
    >>> make_rng(0).integers(10) == make_rng(0).integers(10)
    True
    """
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)
