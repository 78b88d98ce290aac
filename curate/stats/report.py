"""Render a stats dict (from collect_stats) as rich terminal tables or one self-contained HTML file."""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from curate.io import write_bytes

# ----------------------------------------------------------------------------------------------- formats


def human_bytes(n: int | float | None) -> str:
    """Bytes as a short human-readable size (1.5 MB); '-' when unknown."""
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} PB"  # unreachable; keeps type checkers content


def _num(n: Any) -> str:
    if n is None:
        return "-"
    if isinstance(n, float) and not n.is_integer():
        return f"{n:,.1f}"
    return f"{int(n):,}"


def _pct(part: int | None, whole: int | None) -> str:
    if not part or not whole:
        return "-" if whole in (None, 0) else "0.0%"
    return f"{100 * part / whole:.1f}%"


def _tokens_label(stats: Mapping[str, Any]) -> tuple[str, str]:
    """The token count to show and its label; an approximation is always said to be one."""
    if stats.get("tokens") is not None:
        return _num(stats["tokens"]), f"Tokens ({stats.get('tokenizer') or 'tokenizer'})"
    return f"≈ {_num(stats.get('tokens_approximate'))}", "Tokens (approximate: characters / 4)"


def _summary_rows(stats: Mapping[str, Any]) -> list[tuple[str, str]]:
    tokens, token_label = _tokens_label(stats)
    rejected = sum((stats.get("rejected") or {}).values())
    return [
        ("Documents", _num(stats.get("documents"))),
        ("Characters", _num(stats.get("characters"))),
        ("Words", _num(stats.get("words"))),
        (token_label, tokens),
        ("Bytes on disk (Parquet)", human_bytes(stats.get("bytes"))),
        ("Rejected", _num(rejected)),
        ("Errored", _num(stats.get("errored"))),
    ]


def _title(stats: Mapping[str, Any]) -> str:
    kind = stats.get("kind") or "stats"
    where = stats.get("path") or ""
    if kind == "workdir":
        name = f"Pipeline {stats['pipeline']}" if stats.get("pipeline") else "Pipeline"
        return f"{name} ({where}), final stage {stats.get('stage')}"
    return f"Stage {stats.get('stage') or ''} ({where})"


# ----------------------------------------------------------------------------------------------- terminal


def print_stats(stats: dict, console: Console | None = None) -> None:
    """Print the stats as rich tables: summary, sources, languages, licences, lengths, drops, funnel."""
    console = console or Console()
    # Data strings go in as Text so that a "[...]" in a source name or title is not read as rich markup.
    console.print(Text(_title(stats), style="bold"))

    summary = Table(title="Summary", show_header=False)
    summary.add_column("", style="bold")
    summary.add_column("", justify="right")
    for label, value in _summary_rows(stats):
        summary.add_row(label, value)
    console.print(summary)

    documents = stats.get("documents") or 0
    characters = stats.get("characters") or 0
    for key, title, column in (
        ("by_source", "Documents by source", "Source"),
        ("by_lang", "Documents by language", "Language"),
        ("by_license", "Documents by licence", "Licence"),
    ):
        groups = stats.get(key)
        if not groups:
            continue
        table = Table(title=title)
        table.add_column(column)
        for name in ("Documents", "% docs", "Characters", "% chars"):
            table.add_column(name, justify="right")
        for name, c in _sorted_groups(groups):
            table.add_row(
                Text(name),
                _num(c.get("documents")),
                _pct(c.get("documents"), documents),
                _num(c.get("characters")),
                _pct(c.get("characters"), characters),
            )
        console.print(table)

    percentiles = stats.get("length_percentiles") or {}
    if percentiles:
        table = Table(title="Document length (characters)")
        names = [k for k in ("min", "p5", "p25", "p50", "p75", "p95", "max", "mean") if k in percentiles]
        for name in names:
            table.add_column(name, justify="right")
        table.add_row(*(_num(percentiles[n]) for n in names))
        console.print(table)

    drops = _drop_rows(stats)
    if drops:
        table = Table(title="Dropped documents by reason")
        table.add_column("Reason")
        table.add_column("Documents", justify="right")
        table.add_column("Characters", justify="right")
        characters = stats.get("rejected_characters") or {}
        for reason, count in drops:
            table.add_row(Text(reason), _num(count), _num(characters.get(reason)))
        console.print(table)

    funnel = stats.get("funnel")
    if funnel:
        table = Table(title="Funnel (from stage manifests)")
        table.add_column(FUNNEL_COLUMNS[0])
        for name in FUNNEL_COLUMNS[1:-1]:
            table.add_column(name, justify="right")
        table.add_column(FUNNEL_COLUMNS[-1])
        for e in funnel:
            stage, *numbers, status = _funnel_row(e)
            style = "" if status == "complete" else "yellow"
            table.add_row(Text(str(stage)), *numbers, Text(str(status or ""), style=style))
        console.print(table)

    for warning in stats.get("warnings") or []:
        console.print(Text(f"warning: {warning}", style="yellow"))


FUNNEL_COLUMNS = ("Stage", "In", "Kept", "Rejected", "Errored", "Kept %", "Characters kept", "Status")


def _funnel_row(e: Mapping[str, Any]) -> tuple:
    """One funnel entry as the cells of FUNNEL_COLUMNS (numbers formatted; stage and status raw)."""
    return (
        e.get("stage"),
        _num(e.get("in")),
        _num(e.get("kept")),
        _num(e.get("rejected")),
        _num(e.get("errored")),
        _pct(e.get("kept"), e.get("in")),
        _num(e.get("characters_kept")),
        e.get("status"),
    )


def _sorted_groups(groups: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, Mapping[str, Any]]]:
    # JSON written with sort_keys loses the by-size order, so sort again on the way out.
    return sorted(groups.items(), key=lambda kv: (-(kv[1].get("documents") or 0), str(kv[0])))


def _drop_rows(stats: Mapping[str, Any]) -> list[tuple[str, int]]:
    rows = sorted((stats.get("rejected") or {}).items(), key=lambda kv: (-kv[1], kv[0]))
    if stats.get("errored"):
        rows.append(("error (errored)", stats["errored"]))
    return rows


# ------------------------------------------------------------------------------------------------- HTML

_COLORS = {"kept": "#2e7d32", "rejected": "#ef6c00", "errored": "#c62828", "bar": "#1565c0"}

_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #222; padding: 0 1rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5rem 0; }
td, th { border: 1px solid #ddd; padding: .25rem .6rem; text-align: left; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.cards { display: flex; flex-wrap: wrap; gap: .8rem; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: .6rem 1rem; min-width: 10rem; }
.card .v { font-size: 1.3rem; font-weight: 600; } .card .l { color: #666; font-size: .85rem; }
.warn { color: #8a5a00; } .muted { color: #777; }
pre.sample { white-space: pre-wrap; background: #f7f7f7; padding: .5rem; margin: 0; font-size: .85rem; }
svg text { font-size: 12px; font-family: inherit; }
.legend span { display: inline-block; width: .8rem; height: .8rem; margin: 0 .3rem 0 1rem; }
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _svg_open(width: int, height: int) -> str:
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">'


def _bar_chart(rows: Sequence[tuple[str, float, str]], *, unit: str = "") -> str:
    """A horizontal bar chart as inline SVG: one (label, value, caption) per bar."""
    if not rows:
        return '<p class="muted">nothing to show</p>'
    label_w, bar_w, row_h = 220, 560, 22
    top = max((v for _, v, _ in rows), default=0) or 1
    height = row_h * len(rows) + 6
    parts = [_svg_open(label_w + bar_w + 160, height)]
    for i, (label, value, caption) in enumerate(rows):
        y = 3 + i * row_h
        w = max(1.0, bar_w * value / top) if value else 0
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{_e(_clip(label))}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{_COLORS["bar"]}">'
            f"<title>{_e(label)}: {_e(caption)}</title></rect>"
            f'<text x="{label_w + w + 6:.1f}" y="{y + 15}">{_e(caption)}{_e(unit)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _funnel_chart(funnel: Sequence[Mapping[str, Any]]) -> str:
    """Stacked bars per stage (kept / rejected / errored), all on the scale of the largest input."""
    label_w, bar_w, row_h = 160, 600, 26
    top = max((e.get("in") or 0 for e in funnel), default=0) or 1
    height = row_h * len(funnel) + 6
    parts = [_svg_open(label_w + bar_w + 260, height)]
    for i, e in enumerate(funnel):
        y = 3 + i * row_h
        stage = _e(_clip(e.get("stage")))
        parts.append(f'<text x="{label_w - 6}" y="{y + 17}" text-anchor="end">{stage}</text>')
        if e.get("in") is None:
            parts.append(f'<text x="{label_w}" y="{y + 17}" fill="#8a5a00">{_e(e.get("status"))}</text>')
            continue
        x = float(label_w)
        for key in ("kept", "rejected", "errored"):
            w = bar_w * (e.get(key) or 0) / top
            if w > 0:
                parts.append(
                    f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" '
                    f'fill="{_COLORS[key]}">'
                    f"<title>{_e(e.get('stage'))} {key}: {_num(e.get(key))}</title></rect>"
                )
                x += w
        caption = f"{_num(e.get('kept'))} kept of {_num(e.get('in'))} ({_pct(e.get('kept'), e.get('in'))})"
        if e.get("status") not in (None, "complete"):
            caption += f" [{e.get('status')}]"
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 17}">{_e(caption)}</text>')
    parts.append("</svg>")
    legend = "".join(
        f'<span style="background:{_COLORS[k]}"></span>{k}' for k in ("kept", "rejected", "errored")
    )
    return "".join(parts) + f'<div class="legend">{legend}</div>'


def _clip(label: Any, width: int = 32) -> str:
    text = "" if label is None else str(label)
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    def cls(i: int) -> str:
        return ' class="n"' if i in numeric else ""

    head = "".join(f"<th{cls(i)}>{_e(h)}</th>" for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f"<td{cls(i)}>{_e(c)}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _groups_section(stats: Mapping[str, Any], key: str, title: str, column: str) -> str:
    groups = stats.get(key)
    if not groups:
        return ""
    ordered = _sorted_groups(groups)
    documents, characters = stats.get("documents") or 0, stats.get("characters") or 0
    chart = _bar_chart(
        [
            (
                name,
                c.get("documents") or 0,
                f"{_num(c.get('documents'))} ({_pct(c.get('documents'), documents)})",
            )
            for name, c in ordered
        ]
    )
    rows = [
        (
            name,
            _num(c.get("documents")),
            _pct(c.get("documents"), documents),
            _num(c.get("characters")),
            _pct(c.get("characters"), characters),
        )
        for name, c in ordered
    ]
    table = _table([column, "Documents", "% docs", "Characters", "% chars"], rows, numeric=(1, 2, 3, 4))
    return f"<h2>{_e(title)}</h2>{chart}{table}"


def _samples_section(stats: Mapping[str, Any]) -> str:
    samples = stats.get("samples") or {}
    out = []
    kept = samples.get("kept") or []
    if kept:
        rows = "".join(
            f"<tr><td>{_e(s.get('title'))}</td><td>{_e(s.get('id'))}</td><td>{_e(s.get('source'))}</td>"
            f'<td><pre class="sample">{_e(s.get("text"))}</pre></td></tr>'
            for s in kept
        )
        out.append(
            "<h2>Sample of kept documents</h2><p class='muted'>The first documents, first 300 characters.</p>"
            f"<table><thead><tr><th>Title</th><th>Id</th><th>Source</th><th>Text</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )
    rejected = samples.get("rejected") or {}
    if rejected:
        out.append("<h2>Sample of dropped documents, by reason</h2>")
        for reason, rows_ in sorted(rejected.items()):
            rows = [(s.get("id"), s.get("stage"), s.get("reason"), s.get("detail")) for s in rows_]
            out.append(f"<h3>{_e(reason)}</h3>" + _table(["Id", "Stage", "Reason", "Detail"], rows))
    return "".join(out)


def render_html(stats: Mapping[str, Any]) -> str:
    """The HTML report as a string: inline CSS and SVG only, so it works offline and can be mailed around."""
    title = _title(stats)
    cards = "".join(
        f'<div class="card"><div class="v">{_e(v)}</div><div class="l">{_e(k)}</div></div>'
        for k, v in _summary_rows(stats)
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>curate stats: {_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<h2>Summary</h2><div class="cards">{cards}</div>',
    ]
    if stats.get("tokens") is None:
        parts.append(
            '<p class="muted">Tokens are approximate (characters / 4); pass a tokenizer for exact counts.</p>'
        )
    for warning in stats.get("warnings") or []:
        parts.append(f'<p class="warn">warning: {_e(warning)}</p>')
    funnel = stats.get("funnel")
    if funnel:
        rows = [_funnel_row(e) for e in funnel]
        parts.append("<h2>Funnel</h2>" + _funnel_chart(funnel))
        parts.append(
            _table(
                list(FUNNEL_COLUMNS),
                rows,
                numeric=(1, 2, 3, 4, 5, 6),
            )
        )
    parts.append(_groups_section(stats, "by_source", "Documents by source", "Source"))
    parts.append(_groups_section(stats, "by_lang", "Language mix", "Language"))
    parts.append(_groups_section(stats, "by_license", "Documents by licence", "Licence"))
    drops = _drop_rows(stats)
    parts.append("<h2>Drop reasons</h2>")
    parts.append(_bar_chart([(r, c, _num(c)) for r, c in drops]) if drops else '<p class="muted">none</p>')
    characters = stats.get("rejected_characters") or {}
    if drops:
        rows = [(r, _num(c), _num(characters.get(r))) for r, c in drops]
        parts.append(_table(["Reason", "Documents", "Characters"], rows, numeric=(1, 2)))
    by_stage = stats.get("rejected_by_stage") or {}
    if by_stage:
        rows = [(s, r, _num(c)) for s, reasons in by_stage.items() for r, c in reasons.items()]
        parts.append(_table(["Stage", "Reason", "Documents"], rows, numeric=(2,)))
    percentiles = stats.get("length_percentiles") or {}
    if any(v is not None for v in percentiles.values()):
        order = ("min", "p5", "p25", "p50", "p75", "p95", "max")
        names = [k for k in order if percentiles.get(k) is not None]
        parts.append("<h2>Document length (characters)</h2>")
        parts.append(_bar_chart([(n, percentiles[n], _num(percentiles[n])) for n in names], unit=" chars"))
        parts.append(_table(names + ["mean"], [[_num(percentiles.get(n)) for n in names + ["mean"]]]))
    parts.append(_samples_section(stats))
    parts.append(
        "<h2>Raw stats</h2><details><summary>JSON</summary><pre>"
        + _e(json.dumps(stats, indent=2, ensure_ascii=False, default=str))
        + "</pre></details>"
    )
    parts.append("</body></html>\n")
    return "\n".join(p for p in parts if p)


def write_html(stats: dict, path: str | os.PathLike) -> None:
    """Write the stats as one self-contained HTML report (no CDN, no external JS/CSS; inline SVG charts)."""
    write_bytes(render_html(stats).encode("utf-8"), path)
