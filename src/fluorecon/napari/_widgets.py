"""The dock widgets: restore an image layer, train a network on layers.

Both run their job (:mod:`fluorecon.napari._jobs`) in a napari worker thread, so the
viewer stays responsive; progress arrives through a Qt signal (queued to the GUI thread),
and the Cancel button sets a :class:`~fluorecon.napari._jobs.CancelToken` that the job
checks between blocks, tiles, iterations and training steps. Results are added as layers
only when a run finishes uncancelled, with the input's scale, translation and units.

The widgets take anything with napari's ``ViewerModel`` interface (``layers``,
``add_image``, ``add_labels``), so they are driven headless in tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.qt.threading import FunctionWorker
from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from fluorecon.core.errors import ConfigError, FluoreconError, message
from fluorecon.methods.learned_names import BLIND_SPOT_METHODS, STRUCT_MASKS
from fluorecon.napari._jobs import (
    TRAINABLE,
    CancelToken,
    Cancelled,
    RestoreResult,
    TrainingCancelled,
    TrainOutcome,
    classical_methods,
    model_capabilities,
    restore,
    train_model,
)
from fluorecon.napari._layers import (
    axes_choices,
    default_axes,
    layer_array,
    layer_geometry,
    result_layers,
)
from fluorecon.napari._params import ConfigForm

if TYPE_CHECKING:
    import napari.viewer

__all__ = ["RestoreWidget", "TrainWidget"]

MODEL_SOURCE = "trained model folder"
NO_LAYER = "none"


class _Bridge(QObject):
    """Carries progress from the worker thread to the GUI thread (queued connection)."""

    progress = Signal(int, int, str)


def _image_layers(viewer: Any) -> list[Any]:
    from napari.layers import Image

    return [layer for layer in viewer.layers if isinstance(layer, Image)]


class _JobWidget(QWidget):
    """Shared parts: layer and axes pickers, Run/Cancel, progress bar, status line.

    Signals
    -------
    job_finished(str)
        ``"done"``, ``"cancelled"`` or ``"error"`` when a run ends (after its layers were
        added).
    """

    job_finished = Signal(str)
    run_label = "Run"

    def __init__(self, viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self._worker: FunctionWorker | None = None
        self._token: CancelToken | None = None
        self._bridge = _Bridge()
        self._bridge.progress.connect(self._on_progress)
        self.layout_ = QVBoxLayout(self)
        self.form = QFormLayout()
        self.layout_.addLayout(self.form)

        self.run_button = QPushButton(self.run_label)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(True)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)

        viewer.layers.events.inserted.connect(self._refresh_layers)
        viewer.layers.events.removed.connect(self._refresh_layers)
        viewer.layers.events.reordered.connect(self._refresh_layers)
        for layer in viewer.layers:
            layer.events.name.connect(self._refresh_layers)

    def _add_buttons(self) -> None:
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        self.layout_.addLayout(buttons)
        self.layout_.addWidget(self.progress_bar)
        self.layout_.addWidget(self.status)
        self.layout_.addStretch(1)

    # -- layer pickers -----------------------------------------------------------------
    def _layer_combo(self, *, optional: bool = False) -> QComboBox:
        combo = QComboBox()
        combo.setProperty("optional", optional)
        self._fill(combo)
        return combo

    def _fill(self, combo: QComboBox) -> None:
        current = combo.currentText()
        names = [layer.name for layer in _image_layers(self.viewer)]
        if combo.property("optional"):
            names = [NO_LAYER, *names]
        combo.blockSignals(True)
        combo.clear()
        combo.addItems(names)
        if current in names:
            combo.setCurrentText(current)
        combo.blockSignals(False)
        if combo.currentText() != current:
            combo.currentTextChanged.emit(combo.currentText())

    def _layer_combos(self) -> list[QComboBox]:
        return []

    def _refresh_layers(self, event: Any = None) -> None:
        if event is not None and getattr(event, "type", "") == "inserted":
            event.value.events.name.connect(self._refresh_layers)  # follow renames
        for combo in self._layer_combos():
            self._fill(combo)

    def _layer(self, combo: QComboBox, what: str) -> Any:
        name = combo.currentText()
        if not name or name == NO_LAYER:
            return None
        try:
            return self.viewer.layers[name]
        except KeyError:
            raise ConfigError(message(f"{what} layer {name!r} which is no longer in the "
                                      "viewer", "an image layer", "Pick another layer.")
                              ) from None

    def _fill_axes(self, combo: QComboBox, layer: Any) -> None:
        combo.blockSignals(True)
        combo.clear()
        if layer is not None:
            rgb = bool(getattr(layer, "rgb", False))
            ndim = len(layer_array(layer).shape) if not getattr(layer, "multiscale", False) \
                else len(layer.data[0].shape)
            try:
                choices = axes_choices(ndim, rgb=rgb)
                preferred = default_axes(ndim, rgb=rgb, metadata=layer.metadata)
            except FluoreconError as exc:
                self._say(f"error: {exc}")
                choices, preferred = [], ""
            if preferred and preferred not in choices:
                choices = [preferred, *choices]
            combo.addItems(choices)
            if preferred:
                combo.setCurrentText(preferred)
        combo.setEditable(True)  # any valid axes string may be typed
        combo.blockSignals(False)

    # -- running -----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether a job is running."""
        return self._worker is not None

    def _say(self, text: str) -> None:
        self.status.setText(text)

    def _start(self, func: Callable[..., Any], kwargs: dict[str, Any],
               on_result: Callable[[Any], None]) -> None:
        self._token = CancelToken()
        worker = FunctionWorker(func, token=self._token, **kwargs)
        worker.returned.connect(lambda result: self._done(on_result, result))
        worker.errored.connect(self._failed)
        self._worker = worker
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress_bar.setRange(0, 0)  # busy until the first progress report
        self.progress_bar.setFormat("starting")
        worker.start()

    def cancel(self) -> None:
        """Ask the running job to stop; it ends at its next check and adds no layer."""
        if self._token is not None:
            self._token.cancel()
            self._say("cancelling ...")

    def _on_progress(self, done: int, total: int, text: str) -> None:
        if self._worker is None:
            return
        total = max(int(total), 1)
        scale = 1000 / total if total > 1000 else 1.0  # QProgressBar holds int32
        self.progress_bar.setRange(0, int(round(total * scale)))
        self.progress_bar.setValue(int(round(min(done, total) * scale)))
        self.progress_bar.setFormat(text or f"{done}/{total}")

    def _emit(self, text: Callable[[int, int], str]) -> Callable[[int, int], None]:
        def cb(done: int, total: int) -> None:
            self._bridge.progress.emit(int(done), int(total), text(done, total))

        return cb

    def _end(self, outcome: str) -> None:
        self._worker = None
        self._token = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if outcome != "done":
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(0)
            self.progress_bar.setFormat(outcome)
        self.job_finished.emit(outcome)

    def _done(self, on_result: Callable[[Any], None], result: Any) -> None:
        try:
            on_result(result)
        except FluoreconError as exc:
            self._say(f"error: {exc}")
            self._end("error")
            return
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(1)
        self.progress_bar.setFormat("done")
        self._end("done")

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, TrainingCancelled):
            self._say("cancelled: " + (f"checkpoint saved in {exc.checkpoint}; tick resume "
                                       "and run again to continue" if exc.checkpoint else
                                       "no checkpoint was written yet, nothing to resume"))
            self._end("cancelled")
        elif isinstance(exc, Cancelled):
            self._say("cancelled: no layer was added")
            self._end("cancelled")
        elif isinstance(exc, FluoreconError):
            self._say(f"error: {exc}")
            self._end("error")
        else:
            self._say(f"error: {type(exc).__name__}: {exc}")
            self._end("error")
            from napari.utils.notifications import show_error

            show_error(f"fluorecon: {type(exc).__name__}: {exc}")

    def _guard(self, func: Callable[[], None]) -> None:
        """Run a GUI-thread preparation step; fluorecon errors go to the status line."""
        try:
            func()
        except FluoreconError as exc:
            self._say(f"error: {exc}")
            self.job_finished.emit("error")

    def _add_layers(self, layers: list[tuple[Any, dict[str, Any], str]]) -> list[Any]:
        added = []
        for data, kwargs, kind in layers:
            added.append(getattr(self.viewer, f"add_{kind}")(data, **kwargs))
        return added


class RestoreWidget(_JobWidget):
    """Denoise, deconvolve or restore an image layer.

    Choose a classical method (its parameters appear below, with tooltips from the
    config's field descriptions; empty fields keep their defaults, ``auto`` ones are
    calibrated on the image) or a trained model folder (or ensemble folder). Deconvolution
    needs a PSF layer; with a PSF layer the consistency check re-images the result through
    it, without one the identity (denoising) forward model is used. The results are added
    as layers with the input's scale: the restored image, and on request the predictive
    standard deviation and the consistency maps (standardised residual, flagged regions).

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    """

    run_label = "Restore"

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(viewer, parent)
        self.image_combo = self._layer_combo()
        self.axes_combo = QComboBox()
        self.source_combo = QComboBox()
        self._kinds = classical_methods()
        self.source_combo.addItems([*self._kinds, MODEL_SOURCE])
        self.source_combo.setToolTip("Classical method, or a model folder written by "
                                     "`fluorecon train` / the Train widget.")
        self.model_edit = QLineEdit()
        self.model_edit.setPlaceholderText("model or ensemble folder")
        self.model_button = QPushButton("Browse...")
        self.model_button.clicked.connect(self._browse_model)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_edit)
        model_row.addWidget(self.model_button)
        self.model_row = QWidget()
        self.model_row.setLayout(model_row)
        model_row.setContentsMargins(0, 0, 0, 0)
        self.psf_combo = self._layer_combo(optional=True)
        self.psf_combo.setToolTip("PSF layer (same pixel size as the image, centred): "
                                  "required by deconvolution methods; selects the "
                                  "convolution forward model of the consistency check.")
        self.uncertainty_combo = QComboBox()
        self.uncertainty_combo.addItems(["none", "probabilistic", "ensemble", "both"])
        self.uncertainty_combo.setToolTip(
            "Per-pixel predictive std: probabilistic (the model's Laplace scale, "
            "std = sqrt(2) b), ensemble (members' spread), both (mixture). Recalibrated when "
            "a calibration is stored in the model folder.")
        self.consistency_check = QCheckBox("consistency maps")
        self.consistency_check.setToolTip(
            "Re-image the result through the forward model and test it against the input: "
            "standardised residual (noise std units) and regions the input does not "
            "support.")
        self.params_box = QGroupBox("parameters")
        self.params_layout = QVBoxLayout(self.params_box)
        self.params: ConfigForm | None = None

        self.form.addRow("image", self.image_combo)
        self.form.addRow("axes", self.axes_combo)
        self.form.addRow("method", self.source_combo)
        self.form.addRow("model", self.model_row)
        self.form.addRow("PSF", self.psf_combo)
        self.form.addRow("uncertainty", self.uncertainty_combo)
        self.form.addRow("", self.consistency_check)
        self.layout_.addWidget(self.params_box)
        self._add_buttons()

        self.image_combo.currentTextChanged.connect(self._on_image)
        self.source_combo.currentTextChanged.connect(self._on_source)
        self.model_edit.editingFinished.connect(self._on_model)
        default = "auto" if "auto" in self._kinds else self.source_combo.itemText(0)
        self.source_combo.setCurrentText(default)
        self._on_source(self.source_combo.currentText())
        self._on_image(self.image_combo.currentText())

    def _layer_combos(self) -> list[QComboBox]:
        return [self.image_combo, self.psf_combo]

    def _on_image(self, name: str) -> None:
        layer = self.viewer.layers[name] if name and name in self.viewer.layers else None
        self._fill_axes(self.axes_combo, layer)

    def _on_source(self, source: str) -> None:
        is_model = source == MODEL_SOURCE
        self.model_row.setEnabled(is_model)
        self.uncertainty_combo.setEnabled(is_model)
        if not is_model:
            self.uncertainty_combo.setCurrentText("none")
        if self.params is not None:
            self.params_layout.removeWidget(self.params)
            self.params.deleteLater()
            self.params = None
        if is_model or not source:
            self.params_box.setVisible(False)
            return
        from fluorecon.methods.registry import get_method

        self.params = ConfigForm(get_method(source).Config)
        self.params_layout.addWidget(self.params)
        self.params_box.setVisible(True)
        self.params_box.setTitle(f"{source} parameters ({self._kinds[source]})")

    def _browse_model(self) -> None:  # pragma: no cover - needs a user
        folder = QFileDialog.getExistingDirectory(self, "Model folder")
        if folder:
            self.model_edit.setText(folder)
            self._on_model()

    def _on_model(self) -> None:
        text = self.model_edit.text().strip()
        if not text:
            return
        try:
            caps = model_capabilities(text)
        except FluoreconError as exc:
            self._say(f"error: {exc}")
            return
        modes = caps["uncertainty"]
        current = self.uncertainty_combo.currentText()
        self.uncertainty_combo.clear()
        self.uncertainty_combo.addItems(["none", *modes])  # only what the model offers
        if current in modes:
            self.uncertainty_combo.setCurrentText(current)
        self._say(f"model: {caps['method']}" + (f", {caps['members']} members"
                                                 if caps["members"] > 1 else "")
                  + (f"; uncertainty: {', '.join(modes)}" if modes else
                     "; no uncertainty (not probabilistic, single model)"))

    # -- run ---------------------------------------------------------------------------
    def run(self) -> None:
        """Validate the choices and start the restore job in a worker thread."""
        if self.running:
            return
        self._guard(self._run)

    def _run(self) -> None:
        layer = self._layer(self.image_combo, "image")
        if layer is None:
            raise ConfigError(message("no image layer", "an image layer to restore",
                                      "Open an image (or File > Open Sample > fluorecon)."))
        data = layer_array(layer)
        axes = self.axes_combo.currentText().strip()
        geometry = layer_geometry(layer, axes)
        psf_layer = self._layer(self.psf_combo, "PSF")
        psf = None if psf_layer is None else layer_array(psf_layer)
        source = self.source_combo.currentText()
        unc = self.uncertainty_combo.currentText()
        kwargs: dict[str, Any] = {
            "image": data, "axes": geometry.axes, "psf": psf,
            "uncertainty": None if unc == "none" else unc,
            "consistency": self.consistency_check.isChecked()}
        if source == MODEL_SOURCE:
            folder = self.model_edit.text().strip()
            if not folder:
                raise ConfigError(message("no model folder", "a model or ensemble folder",
                                          "Type or browse its path."))
            kwargs["model"] = folder
            label = Path(folder).name
        else:
            assert self.params is not None
            self.params.config()  # validate now, in the GUI thread
            kwargs["method"] = source
            kwargs["params"] = self.params.values()
            label = source
        kwargs["progress"] = self._emit(lambda d, t: f"{label}: %p%")
        name = layer.name
        meta = {k: v for k, v in (layer.metadata or {}).items()
                if k not in ("fluorecon", "quantity", "source")}
        self._say(f"restoring {name} ({label}) ...")

        def add(result: RestoreResult) -> None:
            added = self._add_layers(result_layers(result, name=name, geometry=geometry,
                                                   metadata={**meta, "input_layer": name}))
            self._say(f"added {', '.join(a.name for a in added)}" + _summary(result))

        self._start(restore, kwargs, add)


def _summary(result: RestoreResult) -> str:
    parts = []
    if "calibration" in result.info:
        parts.append(f"calibrated: {result.info['calibration']}")
    cons = result.info.get("consistency")
    if cons:
        regions = sum(len(r) if isinstance(r, list) else int(r) for r in cons["regions"])
        chi = ", ".join(f"{c:.3g}" for c in cons["reduced_chi2"])
        parts.append(f"reduced chi-square {chi}, {regions} flagged region(s)")
    if result.info.get("recalibration_factor", 1.0) != 1.0:
        parts.append(f"std recalibrated x{result.info['recalibration_factor']:.3g}")
    return "" if not parts else " (" + "; ".join(parts) + ")"


class TrainWidget(_JobWidget):
    """Train Noise2Void / N2V2 / Noise2Self on a noisy layer, or CARE / Noise2Noise on an
    (input, target) pair of layers, and save a model folder.

    Progress shows the step and the training loss. Cancel stops after the current step
    and leaves a checkpoint in ``<model folder>.checkpoint``; tick *resume* and run again
    (same layers and settings) to continue exactly. On success the model folder is written
    (``config.json``, ``weights.safetensors``, ``history.csv``, ``training_state/``) and,
    optionally, applied to the input layer. The folder works with ``fluorecon predict``
    and with the Restore widget.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    """

    run_label = "Train"

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(viewer, parent)
        self.method_combo = QComboBox()
        self.method_combo.addItems(list(TRAINABLE))
        self.method_combo.setToolTip("n2v / n2v2 / n2s: self-supervised, the noisy layer "
                                     "alone; care: (low, high quality) pairs; n2n: pairs of "
                                     "independent noisy acquisitions.")
        self.input_combo = self._layer_combo()
        self.target_combo = self._layer_combo(optional=True)
        self.axes_combo = QComboBox()
        self.steps_spin = _spin(1, 10_000_000, 2000, "Optimiser steps.")
        self.patch_edit = QLineEdit("64")
        self.patch_edit.setToolTip("Training patch size in pixels: one size (64) or one per "
                                   "spatial axis (16x64x64); divisible by 2**depth.")
        self.batch_spin = _spin(1, 4096, 16, "Patches per step.")
        self.depth_spin = _spin(1, 5, 2, "U-Net depth (2x downsamplings).")
        self.filters_spin = _spin(1, 512, 32, "U-Net filters at the top level.")
        self.probabilistic_check = QCheckBox("probabilistic (per-pixel uncertainty)")
        self.probabilistic_check.setToolTip("Also predict a per-pixel Laplace scale (trained "
                                            "by its negative log-likelihood); enables "
                                            "uncertainty in the Restore widget.")
        self.seed_spin = _spin(0, 2**31 - 1, 0, "Random seed (same seed, same model).")
        self.struct_combo = QComboBox()
        self.struct_combo.addItems(list(STRUCT_MASKS))
        self.struct_combo.setToolTip("n2v / n2v2 only. structN2V: noise correlated along "
                                     "rows (horizontal), columns (vertical) or both (cross), "
                                     "e.g. camera line noise or line scanning, is hidden "
                                     "from the network instead of being learned as signal. "
                                     "Horizontal/vertical train with mirror images only.")
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText("model folder to write")
        self.out_button = QPushButton("Browse...")
        self.out_button.clicked.connect(self._browse_out)
        out_row = QHBoxLayout()
        out_row.setContentsMargins(0, 0, 0, 0)
        out_row.addWidget(self.out_edit)
        out_row.addWidget(self.out_button)
        out_widget = QWidget()
        out_widget.setLayout(out_row)
        self.resume_check = QCheckBox("resume")
        self.resume_check.setToolTip("Continue a cancelled run from <folder>.checkpoint, or "
                                     "extend a finished model (more steps).")
        self.overwrite_check = QCheckBox("overwrite")
        self.apply_check = QCheckBox("apply to the input when done")
        self.apply_check.setChecked(True)

        self.form.addRow("method", self.method_combo)
        self.form.addRow("input", self.input_combo)
        self.form.addRow("target", self.target_combo)
        self.form.addRow("axes", self.axes_combo)
        self.form.addRow("steps", self.steps_spin)
        self.form.addRow("patch size", self.patch_edit)
        self.form.addRow("batch size", self.batch_spin)
        self.form.addRow("depth", self.depth_spin)
        self.form.addRow("base filters", self.filters_spin)
        self.form.addRow("seed", self.seed_spin)
        self.form.addRow("correlated noise", self.struct_combo)
        self.form.addRow("", self.probabilistic_check)
        self.form.addRow("model folder", out_widget)
        flags = QHBoxLayout()
        flags.addWidget(self.resume_check)
        flags.addWidget(self.overwrite_check)
        self.form.addRow("", flags)
        self.form.addRow("", self.apply_check)
        self._add_buttons()
        self.input_combo.currentTextChanged.connect(self._on_input)
        self.method_combo.currentTextChanged.connect(self._on_method)
        self._on_method(self.method_combo.currentText())
        self._on_input(self.input_combo.currentText())

    def _layer_combos(self) -> list[QComboBox]:
        return [self.input_combo, self.target_combo]

    def _on_input(self, name: str) -> None:
        layer = self.viewer.layers[name] if name and name in self.viewer.layers else None
        self._fill_axes(self.axes_combo, layer)

    def _on_method(self, name: str) -> None:
        self.target_combo.setEnabled(TRAINABLE.get(name, False))
        self.struct_combo.setEnabled(name in BLIND_SPOT_METHODS)

    def _browse_out(self) -> None:  # pragma: no cover - needs a user
        folder, _ = QFileDialog.getSaveFileName(self, "Model folder to write")
        if folder:
            self.out_edit.setText(folder)

    def run(self) -> None:
        """Validate the choices and start training in a worker thread."""
        if self.running:
            return
        self._guard(self._run)

    def _run(self) -> None:
        method = self.method_combo.currentText()
        layer = self._layer(self.input_combo, "input")
        if layer is None:
            raise ConfigError(message("no input layer", "a noisy image layer to train on",
                                      "Open an image (or File > Open Sample > fluorecon)."))
        target = self._layer(self.target_combo, "target") if TRAINABLE[method] else None
        if TRAINABLE[method] and target is None:
            raise ConfigError(message(f"{method} without a target layer",
                                      "registered (input, target) layers",
                                      "Pick a target layer (for n2n: a second noisy "
                                      "acquisition of the same field)."))
        out = self.out_edit.text().strip()
        if not out:
            raise ConfigError(message("no model folder", "a folder path to write the model "
                                      "to", "Type or browse a path."))
        axes = layer_geometry(layer, self.axes_combo.currentText().strip()).axes
        fields = {"steps": self.steps_spin.value(),
                  "patch_size": _parse_patch(self.patch_edit.text()),
                  "batch_size": self.batch_spin.value(), "depth": self.depth_spin.value(),
                  "base_filters": self.filters_spin.value(),
                  "probabilistic": self.probabilistic_check.isChecked(),
                  "seed": self.seed_spin.value()}
        struct = self.struct_combo.currentText()
        if method in BLIND_SPOT_METHODS and struct != "none":
            fields["struct_mask"] = struct
        from fluorecon.methods.registry import get_method

        get_method(method).Config.build(**fields)  # validate now (no torch needed)
        names = [layer.name] + ([target.name] if target is not None else [])
        geometry = layer_geometry(layer, axes)
        kwargs: dict[str, Any] = {
            "method_name": method, "inputs": layer_array(layer), "axes": axes, "out": out,
            "targets": None if target is None else layer_array(target), "fields": fields,
            "resume": self.resume_check.isChecked(),
            "overwrite": self.overwrite_check.isChecked(),
            "apply": self.apply_check.isChecked(), "layer_names": names,
            "progress": self._train_progress}
        name = layer.name
        self._say(f"training {method} on {', '.join(names)} ...")

        def finish(outcome: TrainOutcome) -> None:
            best = ("" if math.isnan(outcome.best_val_loss)
                    else f", best validation loss {outcome.best_val_loss:.4g}")
            text = f"wrote model {outcome.model_dir} ({outcome.steps_done} steps{best})"
            if outcome.prediction is not None:
                result = RestoreResult(prediction=outcome.prediction, source=method,
                                       info={"model": str(outcome.model_dir),
                                             "method": method})
                added = self._add_layers(result_layers(
                    result, name=name, geometry=geometry,
                    metadata={"input_layer": name, "model": str(outcome.model_dir)}))
                text += f"; added {added[0].name}"
            self.model_dir = outcome.model_dir
            self._say(text)

        self._start(train_model, kwargs, finish)

    def _train_progress(self, step: int, total: int, logs: dict[str, float]) -> None:
        text = f"step {step}/{total}, loss {logs.get('loss', math.nan):.4g}"
        if "val_loss" in logs:
            text += f", validation {logs['val_loss']:.4g}"
        self._bridge.progress.emit(int(step), int(total), text)


def _spin(lo: int, hi: int, value: int, tip: str) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(lo, hi)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin


def _parse_patch(text: str) -> int | tuple[int, ...]:
    try:
        dims = tuple(int(p) for p in text.strip().lower().replace(",", "x").split("x"))
    except ValueError:
        dims = ()
    if not 1 <= len(dims) <= 3 or min(dims, default=0) < 1:
        raise ConfigError(message(f"patch size {text!r}", "one size or 2-3 sizes joined by x, "
                                  "like 64 or 16x64x64", "Fix the patch size."))
    return dims[0] if len(dims) == 1 else dims
