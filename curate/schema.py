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
# drop_reason of an input row that is not a record: a null, non-text or non-UTF-8 id, text or source.
INVALID_REASON = "record_invalid"
REQUIRED_COLUMNS = [f.name for f in RECORD_SCHEMA if not f.nullable]


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


def latest_columns(table: pa.Table) -> pa.Table:
    """The table with one column per name, the last of any repeated one: a stage's derived column (lang,
    dup_cluster...) replaces the one an earlier stage or the input file had, never sits beside it."""
    names = table.column_names
    if len(set(names)) == len(names):
        return table
    last = {name: i for i, name in enumerate(names)}
    keep = [i for i, name in enumerate(names) if last[name] == i]
    return pa.Table.from_arrays(
        [table.column(i) for i in keep], schema=pa.schema([table.schema.field(i) for i in keep])
    )


def _text_column(column: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """A column as UTF-8 strings (dictionary or large strings cast); None if it is not text at all."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return None
    return column.cast(pa.string())


def _utf8_errors(column: pa.ChunkedArray) -> list[bool] | None:
    """Per row, whether a string column holds bytes that are not UTF-8 (Parquet readers do not check)."""
    try:
        column.validate(full=True)
        return None
    except pa.ArrowInvalid:
        pass
    return [not _decodes(value) for value in column.cast(pa.binary()).to_pylist()]


def _decodes(value: bytes | None) -> bool:
    try:
        value is None or value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _repaired_utf8(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A string column with invalid UTF-8 bytes replaced by U+FFFD."""
    values = [
        None if v is None else v.decode("utf-8", "replace") for v in column.cast(pa.binary()).to_pylist()
    ]
    return pa.chunked_array([pa.array(values, pa.string())])


def split_invalid(
    table: pa.Table, stage: str, where: str = "", first_row: int = 0
) -> tuple[pa.Table, pa.Table]:
    """Split input rows into records and rows that are not records (rejected, reason record_invalid).

    A record has a non-null, UTF-8 string id, text and source. Rows that fail are rejected one by one, never
    fail the shard; their text is kept (invalid bytes as U+FFFD) and a null id becomes `invalid:WHERE#ROW`
    (ROW counted from first_row, the table's first row in its file).
    Optional string columns with invalid UTF-8 are repaired (U+FFFD), not rejected.
    """
    table = latest_columns(table)
    n = table.num_rows
    problems: list[str | None] = [None] * n
    for name in REQUIRED_COLUMNS:
        if name not in table.column_names:
            problems = [p or f"no {name!r} column" for p in problems]
            continue
        column = table.column(name)
        text = _text_column(column)
        if text is None:
            problems = [p or f"{name} is {column.type}, not a string" for p in problems]
            continue
        for row, null in enumerate(text.is_null().to_pylist()):
            if null:
                problems[row] = problems[row] or f"{name} is null"
        for row, bad in enumerate(_utf8_errors(text) or []):
            if bad:
                problems[row] = problems[row] or f"{name} is not valid UTF-8"
    for index, name in enumerate(table.column_names):
        text = _text_column(table.column(index))
        if text is not None and _utf8_errors(text) is not None:
            table = table.set_column(index, pa.field(name, pa.string()), _repaired_utf8(text))
    if not any(problems):
        return table, rejected_schema(table.schema).empty_table()
    bad = [i for i, p in enumerate(problems) if p]
    keep = pa.array([p is None for p in problems], pa.bool_())
    rows = table.take(pa.array(bad, pa.int64()))
    columns = {}
    for name in REQUIRED_COLUMNS:
        values = rows.column(name).to_pylist() if name in rows.column_names else [None] * len(bad)
        values = [v if isinstance(v, str) else (None if v is None else str(v)) for v in values]
        if name == "id":
            values = [
                v if v is not None else f"invalid:{where}#{first_row + row}"
                for v, row in zip(values, bad, strict=True)
            ]
        columns[name] = pa.array([v if v is not None else "" for v in values], pa.string())
    for name, values in columns.items():
        field = RECORD_SCHEMA.field(name)
        if name in rows.column_names:
            rows = rows.set_column(rows.column_names.index(name), field, values)
        else:
            rows = rows.append_column(field, values)
    rejected = with_drop(conform(rows), stage, [INVALID_REASON] * len(bad), [problems[i] for i in bad])
    if not set(REQUIRED_COLUMNS) <= set(table.column_names):
        return RECORD_SCHEMA.empty_table(), rejected  # no row of it is a record
    return table.filter(keep), rejected


def conform(table: pa.Table) -> pa.Table:
    """Put the record columns first, in order and type; extra stage columns (lang, dup_cluster...) follow."""
    table = latest_columns(table)
    missing = [f for f in RECORD_SCHEMA if f.name not in table.column_names]
    for f in missing:
        if not f.nullable:
            raise ValueError(f"table lacks the required column {f.name!r}")
        table = table.append_column(f, pa.nulls(table.num_rows, f.type))
    extras = [name for name in table.column_names if name not in RECORD_COLUMNS]
    columns = [_as_string(table.column(name)) for name in RECORD_COLUMNS]
    fields = list(RECORD_SCHEMA) + [table.schema.field(name) for name in extras]
    return pa.Table.from_arrays(columns + [table.column(n) for n in extras], schema=pa.schema(fields))


def _as_string(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A record column as strings: cast where Arrow can, else each value as JSON (a struct `meta`, say)."""
    try:
        return column.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        values = [
            v if v is None or isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
            for v in column.to_pylist()
        ]
        return pa.chunked_array([pa.array(values, pa.string())])


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


# A verdict on one document, as datatrove's filters give it: True keeps it; False, (False, reason) or
# (False, reason, detail) drops it. (True, ...) keeps it too.
Verdict = bool | tuple[bool, str] | tuple[bool, str, str | None]


def split_verdicts(
    table: pa.Table,
    verdicts: Iterable[Verdict],
    stage: str,
    *,
    reason: str = "unknown",
    as_read: pa.Table | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Kept rows and rejected rows (with drop columns) of a table by each row's verdict; `reason` for a
    verdict that gives none.

    `as_read`: the table before a stage rewrote it (`table` holds its columns in place, then any it adds):
    a rejected row is written as it was read, with the added columns; a kept row as rewritten.
    """
    keep: list[bool] = []
    reasons: list[str | None] = []
    details: list[str | None] = []
    for verdict in verdicts:
        keeps = bool(verdict[0] if isinstance(verdict, tuple) else verdict)
        keep.append(keeps)
        if keeps or not isinstance(verdict, tuple):
            reasons.append(None if keeps else reason)
            details.append(None)
        else:
            reasons.append(verdict[1] or reason)
            details.append(verdict[2] if len(verdict) > 2 else None)
    if len(keep) != table.num_rows:
        raise ValueError(f"{len(keep)} verdicts for {table.num_rows} rows")
    if as_read is None:
        return split_by_mask(table, keep, stage, reasons, details)
    read = as_read.num_columns
    if table.column_names[:read] != as_read.column_names:
        raise ValueError(
            "a stage that rewrites rows keeps the columns it read in place and adds others after"
        )
    kept, _ = split_by_mask(table, keep, stage, reasons, details)
    dropped = as_read
    for i in range(read, table.num_columns):
        dropped = dropped.append_column(table.schema.field(i), table.column(i))
    _, rejected = split_by_mask(dropped, keep, stage, reasons, details)
    return kept, rejected
