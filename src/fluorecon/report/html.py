"""Self-contained HTML reports: sections with text, warnings, metric tables and figures.

A page is one HTML file with inline CSS, no scripts, no fonts and no external resources.
Figures are either referenced by a path relative to the page (a report folder, as the demo
writes) or embedded as ``data:image/png;base64`` URIs (:func:`embed_png`), so that the
single ``.html`` file opens offline, can be mailed or attached to a lab notebook, and
cannot lose its figures.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fluorecon.core.errors import InputFileError, message
from fluorecon.io import write_bytes_atomic

__all__ = ["Section", "Table", "embed_png", "external_references", "render_html",
           "render_table", "section_id", "write_html"]

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td { max-width: 48em; overflow-wrap: anywhere; }
caption { caption-side: top; text-align: left; color: #555; padding-bottom: 0.3em; }
table.text td, table.text th { text-align: left; }
tr.best td { font-weight: bold; background: #eef6ee; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption, .note { color: #555; font-size: 0.9em; }
p.warning { background: #fff4e5; border-left: 4px solid #e69500; padding: 0.4em 0.8em; }
"""

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_DATA_URI = "data:image/png;base64,"


@dataclass(frozen=True)
class Table:
    """A table: column names, rows of cells (numbers are formatted), an optional best row."""

    columns: Sequence[str]
    rows: Sequence[Sequence[object]]
    best_row: int | None = None
    caption: str = ""
    text: bool = False
    """Left-align every column (key/value tables of text)."""


@dataclass(frozen=True)
class Section:
    """A report section: a title, warnings, paragraphs, tables and figures.

    ``figures`` holds ``(source, caption)`` pairs; a source is a path relative to the page
    or a ``data:`` URI from :func:`embed_png`. ``warnings`` are shown first, highlighted.
    """

    title: str
    paragraphs: Sequence[str] = ()
    tables: Sequence[Table] = ()
    figures: Sequence[tuple[str, str]] = field(default_factory=tuple)
    warnings: Sequence[str] = ()


def embed_png(png: bytes) -> str:
    """Return a PNG image as a ``data:image/png;base64,...`` URI for an ``<img src>``.

    Raises
    ------
    InputFileError
        ``png`` does not start with the PNG signature.
    """
    if not bytes(png[:8]) == _PNG_MAGIC:
        raise InputFileError(message(f"{len(png)} bytes that are not a PNG image",
                                     "PNG bytes (signature 89 50 4E 47 0D 0A 1A 0A)",
                                     "Pass the bytes of a saved PNG figure."))
    return _DATA_URI + base64.b64encode(bytes(png)).decode("ascii")


def section_id(title: str) -> str:
    """The ``id`` of a section's heading: its title lower-cased, runs of other characters
    replaced by ``-`` (used for links and by tests)."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"


def _cell(value: object) -> str:
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return f"{value:.3f}" if 1e-3 <= abs(value) < 1e5 or value == 0 else f"{value:.4g}"
    return html.escape(str(value))


def render_table(table: Table) -> str:
    """Render a :class:`Table` as an HTML ``<table>``."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = []
    for i, row in enumerate(table.rows):
        cls = ' class="best"' if i == table.best_row else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>")
    cap = f"<caption>{html.escape(table.caption)}</caption>" if table.caption else ""
    cls = " class='text'" if table.text else ""
    return f"<table{cls}>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure_source(src: str, embed_from: Path | None) -> str:
    if embed_from is None or src.startswith("data:"):
        return src
    path = embed_from / src
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputFileError(message(f"a figure {path} that cannot be read ({exc.strerror})",
                                     "the report's PNG figures next to the page",
                                     "Write the figures before rendering the page.")) from None
    return embed_png(data)


def render_html(title: str, sections: Sequence[Section], *, intro: str = "",
                embed_from: str | Path | None = None) -> str:
    """Render a complete HTML page (inline CSS, no scripts, no external resources).

    Parameters
    ----------
    title : str
    sections : sequence of Section
    intro : str
        Paragraph under the title.
    embed_from : path, optional
        Folder that relative figure paths are read from; each figure is then embedded as a
        ``data:`` URI and the page is a single self-contained file. Default: figures are
        referenced relatively (the page must stay next to them).
    """
    base = None if embed_from is None else Path(embed_from)
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
             f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    if intro:
        parts.append(f"<p>{html.escape(intro)}</p>")
    for sec in sections:
        parts.append(f"<h2 id='{section_id(sec.title)}'>{html.escape(sec.title)}</h2>")
        parts.extend(f"<p class='warning'>{html.escape(w)}</p>" for w in sec.warnings)
        parts.extend(f"<p>{html.escape(p)}</p>" for p in sec.paragraphs)
        parts.extend(render_table(t) for t in sec.tables)
        for src, caption in sec.figures:
            parts.append(f"<figure><img src='{html.escape(_figure_source(src, base))}' "
                         f"alt='{html.escape(caption)}'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


_REF = re.compile(r"""(?:src|href)\s*=\s*(['"])(.*?)\1|url\(\s*['"]?([^'")]+)""", re.I)


def external_references(page: str) -> list[str]:
    """Every resource a page loads that is not embedded in it (``src``, ``href``, CSS
    ``url(...)`` values other than ``data:`` URIs and in-page ``#`` anchors).

    An empty list means the page opens offline as a single file.
    """
    out = []
    for m in _REF.finditer(page):
        ref = html.unescape(m.group(2) if m.group(2) is not None else m.group(3)).strip()
        if not ref.startswith(("data:", "#")):
            out.append(ref)
    return out


def write_html(path: str | Path, page: str, *, overwrite: bool = False,
               inputs: Iterable[str | Path] = ()) -> Path:
    """Write an HTML page atomically (never over one of ``inputs``)."""
    return write_bytes_atomic(path, page.encode("utf-8"), overwrite=overwrite, inputs=inputs)
