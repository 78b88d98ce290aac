"""Corpus statistics over a stage directory or a whole pipeline work directory, batch by batch.

Everything is computed with pyarrow.compute over record batches of only the columns needed, so memory stays
bounded by one batch plus one int32 length per document (for exact percentiles) and a few small dicts.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.io import is_tmp
from curate.schema import ERROR_REASON

MANIFEST = "manifest.json"
PIPELINE = "pipeline.json"
REJECTED_DIR = "rejected"
NULL_KEY = "(none)"  # stands in for a null source/lang/license: JSON keys must be strings, and sortable
PERCENTILES = {"p5": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95}
# Medical documents run to tens of KB each: 4096 rows keeps a batch and its word split to some hundred MB.
BATCH_ROWS = 4096
SAMPLE_DOCS = 3
SAMPLE_CHARS = 300
CHARS_PER_TOKEN = 4
NOT_A_STAGE = "not a curate stage or work directory: no *.parquet, rejected/ or manifest.json found"


# ------------------------------------------------------------------------------------------- accumulators


def _key(value: Any) -> str:
    return NULL_KEY if value is None else str(value)


def _word_counts(text: pa.Array) -> pa.Array:
    # Arrow's split keeps empty strings for leading/trailing whitespace and turns "" into [""]; trimming first
    # and correcting for empty texts gives exactly Python's len(text.split()).
    trimmed = pc.utf8_trim_whitespace(text)
    parts = pc.list_value_length(pc.utf8_split_whitespace(trimmed))
    return pc.subtract(parts, pc.cast(pc.equal(trimmed, ""), parts.type))


def _as_int(value: Any) -> int:
    value = value.as_py() if isinstance(value, pa.Scalar) else value
    return int(value or 0)


class _Groups:
    """Documents, characters and words per value of one column (source, lang, license)."""

    def __init__(self) -> None:
        self.counts: dict[str, Counter] = {}

    def add(self, keys: pa.Array, lengths: pa.Array, words: pa.Array) -> None:
        table = pa.table({"key": keys, "chars": lengths, "words": words})
        grouped = table.group_by("key", use_threads=False).aggregate(
            [([], "count_all"), ("chars", "sum"), ("words", "sum")]
        )
        for row in grouped.to_pylist():  # one row per distinct value, not per document
            c = self.counts.setdefault(_key(row["key"]), Counter())
            c["documents"] += row["count_all"]
            c["characters"] += row["chars_sum"] or 0
            c["words"] += row["words_sum"] or 0

    def add_missing(self, documents: int, characters: int, words: int) -> None:
        c = self.counts.setdefault(NULL_KEY, Counter())
        c.update(documents=documents, characters=characters, words=words)

    def result(self) -> dict[str, dict[str, int]]:
        ordered = sorted(self.counts.items(), key=lambda kv: (-kv[1]["documents"], kv[0]))
        return {k: {f: int(c[f]) for f in ("documents", "characters", "words")} for k, c in ordered}


class _KeptStats:
    """Accumulates the stats of kept records, one record batch at a time."""

    def __init__(self, tokenizer: Any = None) -> None:
        self.tokenizer = tokenizer
        self.documents = 0
        self.characters = 0
        self.words = 0
        self.tokens = 0
        self.lengths: list[pa.Array] = []
        self.by_source = _Groups()
        self.by_license = _Groups()
        self.by_lang = _Groups()
        self.has_lang = False
        self.no_lang = Counter()  # documents from files without a lang column, when others have one
        self.samples: list[dict[str, Any]] = []

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        n = batch.num_rows
        if not n:
            return
        names = batch.schema.names
        text = pc.fill_null(batch.column("text"), "")
        lengths = pc.cast(pc.utf8_length(text), pa.int32())
        words = pc.cast(_word_counts(text), pa.int64())
        chars = _as_int(pc.sum(lengths.cast(pa.int64())))
        nwords = _as_int(pc.sum(words))
        self.documents += n
        self.characters += chars
        self.words += nwords
        self.lengths.append(lengths)
        nulls = pa.nulls(n, pa.string())
        self.by_source.add(batch.column("source") if "source" in names else nulls, lengths, words)
        self.by_license.add(batch.column("license") if "license" in names else nulls, lengths, words)
        if "lang" in names:
            self.has_lang = True
            self.by_lang.add(batch.column("lang"), lengths, words)
        else:
            self.no_lang.update(documents=n, characters=chars, words=nwords)
        if self.tokenizer is not None:
            encodings = self.tokenizer.encode_batch(text.to_pylist(), add_special_tokens=False)
            self.tokens += sum(len(e.ids) for e in encodings)
        if len(self.samples) < SAMPLE_DOCS:
            self._sample(batch, text)

    def _sample(self, batch: pa.RecordBatch | pa.Table, text: pa.Array) -> None:
        k = SAMPLE_DOCS - len(self.samples)
        head = batch.slice(0, k)
        names = batch.schema.names
        columns = {
            "id": head.column("id") if "id" in names else pa.nulls(head.num_rows, pa.string()),
            "title": head.column("title") if "title" in names else pa.nulls(head.num_rows, pa.string()),
            "source": head.column("source") if "source" in names else pa.nulls(head.num_rows, pa.string()),
            "characters": pc.utf8_length(text.slice(0, k)),
            "text": pc.utf8_slice_codeunits(text.slice(0, k), 0, SAMPLE_CHARS),
        }
        self.samples.extend(pa.table(columns).to_pylist())

    def result(self) -> dict[str, Any]:
        lengths = pa.chunked_array(self.lengths, pa.int32())
        stats: dict[str, Any] = {
            "documents": self.documents,
            "characters": self.characters,
            "words": self.words,
            "tokens": self.tokens if self.tokenizer is not None else None,
            "tokens_approximate": round(self.characters / CHARS_PER_TOKEN),
            "tokens_approximate_rule": f"characters / {CHARS_PER_TOKEN} (approximate, no tokenizer)",
            "by_source": self.by_source.result(),
            "by_license": self.by_license.result(),
            "length_percentiles": _percentiles(lengths),
        }
        if self.has_lang:
            if self.no_lang["documents"]:
                self.by_lang.add_missing(**self.no_lang)
            stats["by_lang"] = self.by_lang.result()
        return stats


def _percentiles(lengths: pa.ChunkedArray) -> dict[str, int | float | None]:
    # "nearest" keeps every percentile an actual document length (a whole number of characters).
    names = [*PERCENTILES, "min", "max", "mean"]
    if not len(lengths):
        return dict.fromkeys(names)
    qs = pc.quantile(lengths, q=list(PERCENTILES.values()), interpolation="nearest").to_pylist()
    out: dict[str, int | float | None] = {name: int(q) for name, q in zip(PERCENTILES, qs, strict=True)}
    minmax = pc.min_max(lengths).as_py()
    out.update(min=int(minmax["min"]), max=int(minmax["max"]), mean=round(pc.mean(lengths).as_py(), 1))
    return out


class _RejectedStats:
    """Drop reasons (errors apart) and a few sample rows per reason, from rejected/ shards."""

    def __init__(self) -> None:
        self.reasons: Counter = Counter()
        self.characters: Counter = Counter()  # characters of the dropped documents, per reason
        self.by_stage: dict[str, Counter] = {}
        self.samples: dict[str, list[dict[str, Any]]] = {}

    def add(self, batch: pa.RecordBatch, stage: str | None) -> None:
        if not batch.num_rows:
            return
        reason = pc.fill_null(batch.column("drop_reason"), "unknown")
        counts = {_key(v["values"]): int(v["counts"]) for v in pc.value_counts(reason).to_pylist()}
        self.reasons.update(counts)
        if "text" in batch.schema.names:
            lengths = pc.utf8_length(pc.fill_null(batch.column("text"), ""))
            sums = pa.table({"reason": reason, "n": lengths}).group_by("reason").aggregate([("n", "sum")])
            for r, n in zip(sums.column("reason").to_pylist(), sums.column("n_sum").to_pylist(), strict=True):
                self.characters[_key(r)] += int(n or 0)
        if stage is not None:
            self.by_stage.setdefault(stage, Counter()).update(counts)
        for name in counts:
            have = self.samples.setdefault(name, [])
            if len(have) >= SAMPLE_DOCS:
                continue
            rows = batch.filter(pc.equal(reason, name)).slice(0, SAMPLE_DOCS - len(have))
            have.extend(_rejected_rows(rows, stage))

    def errored(self) -> int:
        return int(self.reasons.get(ERROR_REASON, 0))

    def rejected(self) -> dict[str, int]:
        ordered = sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        return {k: int(v) for k, v in ordered if k != ERROR_REASON}

    def rejected_characters(self) -> dict[str, int]:
        return {k: int(self.characters.get(k, 0)) for k in self.rejected()}


def _rejected_rows(rows: pa.RecordBatch, stage: str | None) -> list[dict[str, Any]]:
    names = rows.schema.names

    def col(name: str) -> pa.Array:
        return rows.column(name) if name in names else pa.nulls(rows.num_rows, pa.string())

    detail = pc.utf8_slice_codeunits(pc.cast(col("drop_detail"), pa.string()), 0, SAMPLE_CHARS)
    table = pa.table(
        {
            "id": col("id"),
            "stage": col("drop_stage"),
            "reason": col("drop_reason"),
            "detail": detail,
            "title": col("title"),
        }
    )
    out = table.to_pylist()
    for row in out:
        row["stage"] = row["stage"] or stage
    return out


# -------------------------------------------------------------------------------------------- file access


def _parquet_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(
        f for f in directory.glob("*.parquet") if f.is_file() and not is_tmp(f) and not f.name.startswith(".")
    )


def _batches(path: Path, wanted: Iterable[str]) -> Iterator[pa.RecordBatch]:
    pf = pq.ParquetFile(path)
    available = set(pf.schema_arrow.names)
    columns = [c for c in wanted if c in available]
    if not columns:
        # No wanted column at all: still honour the row count (documents without text count as empty).
        for start in range(0, pf.metadata.num_rows, BATCH_ROWS):
            n = min(BATCH_ROWS, pf.metadata.num_rows - start)
            yield pa.record_batch({"text": pa.nulls(n, pa.string())})
        return
    yield from pf.iter_batches(batch_size=BATCH_ROWS, columns=columns, use_threads=True)


def _read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _is_stage_dir(path: Path) -> bool:
    return bool(_parquet_files(path)) or (path / REJECTED_DIR).is_dir() or (path / MANIFEST).is_file()


KEPT_COLUMNS = ("id", "title", "text", "source", "license", "lang")
REJECTED_COLUMNS = ("id", "title", "text", "drop_stage", "drop_reason", "drop_detail")


def _scan_stage(path: Path, kept: _KeptStats | None, rejected: _RejectedStats, stage: str | None) -> int:
    """Feed one stage directory's kept shards (if kept is given) and rejected shards; return kept bytes."""
    size = 0
    if kept is not None:
        for f in _parquet_files(path):
            size += f.stat().st_size
            for batch in _batches(f, KEPT_COLUMNS):
                kept.add(batch)
    for f in _parquet_files(path / REJECTED_DIR):
        if "drop_reason" not in pq.ParquetFile(f).schema_arrow.names:
            raise ValueError(f"{f}: rejected shard without a drop_reason column (expected the drop columns)")
        for batch in _batches(f, REJECTED_COLUMNS):
            rejected.add(batch, stage)
    return size


# --------------------------------------------------------------------------------------------- tokenizer


def load_tokenizer(tokenizer: str | os.PathLike) -> Any:
    """A Tokenizer from a tokenizer.json file; a clear error if the package or file is missing."""
    try:
        from tokenizers import Tokenizer  # optional and heavy: imported only when token counts are asked for
    except ImportError as e:
        raise ImportError(
            f"counting tokens with {str(tokenizer)!r} needs the `tokenizers` package: pip install tokenizers "
            "(or leave out the tokenizer to get tokens_approximate = characters / 4)"
        ) from e
    path = Path(tokenizer)
    if not path.is_file():
        raise ValueError(f"tokenizer file not found: {path} (expected a tokenizer.json saved by tokenizers)")
    return Tokenizer.from_file(str(path))


# ---------------------------------------------------------------------------------------------- public API


def table_stats(table: pa.Table) -> dict:
    """Stats of one table of records (used per shard by the shard stage)."""
    kept = _KeptStats()
    for batch in table.to_batches(max_chunksize=BATCH_ROWS):
        kept.add(batch)
    stats = kept.result()
    stats["bytes"] = None  # on-disk size is not known for an in-memory table; the manifest lists file bytes
    stats["text_bytes"] = _as_int(pc.sum(pc.binary_length(table.column("text")))) if table.num_rows else 0
    return stats


def collect_stats(path: str | os.PathLike, *, tokenizer: str | None = None) -> dict:
    """Stats of a stage directory or a pipeline work directory (pipeline.json), with samples and a funnel."""
    root = Path(path)
    if not root.exists():
        raise ValueError(f"{root}: path does not exist (expected a curate stage or work directory)")
    if not root.is_dir():
        raise ValueError(f"{root}: is a file, not a directory (expected a curate stage or work directory)")
    tok = load_tokenizer(tokenizer) if tokenizer else None
    if (root / PIPELINE).is_file():
        return _workdir_stats(root, tok, tokenizer)
    if not _is_stage_dir(root):
        raise ValueError(f"{root}: {NOT_A_STAGE} (nor pipeline.json)")
    kept = _KeptStats(tok)
    rejected = _RejectedStats()
    manifest = _manifest(root)
    size = _scan_stage(root, kept, rejected, None)
    stats = _assemble(root, "stage", kept, rejected, size, tokenizer)
    stats["stage"] = (manifest or {}).get("stage") or root.name
    # None, not a "missing manifest" entry: the shard stage writes stats.json before its manifest exists.
    stats["manifest"] = _funnel_entry(stats["stage"], manifest) if manifest is not None else None
    stats["warnings"] = _check(stats["stage"], manifest, kept.documents, rejected.reasons)
    return stats


def _workdir_stats(root: Path, tok: Any, tokenizer: str | None) -> dict:
    try:
        pipeline = _read_json(root / PIPELINE)
        stages = [str(s) for s in pipeline["stages"]]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(
            f"{root / PIPELINE}: expected a JSON object with a 'stages' list of stage names ({e})"
        ) from e
    if not stages:
        raise ValueError(f"{root / PIPELINE}: the 'stages' list is empty")
    kept = _KeptStats(tok)
    rejected = _RejectedStats()
    funnel: list[dict[str, Any]] = []
    warnings: list[str] = []
    size = 0
    for i, name in enumerate(stages):
        stage_dir = root / name
        final = i == len(stages) - 1
        manifest = _manifest(stage_dir)
        funnel.append(_funnel_entry(name, manifest, exists=stage_dir.is_dir()))
        if not stage_dir.is_dir():
            warnings.append(f"stage {name!r}: directory {stage_dir} does not exist")
            continue
        before = Counter(rejected.reasons)
        size_here = _scan_stage(stage_dir, kept if final else None, rejected, name)
        if final:
            size = size_here
        here = rejected.reasons - before
        warnings.extend(_check(name, manifest, kept.documents if final else None, here))
    stats = _assemble(root, "workdir", kept, rejected, size, tokenizer)
    stats["pipeline"] = pipeline.get("pipeline")
    stats["stage"] = stages[-1]
    stats["stages"] = stages
    stats["funnel"] = funnel
    stats["rejected_by_stage"] = {
        s: {k: int(v) for k, v in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))}
        for s, c in rejected.by_stage.items()
    }
    stats["warnings"] = warnings
    return stats


def _assemble(
    root: Path, kind: str, kept: _KeptStats, rejected: _RejectedStats, size: int, tokenizer: str | None
) -> dict[str, Any]:
    stats: dict[str, Any] = {"path": str(root), "kind": kind}
    stats.update(kept.result())
    stats["bytes"] = size
    stats["tokenizer"] = str(tokenizer) if tokenizer else None
    stats["rejected"] = rejected.rejected()
    stats["rejected_characters"] = rejected.rejected_characters()
    stats["errored"] = rejected.errored()
    stats["samples"] = {"kept": kept.samples, "rejected": rejected.samples}
    return stats


def _manifest(stage_dir: Path) -> dict[str, Any] | None:
    path = stage_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        return _read_json(path)
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); rerun the stage to rewrite it") from e


def _funnel_entry(name: str, manifest: dict[str, Any] | None, *, exists: bool = True) -> dict[str, Any]:
    if manifest is None:
        entry: dict[str, Any] = {"stage": name, "status": "missing manifest"}
        entry.update(dict.fromkeys(("in", "kept", "rejected", "errored", "characters_kept")))
        if not exists:
            entry["detail"] = "stage directory does not exist"
        return entry
    counts = manifest.get("counts") or {}
    characters = manifest.get("characters") or {}
    return {
        "stage": name,
        "status": manifest.get("status", "complete"),
        "in": counts.get("in"),
        "kept": counts.get("kept"),
        "rejected": counts.get("rejected"),
        "errored": counts.get("errored"),
        "characters_kept": characters.get("kept"),
        "characters_rejected": characters.get("rejected"),
        "wall_seconds": manifest.get("wall_seconds"),
    }


def _check(name: str, manifest: dict[str, Any] | None, kept: int | None, reasons: Counter) -> list[str]:
    """Where the files disagree with the manifest: a partial rerun, or tasks that failed without output."""
    if manifest is None:
        return []
    counts = manifest.get("counts") or {}
    found = {
        "kept": kept,
        "rejected": sum(v for k, v in reasons.items() if k != ERROR_REASON),
        "errored": reasons.get(ERROR_REASON, 0),
    }
    out = []
    for key, value in found.items():
        expected = counts.get(key)
        if value is not None and expected is not None and value != expected:
            out.append(f"stage {name!r}: manifest says {key}={expected}, files hold {value}")
    return out
