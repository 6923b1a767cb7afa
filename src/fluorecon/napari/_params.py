"""A Qt form generated from a method's pydantic config: labels and tooltips from the field
descriptions, only changed fields passed on (so ``None`` defaults keep meaning
"calibrate on the image")."""

from __future__ import annotations

import json
import types
import typing
from typing import Any, Literal

from qtpy.QtWidgets import QCheckBox, QComboBox, QFormLayout, QLabel, QLineEdit, QWidget

from fluorecon.core.errors import ConfigError, message

__all__ = ["ConfigForm"]

#: Fields never shown (schema version) or shown last (rarely changed).
HIDDEN = frozenset({"version"})
ADVANCED = ("calibration_stride", "calibration_masks", "calibration_crop", "fft_backend",
            "threads")

_NONE = "none"


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(annotation)) == 2:
            return args[0], True
    return annotation, False


def _literal_values(annotation: Any) -> list[Any] | None:
    if typing.get_origin(annotation) is Literal:
        return list(typing.get_args(annotation))
    return None


def _is_sequence(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (tuple, list)


def _label(name: str) -> str:
    return name.replace("_", " ")


class ConfigForm(QWidget):
    """Editable fields of a :class:`~fluorecon.core.config.BaseConfig` subclass.

    Booleans are check boxes, ``Literal`` fields combo boxes (with ``none`` when the field
    is optional), everything else a line edit whose placeholder shows the default
    (``auto`` for ``None``, which the methods read as "calibrate on the image"). Text is
    read as JSON (numbers, ``true``, lists), else as a string; sequence fields also
    accept comma-separated values.

    Parameters
    ----------
    config_cls : type
        The pydantic config class (``extra="forbid"``).
    parent : QWidget, optional
    """

    def __init__(self, config_cls: type, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.config_cls = config_cls
        self.editors: dict[str, QWidget] = {}
        self._defaults: dict[str, Any] = {}
        self._annotations: dict[str, Any] = {}
        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        fields = config_cls.model_fields
        names = [n for n in fields if n not in HIDDEN and n not in ADVANCED]
        names += [n for n in ADVANCED if n in fields]
        for name in names:
            spec = fields[name]
            editor = self._editor(name, spec.annotation, spec.default)
            editor.setToolTip(spec.description or "")
            label = QLabel(_label(name))
            label.setToolTip(spec.description or "")
            layout.addRow(label, editor)
            self.editors[name] = editor

    def _editor(self, name: str, annotation: Any, default: Any) -> QWidget:
        self._defaults[name] = default
        inner, optional = _unwrap_optional(annotation)
        self._annotations[name] = inner
        if inner is bool and not optional:
            box = QCheckBox()
            box.setChecked(bool(default))
            return box
        values = _literal_values(inner)
        if values is not None:
            combo = QComboBox()
            items = ([_NONE] if optional else []) + [str(v) for v in values]
            combo.addItems(items)
            combo.setCurrentText(_NONE if default is None else str(default))
            return combo
        edit = QLineEdit()
        if default is None:
            edit.setPlaceholderText("auto")
        elif isinstance(default, (tuple, list)):
            edit.setPlaceholderText(", ".join(str(v) for v in default))
        else:
            edit.setPlaceholderText(str(default))
        return edit

    # -- values ------------------------------------------------------------------------
    def set_value(self, name: str, value: Any) -> None:
        """Set a field's editor (``None`` clears a line edit back to its default)."""
        editor = self.editors[name]
        if isinstance(editor, QCheckBox):
            editor.setChecked(bool(value))
        elif isinstance(editor, QComboBox):
            text = _NONE if value is None else str(value)
            if editor.findText(text) < 0:
                items = ", ".join(editor.itemText(i) for i in range(editor.count()))
                raise ConfigError(message(f"{name}={value!r}", f"one of {items}",
                                          "Pick a listed value."))
            editor.setCurrentText(text)
        elif isinstance(editor, QLineEdit):
            if value is None:
                editor.setText("")
            elif isinstance(value, (list, tuple)):
                editor.setText(", ".join(str(v) for v in value))
            else:
                editor.setText(str(value))

    def values(self) -> dict[str, Any]:
        """Fields the user changed from their defaults, parsed (not yet validated)."""
        out: dict[str, Any] = {}
        for name, editor in self.editors.items():
            default = self._defaults[name]
            if isinstance(editor, QCheckBox):
                if editor.isChecked() != bool(default):
                    out[name] = editor.isChecked()
            elif isinstance(editor, QComboBox):
                text = editor.currentText()
                value = None if text == _NONE else self._literal(name, text)
                if value != default:
                    out[name] = value
            elif isinstance(editor, QLineEdit):
                text = editor.text().strip()
                if text:
                    out[name] = self._parse(name, text)
        return out

    def config(self) -> Any:
        """The validated config (raises a one-line :class:`ConfigError`)."""
        return self.config_cls.build(**self.values())

    def _literal(self, name: str, text: str) -> Any:
        for v in _literal_values(self._annotations[name]) or []:
            if str(v) == text:
                return v
        return text

    def _parse(self, name: str, text: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            if _is_sequence(self._annotations[name]):
                return [_scalar(p.strip()) for p in text.split(",") if p.strip()]
            return text


def _scalar(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text

