"""``report.html``: one self-contained page (inline CSS, figures as data URIs, no script, no
external address) so it can be mailed, archived with the run and opened offline.

On screen a wide table scrolls in its box; in print (and so in a PDF) nothing can scroll, so the
print style lets every cell wrap and shrinks the type: no column is cut off at the page edge.

Every text from results.json or the cohort goes through ``html.escape``; tables through
pandas' escaping ``to_html``.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from html import escape
from pathlib import Path

import pandas as pd

from model_build.study.figures import FigureFile
from model_build.study.formatting import MISSING, MODALITY_NAMES, model_title

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2327; margin: 0; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5em 2em 4em; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #d0d7de; padding-bottom: 0.2em;
margin-top: 2em; } h3 { margin-top: 1.4em; }
.meta { color: #57606a; font-size: 0.9em; } .meta code { font-size: 0.95em; word-break: break-all; }
.banner { background: #fff4d6; border: 1px solid #e5b93a; padding: 0.6em 1em; border-radius: 4px; margin: 1em 0; }
.banner.quick { background: #fde8e8; border-color: #c62828; font-weight: 600; }
.warning { background: #fff4d6; border-left: 4px solid #e5b93a; padding: 0.4em 0.8em; }
.summary p { margin: 0.5em 0; }
.scroll { overflow-x: auto; margin: 0.6em 0 1em; }
.scroll.wrap table.dataframe td { white-space: normal; min-width: 6em; }
table.dataframe { border-collapse: collapse; font-size: 0.85em; }
table.dataframe th, table.dataframe td { border: 1px solid #d0d7de; padding: 0.25em 0.6em; text-align: left;
vertical-align: top; white-space: nowrap; }
table.dataframe th { background: #f3f5f7; } table.dataframe tr:nth-child(even) td { background: #fafbfc; }
figure { margin: 1em 0 1.6em; } figure img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
figcaption { font-size: 0.85em; color: #57606a; max-width: 800px; }
.side-by-side { display: grid; grid-template-columns: repeat(auto-fill, minmax(480px, 1fr)); gap: 0 1.5em; }
.tables-side-by-side { display: flex; flex-wrap: wrap; gap: 0 2em; }
nav ol { columns: 2; font-size: 0.9em; } .na { color: #57606a; font-style: italic; }
@page { size: A4; margin: 14mm 12mm; }
@media print {
  body { font-size: 10pt; } main { max-width: none; padding: 0; }
  .scroll { overflow: visible; }
  table.dataframe { font-size: 7.5pt; }
  table.dataframe th, table.dataframe td { white-space: normal; overflow-wrap: break-word; padding: 0.15em 0.35em; }
  tr, figure, .banner, .warning { break-inside: avoid; } h2, h3, h4 { break-after: avoid; }
  .side-by-side { display: block; } figure img { max-height: 110mm; width: auto; }
}
"""


INTERVAL = re.compile(r"\([-+]?\d[\d.]* to [-+]?\d[\d.]*\)")
"""``(40.9 to 92.9)``: kept on one line when a printed cell wraps (it breaks before the interval)."""


@dataclass(frozen=True)
class Section:
    anchor: str
    title: str
    body: str


def paragraph(text: str) -> str:
    return f"<p>{escape(text)}</p>"


def bullet_list(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{escape(item)}</li>" for item in items) + "</ul>"


def warning(text: str) -> str:
    """A caution the reader must not miss (it stands out on screen and in print)."""
    return f'<p class="warning" role="note">{escape(text)}</p>'


def table(frame: pd.DataFrame | None, caption: str = "", wrap: bool = False) -> str:
    """A DataFrame as an escaped HTML table in a scrolling box; a note when it does not apply.
    ``wrap``: cells of sentences wrap (numbers stay on one line in the other tables)."""
    if frame is None:
        return f'<p class="na">{escape(caption or "Not applicable to this run.")}</p>'
    html = INTERVAL.sub(lambda match: match[0].replace(" ", "&#160;"),
                        frame.to_html(index=False, escape=True, border=0, na_rep=MISSING))
    return (f"<p>{escape(caption)}</p>" if caption else "") + f'<div class="scroll{" wrap" if wrap else ""}">{html}</div>'


def figure(path: Path, title: str, caption: str) -> str:
    """A PNG embedded as a base64 data URI (the page needs no other file)."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(title)}">'
            f"<figcaption><strong>{escape(title)}.</strong> {escape(caption)}</figcaption></figure>")


def figures(files: list[FigureFile], side_by_side: bool = False) -> str:
    """Figures one under the other, or side by side (one per cohort, compared at a glance)."""
    html = "".join(figure(f.path, f.title, f.caption) for f in files)
    return f'<div class="side-by-side">{html}</div>' if side_by_side else html


def tables_side_by_side(parts: list[tuple[str, pd.DataFrame]]) -> str:
    """Small tables next to each other, each under its own title (one per cohort)."""
    return '<div class="tables-side-by-side">' + "".join(
        f"<div><h4>{escape(title)}</h4>{table(frame)}</div>" for title, frame in parts) + "</div>"


def page(title: str, meta: list[tuple[str, str]], banner: str | None, sections: list[Section],
         quick: str | None = None) -> str:
    """The whole document: the quick-run banner first (before any number is read), header, table
    of contents, sections."""
    meta_html = " · ".join(f"{escape(key)}: <code>{escape(value)}</code>" for key, value in meta)
    contents = "".join(f'<li><a href="#{s.anchor}">{escape(s.title)}</a></li>' for s in sections)
    body = "".join(f'<section id="{s.anchor}"><h2>{escape(s.title)}</h2>{s.body}</section>' for s in sections)
    banner_html = f'<div class="banner">{escape(banner)}</div>' if banner else ""
    quick_html = f'<div class="banner quick" role="alert">{escape(quick)}</div>' if quick else ""
    return ("<!DOCTYPE html>\n"
            f'<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<style>{STYLE}</style></head><body><main>{quick_html}"
            f'<h1>{escape(title)}</h1><p class="meta">{meta_html}</p>{banner_html}'
            f"<nav><ol>{contents}</ol></nav>{body}</main></body></html>\n")


def data_types(results: dict, inputs: dict[str, list[str]]) -> str:
    """What each model name means: the data types and, for tables, the columns behind them."""
    modalities = list(dict.fromkeys(m for model in results["models"].values() for m in model["modalities"]))
    items = []
    for modality in modalities:
        columns = inputs.get(modality)
        items.append(f"{modality}: {MODALITY_NAMES[modality]}" + (f" ({', '.join(columns)})" if columns else ""))
    models = ", ".join(model_title(name) for name in results["models"])
    return bullet_list(items) + paragraph(f"Models: {models}.")
