"""Self-contained HTML reports: sections with text, metric tables and figures."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fluorecon.io import write_bytes_atomic

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.best td { font-weight: bold; background: #eef6ee; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption, .note { color: #555; font-size: 0.9em; }
"""


@dataclass(frozen=True)
class Table:
    """A table: column names, rows of cells (numbers are formatted), an optional best row."""

    columns: Sequence[str]
    rows: Sequence[Sequence[object]]
    best_row: int | None = None
    caption: str = ""


@dataclass(frozen=True)
class Section:
    """A report section: a title, paragraphs, tables and figures (paths relative to the page)."""

    title: str
    paragraphs: Sequence[str] = ()
    tables: Sequence[Table] = ()
    figures: Sequence[tuple[str, str]] = field(default_factory=tuple)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "inf" if value == float("inf") else f"{value:.3f}"
    return html.escape(str(value))


def render_table(table: Table) -> str:
    """Render a :class:`Table` as an HTML ``<table>``."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = []
    for i, row in enumerate(table.rows):
        cls = ' class="best"' if i == table.best_row else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>")
    cap = f"<caption>{html.escape(table.caption)}</caption>" if table.caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(title: str, sections: Sequence[Section], *, intro: str = "") -> str:
    """Render a complete HTML page (inline CSS, no external resources)."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    if intro:
        parts.append(f"<p>{html.escape(intro)}</p>")
    for sec in sections:
        parts.append(f"<h2>{html.escape(sec.title)}</h2>")
        parts.extend(f"<p>{html.escape(p)}</p>" for p in sec.paragraphs)
        parts.extend(render_table(t) for t in sec.tables)
        for src, caption in sec.figures:
            parts.append(f"<figure><img src='{html.escape(src)}' alt='{html.escape(caption)}'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(path: str | Path, page: str, *, overwrite: bool = False) -> Path:
    """Write an HTML page atomically."""
    return write_bytes_atomic(path, page.encode("utf-8"), overwrite=overwrite)
