"""napari plugin tests: headless (offscreen Qt), skipped without napari or pytest-qt.

Widgets are driven with pytest-qt's ``qtbot`` against a :class:`napari.components.ViewerModel`
(the viewer without its OpenGL canvas, which offscreen Qt cannot create); they only need
its ``layers`` and ``add_*`` methods.

napari's dependencies (npe2, app-model) still use pydantic-1 style APIs that emit
``PydanticDeprecatedSince20`` when their models are *defined*, i.e. on first import. Those
imports happen here, once, under a filter for exactly that warning class; every other
warning stays an error (``filterwarnings = error``). This keeps the area working even where
napari's own pytest plugin is disabled (``-p no:napari``) and the root configuration does
not ignore that warning class.
"""

from __future__ import annotations

import os
import warnings

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before Qt is loaded

pytest.importorskip("pytestqt")
pytest.importorskip("qtpy")

with warnings.catch_warnings():
    from pydantic.warnings import PydanticDeprecatedSince20

    warnings.filterwarnings("ignore", category=PydanticDeprecatedSince20,
                            module=r"(npe2|app_model|napari|pydantic)(\.|$)")
    napari = pytest.importorskip("napari")
    import napari.components  # noqa: F401  (defines the pydantic models once)
    import napari.qt.threading  # noqa: F401
    import npe2  # noqa: F401
    import fluorecon.napari._widgets  # noqa: F401


@pytest.fixture
def viewer():
    """A napari viewer model (no canvas), cleared after the test."""
    from napari.components import ViewerModel

    model = ViewerModel()
    yield model
    model.layers.clear()
