"""Render a stats dict (from collect_stats) as rich terminal tables or one self-contained HTML file."""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from curate.io import read_json, write_bytes
from curate.stats.compute import SAMPLE_CHARS, length_bin_labels
from curate.units import human_bytes

# ----------------------------------------------------------------------------------------------- formats

# What a terminal would act on instead of showing: C0 controls but tab and newline, DEL, C1 controls (ESC
# and CSI start OSC/CSI sequences: window titles, clear screen, hyperlinks, clipboard), and the bidi controls
# that reorder what is shown.
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """Text from data made safe for a terminal: each control character shown as an escape (\\x1b)."""
    return CONTROL.sub(lambda m: ascii(m.group())[1:-1], text)


def printable_data(value: Any) -> Any:
    """A JSON-like value with every string (keys too) passed through printable."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, Mapping):
        return {printable_data(k): printable_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [printable_data(v) for v in value]
    return value


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


def _group_tokens_header(stats: Mapping[str, Any]) -> str:
    return "Tokens" if stats.get("tokens") is not None else "Tokens (approx.)"


def _group_tokens(stats: Mapping[str, Any], c: Mapping[str, Any]) -> str:
    """A group's tokens: exact with a tokenizer, else characters / 4 marked with ≈ (older JSON: computed)."""
    if stats.get("tokens") is not None and c.get("tokens") is not None:
        return _num(c["tokens"])
    approx = c.get("tokens_approximate")
    if approx is None and c.get("characters") is not None:
        approx = round(c["characters"] / 4)
    return f"≈ {_num(approx)}"


def _summary_rows(stats: Mapping[str, Any]) -> list[tuple[str, str]]:
    tokens, token_label = _tokens_label(stats)
    rejected = sum((stats.get("rejected") or {}).values())
    return [
        ("Documents", _num(stats.get("documents"))),
        ("Without a known licence", _num(stats.get("without_license"))),
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
    stats = printable_data(stats)  # source names, licences, reasons, paths come from data
    # Data strings go in as Text so that a "[...]" in a source name or title is not read as rich markup.
    console.print(Text(_title(stats), style="bold"))
    sections = (
        _summary_table,
        *_GROUP_TABLES,
        _length_table,
        _histogram_table,
        _clusters_table,
        _drops_table,
    )
    for table in (section(stats) for section in sections):
        if table is not None:
            console.print(table)
    for stage, report in (stats.get("decontamination") or {}).items():
        print_decontamination(stage, report, console)
    funnel = _funnel_table(stats)
    if funnel is not None:
        console.print(funnel)
    _print_samples(stats, console)
    for warning in stats.get("warnings") or []:
        console.print(Text(f"warning: {warning}", style="yellow"))


def _summary_table(stats: Mapping[str, Any]) -> Table:
    summary = Table(title="Summary", show_header=False)
    summary.add_column("", style="bold")
    summary.add_column("", justify="right")
    for label, value in _summary_rows(stats):
        summary.add_row(label, value)
    return summary


def _group_table(key: str, title: str, column: str) -> Callable[[Mapping[str, Any]], Table | None]:
    """The section of documents, characters and tokens by one grouping (source, language, licence, ...)."""

    def section(stats: Mapping[str, Any]) -> Table | None:
        groups = stats.get(key)
        if not groups:
            return None
        documents = stats.get("documents") or 0
        characters = stats.get("characters") or 0
        table = Table(title=title)
        table.add_column(column)
        for name in ("Documents", "% docs", "Characters", "% chars", _group_tokens_header(stats)):
            table.add_column(name, justify="right")
        for name, c in _sorted_groups(groups):
            table.add_row(
                Text(name),
                _num(c.get("documents")),
                _pct(c.get("documents"), documents),
                _num(c.get("characters")),
                _pct(c.get("characters"), characters),
                _group_tokens(stats, c),
            )
        return table

    return section


_GROUP_TABLES = (
    _group_table("by_source", "Documents by source", "Source"),
    _group_table("by_lang", "Documents by language", "Language"),
    _group_table("by_license", "Documents by licence", "Licence"),
    _group_table("by_redistributable", "Documents by redistributable (sources.yaml)", "Redistributable"),
)


def _length_table(stats: Mapping[str, Any]) -> Table | None:
    percentiles = stats.get("length_percentiles") or {}
    if not percentiles:
        return None
    table = Table(title="Document length (characters)")
    table.add_column("Source")
    names = [k for k in PERCENTILE_ORDER if k in percentiles]
    for name in names:
        table.add_column(name, justify="right")
    table.add_row(Text("all", style="bold"), *(_num(percentiles[n]) for n in names))
    for source, p in (stats.get("length_percentiles_by_source") or {}).items():
        table.add_row(Text(source), *(_num(p.get(n)) for n in names))
    return table


def _histogram_table(stats: Mapping[str, Any]) -> Table | None:
    histogram = stats.get("length_histogram") or {}
    if not (histogram.get("all") and any(histogram["all"])):
        return None
    table = Table(title="Length histogram (documents per length in characters)")
    table.add_column("Characters")
    table.add_column("Documents", justify="right")
    table.add_column("", no_wrap=True)
    top = max(histogram["all"]) or 1
    for label, count in _histogram_rows(histogram["edges"], histogram["all"]):
        table.add_row(label, _num(count), "█" * max(1 if count else 0, round(30 * count / top)))
    return table


def _clusters_table(stats: Mapping[str, Any]) -> Table | None:
    clusters = stats.get("dup_clusters")
    if not clusters:
        return None
    table = Table(title="Duplicate clusters (survivor + removed copies)")
    table.add_column("Cluster size", justify="right")
    table.add_column("Clusters", justify="right")
    for size, count in sorted((clusters.get("sizes") or {}).items(), key=lambda kv: int(kv[0])):
        table.add_row(str(size), _num(count))
    table.caption = (
        f"clusters: {_num(clusters.get('clusters'))}, duplicates removed: "
        f"{_num(clusters.get('duplicates_removed'))}"
    )
    return table


def _drops_table(stats: Mapping[str, Any]) -> Table | None:
    drops = _drop_rows(stats)
    if not drops:
        return None
    table = Table(title="Dropped documents by reason")
    table.add_column("Reason")
    table.add_column("Documents", justify="right")
    table.add_column("Characters", justify="right")
    characters = stats.get("rejected_characters") or {}
    for reason, count in drops:
        table.add_row(Text(reason), _num(count), _num(characters.get(reason)))
    return table


def _funnel_table(stats: Mapping[str, Any]) -> Table | None:
    funnel = stats.get("funnel")
    if not funnel:
        return None
    table = Table(title="Funnel (from stage manifests)")
    # Drop reasons go on rows of their own under their stage: a column of them would not fit 80 columns.
    table.box = box.SIMPLE_HEAD  # lighter rules: eight columns and the stage names fit 80 columns
    table.pad_edge = False
    table.add_column("Stage", no_wrap=True)
    # Characters kept are characters in less those removed (the JSON and HTML reports have all three).
    for name in ("In", "Kept", "Drops", "Errors", "Chars in", "Removed"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("", no_wrap=True)  # status
    for e in funnel:
        stage, n_in, kept, rejected, errored, _, chars_in, _, _, _, status = _funnel_row(e)
        style = "" if status == "complete" else "yellow"
        numbers = (n_in, kept, rejected, errored, chars_in, _num(e.get("characters_removed")))
        shown = "ok" if status == "complete" else str(status or "")  # short, to fit 80 columns
        table.add_row(Text(str(stage), style="bold"), *numbers, Text(shown, style=style))
        for reason, count in (e.get("drop_reasons") or {}).items():
            table.add_row(Text(f"  {reason}", style="dim"), "", "", _num(count), *[""] * 4)
    table.caption = "Removed: characters of dropped documents, and text cut from kept ones (clean)"
    return table


DECONTAMINATION_COLUMNS = ("Benchmark", "Items", "Found", "Documents", "By PMID", "Chars removed")


def _decontamination_rows(report: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """Per benchmark: items, items found, documents affected, of them by PMID, characters removed."""
    return [
        (
            name,
            _num(b.get("items")),
            _num(b.get("items_found")),
            _num(b.get("documents")),
            _num(b.get("documents_by_pmid")),
            _num(b.get("characters_removed")),
        )
        for name, b in (report.get("benchmarks") or {}).items()
    ]


def _decontamination_caption(report: Mapping[str, Any]) -> str:
    p = report.get("parameters") or {}
    counts = ("documents", "documents_contaminated", "documents_dropped", "documents_cut")
    n = {k: _num(report.get(k)) for k in (*counts, "characters_removed", "items_unmatchable")}
    return (
        f"{n['documents_contaminated']} of {n['documents']} documents held test items "
        f"({n['documents_dropped']} dropped, {n['documents_cut']} cut), {n['characters_removed']} characters "
        f"removed; an item is found when one stretch of a document holds {p.get('min_share')} of its "
        f"{p.get('ngram')}-grams (at least {p.get('min_ngrams')}), or by PMID; {n['items_unmatchable']} "
        "items too short to match"
    )


def print_decontamination(stage: str, report: Mapping[str, Any], console: Console) -> None:
    """The decontamination report of one stage: a table per benchmark and a few examples."""
    table = Table(title=f"Decontamination ({stage}): test items found in the corpus")
    for i, name in enumerate(DECONTAMINATION_COLUMNS):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in _decontamination_rows(report):
        table.add_row(Text(row[0]), *row[1:])
    table.caption = _decontamination_caption(report)
    console.print(table)
    for name, examples in (report.get("examples") or {}).items():
        for e in examples:
            what = f"n-gram {e.get('ngram')!r}, share {e.get('share')}" if e.get("by") == "ngrams" else "PMID"
            console.print(
                Text(f"  {name} item {e.get('item')} in {e.get('document')} ({what}; {e.get('action')})"),
                soft_wrap=True,
            )


def _print_samples(stats: Mapping[str, Any], console: Console) -> None:
    """The Samples section: the first kept documents, then the first ones each drop reason removed."""
    samples = stats.get("samples") or {}
    kept, rejected = samples.get("kept") or [], samples.get("rejected") or {}
    if not kept and not rejected:
        return
    console.print(Text(f"Samples (the first {SAMPLE_CHARS} characters of each)", style="bold italic"))
    for s in kept:
        _print_sample(console, "kept", s, f"{s.get('source')}  {s.get('title') or ''}")
    for reason, rows in sorted(rejected.items()):
        for s in rows:
            _print_sample(console, str(reason), s, f"{s.get('stage')}: {s.get('detail') or ''}")


def _print_sample(console: Console, label: str, sample: Mapping[str, Any], about: str) -> None:
    head = Text.assemble(
        (f"{label}  ", "bold red" if label != "kept" else "bold green"), (str(sample.get("id")), "bold")
    )
    head.append(f"  {about}".rstrip(), style="dim")
    text = " ".join(str(sample.get("text") or "").split()) or "(no text)"  # one paragraph: its lines joined
    more = (sample.get("characters") or 0) > len(str(sample.get("text") or ""))
    # Wrapped to the terminal, indented; Text, so that "[...]" in a document is never read as markup.
    console.print(head, soft_wrap=False)
    console.print(Padding(Text(text + (" …" if more else "")), (0, 0, 0, 4)), soft_wrap=False)


FUNNEL_COLUMNS = (
    "Stage",
    "In",
    "Kept",
    "Rejected",
    "Errored",
    "Kept %",
    "Characters in",
    "Characters kept",
    "Characters removed",
    "Drop reasons",
    "Status",
)
PERCENTILE_ORDER = ("min", "p5", "p25", "p50", "p75", "p95", "max", "mean")


def _funnel_row(e: Mapping[str, Any]) -> tuple:
    """One funnel entry as the cells of FUNNEL_COLUMNS (numbers formatted; stage, reasons, status raw)."""
    reasons = ", ".join(f"{r} {_num(n)}" for r, n in (e.get("drop_reasons") or {}).items())
    return (
        e.get("stage"),
        _num(e.get("in")),
        _num(e.get("kept")),
        _num(e.get("rejected")),
        _num(e.get("errored")),
        _pct(e.get("kept"), e.get("in")),
        _num(e.get("characters_in")),
        _num(e.get("characters_kept")),
        _removed(e),
        reasons,
        e.get("status"),
    )


def _removed(e: Mapping[str, Any]) -> str:
    """Characters a stage removed, with their share of what it read: '1,234 (5%)'."""
    removed, read = e.get("characters_removed"), e.get("characters_in")
    if removed is None:
        return _num(None)
    return f"{_num(removed)} ({_pct(removed, read)})" if read else _num(removed)


def _histogram_rows(
    edges: Sequence[int], counts: Sequence[int], span: Sequence[int] | None = None
) -> list[tuple[str, int]]:
    """(label, documents) per length bin, from the first non-empty bin to the last (of span's counts)."""
    labels = length_bin_labels(edges)
    used = [i for i, c in enumerate(span if span is not None else counts) if c]
    if not used:
        return []
    return [(labels[i], counts[i]) for i in range(used[0], used[-1] + 1)]


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
.multiples { display: flex; flex-wrap: wrap; gap: 1rem; } figure { margin: 0; }
figcaption { font-weight: 600; font-size: .9rem; }
.legend span { display: inline-block; width: .8rem; height: .8rem; margin: 0 .3rem 0 1rem; }
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _svg_open(width: int, height: int, chart: str) -> str:
    # class/data-chart name each plot, so a reader (or a test in a browser) can find it.
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="{_e(chart)}" '
        f'width="{width}" height="{height}" role="img" aria-label="{_e(chart)}">'
    )


def _bar_chart(rows: Sequence[tuple[str, float, str]], *, chart: str, unit: str = "") -> str:
    """A horizontal bar chart as inline SVG: one (label, value, caption) per bar."""
    if not rows:
        return '<p class="muted">nothing to show</p>'
    label_w, bar_w, row_h = 220, 560, 22
    top = max((v for _, v, _ in rows), default=0) or 1
    height = row_h * len(rows) + 6
    parts = [_svg_open(label_w + bar_w + 160, height, chart)]
    for i, (label, value, caption) in enumerate(rows):
        y = 3 + i * row_h
        w = max(1.0, bar_w * value / top) if value else 0
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{_e(_clip(label, 28))}</text>'
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
    parts = [_svg_open(label_w + bar_w + 260, height, "funnel")]
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


def _histogram_chart(
    edges: Sequence[int], counts: Sequence[int], *, chart: str, span: Sequence[int] | None = None
) -> str:
    """Vertical bars, one per length bin (log-spaced edges), over the bins span (default counts) uses."""
    rows = _histogram_rows(edges, counts, span)
    if not rows or not any(c for _, c in rows):
        return '<p class="muted">no documents</p>'
    bar_w, plot_h, left, bottom = 34, 120, 50, 40
    top = max(c for _, c in rows) or 1
    width, height = left + bar_w * len(rows) + 10, plot_h + bottom + 10
    parts = [_svg_open(width, height, chart)]
    parts.append(f'<text x="4" y="14">{_e(_num(top))}</text>')
    parts.append(f'<line x1="{left}" y1="{plot_h + 6}" x2="{width - 6}" y2="{plot_h + 6}" stroke="#999"/>')
    for i, (label, count) in enumerate(rows):
        h = plot_h * count / top
        x = left + i * bar_w
        short = _short_edge(label)  # the bin's lower edge (1k, 20k); the tooltip has the full range
        parts.append(
            f'<rect x="{x + 3}" y="{plot_h + 6 - h:.1f}" width="{bar_w - 6}" height="{h:.1f}" '
            f'fill="{_COLORS["bar"]}"><title>{_e(label)} characters: {_num(count)} documents</title></rect>'
            f'<text x="{x + bar_w / 2 + 4:.1f}" y="{plot_h + 18}" text-anchor="end" font-size="10" '
            f'transform="rotate(-45 {x + bar_w / 2 + 4:.1f} {plot_h + 18})">{_e(short)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _short_edge(label: str) -> str:
    """'1,000-1,999' -> '1k', '>= 10,000,000' -> '10M', '0' -> '0'."""
    low = int(label.removeprefix(">= ").split("-")[0].replace(",", ""))
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if low >= size and low % size == 0:
            return f"{low // size}{suffix}"
    return str(low)


def _lengths_section(stats: Mapping[str, Any]) -> str:
    percentiles = stats.get("length_percentiles") or {}
    histogram = stats.get("length_histogram") or {}
    if not any(v is not None for v in percentiles.values()):
        return ""
    names = [k for k in PERCENTILE_ORDER if percentiles.get(k) is not None]
    rows = [["all", *(_num(percentiles.get(n)) for n in names)]]
    for source, p in (stats.get("length_percentiles_by_source") or {}).items():
        rows.append([source, *(_num(p.get(n)) for n in names)])
    parts = [
        "<h2>Document length (characters)</h2>",
        _table(["Source", *names], rows, numeric=tuple(range(1, len(names) + 1))),
    ]
    edges = histogram.get("edges")
    if edges and histogram.get("all"):
        parts.append("<h3>All sources</h3>")
        parts.append(_histogram_chart(edges, histogram["all"], chart="length-all"))
        by_source = histogram.get("by_source") or {}
        if by_source:
            parts.append('<h3>Per source</h3><div class="multiples">')
            for source, counts in by_source.items():
                # Every source on the bins of the whole corpus, so that the charts line up.
                name = f"length-source:{source}"
                chart = _histogram_chart(edges, counts, chart=name, span=histogram["all"])
                parts.append(f"<figure><figcaption>{_e(source)}</figcaption>{chart}</figure>")
            parts.append("</div>")
    return "".join(parts)


def _clusters_section(stats: Mapping[str, Any]) -> str:
    clusters = stats.get("dup_clusters")
    if not clusters:
        return ""
    sizes = sorted((clusters.get("sizes") or {}).items(), key=lambda kv: int(kv[0]))
    summary = (
        f"{_num(clusters.get('clusters'))} clusters holding {_num(clusters.get('documents_in_clusters'))} "
        f"documents; {_num(clusters.get('duplicates_removed'))} duplicates removed (one survivor kept per "
        "cluster)."
    )
    if not clusters.get("clusters"):
        summary = (
            "No rows dropped as duplicates here. In a work directory the dedup stages' rejected/ rows "
            "give the clusters: run curate stats on the work directory."
        )
    parts = ["<h2>Duplicate clusters</h2>", f'<p class="muted">{_e(summary)}</p>']
    if not clusters.get("clusters"):
        return "".join(parts)
    rows = [(f"size {size}", count, f"{_num(count)} clusters") for size, count in sizes]
    parts.append(_bar_chart(rows, chart="clusters"))
    largest = clusters.get("largest") or []
    if largest:
        rows = [(c["stage"], c["dup_cluster"], _num(c["size"]), c.get("example")) for c in largest]
        parts.append("<h3>Largest clusters</h3>")
        parts.append(_table(["Stage", "dup_cluster", "Size", "Example removed copy"], rows, numeric=(2,)))
    return "".join(parts)


def _decontamination_section(stage: str, report: Mapping[str, Any]) -> str:
    rows = _decontamination_rows(report)
    parts = [
        f"<h2>Decontamination ({_e(stage)})</h2>",
        f'<p class="muted">{_e(_decontamination_caption(report))}</p>',
        _table(list(DECONTAMINATION_COLUMNS), rows, numeric=(1, 2, 3, 4, 5)),
    ]
    examples = [(name, e) for name, found in (report.get("examples") or {}).items() for e in found]
    if examples:
        body = "".join(
            f"<tr><td>{_e(name)}</td><td>{_e(e.get('item'))}</td><td>{_e(e.get('document'))}</td>"
            f"<td>{_e(e.get('ngram') or 'PMID')}</td><td>{_e(e.get('action'))}</td>"
            f"<td>{_sample_text(e.get('excerpt'))}</td></tr>"
            for name, e in examples
        )
        parts.append(
            "<h3>Examples</h3><table><thead><tr><th>Benchmark</th><th>Item</th><th>Document</th>"
            "<th>Overlapping n-gram</th><th>Action</th><th>Text</th></tr></thead>"
            f"<tbody>{body}</tbody></table>"
        )
    return "".join(parts)


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


def _groups_section(stats: Mapping[str, Any], key: str, title: str, column: str, chart: str) -> str:
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
        ],
        chart=chart,
    )
    rows = [
        (
            name,
            _num(c.get("documents")),
            _pct(c.get("documents"), documents),
            _num(c.get("characters")),
            _pct(c.get("characters"), characters),
            _group_tokens(stats, c),
        )
        for name, c in ordered
    ]
    header = [column, "Documents", "% docs", "Characters", "% chars", _group_tokens_header(stats)]
    table = _table(header, rows, numeric=(1, 2, 3, 4, 5))
    return f"<h2>{_e(title)}</h2>{chart}{table}"


def _sample_text(text: str | None) -> str:
    if not text:
        return '<span class="muted">(no text)</span>'
    return f'<pre class="sample">{_e(text)}</pre>'


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
        out.append(
            "<h2>Sample of dropped documents, by reason</h2><p class='muted'>The first documents each reason "
            "dropped, with the detail the step gave, first 300 characters.</p>"
        )
        for reason, rows_ in sorted(rejected.items()):
            rows = "".join(
                f"<tr><td>{_e(s.get('id'))}</td><td>{_e(s.get('stage'))}</td><td>{_e(s.get('detail'))}</td>"
                f"<td>{_sample_text(s.get('text'))}</td></tr>"
                for s in rows_
            )
            out.append(
                f"<h3>{_e(reason)}</h3><table><thead><tr><th>Id</th><th>Stage</th><th>Detail</th>"
                f"<th>Text</th></tr></thead><tbody>{rows}</tbody></table>"
            )
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
        parts.append(_table(list(FUNNEL_COLUMNS), rows, numeric=(1, 2, 3, 4, 5, 6, 7, 8)))
    parts.append(_groups_section(stats, "by_source", "Documents by source", "Source", "sources"))
    parts.append(_groups_section(stats, "by_lang", "Language mix", "Language", "languages"))
    parts.append(_groups_section(stats, "by_license", "Documents by licence", "Licence", "licences"))
    title = "Redistributable (sources.yaml)"
    parts.append(_groups_section(stats, "by_redistributable", title, "Redistributable", "redistributable"))
    drops = _drop_rows(stats)
    parts.append("<h2>Drop reasons</h2>")
    if drops:
        parts.append(_bar_chart([(r, c, _num(c)) for r, c in drops], chart="drop-reasons"))
    else:
        parts.append('<p class="muted">none</p>')
    characters = stats.get("rejected_characters") or {}
    if drops:
        rows = [(r, _num(c), _num(characters.get(r))) for r, c in drops]
        parts.append(_table(["Reason", "Documents", "Characters"], rows, numeric=(1, 2)))
    by_stage = stats.get("rejected_by_stage") or {}
    if by_stage:
        rows = [(s, r, _num(c)) for s, reasons in by_stage.items() for r, c in reasons.items()]
        parts.append(_table(["Stage", "Reason", "Documents"], rows, numeric=(2,)))
    parts.append(_lengths_section(stats))
    for stage, report in (stats.get("decontamination") or {}).items():
        parts.append(_decontamination_section(stage, report))
    parts.append(_clusters_section(stats))
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


def print_stage_reports(stage_dirs: list[Path], console: Console) -> None:
    """The reports of stages that write one, as tables: every mix's (tokens per component, shares, epochs),
    then every decontamination's (items found, documents, characters removed)."""
    from curate.decontam.report import REPORT as DECONTAMINATION
    from curate.mix.report import REPORT as MIX
    from curate.mix.report import print_mix_report

    for stage_dir in stage_dirs:
        if (stage_dir / MIX).is_file():
            print_mix_report(read_json(stage_dir / MIX), console)
    for stage_dir in stage_dirs:
        if (stage_dir / DECONTAMINATION).is_file():
            print_decontamination(stage_dir.name, read_json(stage_dir / DECONTAMINATION), console)
