"""One self-contained HTML report: a summary table, then sections with tables, plots and per-example cards."""

from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from ..errors import SeqVisionError

__all__ = ["write_html_report"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; background: #f5f6f8;
       color: #1d2330; line-height: 1.45; }
main { max-width: 1200px; margin: 0 auto; padding: 24px; }
h1 { margin: 0 0 4px; font-size: 1.7em; }
h2 { margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 2px solid #d9dde5; font-size: 1.3em; }
.meta { color: #667; font-size: 0.9em; margin-bottom: 18px; }
table { border-collapse: collapse; background: #fff; margin: 8px 0 14px; font-size: 0.92em; }
th, td { padding: 5px 12px; border: 1px solid #e0e3ea; text-align: left; vertical-align: top; }
th { background: #eef0f5; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.summary td:first-child { font-weight: 600; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; margin: 8px 0; }
.plots img { max-width: 100%; background: #fff; border: 1px solid #e0e3ea; border-radius: 6px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 16px; }
.card { background: #fff; border: 1px solid #e0e3ea; border-left: 5px solid #9aa3b5; border-radius: 8px;
        padding: 12px; box-shadow: 0 1px 2px rgba(0,0,0,.04); overflow: hidden; }
.card.correct { border-left-color: #2e9d5b; }
.card.wrong { border-left-color: #d0453a; }
.card h3 { margin: 0 0 8px; font-size: 1.02em; word-break: break-word; }
.card img { width: 100%; border-radius: 4px; }
.card table { width: 100%; margin: 8px 0 0; }
.card td:first-child { width: 30%; color: #556; white-space: nowrap; }
.missing { color: #a33; font-style: italic; }
"""


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
    return str(v)


def _cell(v) -> str:
    cls = ' class="num"' if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
    return f"<td{cls}>{html.escape(_fmt(v))}</td>"


def _table(table, *, where: str) -> str:
    """``{"columns": [...], "rows": [[...], ...]}`` or a list of dicts (columns = the keys, in first-seen order)."""
    if isinstance(table, Mapping):
        cols = list(table.get("columns", []))
        rows = [list(r) for r in table.get("rows", [])]
    elif isinstance(table, Sequence) and all(isinstance(r, Mapping) for r in table):
        cols = []
        for r in table:
            cols += [k for k in r if k not in cols]
        rows = [[r.get(c, "") for c in cols] for r in table]
    else:
        raise SeqVisionError(f"{where}: a table is {{'columns': [...], 'rows': [[...]]}} or a list of dicts, "
                             f"got {type(table).__name__}")
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(_cell(v) for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(src, folder: Path, *, where: str, alt: str) -> str:
    p = Path(src)
    full = p if p.is_absolute() else folder / p
    if not full.is_file():
        # Relative paths are taken relative to the report's folder; say both so the caller sees the mismatch.
        raise SeqVisionError(f"{where}: image {src} does not exist (looked for {full})")
    rel = Path(os.path.relpath(full.resolve(), folder.resolve())).as_posix()
    return f'<img src="{html.escape(quote(rel))}" alt="{html.escape(alt)}" loading="lazy">'


def _card(card: Mapping, folder: Path, *, where: str) -> str:
    if not isinstance(card, Mapping):
        raise SeqVisionError(f"{where}: a card is a dict with 'title', 'image', 'rows', 'plots'; "
                             f"got {type(card).__name__}")
    unknown = set(card) - {"title", "image", "rows", "plots", "correct", "text"}
    if unknown:
        raise SeqVisionError(f"{where}: unknown card keys {sorted(unknown)}; allowed: title, image, rows, plots, "
                             "correct, text")
    title = str(card.get("title", ""))
    cls = {True: " correct", False: " wrong"}.get(card.get("correct"), "")
    parts = [f'<div class="card{cls}">']
    if title:
        parts.append(f"<h3>{html.escape(title)}</h3>")
    if card.get("image"):
        parts.append(_img(card["image"], folder, where=where, alt=f"frames of {title}"))
    if card.get("text"):
        parts.append(f"<p>{html.escape(str(card['text']))}</p>")
    rows = card.get("rows") or []
    if isinstance(rows, Mapping):
        rows = list(rows.items())
    if rows:
        body = ""
        for r in rows:
            if not isinstance(r, Sequence) or isinstance(r, str) or len(r) != 2:
                raise SeqVisionError(f"{where}: card rows are (key, value) pairs, got {r!r}")
            body += f"<tr><td>{html.escape(str(r[0]))}</td><td>{html.escape(_fmt(r[1]))}</td></tr>"
        parts.append(f"<table><tbody>{body}</tbody></table>")
    for j, plot in enumerate(card.get("plots") or []):
        parts.append(_img(plot, folder, where=f"{where}.plots[{j}]", alt=f"plot {j} of {title}"))
    parts.append("</div>")
    return "".join(parts)


def write_html_report(path, *, title: str, summary: Mapping, sections: Sequence[Mapping] = ()) -> Path:
    """Write one self-contained HTML report (CSS inline, images as relative links to PNGs beside it).

    Args:
        path: the ``.html`` file to write; its folder should hold the PNGs (relative image paths are resolved
            against it, absolute ones are linked relatively).
        title: page title.
        summary: headline numbers, ``{"top-1": 0.81, "BLEU-4": 0.32, "CIDEr": 0.6, "wall time (s)": 41.2}``.
        sections: each ``{"heading": str, "text": str (optional), "table": {"columns", "rows"} or list of dicts
            (optional), "plots": [png, ...] (optional), "cards": [card, ...] (optional)}``; a card is
            ``{"title", "image": frame-strip png, "rows": [(key, value), ...] (true vs predicted label/caption),
            "plots": [png, ...], "correct": bool (optional: green/red edge), "text": str (optional)}``.

    Returns:
        The path written. All text is HTML-escaped; a missing image is an error naming it.

    Example:
        >>> write_html_report("out/report.html", title="UCF-mini", summary={"top-1": 0.8},
        ...     sections=[{"heading": "Examples", "cards": [{"title": "v_001", "image": "v_001.png",
        ...     "rows": [("true", "jump"), ("predicted", "jump")], "correct": True}]}])
    """
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    if not isinstance(summary, Mapping):
        raise SeqVisionError(f"summary must be a dict of headline numbers, got {type(summary).__name__}")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(str(title))}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{html.escape(str(title))}</h1>",
        f'<div class="meta">generated {html.escape(datetime.now().strftime("%Y-%m-%d %H:%M"))} by seqvision</div>',
    ]
    if summary:
        rows = "".join(f"<tr><td>{html.escape(str(k))}</td>{_cell(v)}</tr>" for k, v in summary.items())
        out.append(f'<table class="summary"><tbody>{rows}</tbody></table>')
    allowed = {"heading", "title", "text", "table", "plots", "cards"}
    for i, sec in enumerate(sections):
        where = f"sections[{i}]"
        if not isinstance(sec, Mapping):
            raise SeqVisionError(f"{where}: a section is a dict, got {type(sec).__name__}")
        unknown = set(sec) - allowed
        if unknown:
            raise SeqVisionError(f"{where}: unknown section keys {sorted(unknown)}; allowed: {sorted(allowed)}")
        out.append("<section>")
        heading = sec.get("heading", sec.get("title", ""))
        if heading:
            out.append(f"<h2>{html.escape(str(heading))}</h2>")
        if sec.get("text"):
            out.append(f"<p>{html.escape(str(sec['text']))}</p>")
        if sec.get("table") is not None:
            out.append(_table(sec["table"], where=f"{where}.table"))
        if sec.get("plots"):
            imgs = "".join(_img(p, folder, where=f"{where}.plots[{j}]", alt=Path(str(p)).stem)
                           for j, p in enumerate(sec["plots"]))
            out.append(f'<div class="plots">{imgs}</div>')
        if sec.get("cards"):
            cards = "".join(_card(c, folder, where=f"{where}.cards[{j}]") for j, c in enumerate(sec["cards"]))
            out.append(f'<div class="grid">{cards}</div>')
        out.append("</section>")
    out.append("</main></body></html>\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(out), encoding="utf-8")
    os.replace(tmp, path)
    return path
