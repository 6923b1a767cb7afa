import numpy as np
import pytest
from pydantic import Field

from fluorecon.core import BaseConfig, ConfigError, DataError, as_float32, check_image_array, make_rng


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float16, np.float64])
def test_as_float32_converts_by_value(dtype):
    a = np.array([[0, 1, 100]], dtype=dtype)
    out = as_float32(a)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, a.astype(np.float64))


def test_as_float32_rejects_complex():
    with pytest.raises(DataError, match="dtype complex64"):
        as_float32(np.zeros((2, 2), np.complex64))


@pytest.mark.parametrize("bad,needle", [
    (np.zeros((0, 4), np.float32), "empty"),
    (np.zeros(4, np.float32), "at least 2 dimensions"),
    (np.array([[1.0, np.nan]], np.float32), "NaN"),
    (np.array([[1.0, np.inf]], np.float32), "NaN or infinite"),
    (np.zeros((2, 2), object), "dtype object"),
])
def test_check_image_array_errors(bad, needle):
    with pytest.raises(DataError) as exc:
        check_image_array(bad)
    assert needle in str(exc.value)
    assert "\n" not in str(exc.value)


def test_check_finite_on_dask():
    da = pytest.importorskip("dask.array")
    a = da.from_array(np.array([[1.0, np.nan], [0, 0]], np.float32), chunks=1)
    with pytest.raises(DataError):
        check_image_array(a)


class _Cfg(BaseConfig):
    sigma: float = Field(default=1.0, gt=0, description="Sigma in pixels.")


def test_config_forbids_extra_and_gives_one_line_errors():
    with pytest.raises(ConfigError) as exc:
        _Cfg.build(sigma=-1)
    assert "sigma" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(ConfigError, match="sigmaa"):
        _Cfg.build(sigmaa=1)
    cfg = _Cfg.build(sigma=2.0)
    assert _Cfg.model_validate_json(cfg.to_json()) == cfg


def test_make_rng_is_seeded():
    assert make_rng(3).random() == make_rng(3).random()
    g = np.random.default_rng(0)
    assert make_rng(g) is g
