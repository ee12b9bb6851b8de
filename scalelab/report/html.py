"""Self-contained HTML reports: figures embedded as PNG, a Markdown summary beside them.

`write_report(path, title, sections)` writes `path` (HTML, no external files) and `path` with
`.md` (the same text and tables, figures as PNG files in a folder beside it). A section is a
heading, a paragraph of Markdown-ish text, optional figures and optional tables (lists of dicts).
"""

from __future__ import annotations

import base64
import html
import io
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

# reports are drawn headless (Agg); matplotlib itself is imported only when a figure is drawn, so that
# commands that merely import this package (a `scalelab report` with nothing to redraw) stay fast
if "matplotlib" in sys.modules:
    sys.modules["matplotlib"].use("Agg")
else:
    os.environ["MPLBACKEND"] = "Agg"


@dataclass
class Section:
    title: str
    text: str = ""
    figures: list = field(default_factory=list)  # matplotlib Figures
    tables: list[list[dict]] = field(default_factory=list)


def _fig_png(fig) -> bytes:
    buf = io.BytesIO()
    # constrained layout instead of bbox "tight" (which renders twice); fast zlib level: reports stay quick
    fig.savefig(buf, format="png", dpi=100, pil_kwargs={"compress_level": 1})
    return buf.getvalue()


def _close(fig) -> None:
    """Release a figure made with pyplot (pyplot keeps it); a bare `Figure` needs nothing, nor pyplot's import."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close(fig)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _html_table(rows: list[dict]) -> str:
    if not rows:
        return "<p><em>(no rows)</em></p>"
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _md(text: str) -> str:
    """Text for the Markdown twin: HTML escaped (Markdown renderers pass raw HTML through, scripts included)."""
    return html.escape(str(text), quote=False)


def _md_cell(value) -> str:
    """A Markdown table cell: escaped, with '|' and line breaks that would end the cell neutralised."""
    return _md(_fmt(value)).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _md_table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)\n"
    cols = list(rows[0])
    lines = ["| " + " | ".join(_md_cell(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_md_cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{border-bottom:2px solid #444}h2{margin-top:2em;border-bottom:1px solid #ccc}
img{max-width:100%;margin:.5em 0}table{border-collapse:collapse;font-size:.85em;margin:1em 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}
.text{white-space:pre-wrap}"""


def write_report(path: str | Path, title: str, sections: list[Section], meta: str = "") -> Path:
    """Write the HTML report (self-contained) and a Markdown twin; both atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig_dir = path.with_suffix("").with_name(path.stem + "_figures")
    fig_dir.mkdir(exist_ok=True)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"]  # fmt: skip
    md = [f"# {_md(title)}\n"]
    if meta:
        parts.append(f"<p><small>{html.escape(meta)}</small></p>")
        md.append(f"_{_md(meta)}_\n")
    n = 0
    for sec in sections:
        parts.append(f"<h2>{html.escape(sec.title)}</h2>")
        md.append(f"\n## {_md(sec.title)}\n")
        if sec.text:
            parts.append(f"<div class='text'>{html.escape(sec.text)}</div>")
            md.append(_md(sec.text) + "\n")
        for fig in sec.figures:
            png = _fig_png(fig)
            _close(fig)
            n += 1
            (fig_dir / f"fig{n:02d}.png").write_bytes(png)
            parts.append(f"<img src='data:image/png;base64,{base64.b64encode(png).decode()}'/>")
            md.append(f"![figure {n}]({fig_dir.name}/fig{n:02d}.png)\n")
        for rows in sec.tables:
            parts.append(_html_table(rows))
            md.append(_md_table(rows))
    parts.append("</body></html>")
    for target, text in ((path, "".join(parts)), (path.with_suffix(".md"), "\n".join(md))):
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        tmp.write_text(text)
        tmp.replace(target)
    return path
