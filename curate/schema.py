"""The one record type that flows through every stage, as a pyarrow schema, and the drop columns."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

RECORD_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("title", pa.string()),
        pa.field("license", pa.string()),
        pa.field("meta", pa.string()),  # JSON object, source-specific extras
    ]
)
RECORD_COLUMNS = RECORD_SCHEMA.names

DROP_FIELDS = [
    pa.field("drop_stage", pa.string(), nullable=False),
    pa.field("drop_reason", pa.string(), nullable=False),
    pa.field("drop_detail", pa.string()),
]
DROP_COLUMNS = [f.name for f in DROP_FIELDS]

_SURROGATE = re.compile("[\ud800-\udfff]")

# drop_reason of a document that failed with an unexpected error (counted as "errored", not "rejected").
ERROR_REASON = "error"


class Rejection(Exception):
    """Raised by a parser or filter to drop a document with a reason code and a human-readable detail."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class ParsedDoc:
    """What a parser extracts from one input: clean text, a title, and source-specific metadata."""

    text: str
    title: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def clean_str(value: str | None) -> str | None:
    """Text that Parquet can store: lone surrogates (from broken PDFs or decoders) become U+FFFD."""
    if value is None:
        return None
    return _SURROGATE.sub("\ufffd", value)


def dumps_meta(meta: Mapping[str, Any] | None) -> str:
    """Serialise a meta dict deterministically (sorted keys) so reruns write identical bytes."""
    return clean_str(json.dumps(dict(meta or {}), sort_keys=True, ensure_ascii=False, default=str))


def records_table(rows: Iterable[Mapping[str, Any]], schema: pa.Schema = RECORD_SCHEMA) -> pa.Table:
    """Build a table of the given schema from dict rows (missing keys become null)."""
    rows = list(rows)
    return pa.Table.from_pydict({name: [r.get(name) for r in rows] for name in schema.names}, schema=schema)


def empty_records(schema: pa.Schema = RECORD_SCHEMA) -> pa.Table:
    """An empty table of the record schema (or of another schema)."""
    return schema.empty_table()


def rejected_schema(schema: pa.Schema) -> pa.Schema:
    """The schema of a stage's rejected rows: its record schema plus the drop columns."""
    base = pa.schema([f for f in schema if f.name not in DROP_COLUMNS])
    return pa.schema(list(base) + DROP_FIELDS)


def conform(table: pa.Table) -> pa.Table:
    """Put the record columns first, in order and type; extra stage columns (lang, dup_cluster...) follow."""
    missing = [f for f in RECORD_SCHEMA if f.name not in table.column_names]
    for f in missing:
        if not f.nullable:
            raise ValueError(f"table lacks the required column {f.name!r}")
        table = table.append_column(f, pa.nulls(table.num_rows, f.type))
    extras = [name for name in table.column_names if name not in RECORD_COLUMNS]
    columns = [table.column(name).cast(RECORD_SCHEMA.field(name).type) for name in RECORD_COLUMNS]
    fields = list(RECORD_SCHEMA) + [table.schema.field(name) for name in extras]
    return pa.Table.from_arrays(columns + [table.column(n) for n in extras], schema=pa.schema(fields))


def with_drop(table: pa.Table, stage: str, reasons: list[str], details: list[str | None]) -> pa.Table:
    """Append drop_stage/drop_reason/drop_detail to rows that a stage removes."""
    n = table.num_rows
    table = table.drop_columns([c for c in DROP_COLUMNS if c in table.column_names])
    values = [
        pa.array([stage] * n, pa.string()),
        pa.array(reasons, pa.string()),
        pa.array(details, pa.string()),
    ]
    for f, v in zip(DROP_FIELDS, values, strict=True):
        table = table.append_column(f, v)
    return table


def split_by_mask(
    table: pa.Table,
    keep: pa.Array | list[bool],
    stage: str,
    reasons: list[str | None],
    details: list[str | None],
) -> tuple[pa.Table, pa.Table]:
    """Split a table into kept rows and rejected rows (with their reasons) by a boolean keep mask."""
    keep = pa.array(keep, pa.bool_())
    kept = table.filter(keep)
    dropped_idx = [i for i, k in enumerate(keep.to_pylist()) if not k]
    rejected = with_drop(
        table.take(pa.array(dropped_idx, pa.int64())),
        stage,
        [reasons[i] or "unknown" for i in dropped_idx],
        [details[i] for i in dropped_idx],
    )
    return kept, rejected
