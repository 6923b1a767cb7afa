"""Export tests that need torch (and bioimageio / onnx): skipped where they are missing.
The root conftest pins torch to one thread; bioimageio's cache is kept out of the home
folder (set before bioimageio is first imported)."""

import os
import tempfile

import pytest

pytest.importorskip("torch")
os.environ.setdefault("BIOIMAGEIO_CACHE_PATH", tempfile.mkdtemp(prefix="fluorecon-bioimageio-"))
os.environ.setdefault("BIOIMAGEIO_LOG_WARNINGS", "false")

import numpy as np  # noqa: E402


def _pairs(ndim: int, channels: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (2, channels) + (32,) * ndim if channels > 1 else (2,) + (32,) * ndim
    x = rng.normal(100.0, 10.0, shape).astype(np.float32)
    return x, (0.5 * x + 3.0).astype(np.float32)


@pytest.fixture(scope="session")
def care2d():
    """A tiny CARE model (2D, depth 1, 8 filters, 2 steps), inputs and targets in
    different units so both normalisations matter."""
    from fluorecon.methods.learned import CARE

    x, y = _pairs(2)
    return CARE(steps=2, patch_size=16, depth=1, base_filters=8, batch_size=2,
                validation_fraction=0.5, seed=3).fit(x, y, axes="SYX")


@pytest.fixture(scope="session")
def n2v3d():
    """A tiny 3D N2V2 model (blur pooling, no top skip) with batch normalisation."""
    from fluorecon.methods.learned import N2V2

    x, _ = _pairs(3, seed=1)
    return N2V2(steps=2, patch_size=16, depth=1, base_filters=8, batch_size=2,
                norm="batch", validation_fraction=0.5, seed=4).fit(x, axes="SZYX")


@pytest.fixture(scope="session")
def care2d_prob_multichannel():
    """A tiny probabilistic CARE model mapping 2 channels to 2 (per-channel norms)."""
    from fluorecon.methods.learned import CARE

    x, y = _pairs(2, channels=2, seed=2)
    x[:, 1] *= 5.0
    y[:, 1] = y[:, 1] * 0.1 - 7.0
    return CARE(steps=2, patch_size=16, depth=1, base_filters=8, batch_size=2,
                probabilistic=True, validation_fraction=0.5, seed=5).fit(x, y, axes="SCYX")
