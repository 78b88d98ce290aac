"""Evaluation sets in their public layouts (MedQA, MedMCQA, PubMedQA, MMLU, or a `text` field) as test items.

Nothing is downloaded: the user names the files. A file is JSONL (optionally .gz/.zst), JSON (a list of
records, or PubMedQA's object keyed by PMID), Parquet or CSV (with a header, or MMLU's header-less
question,A,B,C,D,answer rows). What an item's text is, per layout, is what a model sees when it is evaluated:

| layout | fields read | item id |
|---|---|---|
| medqa | question, options (a {letter: text} mapping, a list, or [{key, value}]) | `id`, else FILE:LINE |
| medmcqa | question, opa..opd | `id`, else FILE:LINE |
| pubmedqa | QUESTION, CONTEXTS, LONG_ANSWER (or question, context.contexts, long_answer) | PMID, or `pubid` |
| mmlu | question, choices (or CSV columns A-D) | `subject:ROW`, else FILE:ROW |
| text | text | `id`, else FILE:LINE |
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from curate.errors import ConfigError
from curate.io import input_stream

LAYOUTS = ("medqa", "medmcqa", "pubmedqa", "mmlu", "text")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
JSON_SUFFIXES = (".json",)
COMPRESSED = (".gz", ".zst")
MMLU_CSV_COLUMNS = 6  # question, A, B, C, D, answer (hendrycks/test's CSV files have no header)


class EvalSetError(ConfigError):
    """An evaluation file that cannot be read in its layout: the message names the file, record and field."""


@dataclass(frozen=True)
class Item:
    """One test item: its benchmark, id within the benchmark, the text a model sees, and a PMID if any."""

    benchmark: str
    id: str
    text: str
    pmid: str | None = None


@dataclass(frozen=True)
class EvalSet:
    """An evaluation file to decontaminate against: path, layout and the benchmark name reports use."""

    path: str
    layout: str
    name: str


def _suffix(path: Path) -> str:
    """The format suffix of a file name, under any compression suffix (.jsonl for x.jsonl.gz)."""
    name = path.name.lower()
    for c in COMPRESSED:
        name = name.removesuffix(c)
    return Path(name).suffix


def _read_text(path: Path) -> str:
    with input_stream(path) as f:
        return f.read().decode("utf-8-sig")


def read_records(path: str | os.PathLike) -> Iterator[tuple[str, dict[str, Any]]]:
    """(position, record) of every record of an evaluation file; position is LINE, ROW or a JSON key."""
    path = Path(path)
    suffix = _suffix(path)
    if suffix in JSONL_SUFFIXES:
        for n, line in enumerate(_read_text(path).splitlines(), 1):
            if line.strip():
                yield str(n), _as_record(_json_line(line, path, n), path, f"line {n}")
    elif suffix in JSON_SUFFIXES:
        text = _read_text(path)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg == "Extra data" and text.lstrip().startswith("{"):  # MedMCQA's .json files are JSONL
                for n, line in enumerate(text.splitlines(), 1):
                    if line.strip():
                        yield str(n), _as_record(_json_line(line, path, n), path, f"line {n}")
                return
            raise EvalSetError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
        if isinstance(data, list):
            for n, record in enumerate(data):
                yield str(n), _as_record(record, path, f"record {n}")
        elif isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
            for key, record in data.items():  # PubMedQA's ori_pqal.json: {PMID: {...}}
                yield str(key), {"_key": str(key), **record}
        else:
            raise EvalSetError(f"{path}: expected a JSON list of records or an object of records keyed by id")
    elif suffix == ".parquet":
        for n, record in enumerate(pq.read_table(path).to_pylist()):
            yield str(n), record
    elif suffix in (".csv", ".tsv"):
        yield from _csv_records(path, "\t" if suffix == ".tsv" else ",")
    else:
        raise EvalSetError(
            f"{path}: not an evaluation file curate reads (.jsonl, .json, .parquet, .csv, .tsv; .gz/.zst)"
        )


def _json_line(line: str, path: Path, n: int) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise EvalSetError(f"{path}: line {n} is not JSON ({exc.msg})") from None


def _as_record(record: Any, path: Path, where: str) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise EvalSetError(f"{path}: {where} is not a JSON object")
    return record


def _csv_records(path: Path, delimiter: str) -> Iterator[tuple[str, dict[str, Any]]]:
    rows = list(csv.reader(io.StringIO(_read_text(path)), delimiter=delimiter))
    if not rows:
        return
    header = [h.strip() for h in rows[0]]
    known = {"question", "text", "id", "opa", "options", "choices"}
    if known & {h.lower() for h in header}:
        for n, row in enumerate(rows[1:], 2):
            yield str(n), dict(zip([h.lower() for h in header], row, strict=False))
    elif len(header) == MMLU_CSV_COLUMNS:  # MMLU's own files: no header
        for n, row in enumerate(rows, 1):
            if len(row) != MMLU_CSV_COLUMNS:
                raise EvalSetError(f"{path}: row {n} has {len(row)} columns, MMLU rows have 6")
            yield str(n), {"question": row[0], "choices": row[1:5], "answer": row[5], "_headerless": True}
    else:
        raise EvalSetError(
            f"{path}: a CSV needs a header naming its fields (question, text, ...), or MMLU's six "
            "header-less columns (question, A, B, C, D, answer)"
        )


def detect_layout(record: Mapping[str, Any]) -> str | None:
    """The layout a record's fields belong to, or None when they fit none."""
    keys = set(record)
    if "opa" in keys and "question" in keys:
        return "medmcqa"
    if {"QUESTION", "CONTEXTS"} <= keys or "pubid" in keys or {"context", "long_answer"} <= keys:
        return "pubmedqa"
    if "options" in keys and "question" in keys:
        return "medqa"
    if "choices" in keys and "question" in keys:
        return "mmlu"
    if "text" in keys:
        return "text"
    return None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "\n".join(_text(v) for v in value)
    if isinstance(value, Mapping):
        return "\n".join(_text(v) for v in value.values())
    return str(value).strip()


def _options(value: Any) -> str:
    """MedQA's options: {"A": text}, [text, ...] or [{"key": "A", "value": text}, ...]."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, Mapping) for v in value):
        return "\n".join(_text(v.get("value", v.get("text"))) for v in value)
    return _text(value)


def _require(record: Mapping[str, Any], field: str, where: str) -> str:
    value = _text(record.get(field))
    if not value:
        raise EvalSetError(
            f"{where}: no {field!r} (the layout needs it; fields: {', '.join(sorted(record))})"
        )
    return value


def item_of(record: dict[str, Any], layout: str, benchmark: str, path: Path, position: str) -> Item:
    """The test item of one record in a layout; EvalSetError names the file, record and missing field."""
    where = f"{path}: {'row' if path.suffix in ('.csv', '.tsv', '.parquet') else 'record'} {position}"
    fallback_id = f"{path.name}:{position}"
    own_id = _text(record.get("id")) or fallback_id
    if layout == "medqa":
        text = _require(record, "question", where) + "\n" + _options(record.get("options"))
        return Item(benchmark, own_id, text.strip())
    if layout == "medmcqa":
        options = [_text(record.get(k)) for k in ("opa", "opb", "opc", "opd")]
        return Item(benchmark, own_id, "\n".join([_require(record, "question", where), *options]).strip())
    if layout == "mmlu":
        question = _require(record, "question", where)
        subject = _text(record.get("subject"))
        return Item(
            benchmark,
            f"{subject}:{position}" if subject else fallback_id,
            f"{question}\n{_text(record.get('choices'))}".strip(),
        )
    if layout == "pubmedqa":
        question = _text(record.get("QUESTION") or record.get("question"))
        context = record.get("CONTEXTS") or record.get("contexts")
        if context is None and isinstance(record.get("context"), Mapping):
            context = record["context"].get("contexts")
        elif context is None:
            context = record.get("context")
        answer = _text(record.get("LONG_ANSWER") or record.get("long_answer"))
        pmid = _text(record.get("pubid") or record.get("pmid") or record.get("PMID") or record.get("_key"))
        if not question:
            raise EvalSetError(f"{where}: no 'QUESTION' or 'question' (PubMedQA items need one)")
        if not pmid.isdigit():
            raise EvalSetError(f"{where}: no PMID (a PubMedQA item is keyed by its PMID, or has 'pubid')")
        return Item(benchmark, pmid, "\n".join([question, _text(context), answer]).strip(), pmid=pmid)
    if layout == "text":
        return Item(benchmark, own_id, _require(record, "text", where))
    raise EvalSetError(f"unknown layout {layout!r}; layouts are: {', '.join(LAYOUTS)}")


def read_items(evalset: EvalSet) -> Iterator[Item]:
    """Every test item of an evaluation file."""
    path = Path(evalset.path)
    for position, record in read_records(path):
        yield item_of(record, evalset.layout, evalset.name, path, position)


def parse_evalsets(entries: Any) -> list[EvalSet]:
    """Evaluation sets from YAML/CLI entries: a path, or {path, layout, name}; layouts detected if not given.

    Raises EvalSetError naming what is wrong (missing file, unknown layout, undecidable layout, a name used
    twice), so a pipeline stops before any work."""
    if isinstance(entries, (str, os.PathLike, Mapping)):
        entries = [entries]
    if not isinstance(entries, (list, tuple)) or not entries:
        raise EvalSetError("benchmarks: give at least one evaluation file (a path, or {path, layout, name})")
    found: list[EvalSet] = []
    for entry in entries:
        if isinstance(entry, (str, os.PathLike)):
            entry = {"path": str(entry)}
        if not isinstance(entry, Mapping) or "path" not in entry:
            raise EvalSetError(f"benchmarks: an entry is a path or {{path, layout, name}}, not {entry!r}")
        unknown = sorted(set(entry) - {"path", "layout", "name"})
        if unknown:
            raise EvalSetError(f"benchmarks: unknown key(s) {', '.join(unknown)} (keys: path, layout, name)")
        path = Path(str(entry["path"])).expanduser()
        if not path.is_file():
            raise EvalSetError(f"evaluation file not found: {path}")
        layout = entry.get("layout") or _detected(path)
        if layout not in LAYOUTS:
            raise EvalSetError(f"{path}: unknown layout {layout!r}; layouts are: {', '.join(LAYOUTS)}")
        name = str(entry.get("name") or (layout if layout != "text" else _stem(path)))
        found.append(EvalSet(str(path.resolve()), layout, name))
    return found


def _stem(path: Path) -> str:
    name = path.name
    for c in COMPRESSED:
        name = name.removesuffix(c)
    return Path(name).stem


def _detected(path: Path) -> str:
    for _, record in read_records(path):
        layout = "mmlu" if record.get("_headerless") else detect_layout(record)
        if layout is None:
            fields = ", ".join(sorted(k for k in record if not k.startswith("_")))
            raise EvalSetError(
                f"{path}: cannot tell its layout from its fields ({fields}); set layout: "
                f"{' | '.join(LAYOUTS)}"
            )
        return layout
    raise EvalSetError(f"{path}: holds no records")


def evalsets_sha256(evalsets: list[EvalSet]) -> str:
    """One SHA-256 over every evaluation file's bytes, layout and name: another file recomputes the stage."""
    digest = hashlib.sha256()
    for e in evalsets:
        digest.update(f"{e.name}\0{e.layout}\0".encode())
        with open(e.path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def benchmark_options(values: list[str]) -> list[dict[str, str]]:
    """Evaluation files given on the command line as [LAYOUT=]FILE, as `benchmarks:` entries."""
    entries = []
    for value in values:
        layout, sep, path = value.partition("=")
        entries.append({"path": path, "layout": layout} if sep and layout in LAYOUTS else {"path": value})
    return entries
