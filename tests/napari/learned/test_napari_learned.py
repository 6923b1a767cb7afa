"""Train widget (tiny networks, a few steps), cancel + resume, and restoring with a model
folder, its uncertainty and consistency maps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fluorecon.napari._sample_data import sample_layers

TIMEOUT_MS = 120_000
TINY = {"steps": 4, "patch": "16", "batch": 2, "depth": 1, "filters": 4}


def _run(qtbot, widget) -> str:
    with qtbot.waitSignal(widget.job_finished, timeout=TIMEOUT_MS) as blocker:
        widget.run_button.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    return blocker.args[0]


@pytest.fixture
def train_widget(viewer, qtbot):
    from fluorecon.napari._widgets import TrainWidget

    widget = TrainWidget(viewer)
    qtbot.addWidget(widget)
    return widget


def _tiny(widget, method: str, input_name: str, out, *, steps: int = TINY["steps"],
          probabilistic: bool = False) -> None:
    widget.method_combo.setCurrentText(method)
    widget.input_combo.setCurrentText(input_name)
    widget.steps_spin.setValue(steps)
    widget.patch_edit.setText(TINY["patch"])
    widget.batch_spin.setValue(TINY["batch"])
    widget.depth_spin.setValue(TINY["depth"])
    widget.filters_spin.setValue(TINY["filters"])
    widget.probabilistic_check.setChecked(probabilistic)
    widget.out_edit.setText(str(out))


def test_train_n2v_writes_a_model_and_restores_with_uncertainty(viewer, train_widget, qtbot,
                                                                tmp_path):
    from fluorecon.napari._widgets import RestoreWidget

    noisy, _ = [viewer.add_image(d, **kw) for d, kw, _ in
                sample_layers("denoise", (48, 48), seed=11)]
    n_before = len(viewer.layers)
    out = tmp_path / "n2v-model"
    _tiny(train_widget, "n2v", noisy.name, out, probabilistic=True)
    assert not train_widget.target_combo.isEnabled()
    assert _run(qtbot, train_widget) == "done", train_widget.status.text()
    assert (out / "config.json").is_file() and (out / "weights.safetensors").is_file()
    assert (out / "training_state" / "checkpoint.json").is_file()
    assert not (tmp_path / "n2v-model.checkpoint").exists()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["method"] == "n2v" and cfg["training_data"]["napari_layers"] == [noisy.name]
    assert f"{TINY['steps']} steps" in train_widget.status.text()
    applied = viewer.layers[-1]
    assert len(viewer.layers) == n_before + 1
    assert applied.data.shape == noisy.data.shape
    np.testing.assert_allclose(applied.scale, noisy.scale)
    assert applied.metadata["model"] == str(out)

    restore = RestoreWidget(viewer)
    qtbot.addWidget(restore)
    restore.image_combo.setCurrentText(noisy.name)
    restore.source_combo.setCurrentText("trained model folder")
    restore.model_edit.setText(str(out))
    restore.model_edit.editingFinished.emit()
    assert "uncertainty: probabilistic" in restore.status.text()
    offered = [restore.uncertainty_combo.itemText(i)
               for i in range(restore.uncertainty_combo.count())]
    assert offered == ["none", "probabilistic"]  # a single model: no ensemble spread
    restore.uncertainty_combo.setCurrentText("probabilistic")
    restore.consistency_check.setChecked(True)
    n_before = len(viewer.layers)
    assert _run(qtbot, restore) == "done", restore.status.text()
    pred, std, residual, flagged = list(viewer.layers)[n_before:]
    # the plain prediction equals what the Train widget applied (same model, same input)
    np.testing.assert_allclose(pred.data, applied.data, rtol=1e-4, atol=1e-4)
    assert std.name.endswith("std") and (std.data > 0).all()
    assert type(flagged).__name__ == "Labels"
    for layer in (pred, std, residual, flagged):
        assert layer.data.shape == noisy.data.shape
        np.testing.assert_allclose(layer.scale, noisy.scale)


def test_care_needs_a_target_and_cancel_leaves_a_resumable_checkpoint(viewer, train_widget,
                                                                      qtbot, tmp_path):
    noisy, clean = [viewer.add_image(d, **kw) for d, kw, _ in
                    sample_layers("denoise", (48, 48), seed=12)]
    out = tmp_path / "care-model"
    w = train_widget
    _tiny(w, "care", noisy.name, out, steps=6)
    w.apply_check.setChecked(False)
    assert w.target_combo.isEnabled()
    w.target_combo.setCurrentText("none")
    assert _run(qtbot, w) == "error" and "target" in w.status.text()

    w.target_combo.setCurrentText(clean.name)
    n_layers = len(viewer.layers)
    with qtbot.waitSignal(w.job_finished, timeout=TIMEOUT_MS) as blocker:
        w.run_button.click()
        w.cancel_button.click()  # before the first step ends
    assert blocker.args == ["cancelled"]
    qtbot.waitUntil(lambda: not w.running, timeout=TIMEOUT_MS)
    ckpt = tmp_path / "care-model.checkpoint"
    assert (ckpt / "checkpoint.json").is_file(), w.status.text()
    assert str(ckpt) in w.status.text() and not out.exists()
    done_at = json.loads((ckpt / "checkpoint.json").read_text())["state"]["step"]
    assert 1 <= done_at < 6
    assert len(viewer.layers) == n_layers

    # without resume the stale checkpoint is refused; with resume training continues
    assert _run(qtbot, w) == "error" and "resume" in w.status.text()
    w.resume_check.setChecked(True)
    assert _run(qtbot, w) == "done", w.status.text()
    assert (out / "config.json").is_file() and not ckpt.exists()
    state = json.loads((out / "training_state" / "checkpoint.json").read_text())["state"]
    assert state["step"] == 6 and state["finished"]  # continued from done_at, not restarted
    assert "6 steps" in w.status.text()


def test_ensemble_uncertainty_and_cancel_between_tiles(tmp_path):
    from fluorecon.napari._jobs import CancelToken, Cancelled, restore, train_model
    from fluorecon.trust.ensembles import Ensemble, EnsembleConfig

    noisy = sample_layers("denoise", (48, 48), seed=13)[0][0]
    fields = {"steps": 2, "patch_size": 16, "batch_size": 2, "depth": 1, "base_filters": 4,
              "validation_fraction": 0.0, "lr_schedule": "constant", "keep_best": False}
    members = [train_model("n2v", noisy, "YX", out=tmp_path / f"m{s}",
                           fields={**fields, "seed": s}).method for s in (0, 1)]
    ens = tmp_path / "ensemble"
    Ensemble(members, EnsembleConfig(method="n2v", members=["m0", "m1"], seeds=[0, 1],
                                     data_split="none", member_images=[[0], [0]])).save(ens)
    res = restore(noisy, "YX", model=ens, uncertainty="ensemble")
    preds = np.stack([m.predict(noisy, "YX") for m in members])
    np.testing.assert_allclose(res.prediction, preds.mean(axis=0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(res.std, preds.std(axis=0, ddof=1), rtol=1e-3, atol=1e-4)
    assert res.source == "n2v x2"

    token = CancelToken()
    calls = []

    def progress(done: int, total: int) -> None:
        calls.append(done)
        token.cancel()

    with pytest.raises(Cancelled):
        restore(noisy, "YX", model=ens, token=token, progress=progress)
    assert len(calls) == 1  # the second member's tiles never ran


def test_structn2v_from_the_train_widget(viewer, train_widget, qtbot, tmp_path):
    noisy, _ = [viewer.add_image(d, **kw) for d, kw, _ in
                sample_layers("denoise", (48, 48), seed=13)]
    w = train_widget
    w.method_combo.setCurrentText("care")
    assert not w.struct_combo.isEnabled()  # a blind-spot option only
    out = tmp_path / "struct-model"
    _tiny(w, "n2v2", noisy.name, out)
    assert w.struct_combo.isEnabled()
    w.struct_combo.setCurrentText("horizontal")
    w.apply_check.setChecked(False)
    assert _run(qtbot, w) == "done", w.status.text()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["method"] == "n2v2"
    mc = cfg["method_config"]
    # a row pattern trains on mirror images only (90-degree turns would make it a column)
    assert mc["struct_mask"] == "horizontal" and mc["rotate"] is False
