"""The Method driver: axes loop, dtype policy, validation, registry."""

import numpy as np
import pytest
from pydantic import Field

from fluorecon.core import AxesError, ConfigError
from fluorecon.methods import Method, MethodConfig, available, create, get_method


class _ScaleConfig(MethodConfig):
    factor: float = Field(default=2.0, gt=0, description="Multiplier.")


class _Scale(Method):
    name = "_scale"
    kind = "test"
    Config = _ScaleConfig
    spatial_dims = (2,)

    def predict_block(self, block, axes):
        assert axes == "YX" and block.dtype == np.float32 and block.flags.c_contiguous
        return block * self.config.factor + np.arange(block.shape[-1], dtype=np.float32)


def test_predict_loops_over_non_spatial_axes():
    img = np.random.default_rng(0).integers(0, 100, size=(4, 3, 5), dtype=np.uint16)  # Y C X
    m = _Scale(factor=3.0)
    out = m.predict(img, axes="YCX")
    assert out.dtype == np.float32 and out.shape == img.shape
    expected = img.astype(np.float32) * 3 + np.arange(5, dtype=np.float32)
    np.testing.assert_allclose(out, expected)


def test_predict_rejects_unsupported_dims_and_bad_axes():
    m = _Scale()
    with pytest.raises(AxesError, match="3D"):
        m.predict(np.zeros((2, 3, 4), np.float32), axes="ZYX")
    with pytest.raises(AxesError):
        m.predict(np.zeros((3, 4), np.float32), axes="ZYX")


def test_config_errors_and_repr():
    with pytest.raises(ConfigError):
        _Scale(factor=-1)
    assert "factor=2.0" in repr(_Scale())


def test_registry_lists_and_errors():
    names = available()
    assert isinstance(names, list)
    with pytest.raises(ConfigError, match="no-such-method"):
        get_method("no-such-method")
    with pytest.raises(ConfigError):
        create("no-such-method")


class _Iterative(_Scale):
    name = "_iterative"
    block_progress = True

    def predict_block(self, block, axes, *, progress=None):
        for k in range(4):
            if progress is not None:
                progress(k + 1, 4)
        return block


def test_progress_reports_blocks_and_iterations():
    img = np.zeros((3, 4, 5), np.float32)
    seen = []
    _Scale().predict(img, axes="CYX", progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    seen.clear()
    _Iterative().predict(img, axes="CYX", progress=lambda d, t: seen.append((d, t)))
    assert len(seen) == 12 and seen[-1] == (3000, 3000)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
