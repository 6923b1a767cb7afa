"""torch-free parts of ``fluorecon export``: help text and package detection."""

from __future__ import annotations

from typer.testing import CliRunner

from fluorecon.cli.app import app
from fluorecon.cli.export import is_bioimageio_package


def test_export_help_lists_formats():
    res = CliRunner().invoke(app, ["export", "--help"])
    assert res.exit_code == 0
    assert "bioimageio" in res.output and "onnx" in res.output


def test_is_bioimageio_package(tmp_path):
    folder = tmp_path / "pkg"
    folder.mkdir()
    assert not is_bioimageio_package(folder)  # empty folder
    (folder / "rdf.yaml").write_text("type: model\n")
    assert is_bioimageio_package(folder) and is_bioimageio_package(folder / "rdf.yaml")
    (folder / "config.json").write_text("{}")  # a fluorecon model folder wins
    assert not is_bioimageio_package(folder)
    (tmp_path / "m.zip").write_bytes(b"PK")
    assert is_bioimageio_package(tmp_path / "m.zip")
    assert not is_bioimageio_package(tmp_path / "missing.zip")
    (tmp_path / "image.tif").write_bytes(b"")
    assert not is_bioimageio_package(tmp_path / "image.tif")
