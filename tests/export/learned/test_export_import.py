"""bioimage.io import: fluorecon's exports, re-imported as packages, predict tiled exactly
like fluorecon's own models (2D and 3D, every weight format); packages with sample
statistics (scale_range) are normalised once on the whole image."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("bioimageio.core")

from fluorecon.core.errors import ConfigError, InputFileError  # noqa: E402
from fluorecon.methods.learned.bioimageio_export import export_bioimageio  # noqa: E402
from fluorecon.methods.learned.bioimageio_import import (  # noqa: E402
    BioimageioModel,
    Step,
    apply_steps,
    freeze,
)
from fluorecon.predict import predict_method_tiled  # noqa: E402


@pytest.fixture(scope="module")
def packages(care2d, n2v3d, care2d_prob_multichannel, tmp_path_factory):
    root = tmp_path_factory.mktemp("packages")
    return {
        "care2d": export_bioimageio(care2d, root / "care2d.zip",
                                    weight_formats=("torchscript",)).path,
        "n2v3d": export_bioimageio(n2v3d, root / "n2v3d", weight_formats=()).path,
        "prob": export_bioimageio(care2d_prob_multichannel, root / "prob.zip",
                                  weight_formats=()).path,
    }


@pytest.mark.parametrize("name,fmt", [("care2d", "pytorch_state_dict"),
                                      ("care2d", "torchscript"),
                                      ("n2v3d", "pytorch_state_dict")])
def test_roundtrip_tiled_matches_fluorecon(name, fmt, packages, request, rng):
    method = request.getfixturevalue(name)
    mc = method.model_config
    # awkward sizes, not multiples of the step, but above the declared minimum size
    shape = (45, 38) if mc.unet.ndim == 2 else (25, 27, 23)
    axes = "TYX" if mc.unet.ndim == 2 else "ZYX"
    image = rng.normal(100.0, 10.0, ((2,) if mc.unet.ndim == 2 else ()) + shape
                       ).astype(np.float32)
    model = BioimageioModel(source=str(packages[name]), weight_format=fmt)
    assert model.receptive_field == method.receptive_field
    assert model.divisible_by == method.divisible_by and model.channel_counts is None
    tile = 16 if mc.unet.ndim == 2 else 12
    ours = predict_method_tiled(method, image, axes, tile_shape=tile)
    theirs = predict_method_tiled(model, image, axes, tile_shape=tile)
    # float32 resolution of the values plus 0.1 % of their spread (tiny networks can be
    # nearly constant, so the spread, not the magnitude, is what a mismatch would show)
    atol = 2e-6 * float(np.abs(ours).max()) + 1e-3 * float(np.ptp(ours))
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=atol)
    np.testing.assert_allclose(model.predict(image, axes), method.predict(image, axes),
                               rtol=0, atol=atol)
    before = image.copy()
    model.predict(image, axes)
    np.testing.assert_array_equal(image, before)


def test_roundtrip_multichannel_probabilistic(care2d_prob_multichannel, packages, rng):
    method = care2d_prob_multichannel
    image = rng.normal(100.0, 10.0, (2, 36, 30)).astype(np.float32)
    image[1] *= 5.0
    model = BioimageioModel(source=str(packages["prob"]))
    assert model.channel_counts == (2, 2)  # means only, like fluorecon's predict
    ours = predict_method_tiled(method, image, "CYX", tile_shape=16)
    theirs = predict_method_tiled(model, image, "CYX", tile_shape=16)
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=2e-5 * float(np.abs(ours).max()))
    both = BioimageioModel(source=str(packages["prob"]), output_channels=[0, 1, 2, 3])
    assert both.predict(image, "CYX").shape == (4, 36, 30)


def test_scale_range_statistics_frozen_on_whole_image(packages, tmp_path, rng):
    # Rewrite the package's fixed normalisation as per-sample percentile normalisation.
    import shutil

    pkg = tmp_path / "pkg"
    shutil.copytree(packages["n2v3d"], pkg)
    rdf = (pkg / "rdf.yaml").read_text()
    start = rdf.index("      - id: scale_linear")
    end = rdf.index("outputs:")
    rdf = rdf[:start] + ("      - id: scale_range\n        kwargs:\n"
                         "          min_percentile: 1.0\n          max_percentile: 99.0\n"
                         "          axes: [z, y, x]\n") + rdf[end:]
    (pkg / "rdf.yaml").write_text(rdf)
    model = BioimageioModel(source=str(pkg))
    assert model.needs_statistics and model.receptive_field is None
    image = rng.gamma(2.0, 30.0, (20, 24, 24)).astype(np.float32)
    whole = model.predict(image, "ZYX")
    fixed = model.with_statistics(image, "ZYX")
    assert not fixed.needs_statistics and fixed.receptive_field == model.layout.halo
    (step,) = fixed.preprocessing
    lo, hi = np.percentile(image, [1.0, 99.0])
    assert step.kind == "affine"
    assert step.gain[0] == pytest.approx(1.0 / (hi - lo + 1e-6), rel=1e-6)
    assert step.offset[0] == pytest.approx(-lo / (hi - lo + 1e-6), rel=1e-6)
    tiled = predict_method_tiled(fixed, image, "ZYX", tile_shape=8)
    atol = 2e-6 * float(np.abs(whole).max()) + 1e-3 * float(np.ptp(whole))
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=atol)
    # statistics of a part of the image differ from the whole image's
    (part,) = model.with_statistics(image[:, :6], "ZYX").preprocessing
    assert part.gain[0] != pytest.approx(step.gain[0], rel=1e-3)


def test_steps_formulas(rng):
    x = rng.normal(5.0, 2.0, (2, 3, 16, 16)).astype(np.float32)
    lo, hi = np.percentile(x, [2.0, 98.0])
    step = Step("scale_range", q_lo=2.0, q_hi=98.0, eps=1e-6)
    np.testing.assert_allclose(apply_steps([step], x), (x - lo) / (hi - lo + 1e-6),
                               rtol=1e-5, atol=1e-6)
    per = freeze(Step("zmuv", per_channel=True, eps=1e-6), x)
    y = apply_steps([per], x)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.std(axis=(0, 2, 3)), 1.0, rtol=1e-4)
    clip = apply_steps([Step("clip", lo=(0.0,), hi=(6.0,))], x)
    assert clip.min() >= 0.0 and clip.max() <= 6.0


def test_refuses_bad_packages(packages, tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        BioimageioModel(source=str(tmp_path / "missing.zip"))
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(InputFileError):
        BioimageioModel(source=str(bad))
    with pytest.raises(ConfigError, match="weight_format"):
        BioimageioModel(source=str(packages["n2v3d"]), weight_format="onnx")
    # an output grid that is not the input's (e.g. cropping or upsampling) is refused
    from fluorecon.methods.learned.bioimageio_import import _layout

    descr = BioimageioModel(source=str(packages["n2v3d"])).description
    out = descr.outputs[0]
    axes = list(out.axes)
    axes[-1] = axes[-1].model_copy(update={"size": axes[-1].size.model_copy(
        update={"offset": 4})})
    changed = descr.model_copy(update={"outputs": [out.model_copy(update={"axes": axes})]})
    with pytest.raises(ConfigError, match="not that of input") as err:
        _layout(changed, None)
    assert "\n" not in str(err.value)
