"""Drive the Restore and Train widgets headless and check the layers they add."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.methods import create
from fluorecon.metrics import psnr
from fluorecon.napari._sample_data import sample_layers

TIMEOUT_MS = 60_000


def _add(viewer, layers):
    return [getattr(viewer, f"add_{kind}")(data, **kw) for data, kw, kind in layers]


def _run(qtbot, widget) -> str:
    with qtbot.waitSignal(widget.job_finished, timeout=TIMEOUT_MS) as blocker:
        widget.run_button.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    return blocker.args[0]


@pytest.fixture
def restore_widget(viewer, qtbot):
    from fluorecon.napari._widgets import RestoreWidget

    widget = RestoreWidget(viewer)
    qtbot.addWidget(widget)
    return widget


@pytest.mark.parametrize("shape", [(96, 96), (12, 48, 48)])
def test_restore_denoises_and_keeps_the_scale(viewer, restore_widget, qtbot, shape):
    noisy, clean = _add(viewer, sample_layers("denoise", shape, photons=10.0, seed=3))
    noisy.translate = (1.0,) * len(shape)
    before = np.array(noisy.data, copy=True)
    w = restore_widget
    w.image_combo.setCurrentText(noisy.name)
    assert w.axes_combo.currentText() == ("YX" if len(shape) == 2 else "ZYX")
    w.source_combo.setCurrentText("gaussian")
    assert _run(qtbot, w) == "done", w.status.text()
    out = viewer.layers[-1]
    assert out.name == f"{noisy.name} [gaussian]"
    assert out.data.shape == noisy.data.shape and out.data.dtype == np.float32
    np.testing.assert_allclose(out.scale, noisy.scale)
    np.testing.assert_allclose(out.translate, noisy.translate)
    assert out.metadata["pixel_size"]["X"] == pytest.approx(0.1)
    # the calibrated Gaussian beats the noisy input by a clear margin
    assert psnr(out.data, clean.data) > psnr(noisy.data, clean.data) + 3.0
    np.testing.assert_array_equal(noisy.data, before)
    assert "calibrated" in w.status.text()


def test_parameters_from_the_form_reach_the_method(viewer, restore_widget, qtbot):
    noisy, _ = _add(viewer, sample_layers("denoise", (64, 64), seed=4))
    w = restore_widget
    w.image_combo.setCurrentText(noisy.name)
    w.source_combo.setCurrentText("gaussian")
    w.params.set_value("sigma", 2.5)
    w.params.set_value("vst", False)
    assert _run(qtbot, w) == "done"
    expected = create("gaussian", sigma=2.5, vst=False).predict(noisy.data, "YX")
    np.testing.assert_allclose(viewer.layers[-1].data, expected, rtol=1e-6)


def test_axes_override_processes_frames_separately(viewer, restore_widget, qtbot, rng):
    frames = rng.poisson(30.0, size=(2, 40, 40)).astype(np.float32)
    layer = viewer.add_image(frames, name="movie", scale=(2.0, 0.5, 0.5))
    w = restore_widget
    w.image_combo.setCurrentText("movie")
    w.axes_combo.setCurrentText("TYX")
    w.source_combo.setCurrentText("gaussian")
    w.params.set_value("sigma", 1.5)
    assert _run(qtbot, w) == "done"
    out = viewer.layers[-1]
    np.testing.assert_allclose(out.data[1], create("gaussian", sigma=1.5).predict(
        frames[1], "YX"), rtol=1e-6)
    np.testing.assert_allclose(out.scale, layer.scale)
    assert out.metadata["axes"] == "TYX"


def test_deconvolution_adds_consistency_layers(viewer, restore_widget, qtbot):
    noisy, obj, psf = _add(viewer, sample_layers("deconvolve", (96, 96), photons=200.0,
                                                 seed=5))
    n_before = len(viewer.layers)
    w = restore_widget
    w.image_combo.setCurrentText(noisy.name)
    w.source_combo.setCurrentText("rl")
    w.psf_combo.setCurrentText(psf.name)
    w.params.set_value("iterations", 15)
    w.params.set_value("background", 50.0)
    w.consistency_check.setChecked(True)
    assert _run(qtbot, w) == "done", w.status.text()
    new = list(viewer.layers)[n_before:]
    assert [type(layer).__name__ for layer in new] == ["Image", "Image", "Labels"]
    pred, residual, flagged = new
    for layer in new:
        assert layer.data.shape == noisy.data.shape
        np.testing.assert_allclose(layer.scale, noisy.scale)
    assert np.isfinite(residual.data).all()
    assert 0.5 < float(np.std(residual.data)) < 2.0  # RL explains the data to noise level
    assert set(np.unique(flagged.data)) <= {0, 1}
    assert "reduced chi-square" in w.status.text()
    # deconvolution sharpens: closer to the object than the blurred input (scale-free)
    from fluorecon.metrics import evaluate

    assert (evaluate(pred.data, obj.data)["psnr_normalized"]
            > evaluate(noisy.data, obj.data)["psnr_normalized"])


def test_errors_go_to_the_status_line_and_add_nothing(viewer, restore_widget, qtbot):
    noisy, _ = _add(viewer, sample_layers("denoise", (64, 64), seed=6))
    n_before = len(viewer.layers)
    w = restore_widget
    w.image_combo.setCurrentText(noisy.name)
    w.source_combo.setCurrentText("rl")  # no PSF layer chosen
    assert _run(qtbot, w) == "error"
    assert w.status.text().startswith("error: Got the deconvolution method 'rl' without a PSF")
    w.source_combo.setCurrentText("gaussian")
    w.params.set_value("sigma", "-3")
    with qtbot.waitSignal(w.job_finished, timeout=TIMEOUT_MS) as blocker:
        w.run_button.click()  # invalid config: refused before a thread starts
    assert blocker.args == ["error"] and "sigma" in w.status.text()
    assert not w.running
    w.source_combo.setCurrentText("trained model folder")
    w.model_edit.setText("/nonexistent/model")
    assert _run(qtbot, w) == "error" and "does not exist" in w.status.text()
    assert len(viewer.layers) == n_before


def test_cancel_stops_the_run_and_adds_no_layer(viewer, restore_widget, qtbot):
    noisy, _, psf = _add(viewer, sample_layers("deconvolve", (128, 128), seed=7))
    n_before = len(viewer.layers)
    w = restore_widget
    w.image_combo.setCurrentText(noisy.name)
    w.source_combo.setCurrentText("rl")
    w.psf_combo.setCurrentText(psf.name)
    w.params.set_value("iterations", 100000)
    with qtbot.waitSignal(w.job_finished, timeout=TIMEOUT_MS) as blocker:
        w.run_button.click()
        assert w.running and w.cancel_button.isEnabled()
        w.cancel_button.click()
    assert blocker.args == ["cancelled"]
    assert "cancelled" in w.status.text()
    assert len(viewer.layers) == n_before
    assert w.run_button.isEnabled() and not w.cancel_button.isEnabled()


def test_layer_pickers_follow_the_viewer(viewer, restore_widget, rng):
    w = restore_widget
    assert w.image_combo.count() == 0
    viewer.add_image(rng.random((3, 32, 32)), name="a")
    viewer.add_image(rng.random((32, 32)), name="b")
    assert [w.image_combo.itemText(i) for i in range(w.image_combo.count())] == ["a", "b"]
    assert w.psf_combo.itemText(0) == "none"
    w.image_combo.setCurrentText("a")
    assert w.axes_combo.currentText() == "ZYX"
    assert {w.axes_combo.itemText(i) for i in range(w.axes_combo.count())} >= {"TYX", "CYX"}
    viewer.layers["b"].name = "renamed"
    assert "renamed" in [w.image_combo.itemText(i) for i in range(w.image_combo.count())]
    viewer.layers.remove("a")
    assert [w.image_combo.itemText(i) for i in range(w.image_combo.count())] == ["renamed"]


def test_pixel_size_metadata_is_used_when_the_scale_is_unset(viewer, restore_widget, qtbot):
    data, kw, _ = sample_layers("denoise", (64, 64), seed=8)[0]
    kw = {k: v for k, v in kw.items() if k not in ("scale", "units")}
    layer = viewer.add_image(data, **kw)  # scale 1, pixel size only in metadata
    w = restore_widget
    w.image_combo.setCurrentText(layer.name)
    w.source_combo.setCurrentText("gaussian")
    w.params.set_value("sigma", 1.0)
    assert _run(qtbot, w) == "done"
    np.testing.assert_allclose(viewer.layers[-1].scale, (0.1, 0.1))


def test_napari_hands_the_viewer_to_the_widgets(viewer, qtbot):
    """napari instantiates dock widgets by their ``__init__`` annotation (a public-only
    proxy of the viewer): the widgets must find it and work through the proxy."""
    qt_main_window = pytest.importorskip("napari._qt.qt_main_window")
    from fluorecon.napari._widgets import RestoreWidget, TrainWidget

    viewer.add_image(np.zeros((40, 40), np.float32), name="a")
    for cls in (RestoreWidget, TrainWidget):
        widget = qt_main_window._instantiate_dock_widget(cls, viewer)
        qtbot.addWidget(widget)
        assert isinstance(widget, cls)
        viewer.add_image(np.zeros((8, 8), np.float32), name=f"new-{cls.__name__}")
        combo = widget.image_combo if cls is RestoreWidget else widget.input_combo
        assert f"new-{cls.__name__}" in [combo.itemText(i) for i in range(combo.count())]


@pytest.mark.realdata
def test_restore_widget_on_a_real_widefield_image(viewer, restore_widget, qtbot, shared_data):
    """W2S widefield frame (1 frame vs the 400-frame average; 8-bit, contrast-stretched
    independently, hence normalised PSNR): the self-calibrated Gaussian must help a lot."""
    from fluorecon.io import read_image
    from fluorecon.metrics import evaluate

    folder = shared_data / "denoise_w2s_fmd_8bit" / "w2s"
    noisy, _ = read_image(folder / "input_avg1_020_1.tif")
    target, _ = read_image(folder / "target_avg400_020_1.tif")
    noisy, target = np.asarray(noisy)[128:384, 128:384], np.asarray(target)[128:384, 128:384]
    layer = viewer.add_image(noisy, name="w2s", scale=(0.0645, 0.0645))
    w = restore_widget
    w.image_combo.setCurrentText("w2s")
    w.source_combo.setCurrentText("gaussian")
    assert _run(qtbot, w) == "done", w.status.text()
    out = viewer.layers[-1]
    assert out.data.dtype == np.float32 and layer.data.dtype == np.uint8
    gain = (evaluate(out.data, target)["psnr_normalized"]
            - evaluate(noisy, target)["psnr_normalized"])
    assert gain > 5.0
    np.testing.assert_allclose(out.scale, layer.scale)


def test_config_form_passes_only_changed_fields(qtbot):
    from fluorecon.core.errors import ConfigError
    from fluorecon.methods import get_method
    from fluorecon.napari._params import ConfigForm

    form = ConfigForm(get_method("auto").Config)
    qtbot.addWidget(form)
    assert "version" not in form.editors
    assert form.values() == {}  # defaults (None = calibrate) are not sent
    form.set_value("candidates", ["tv", "nlm"])
    form.set_value("vst", False)
    assert form.values() == {"candidates": ["tv", "nlm"], "vst": False}
    assert form.config().candidates == ("tv", "nlm")
    form.set_value("candidates", "tv, bogus")
    with pytest.raises(ConfigError, match="candidates"):
        form.config()

    rl = ConfigForm(get_method("rl").Config)
    qtbot.addWidget(rl)
    stop = rl.editors["stop"]
    assert stop.itemText(0) == "none" and stop.currentText() == "none"
    rl.set_value("stop", "rel-change")
    rl.set_value("iterations", 12)
    assert rl.values() == {"stop": "rel-change", "iterations": 12}
    with pytest.raises(ConfigError, match="stop"):
        rl.set_value("stop", "sometimes")
