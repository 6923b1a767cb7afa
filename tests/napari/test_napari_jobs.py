"""The GUI-free parts of the napari plugin: restore jobs, cancellation, axes and geometry,
result layers, sample data, the manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fluorecon.core.errors import AxesError, ConfigError, DataError
from fluorecon.methods import create
from fluorecon.napari._jobs import CancelToken, Cancelled, RestoreResult, restore
from fluorecon.napari._layers import (
    LayerGeometry,
    axes_choices,
    default_axes,
    result_layers,
)
from fluorecon.simulate.psf import gaussian_psf


def _blurred_noisy(shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    obj = np.zeros(shape, np.float32)
    idx = tuple(rng.integers(4, s - 4, size=12) for s in shape)
    obj[idx] = 200.0
    from scipy import ndimage as ndi

    blurred = ndi.gaussian_filter(obj, 1.5) + 10.0
    return rng.poisson(blurred).astype(np.float32), obj


def test_restore_classical_matches_the_method_and_leaves_input_unchanged(rng):
    image = rng.poisson(20.0, size=(40, 40)).astype(np.float32)
    before = image.copy()
    res = restore(image, "YX", method="gaussian", params={"sigma": 1.2})
    expected = create("gaussian", sigma=1.2).predict(image, "YX")
    np.testing.assert_array_equal(res.prediction, expected)
    assert res.prediction.dtype == np.float32
    np.testing.assert_array_equal(image, before)
    assert res.std is None and res.residual is None and res.refined == {}
    assert res.info["config"]["sigma"] == 1.2


def test_restore_loops_over_non_spatial_axes(rng):
    stack = rng.poisson(20.0, size=(3, 40, 40)).astype(np.float32)
    res = restore(stack, "TYX", method="gaussian", params={"sigma": 1.0})
    one = create("gaussian", sigma=1.0).predict(stack[1], "YX")
    np.testing.assert_allclose(res.prediction[1], one, rtol=1e-6)


@pytest.mark.parametrize("ndim", [2, 3])
def test_deconvolution_consistency_uses_the_psf_forward_model(ndim):
    shape = (64, 64) if ndim == 2 else (16, 48, 48)
    image, _ = _blurred_noisy(shape)
    psf = gaussian_psf((9,) * ndim, 1.5)
    res = restore(image, "YX" if ndim == 2 else "ZYX", method="rl",
                  params={"iterations": 10}, psf=psf, consistency=True)
    assert res.info["consistency"]["forward"] == "convolution"
    assert res.residual.shape == image.shape and res.flagged.shape == image.shape
    assert res.flagged.dtype == bool
    # an honest reconstruction re-images into the data: residual ~ unit-variance noise
    assert 0.5 < float(np.std(res.residual)) < 2.0
    # a blank "reconstruction" would not: check the maps react to a wrong result
    from fluorecon.trust.qc import consistency_maps
    from fluorecon.trust.consistency import forward_for

    wrong = np.full_like(image, float(image.mean()))
    residual, flagged, _ = consistency_maps(image, wrong, "YX" if ndim == 2 else "ZYX",
                                            forward_for("deconvolve", psf=psf))
    assert flagged.sum() > res.flagged.sum()


def test_restore_errors_are_one_line_fluorecon_errors(rng):
    image = rng.poisson(5.0, size=(40, 40)).astype(np.float32)
    with pytest.raises(ConfigError, match="without a PSF"):
        restore(image, "YX", method="rl")
    with pytest.raises(ConfigError, match="classical method"):
        restore(image, "YX", method="tv", uncertainty="probabilistic")
    with pytest.raises(ConfigError, match="exactly one"):
        restore(image, "YX")
    with pytest.raises(DataError, match="3D PSF"):
        restore(image, "YX", method="rl", psf=np.ones((3, 3, 3), np.float32) / 27)
    with pytest.raises(AxesError):
        restore(image, "ZYX", method="tv")
    with pytest.raises(ConfigError, match="sigma"):
        restore(image, "YX", method="gaussian", params={"sigma": -1.0})


def test_cancel_stops_iterations_early_and_returns_nothing():
    image, _ = _blurred_noisy((48, 48))
    token = CancelToken()
    seen: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        seen.append((done, total))
        if len(seen) == 3:
            token.cancel()

    with pytest.raises(Cancelled):
        restore(image, "YX", method="rl", params={"iterations": 500},
                psf=gaussian_psf((9, 9), 1.5), token=token, progress=progress)
    assert len(seen) == 3  # stopped at the next check, not after 500 iterations
    assert seen[-1][0] < seen[-1][1]


def test_a_token_cancelled_before_the_start_stops_at_the_first_check(rng):
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        restore(rng.random((16, 16), dtype=np.float32), "YX", method="gaussian",
                params={"sigma": 1.0}, token=token)


# --- axes and geometry --------------------------------------------------------------------
def test_axes_choices_and_defaults():
    assert axes_choices(2) == ["YX"]
    assert axes_choices(3)[0] == "ZYX" and "TYX" in axes_choices(3)
    assert axes_choices(3, rgb=True) == ["YXC"]
    assert all(a.endswith("C") for a in axes_choices(4, rgb=True))
    assert default_axes(3, metadata={"axes": "cyx"}) == "CYX"
    assert default_axes(3, metadata={"axes": "TZYX"}) == "ZYX"  # wrong length: ignored
    with pytest.raises(AxesError):
        axes_choices(1)


def test_result_layers_carry_the_geometry_and_refine_it():
    geo = LayerGeometry("ZYX", (0.3, 0.1, 0.1), (5.0, 1.0, 2.0), ("um", "um", "um"))
    pred = np.zeros((4, 8, 8), np.float32)
    res = RestoreResult(prediction=pred, std=pred + 1, residual=pred, flagged=pred > 0,
                        source="tv", info={"uncertainty": "probabilistic"})
    layers = result_layers(res, name="cells", geometry=geo, metadata={"keep": 1})
    assert [t for _, _, t in layers] == ["image", "image", "image", "labels"]
    for data, kw, _ in layers:
        assert kw["scale"] == (0.3, 0.1, 0.1) and kw["translate"] == (5.0, 1.0, 2.0)
        assert kw["metadata"]["keep"] == 1 and kw["metadata"]["axes"] == "ZYX"
    assert layers[3][0].dtype == np.uint8
    up = RestoreResult(prediction=np.zeros((4, 16, 16), np.float32), source="upsample",
                       refined={"Y": 2.0, "X": 2.0})
    (_, kw, _), = result_layers(up, name="cells", geometry=geo)
    assert kw["scale"] == (0.3, 0.05, 0.05)
    # the fine grid covers the same field: first fine centre a quarter coarse pixel earlier
    assert kw["translate"] == pytest.approx((5.0, 1.0 - 0.025, 2.0 - 0.025))
    assert kw["metadata"]["pixel_size"] == {"Z": 0.3, "Y": 0.05, "X": 0.05}


# --- sample data and manifest ---------------------------------------------------------------
@pytest.mark.parametrize("name", ["denoise_2d", "denoise_3d", "deconvolve_2d",
                                  "deconvolve_3d"])
def test_sample_data_are_seeded_layers_with_pixel_sizes(name):
    from fluorecon.napari import _sample_data

    layers = getattr(_sample_data, name)()
    noisy, clean = layers[0][0], layers[1][0]
    assert noisy.shape == clean.shape and noisy.dtype == np.float32
    ndim = noisy.ndim
    assert ndim == (2 if name.endswith("2d") else 3)
    kw = layers[0][1]
    assert kw["scale"][-1] == pytest.approx(0.1) and len(kw["scale"]) == ndim
    assert kw["metadata"]["pixel_size"]["X"] == pytest.approx(0.1)
    np.testing.assert_array_equal(getattr(_sample_data, name)()[0][0], noisy)  # seeded
    if name.startswith("denoise"):
        # noisy and clean share units (photons): the noise is zero-mean around the clean
        assert abs(float(np.mean(noisy - clean))) < 0.05 * float(clean.mean()) + 0.5
        assert len(layers) == 2
    else:
        psf = layers[2][0]
        assert psf.ndim == ndim and float(psf.sum()) == pytest.approx(1.0, rel=1e-4)


def test_manifest_validates_and_its_commands_import():
    import npe2

    path = Path(__file__).resolve().parents[2] / "src" / "fluorecon" / "napari" / "napari.yaml"
    manifest = npe2.PluginManifest.from_file(path)
    assert manifest.name == "fluorecon"
    manifest.validate_imports()
    widgets = {w.display_name for w in manifest.contributions.widgets}
    assert widgets == {"Restore", "Train"}
    assert len(manifest.contributions.sample_data) == 4


def test_the_plugin_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys, warnings; warnings.simplefilter('ignore'); "
            "import fluorecon.napari._widgets, fluorecon.napari._sample_data; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**__import__("os").environ,
                                          "QT_QPA_PLATFORM": "offscreen"})
    assert out.stdout.strip() == "False"
