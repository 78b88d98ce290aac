"""Find documents in shards or rejected/ by source, drop reason or id, and show them with their metadata.

Selection is columnar: only the small columns (id, source, drop_reason) are read to find matches; the chosen
documents' row groups are then read whole, so showing five documents of a 10 GB corpus reads a few MB.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from curate.errors import ConfigError
from curate.layout import MANIFEST, PIPELINE_FILE, REJECTED_DIR
from curate.stats.compute import _parquet_files, _read_json
from curate.stats.report import CONTROL, printable

# Shown first, in this order; other columns follow in file order, then meta (pretty JSON) and the text.
META_ORDER = ("id", "source", "title", "url", "license", "lang", "lang_score", "quality_score", "dup_cluster")
DROP_ORDER = ("drop_stage", "drop_reason", "drop_detail")


@dataclass
class Selection:
    """Documents picked from the files, how many matched, and what else was there (for a helpful miss)."""

    documents: list[dict[str, Any]]
    matched: int
    scanned_files: int
    rejected: bool
    sources: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)


def _files(path: Path) -> tuple[list[Path], list[Path]]:
    """(kept, rejected) files of a Parquet file, stage directory, rejected/ folder or work directory."""
    if path.is_file():
        if path.suffix != ".parquet":
            raise ConfigError(
                f"{path}: not a Parquet file (expected a stage or work directory, or a .parquet)"
            )
        return ([], [path]) if path.parent.name == REJECTED_DIR else ([path], [])
    if not path.is_dir():
        raise ConfigError(f"{path}: path does not exist (expected a stage or work directory)")
    if (path / PIPELINE_FILE).is_file():
        try:
            stages = [str(s) for s in _read_json(path / PIPELINE_FILE)["stages"]]
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(
                f"{path / PIPELINE_FILE}: expected a JSON object with a 'stages' list ({e})"
            ) from e
        kept = _parquet_files(path / stages[-1]) if stages else []
        dropped = [f for s in stages for f in _parquet_files(path / s / REJECTED_DIR)]
        return kept, dropped
    if path.name == REJECTED_DIR:
        return [], _parquet_files(path)
    kept, dropped = _parquet_files(path), _parquet_files(path / REJECTED_DIR)
    if not kept and not dropped and not (path / MANIFEST).is_file():
        raise ConfigError(
            f"{path}: not a curate stage or work directory: no *.parquet, rejected/ or manifest.json"
        )
    return kept, dropped


def select_documents(
    path: str | os.PathLike,
    *,
    source: str | None = None,
    reason: str | None = None,
    doc_id: str | None = None,
    sample: int = 5,
    seed: int = 0,
    rejected: bool = False,
) -> Selection:
    """Pick documents: kept ones, or rejected ones when a reason (or rejected) is given; an id searches both.

    Without an id, `sample` documents are drawn at random (seeded, so the same call shows the same ones) from
    all that match; fewer match, all are shown in file order.
    """
    if sample < 1:
        raise ConfigError(f"--sample must be at least 1 (got {sample})")
    root = Path(path)
    from_rejected = rejected or reason is not None
    kept_files, rejected_files = _files(root)
    if doc_id is not None and not from_rejected:
        files = [(f, False) for f in kept_files] + [(f, True) for f in rejected_files]
    elif from_rejected:
        files = [(f, True) for f in rejected_files]
    else:
        files = [(f, False) for f in kept_files]

    sources: Counter = Counter()
    reasons: Counter = Counter()
    matches: list[tuple[int, np.ndarray]] = []
    for n, (f, is_rejected) in enumerate(files):
        pf = pq.ParquetFile(f)
        names = set(pf.schema_arrow.names)
        columns = [c for c in ("id", "source", "drop_reason") if c in names]
        small = pf.read(columns=columns) if columns else pa.table({"id": pa.nulls(pf.metadata.num_rows)})
        mask = pa.array(np.ones(small.num_rows, bool))
        for column, wanted, counter in (("source", source, sources), ("drop_reason", reason, reasons)):
            values = (
                small.column(column)
                if column in small.column_names
                else pa.nulls(small.num_rows, pa.string())
            )
            if is_rejected or column == "source":
                counter.update(
                    {str(v["values"]): int(v["counts"]) for v in pc.value_counts(values).to_pylist()}
                )
            if wanted is not None:
                mask = pc.and_(mask, pc.fill_null(pc.equal(values, wanted), False))
        if doc_id is not None:
            ids = small.column("id") if "id" in small.column_names else pa.nulls(small.num_rows, pa.string())
            mask = pc.and_(mask, pc.fill_null(pc.equal(ids, doc_id), False))
        rows = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
        if len(rows):
            matches.append((n, rows))
    matched = sum(len(r) for _, r in matches)
    picks = _pick(matches, matched, None if doc_id is not None else sample, seed)
    documents = []
    for n, rows in picks:
        f, is_rejected = files[n]
        for row in _read_rows(f, rows):
            row["_file"] = str(f)
            documents.append(row)
    return Selection(documents, matched, len(files), from_rejected, sources, reasons)


def _pick(
    matches: list[tuple[int, np.ndarray]], matched: int, sample: int | None, seed: int
) -> list[tuple[int, np.ndarray]]:
    if sample is None or matched <= sample:
        return matches
    chosen = np.sort(np.random.default_rng(seed).choice(matched, size=sample, replace=False))
    out, start = [], 0
    for n, rows in matches:
        here = chosen[(chosen >= start) & (chosen < start + len(rows))] - start
        if len(here):
            out.append((n, rows[here]))
        start += len(rows)
    return out


def _read_rows(path: Path, rows: np.ndarray) -> list[dict[str, Any]]:
    """The given rows of a file, reading only the row groups that hold them."""
    pf = pq.ParquetFile(path)
    sizes = np.array([pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)], np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    groups = np.searchsorted(starts, rows, side="right") - 1
    out = []
    for g in np.unique(groups):
        table = pf.read_row_group(int(g))
        out.extend(table.take(pa.array(rows[groups == g] - starts[g])).to_pylist())
    return out


# ----------------------------------------------------------------------------------------------- display


def _meta_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def render_document(doc: dict[str, Any], max_chars: int | None = None) -> Panel:
    """One document as a rich panel: a metadata table, meta as JSON, then the text."""
    doc = {k: printable(v) if isinstance(v, str) else v for k, v in doc.items()}
    table = Table(show_header=False, box=None, padding=(0, 1))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column(overflow="fold")
    keys = [k for k in (*META_ORDER, *DROP_ORDER) if k in doc]
    keys += [k for k in doc if k not in keys and k not in ("text", "meta", "_file")]
    for key in keys:
        style = "bold red" if key == "drop_reason" else ""
        table.add_row(key, Text(_meta_value(doc[key]), style=style))
    text = doc.get("text") or ""
    table.add_row("characters", f"{len(text):,}")
    table.add_row("file", Text(str(doc.get("_file", ""))))
    parts: list[Any] = [table]
    meta = doc.get("meta")
    if meta:
        with contextlib.suppress(TypeError, ValueError):  # not JSON: shown as it is
            meta = printable(json.dumps(json.loads(meta), indent=2, ensure_ascii=False))
        parts.append(Text("meta", style="bold cyan"))
        parts.append(Text(str(meta), style="dim"))
    shown = text if max_chars is None or len(text) <= max_chars else text[:max_chars]
    parts.append(Text("─" * 20, style="dim"))
    parts.append(Text(shown))  # Text, never markup: a "[b]" in a document is printed as it is
    if len(shown) < len(text):
        parts.append(Text(f"… {len(text) - len(shown):,} more characters (--max-chars)", style="dim"))
    title = Text(str(doc.get("id") or "(no id)"), style="bold")
    return Panel(Group(*parts), title=title, title_align="left")


def print_selection(selection: Selection, console: Console, *, max_chars: int | None = None) -> None:
    """The documents, each in a panel, after a line saying how many matched and where from."""
    where = "rejected/" if selection.rejected else "kept shards"
    console.print(
        Text(
            f"{len(selection.documents)} of {selection.matched:,} matching document(s) "
            f"from {selection.scanned_files} file(s) ({where})",
            style="bold",
        )
    )
    for doc in selection.documents:
        # Wrapped to the terminal whatever the console's default: a panel never cuts its text off.
        console.print(render_document(doc, max_chars), soft_wrap=False)


def miss_message(selection: Selection, source: str | None, reason: str | None, doc_id: str | None) -> str:
    """Why nothing matched, with the values that are there."""
    asked = ", ".join(
        f"{k} {v!r}" for k, v in (("source", source), ("reason", reason), ("id", doc_id)) if v is not None
    )
    where = "rejected/" if selection.rejected else "the kept shards"
    lines = [f"no document matches {asked or 'anything'} in {where} ({selection.scanned_files} file(s))"]
    for label, counter in (("sources", selection.sources), ("drop reasons", selection.reasons)):
        if counter:
            values = ", ".join(f"{k} ({v:,})" for k, v in counter.most_common(20))
            lines.append(f"{label} here: {values}")
    return printable("; ".join(lines))


def json_line(doc: dict[str, Any]) -> str:
    """A document as one JSON line for a terminal or a pipe: C1 controls and bidi marks escaped too."""
    text = json.dumps(doc, ensure_ascii=False, default=str)
    return CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)  # still valid JSON
