import numpy as np
import pytest

from fluorecon.core import AxesError, ImageMeta, check_axes, spatial_axes
from fluorecon.core.axes import default_axes, to_canonical


@pytest.mark.parametrize("axes,ndim,expected", [("yx", 2, "YX"), ("ZYX", 3, "ZYX"),
                                                ("tczyx", 5, "TCZYX"), ("YXC", 3, "YXC")])
def test_check_axes_accepts_and_uppercases(axes, ndim, expected):
    assert check_axes(axes, ndim=ndim) == expected


@pytest.mark.parametrize("axes,ndim,needle", [
    ("YXQ", 3, "'Q'"), ("YYX", 3, "'Y' repeated"), ("ZY", 2, "Y and an X"), ("ZYX", 2, "2 dimensions"),
    ("", None, "non-empty"),
])
def test_check_axes_errors_name_the_problem(axes, ndim, needle):
    with pytest.raises(AxesError) as exc:
        check_axes(axes, ndim=ndim)
    text = str(exc.value)
    assert needle in text
    assert "\n" not in text


def test_spatial_and_canonical():
    assert spatial_axes("TCZYX") == "ZYX"
    assert spatial_axes("CYX") == "YX"
    assert to_canonical("YXC") == ("CYX", [2, 0, 1])


def test_default_axes_never_guesses_beyond_3d():
    assert default_axes(2) == "YX"
    assert default_axes(3) == "ZYX"
    with pytest.raises(AxesError):
        default_axes(4)


def test_image_meta_validation_and_spacing():
    meta = ImageMeta(axes="CZYX", pixel_size={"Z": 0.3, "X": 0.1})
    assert meta.spacing() == (0.3, 1.0, 0.1)
    meta.check_shape((2, 3, 4, 5))
    with pytest.raises(AxesError):
        meta.check_shape((3, 4, 5))
    with pytest.raises(ValueError):
        ImageMeta(axes="YX", pixel_size={"Z": 0.3})
    with pytest.raises(ValueError):
        ImageMeta(axes="YX", pixel_size={"X": -1.0})
    assert meta.with_axes("YX").pixel_size == {"X": 0.1}
    # JSON round trip
    assert ImageMeta.model_validate_json(meta.model_dump_json()) == meta
