"""HTML assembly: embedded figures, self-containment, tables, atomic writes."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from fluorecon.core.errors import InputFileError, OutputExistsError
from fluorecon.report.figures import display_limits, plane_at, png_bytes
from fluorecon.report.html import (
    Section,
    Table,
    embed_png,
    external_references,
    render_html,
    section_id,
    write_html,
)


def _png() -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1), dpi=20)
    fig.subplots().plot([0, 1], [1, 0])
    return png_bytes(fig)


def test_embed_png_round_trips_and_rejects_other_bytes():
    data = _png()
    uri = embed_png(data)
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]) == data
    with pytest.raises(InputFileError, match="not a PNG"):
        embed_png(b"GIF89a....")


def test_render_html_embeds_relative_figures_and_is_self_contained(tmp_path):
    (tmp_path / "fig.png").write_bytes(_png())
    sec = Section("Images & <tables>", paragraphs=["a < b"], warnings=["careful"],
                  tables=[Table(["name", "value"], [["x", 1.5], ["y", float("nan")]],
                                best_row=0, text=True)],
                  figures=[("fig.png", "a figure")])
    linked = render_html("t", [sec])
    assert external_references(linked) == ["fig.png"]
    page = render_html("t", [sec], embed_from=tmp_path)
    assert external_references(page) == []
    assert page.count("data:image/png;base64,") == 1
    assert f"id='{section_id(sec.title)}'" in page and section_id(sec.title) == "images-tables"
    assert "a &lt; b" in page and "<p class='warning'>careful</p>" in page
    assert "<table class='text'>" in page and "<td>nan</td>" in page
    assert "<tr class=\"best\"><td>x</td><td>1.500</td></tr>" in page
    with pytest.raises(InputFileError, match="cannot be read"):
        render_html("t", [Section("s", figures=[("missing.png", "m")])], embed_from=tmp_path)


def test_external_references_finds_every_kind():
    page = ("<img src='a.png'><link href=\"style.css\"><a href='#top'>x</a>"
            "<style>body{background:url(http://x/y.png)}</style><img src='data:image/png;base64,AA'>")
    assert external_references(page) == ["a.png", "style.css", "http://x/y.png"]


def test_plain_tables_keep_their_markup():
    # the demo and QC pages (and their tests) rely on plain <table> and <td> cells
    html = render_html("t", [Section("s", tables=[Table(["a"], [[1.0]])])])
    assert "<table><thead>" in html and "<td>1.000</td>" in html


def test_write_html_is_atomic_and_refuses_inputs(tmp_path):
    src = tmp_path / "input.html"
    src.write_text("keep")
    with pytest.raises(OutputExistsError):
        write_html(src, "<html></html>", overwrite=True, inputs=[src])
    assert src.read_text() == "keep"
    out = write_html(tmp_path / "r.html", "<html>é</html>")
    assert out.read_text(encoding="utf-8") == "<html>é</html>"
    with pytest.raises(OutputExistsError):
        write_html(out, "again")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.html", "r.html"]


def test_display_limits_and_planes():
    img = np.arange(100, dtype=np.float32).reshape(10, 10)
    lo, hi = display_limits(img, (0, 100))
    assert (lo, hi) == (0.0, 99.0)
    assert display_limits(np.full((4, 4), 3.0)) == (3.0, 4.0)
    vol = np.stack([np.full((4, 5), z, np.float32) for z in range(6)])
    assert plane_at(vol, "ZYX").mean() == 3 and plane_at(vol, "ZYX", z=5).mean() == 5
    assert plane_at(vol[None], "CZYX", z=1).shape == (4, 5)
    with pytest.raises(Exception, match="0 <= z < 6"):
        plane_at(vol, "ZYX", z=6)
    with pytest.raises(Exception, match="low < high"):
        display_limits(img, (50, 10))
