"""Corpus statistics over a stage directory or a whole pipeline work directory, batch by batch.

Everything is columnar: pyarrow.compute and numpy over record batches of only the columns needed, never a
Python loop over rows. Memory stays bounded by one batch per thread plus two int32 per document (length and
source, for exact percentiles) and a few small dicts. Files are scanned by a thread per CPU: Arrow and numpy
release the GIL, so the scan uses every core.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import ConfigError
from curate.io import parquet_file, read_json
from curate.layout import MANIFEST, PIPELINE_FILE, REJECTED_DIR, is_tmp
from curate.schema import ERROR_REASON
from curate.storage import StoragePath, as_path
from curate.tokens import APPROXIMATE_RULE, approximate_tokens, count_tokens, load_tokenizer

log = logging.getLogger("curate")
NULL_KEY = "(none)"  # stands in for a null source/lang/license: JSON keys must be strings, and sortable
PERCENTILES = {"p5": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95}
# Medical documents run to tens of KB each: 4096 rows keeps a batch and its scratch arrays to some hundred MB.
BATCH_ROWS = 4096
SAMPLE_DOCS = 3
SAMPLE_CHARS = 300
NOT_A_STAGE = "not a curate stage or work directory: no *.parquet, rejected/ or manifest.json found"
DUPLICATE_REASONS = ("exact_duplicate", "near_duplicate")
# Document length histogram: bin i holds lengths in [LENGTH_EDGES[i-1], LENGTH_EDGES[i]); bin 0 is empty text.
LENGTH_EDGES = (1, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000)
LENGTH_EDGES += (500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000)
MAX_SAMPLE_SOURCES = 20  # per-source percentiles and histograms stop here (largest sources first)


# ------------------------------------------------------------------------------------------- word counts

_scratch = threading.local()  # per-thread scratch buffers: fresh ones per batch would cost page faults


def _buffers(n: int) -> tuple[np.ndarray, np.ndarray]:
    buf = getattr(_scratch, "buf", None)
    if buf is None or len(buf) < 2 * n:
        buf = _scratch.buf = np.empty(max(2 * n, 1 << 20), np.bool_)
    return buf[:n], buf[n : 2 * n]


def _unicode_spaces(data: np.ndarray, ws: np.ndarray, scratch: np.ndarray) -> None:
    """Mark the bytes of non-ASCII whitespace (U+0085, U+00A0, U+1680, U+2000-200A, U+2028/9, U+202F, U+205F,
    U+3000: what Python's str.split() splits on) in ws, given the UTF-8 bytes."""
    lead = np.flatnonzero(np.greater_equal(data, 0xC2, out=scratch))  # lead bytes of multi-byte characters
    if not len(lead):
        return
    b1 = data.take(lead + 1, mode="clip")
    b2 = data.take(lead + 2, mode="clip")
    b0 = data[lead]
    two = (b0 == 0xC2) & ((b1 == 0x85) | (b1 == 0xA0))
    three = (
        ((b0 == 0xE2) & (b1 == 0x80) & ((b2 <= 0x8A) | (b2 == 0xA8) | (b2 == 0xA9) | (b2 == 0xAF)))
        | ((b0 == 0xE2) & (b1 == 0x81) & (b2 == 0x9F))
        | ((b0 == 0xE3) & (b1 == 0x80) & (b2 == 0x80))
        | ((b0 == 0xE1) & (b1 == 0x9A) & (b2 == 0x80))
    )
    for width, hits in ((2, lead[two]), (3, lead[three])):
        for k in range(width):
            ws[hits + k] = True


def _word_counts_chunk(text: pa.Array) -> np.ndarray:
    n_docs = len(text)
    if text.null_count:
        text = pc.fill_null(text, "")
    if pa.types.is_string(text.type) or pa.types.is_large_string(text.type):
        offset_type = np.int32 if pa.types.is_string(text.type) else np.int64
    else:
        text = text.cast(pa.string())
        offset_type = np.int32
    offsets = np.frombuffer(text.buffers()[1], dtype=offset_type)[text.offset : text.offset + n_docs + 1]
    start, end = int(offsets[0]), int(offsets[-1])
    if end == start:
        return np.zeros(n_docs, np.int64)
    data = np.frombuffer(text.buffers()[2], dtype=np.uint8)[start:end]
    rel = offsets.astype(np.int64) - start
    n = len(data)
    ws, first = _buffers(n)
    # ASCII whitespace as Python sees it: \t \n \v \f \r, \x1c-\x1f and space. Every byte <= 32 first, then
    # the few control bytes below 28 that are not 9-13 put back: cheaper than testing two ranges everywhere.
    np.less_equal(data, 32, out=ws)
    control = np.flatnonzero(np.less(data, 28, out=first))
    values = data[control]
    ws[control[(values < 9) | (values > 13)]] = False
    if data.max() >= 0xC2:
        _unicode_spaces(data, ws, first)
    # A word starts at a non-space byte after a space byte, or at a document's first byte if not a space.
    first[0] = not ws[0]
    np.greater(ws[:-1], ws[1:], out=first[1:])
    doc_starts = rel[:-1][rel[:-1] < n]
    first[doc_starts] = ~ws[doc_starts]
    positions = np.flatnonzero(first)
    return np.diff(np.searchsorted(positions, rel)).astype(np.int64)


def word_counts(text: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Words per document, exactly as Python's len(text.split()) counts them (nulls count 0), vectorised."""
    chunks = text.chunks if isinstance(text, pa.ChunkedArray) else [text]
    parts = [_word_counts_chunk(c) for c in chunks if len(c)]
    return pa.array(np.concatenate(parts) if parts else np.zeros(0, np.int64), pa.int64())


# ------------------------------------------------------------------------------------------- accumulators


def _key(value: Any) -> str:
    return NULL_KEY if value is None else str(value)


def _as_int(value: Any) -> int:
    value = value.as_py() if isinstance(value, pa.Scalar) else value
    return int(value or 0)


def _column(batch: pa.RecordBatch | pa.Table, name: str) -> pa.Array:
    if name in batch.schema.names:
        return batch.column(name)
    return pa.nulls(batch.num_rows, pa.string())


class _Groups:
    """Documents, characters, words (and tokens) per value of one column (source, lang, license)."""

    FIELDS = ("documents", "characters", "words", "tokens")

    def __init__(self) -> None:
        self.counts: dict[str, Counter] = {}

    def add(self, keys: pa.Array, lengths: pa.Array, words: pa.Array, tokens: pa.Array | None) -> None:
        columns = {"key": pc.cast(keys, pa.string()), "chars": lengths, "words": words}
        aggregates = [([], "count_all"), ("chars", "sum"), ("words", "sum")]
        if tokens is not None:
            columns["tokens"] = tokens
            aggregates.append(("tokens", "sum"))
        grouped = pa.table(columns).group_by("key", use_threads=False).aggregate(aggregates)
        for row in grouped.to_pylist():  # one row per distinct value, not per document
            c = self.counts.setdefault(_key(row["key"]), Counter())
            c["documents"] += row["count_all"]
            c["characters"] += row["chars_sum"] or 0
            c["words"] += row["words_sum"] or 0
            c["tokens"] += row.get("tokens_sum") or 0

    def add_missing(self, counts: Counter) -> None:
        self.counts.setdefault(NULL_KEY, Counter()).update(counts)

    def merge(self, other: _Groups) -> None:
        for key, c in other.counts.items():
            self.counts.setdefault(key, Counter()).update(c)

    def result(self, exact_tokens: bool) -> dict[str, dict[str, int | None]]:
        ordered = sorted(self.counts.items(), key=lambda kv: (-kv[1]["documents"], kv[0]))
        out: dict[str, dict[str, int | None]] = {}
        for key, c in ordered:
            entry: dict[str, int | None] = {f: int(c[f]) for f in ("documents", "characters", "words")}
            entry["tokens"] = int(c["tokens"]) if exact_tokens else None
            entry["tokens_approximate"] = approximate_tokens(int(c["characters"]))
            out[key] = entry
        return out


def _histograms(lengths: np.ndarray, codes: np.ndarray, sources: int) -> np.ndarray:
    """Documents per length bin for each source code (one row per code), from lengths and their sources."""
    # One bincount over (source, bin) pairs gives every source's histogram at once.
    width = len(LENGTH_EDGES) + 1
    bins = np.searchsorted(np.asarray(LENGTH_EDGES), lengths, side="right")
    counts = np.bincount(codes.astype(np.int64) * width + bins, minlength=sources * width)
    return counts.reshape(-1, width)


_GROUPS = ("by_source", "by_license", "by_lang")
PARTIAL_KEY = b"curate.stats"
PARTIAL_VERSION = 1


class _KeptStats:
    """Accumulates the stats of kept records, one record batch at a time; partials merge in file order."""

    def __init__(self, tokenizer: Any = None) -> None:
        self.tokenizer = tokenizer
        self.documents = 0
        self.characters = 0
        self.words = 0
        self.tokens = 0
        self.lengths: list[np.ndarray] = []
        self.source_ids: list[np.ndarray] = []  # per document, an index into self.source_names
        self.source_names: dict[str, int] = {}
        self.histogram: dict[str, np.ndarray] = {}  # source -> documents per length bin
        self.by_source = _Groups()
        self.by_license = _Groups()
        self.by_lang = _Groups()
        self.has_lang = False
        self.no_lang: Counter = Counter()  # documents from files without a lang column, when others have one
        self.has_dup_cluster = False
        self.samples: list[dict[str, Any]] = []

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        n = batch.num_rows
        if not n:
            return
        names = batch.schema.names
        text = _column(batch, "text")
        if text.null_count:
            text = pc.fill_null(text, "")
        lengths = pc.cast(pc.utf8_length(text), pa.int32())
        words = word_counts(text)
        tokens = count_tokens(text, self.tokenizer) if self.tokenizer is not None else None
        chars = _as_int(pc.sum(lengths.cast(pa.int64())))
        nwords = _as_int(pc.sum(words))
        self.documents += n
        self.characters += chars
        self.words += nwords
        if tokens is not None:
            self.tokens += _as_int(pc.sum(tokens))
        source = pc.cast(_column(batch, "source"), pa.string())
        self._lengths(lengths, source)
        self.by_source.add(source, lengths, words, tokens)
        self.by_license.add(_column(batch, "license"), lengths, words, tokens)
        if "lang" in names:
            self.has_lang = True
            self.by_lang.add(batch.column("lang"), lengths, words, tokens)
        else:
            ntok = _as_int(pc.sum(tokens)) if tokens is not None else 0
            self.no_lang.update(documents=n, characters=chars, words=nwords, tokens=ntok)
        if "dup_cluster" in names:
            self.has_dup_cluster = True
        if len(self.samples) < SAMPLE_DOCS and "id" in names:  # files are sampled apart (_file_samples)
            self._sample(batch, text)

    def _lengths(self, lengths: pa.Array, source: pa.Array) -> None:
        encoded = pc.dictionary_encode(pc.fill_null(source, NULL_KEY))
        names = [str(s) for s in encoded.dictionary.to_pylist()]
        local = np.array([self.source_names.setdefault(s, len(self.source_names)) for s in names], np.int32)
        codes = local[encoded.indices.to_numpy(zero_copy_only=False)]
        lens = lengths.to_numpy(zero_copy_only=False)
        self.lengths.append(lens)
        self.source_ids.append(codes)
        counts = _histograms(lens, codes, len(self.source_names))
        for name, code in zip(names, local, strict=True):
            have = self.histogram.get(name)
            self.histogram[name] = counts[code] if have is None else have + counts[code]

    def _sample(self, batch: pa.RecordBatch | pa.Table, text: pa.Array) -> None:
        k = SAMPLE_DOCS - len(self.samples)
        head = batch.slice(0, k)
        columns = {
            "id": _column(head, "id"),
            "title": _column(head, "title"),
            "source": _column(head, "source"),
            "characters": pc.utf8_length(text.slice(0, k)),
            "text": pc.utf8_slice_codeunits(text.slice(0, k), 0, SAMPLE_CHARS),
        }
        self.samples.extend(pa.table(columns).to_pylist())

    def merge(self, other: _KeptStats) -> None:
        """Fold a later file's partial stats into these (samples keep file order)."""
        self.documents += other.documents
        self.characters += other.characters
        self.words += other.words
        self.tokens += other.tokens
        remap = np.array(
            [self.source_names.setdefault(s, len(self.source_names)) for s in other.source_names], np.int32
        )
        self.lengths.extend(other.lengths)
        self.source_ids.extend(remap[ids] if len(remap) else ids for ids in other.source_ids)
        for name, counts in other.histogram.items():
            have = self.histogram.get(name)
            self.histogram[name] = counts if have is None else have + counts
        self.by_source.merge(other.by_source)
        self.by_license.merge(other.by_license)
        self.by_lang.merge(other.by_lang)
        self.has_lang |= other.has_lang
        self.no_lang.update(other.no_lang)
        self.has_dup_cluster |= other.has_dup_cluster
        self.samples.extend(other.samples[: max(0, SAMPLE_DOCS - len(self.samples))])

    def to_partial(self) -> bytes:
        """This state as an Arrow IPC file: each document's length and source, the sums in its metadata."""
        lengths = np.concatenate(self.lengths) if self.lengths else np.zeros(0, np.int32)
        sources = np.concatenate(self.source_ids) if self.source_ids else np.zeros(0, np.int32)
        facts = {
            "version": PARTIAL_VERSION,
            "documents": self.documents,
            "characters": self.characters,
            "words": self.words,
            "tokens": self.tokens,
            "tokens_exact": self.tokenizer is not None,
            "source_names": list(self.source_names),
            "groups": {name: getattr(self, name).counts for name in _GROUPS},
            "has_lang": self.has_lang,
            "no_lang": dict(self.no_lang),
            "has_dup_cluster": self.has_dup_cluster,
        }
        columns = {"characters": pa.array(lengths, pa.int32()), "source": pa.array(sources, pa.int32())}
        table = pa.table(columns)
        table = table.replace_schema_metadata({PARTIAL_KEY: json.dumps(facts, sort_keys=True)})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        return sink.getvalue().to_pybytes()

    @classmethod
    def from_partial(cls, data: bytes, tokenizer: Any) -> _KeptStats:
        """The state to_partial() wrote; ValueError if it is not one, or was counted with(out) a tokenizer
        where this one is not."""
        try:
            return cls._read_partial(data, tokenizer)
        except (pa.ArrowException, KeyError, TypeError, AttributeError, json.JSONDecodeError) as e:
            raise ValueError(f"not a stats partial ({type(e).__name__}: {e})") from e

    @classmethod
    def _read_partial(cls, data: bytes, tokenizer: Any) -> _KeptStats:
        table = pa.ipc.open_file(pa.py_buffer(data)).read_all()
        facts = json.loads(table.schema.metadata[PARTIAL_KEY])
        if facts["version"] != PARTIAL_VERSION:
            raise ValueError(f"version {facts['version']}, expected {PARTIAL_VERSION}")
        if facts["tokens_exact"] != (tokenizer is not None):
            raise ValueError("counted with another tokenizer setting")
        lengths = table.column("characters").to_numpy().astype(np.int32)
        codes = table.column("source").to_numpy().astype(np.int32)
        names = [str(n) for n in facts["source_names"]]
        if len(lengths) != facts["documents"] or int(lengths.sum()) != facts["characters"]:
            raise ValueError("its lengths disagree with its sums")
        if len(codes) and not 0 <= int(codes.min()) <= int(codes.max()) < len(names):
            raise ValueError("a source code out of range")
        kept = cls(tokenizer)
        kept.documents, kept.characters = facts["documents"], facts["characters"]
        kept.words, kept.tokens = int(facts["words"]), int(facts["tokens"])
        kept.source_names = {name: code for code, name in enumerate(names)}
        kept.lengths, kept.source_ids = [lengths], [codes]
        counts = _histograms(lengths, codes, len(names))
        kept.histogram = {name: counts[code] for code, name in enumerate(names) if counts[code].any()}
        for name in _GROUPS:
            groups = getattr(kept, name)
            groups.counts = {str(key): Counter(c) for key, c in facts["groups"][name].items()}
        kept.has_lang, kept.has_dup_cluster = bool(facts["has_lang"]), bool(facts["has_dup_cluster"])
        kept.no_lang = Counter(facts["no_lang"])
        return kept

    def _ordered(self, by_source: dict[str, Any]) -> list[str]:
        """The largest sources that have a histogram (at most MAX_SAMPLE_SOURCES: the report has one each)."""
        return [n for n in by_source if n in self.histogram][:MAX_SAMPLE_SOURCES]

    def result(self) -> dict[str, Any]:
        exact = self.tokenizer is not None
        lengths = np.concatenate(self.lengths) if self.lengths else np.zeros(0, np.int32)
        sources = np.concatenate(self.source_ids) if self.source_ids else np.zeros(0, np.int32)
        by_source = self.by_source.result(exact)
        per_source = {}
        for name in list(by_source)[:MAX_SAMPLE_SOURCES]:
            code = self.source_names.get(name)
            if code is not None:
                per_source[name] = _percentiles(lengths[sources == code])
        total = np.zeros(len(LENGTH_EDGES) + 1, np.int64)
        for counts in self.histogram.values():
            total += counts
        stats: dict[str, Any] = {
            "documents": self.documents,
            "characters": self.characters,
            "words": self.words,
            "tokens": self.tokens if exact else None,
            "tokens_approximate": approximate_tokens(self.characters),
            "tokens_approximate_rule": APPROXIMATE_RULE,
            "by_source": by_source,
            "by_license": self.by_license.result(exact),
            # Documents whose licence is unknown (null): not to be redistributed until someone finds it.
            "without_license": int(self.by_license.counts.get(NULL_KEY, {}).get("documents", 0)),
            "length_percentiles": _percentiles(lengths),
            "length_percentiles_by_source": per_source,
            "length_histogram": {
                "edges": list(LENGTH_EDGES),
                "all": [int(v) for v in total],
                "by_source": {n: [int(v) for v in self.histogram[n]] for n in self._ordered(by_source)},
            },
        }
        if self.has_lang:
            if self.no_lang["documents"]:
                self.by_lang.add_missing(self.no_lang)
            stats["by_lang"] = self.by_lang.result(exact)
        return stats


def _percentiles(lengths: np.ndarray) -> dict[str, int | float | None]:
    # "nearest" keeps every percentile an actual document length (a whole number of characters).
    names = [*PERCENTILES, "min", "max", "mean"]
    if not len(lengths):
        return dict.fromkeys(names)
    array = pa.array(lengths, pa.int32())
    qs = pc.quantile(array, q=list(PERCENTILES.values()), interpolation="nearest").to_pylist()
    out: dict[str, int | float | None] = {name: int(q) for name, q in zip(PERCENTILES, qs, strict=True)}
    out.update(min=int(lengths.min()), max=int(lengths.max()), mean=round(float(lengths.mean()), 1))
    return out


def length_bin_labels(edges: Sequence[int] = LENGTH_EDGES) -> list[str]:
    """Human labels of the length histogram's bins ("0", "1-9", ..., ">= 10,000,000")."""
    labels = ["0"]
    for lo, hi in zip(edges, edges[1:], strict=False):
        labels.append(f"{lo:,}-{hi - 1:,}")
    labels.append(f">= {edges[-1]:,}")
    return labels


class _RejectedStats:
    """Drop reasons (errors apart), characters per reason, duplicate clusters and a few sample rows per
    reason, from rejected/ shards."""

    def __init__(self) -> None:
        self.reasons: Counter = Counter()
        self.characters: Counter = Counter()  # characters of the dropped documents, per reason
        self.by_stage: dict[str, Counter] = {}
        self.samples: dict[str, list[dict[str, Any]]] = {}
        self.duplicates: list[pa.Table] = []  # (stage, dup_cluster, id) of rows dropped as duplicates

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
        if "dup_cluster" in batch.schema.names and any(r in counts for r in DUPLICATE_REASONS):
            is_dup = pc.is_in(reason, pa.array(DUPLICATE_REASONS))
            rows = batch.filter(pc.and_(is_dup, pc.is_valid(batch.column("dup_cluster"))))
            stages = _column(rows, "drop_stage")
            if stage is not None:
                stages = pc.fill_null(stages, stage)
            self.duplicates.append(
                pa.table(
                    {
                        "stage": pc.cast(stages, pa.string()),
                        "cluster": pc.cast(rows.column("dup_cluster"), pa.string()),
                        "id": pc.cast(_column(rows, "id"), pa.string()),
                    }
                )
            )
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

    def clusters(self, kept_has_dup_cluster: bool) -> dict[str, Any] | None:
        """Duplicate clusters: each is one survivor plus the rows dropped with its dup_cluster, per stage."""
        if not self.duplicates:
            if not kept_has_dup_cluster:
                return None
            return dict(clusters=0, documents_in_clusters=0, duplicates_removed=0, sizes={}, largest=[])
        table = pa.concat_tables(self.duplicates)
        grouped = table.group_by(["stage", "cluster"], use_threads=False).aggregate(
            [([], "count_all"), ("id", "min")]
        )
        sizes = pc.add(grouped.column("count_all"), 1)  # the survivor was kept, or dropped by a later stage
        counts = pc.value_counts(sizes).to_pylist()
        by_size = {str(int(c["values"])): int(c["counts"]) for c in sorted(counts, key=lambda c: c["values"])}
        top = grouped.append_column("size", sizes).sort_by([("size", "descending"), ("cluster", "ascending")])
        largest = [
            {"stage": r["stage"], "dup_cluster": r["cluster"], "size": int(r["size"]), "example": r["id_min"]}
            for r in top.slice(0, 10).to_pylist()
        ]
        return {
            "clusters": grouped.num_rows,
            "documents_in_clusters": _as_int(pc.sum(sizes)),
            "duplicates_removed": table.num_rows,
            "sizes": by_size,
            "largest": largest,
        }


def _rejected_rows(rows: pa.RecordBatch, stage: str | None) -> list[dict[str, Any]]:
    detail = pc.utf8_slice_codeunits(pc.cast(_column(rows, "drop_detail"), pa.string()), 0, SAMPLE_CHARS)
    text = pc.cast(_column(rows, "text"), pa.string())
    table = pa.table(
        {
            "id": _column(rows, "id"),
            "stage": _column(rows, "drop_stage"),
            "reason": _column(rows, "drop_reason"),
            "detail": detail,
            "title": _column(rows, "title"),
            "source": _column(rows, "source"),
            "characters": pc.utf8_length(pc.fill_null(text, "")),
            "text": pc.utf8_slice_codeunits(text, 0, SAMPLE_CHARS),
        }
    )
    out = table.to_pylist()
    for row in out:
        row["stage"] = row["stage"] or stage
    return out


# -------------------------------------------------------------------------------------------- file access


def _parquet_files(directory: Path | StoragePath) -> list[Path | StoragePath]:
    if not directory.is_dir():
        return []
    files = directory.glob("*.parquet")  # on object storage: files only, without a request per file
    return sorted(
        f
        for f in files
        if (isinstance(f, StoragePath) or f.is_file()) and not is_tmp(f) and not f.name.startswith(".")
    )


def _batches(path: Path | StoragePath, wanted: Iterable[str]) -> Iterator[pa.RecordBatch]:
    pf = parquet_file(path, memory_map=True)
    available = set(pf.schema_arrow.names)
    columns = [c for c in wanted if c in available]
    if not columns:
        # No wanted column at all: still honour the row count (documents without text count as empty).
        for start in range(0, pf.metadata.num_rows, BATCH_ROWS):
            n = min(BATCH_ROWS, pf.metadata.num_rows - start)
            yield pa.record_batch({"text": pa.nulls(n, pa.string())})
        return
    # Batches of one row group each (up to BATCH_ROWS): a batch that spans row groups is assembled by copying,
    # which cost a third of the reading time on the shard stage's 1,000-row groups.
    first = pf.metadata.row_group(0).num_rows if pf.num_row_groups else 0
    size = first if 0 < first <= BATCH_ROWS else BATCH_ROWS
    yield from pf.iter_batches(batch_size=size, columns=columns, use_threads=False)


def _read_json(path: Path | StoragePath) -> Any:  # curate.stats.inspect uses it too
    return read_json(path)


def _is_stage_dir(path: Path | StoragePath) -> bool:
    return bool(_parquet_files(path)) or (path / REJECTED_DIR).is_dir() or (path / MANIFEST).is_file()


# Only what every document is counted by; id and title are read for the few samples alone (_file_samples).
KEPT_COLUMNS = ("text", "source", "license", "lang")
SAMPLE_COLUMNS = ("id", "title", "source", "text")
REJECTED_COLUMNS = ("id", "title", "text", "source", "dup_cluster", "drop_stage", "drop_reason")
REJECTED_COLUMNS += ("drop_detail",)


def _threads(n_files: int) -> int:
    return max(1, min(n_files, os.cpu_count() or 1, 8))


def _scan_kept_file(path: Path | StoragePath, tokenizer: Any) -> _KeptStats:
    partial = _KeptStats(tokenizer)
    partial.has_dup_cluster = "dup_cluster" in parquet_file(path).schema_arrow.names
    for batch in _batches(path, KEPT_COLUMNS):
        partial.add(batch)
    return partial


def _file_samples(files: list[Path | StoragePath]) -> list[dict[str, Any]]:
    """The first SAMPLE_DOCS documents of the files, in file order."""
    samples = _KeptStats()
    for f in files:
        pf = parquet_file(f)
        columns = [c for c in SAMPLE_COLUMNS if c in pf.schema_arrow.names]
        for batch in pf.iter_batches(batch_size=SAMPLE_DOCS, columns=columns):
            samples._sample(batch, pc.fill_null(_column(batch, "text"), ""))
            break
        if len(samples.samples) >= SAMPLE_DOCS:
            break
    return samples.samples


def _kept_file_stats(
    path: Path | StoragePath, partial: Path | StoragePath | None, tokenizer: Any
) -> _KeptStats:
    """The kept file's stats from its partial where that is sound, else from reading the file."""
    if partial is not None:
        try:
            found = _KeptStats.from_partial(partial.read_bytes(), tokenizer)
            if found.documents != parquet_file(path).metadata.num_rows:
                raise ValueError("it counts another number of rows than the file holds")
            return found
        except (OSError, ValueError) as e:
            log.warning("%s: %s unusable (%s); reading the file instead", path, partial.name, e)
    return _scan_kept_file(path, tokenizer)


def _scan_stage(
    path: Path | StoragePath,
    kept: _KeptStats | None,
    rejected: _RejectedStats,
    stage: str | None,
    partials: Mapping[str, Path | StoragePath] | None = None,
) -> int:
    """Feed one stage directory's kept shards (if kept is given) and rejected shards; return kept bytes."""
    size = 0
    if kept is not None:
        files = _parquet_files(path)
        size = sum(f.stat().st_size for f in files)
        known = partials or {}
        with ThreadPoolExecutor(_threads(len(files))) as pool:
            for partial in pool.map(lambda f: _kept_file_stats(f, known.get(f.name), kept.tokenizer), files):
                kept.merge(partial)  # in file order, so the result does not depend on timing
        kept.samples = _file_samples(files)
    for f in _parquet_files(path / REJECTED_DIR):
        if "drop_reason" not in parquet_file(f).schema_arrow.names:
            raise ConfigError(f"{f}: rejected shard without a drop_reason column (expected the drop columns)")
        for batch in _batches(f, REJECTED_COLUMNS):
            rejected.add(batch, stage)
    return size


def _rejected_bytes(path: Path | StoragePath) -> int:
    return sum(f.stat().st_size for f in _parquet_files(path / REJECTED_DIR))


# ---------------------------------------------------------------------------------------------- public API


def table_stats(table: pa.Table, tokenizer: Any = None) -> dict:
    """Stats of one table of records (used per shard by the shard stage): deterministic, no paths or times.

    tokenizer: a loaded tokenizers.Tokenizer for exact token counts, else they are approximate."""
    return table_stats_and_partial(table, tokenizer)[0]


def table_stats_and_partial(table: pa.Table, tokenizer: Any = None) -> tuple[dict, bytes]:
    """table_stats(), and the partial that collect_stats(partials=...) merges instead of reading the table's
    file again (each document's length and source, the sums by source, licence and language)."""
    kept = _KeptStats(tokenizer)
    kept.has_dup_cluster = "dup_cluster" in table.column_names
    for batch in table.to_batches(max_chunksize=BATCH_ROWS):
        kept.add(batch)
    _scratch.__dict__.clear()  # a long-lived worker should not keep the word-count buffers
    partial = kept.to_partial()
    stats = kept.result()
    stats["bytes"] = None  # on-disk size is not known for an in-memory table; the manifest lists file bytes
    stats["text_bytes"] = _as_int(pc.sum(pc.binary_length(table.column("text")))) if table.num_rows else 0
    if "dup_cluster" in table.column_names:
        stats["dup_clusters_distinct"] = _as_int(pc.count_distinct(table.column("dup_cluster")))
    return stats, partial


def collect_stats(
    path: str | os.PathLike,
    *,
    tokenizer: str | None = None,
    sources: str | os.PathLike | None = None,
    partials: Mapping[str, Path | StoragePath] | None = None,
) -> dict:
    """Stats of a stage directory or a pipeline work directory (pipeline.json), with samples and a funnel.

    path may be a storage URI (s3://bucket/prefix): it is read through curate.storage. partials (a stage
    directory only): per kept file name, a file of table_stats_and_partial()'s partial for its rows, merged
    instead of reading the file (one that is missing or unsound is not: see _kept_file_stats)."""
    root = as_path(path)
    if not root.exists():
        raise ConfigError(f"{root}: path does not exist (expected a curate stage or work directory)")
    if not root.is_dir():
        raise ConfigError(f"{root}: is a file, not a directory (expected a curate stage or work directory)")
    tok = load_tokenizer(tokenizer) if tokenizer else None
    if (root / PIPELINE_FILE).is_file():
        stats = _workdir_stats(root, tok, tokenizer)
    else:
        if not _is_stage_dir(root):
            raise ConfigError(f"{root}: {NOT_A_STAGE} (nor pipeline.json)")
        kept = _KeptStats(tok)
        rejected = _RejectedStats()
        manifest = _manifest(root)
        size = _scan_stage(root, kept, rejected, None, partials)
        stats = _assemble(root, "stage", kept, rejected, size, tokenizer)
        stats["bytes_rejected"] = _rejected_bytes(root)
        stats["stage"] = (manifest or {}).get("stage") or root.name
        # None, not a "missing manifest" entry: the shard stage writes stats.json before its manifest exists.
        stats["manifest"] = _funnel_entry(stats["stage"], manifest) if manifest is not None else None
        if manifest is not None:
            _characters_read(stats["manifest"], manifest, {})
        stats["warnings"] = _check(stats["stage"], manifest, kept.documents, rejected.reasons)
        stats["decontamination"] = _decontamination({stats["stage"]: root})
    stats.update(_redistributable(stats["by_source"], root, sources))
    return stats


_COUNTED = ("documents", "characters", "words")


def _redistributable(
    by_source: dict[str, dict[str, Any]], root: Path | StoragePath, sources: str | os.PathLike | None
) -> dict[str, Any]:
    """Documents per sources.yaml `redistributable` flag; sources it does not list count as unknown."""
    from curate.errors import ConfigError
    from curate.sources.registry import find_sources_file, load_sources

    try:
        # A work directory on object storage has no sources.yaml beside it: look from the current folder.
        start = None if isinstance(root, StoragePath) else root
        path = Path(sources) if sources else find_sources_file(start)
        registry = load_sources(path)
    except (ConfigError, OSError):
        path, registry = None, {}
    groups: dict[str, Counter] = {}
    for name, c in by_source.items():
        flag = registry[name].redistributable if name in registry else None
        key = "unknown (not in sources.yaml)" if flag is None else ("yes" if flag else "no")
        groups.setdefault(key, Counter()).update({k: v for k, v in c.items() if isinstance(v, int)})
    ordered = sorted(groups.items(), key=lambda kv: (-kv[1]["documents"], kv[0]))
    return {
        "by_redistributable": {k: {f: int(c[f]) for f in _COUNTED} for k, c in ordered},
        "sources_file": str(path) if path else None,
    }


def _workdir_stats(root: Path | StoragePath, tok: Any, tokenizer: str | None) -> dict:
    try:
        pipeline = _read_json(root / PIPELINE_FILE)
        stages = [str(s) for s in pipeline["stages"]]
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(
            f"{root / PIPELINE_FILE}: expected a JSON object with a 'stages' list of stage names ({e})"
        ) from e
    if not stages:
        raise ConfigError(f"{root / PIPELINE_FILE}: the 'stages' list is empty")
    kept = _KeptStats(tok)
    rejected = _RejectedStats()
    funnel: list[dict[str, Any]] = []
    manifests: dict[str, dict[str, Any] | None] = {}
    warnings: list[str] = []
    size = rejected_size = 0
    for i, name in enumerate(stages):
        stage_dir = root / name
        final = i == len(stages) - 1
        manifest = manifests[name] = _manifest(stage_dir)
        funnel.append(_funnel_entry(name, manifest, exists=stage_dir.is_dir()))
        if not stage_dir.is_dir():
            warnings.append(f"stage {name!r}: directory {stage_dir} does not exist")
            continue
        before = Counter(rejected.reasons)
        size_here = _scan_stage(stage_dir, kept if final else None, rejected, name)
        rejected_size += _rejected_bytes(stage_dir)
        if final:
            size = size_here
        here = rejected.reasons - before
        warnings.extend(_check(name, manifest, kept.documents if final else None, here))
    for n, entry in enumerate(funnel):  # each stage reads what the ones before it kept
        earlier = {e["stage"]: e["characters_kept"] for e in funnel[:n]}
        _characters_read(entry, manifests[entry["stage"]], earlier)
    stats = _assemble(root, "workdir", kept, rejected, size, tokenizer)
    stats["bytes_rejected"] = rejected_size
    stats["pipeline"] = pipeline.get("pipeline")
    stats["stage"] = stages[-1]
    stats["stages"] = stages
    stats["funnel"] = funnel
    stats["rejected_by_stage"] = {
        s: {k: int(v) for k, v in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))}
        for s, c in rejected.by_stage.items()
    }
    stats["warnings"] = warnings
    stats["decontamination"] = _decontamination({name: root / name for name in stages})
    return stats


def _decontamination(stage_dirs: dict[str, Path | StoragePath]) -> dict[str, Any]:
    """The report of each decontaminate stage (its decontamination.json), by stage name."""
    from curate.decontam.report import REPORT as DECONTAMINATION

    return {
        name: _read_json(folder / DECONTAMINATION)
        for name, folder in stage_dirs.items()
        if (folder / DECONTAMINATION).is_file()
    }


def _assemble(
    root: Path | StoragePath,
    kind: str,
    kept: _KeptStats,
    rejected: _RejectedStats,
    size: int,
    tokenizer: str | None,
) -> dict[str, Any]:
    stats: dict[str, Any] = {"path": str(root), "kind": kind}
    stats.update(kept.result())
    stats["bytes"] = size
    stats["tokenizer"] = str(tokenizer) if tokenizer else None
    stats["rejected"] = rejected.rejected()
    stats["rejected_characters"] = rejected.rejected_characters()
    stats["errored"] = rejected.errored()
    stats["dup_clusters"] = rejected.clusters(kept.has_dup_cluster)
    stats["samples"] = {"kept": kept.samples, "rejected": rejected.samples}
    return stats


def _manifest(stage_dir: Path | StoragePath) -> dict[str, Any] | None:
    path = stage_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        return _read_json(path)
    except ValueError as e:
        raise ConfigError(f"{path}: not valid JSON ({e}); rerun the stage to rewrite it") from e


FUNNEL_NUMBERS = ("in", "kept", "rejected", "errored", "characters_in", "characters_kept")
FUNNEL_NUMBERS += ("characters_rejected", "characters_removed")


def _funnel_entry(name: str, manifest: dict[str, Any] | None, *, exists: bool = True) -> dict[str, Any]:
    if manifest is None:
        entry: dict[str, Any] = {"stage": name, "status": "missing manifest"}
        entry.update(dict.fromkeys(FUNNEL_NUMBERS))
        entry["drop_reasons"] = {}
        if not exists:
            entry["detail"] = "stage directory does not exist"
        return entry
    counts = manifest.get("counts") or {}
    characters = manifest.get("characters") or {}
    kept_chars, rejected_chars = characters.get("kept"), characters.get("rejected")
    both = kept_chars is not None and rejected_chars is not None
    return {
        "stage": name,
        "step": manifest.get("step"),
        "status": manifest.get("status", "complete"),
        "in": counts.get("in"),
        "kept": counts.get("kept"),
        "rejected": counts.get("rejected"),
        "errored": counts.get("errored"),
        # Characters of what the stage read: what it kept plus what it dropped or failed on (after parsing,
        # for the parse stages, whose inputs are files).
        "characters_in": kept_chars + rejected_chars if both else None,
        "characters_kept": kept_chars,
        "characters_rejected": rejected_chars,
        "characters_removed": rejected_chars if both else None,  # until _characters_read knows better
        "drop_reasons": dict(manifest.get("drop_reasons") or {}),
        "wall_seconds": manifest.get("wall_seconds"),
    }


def _characters_read(
    entry: dict[str, Any], manifest: dict[str, Any] | None, kept_by_stage: dict[str, int | None]
) -> None:
    """Characters in of a stage that reads only other stages: what they kept (the funnel's earlier stages,
    else the manifests in the input folders), so that a stage which edits text (clean) shows what it
    removed. Other stages keep kept + rejected (after parsing, for file stages); mix counts copies, so it
    too."""
    inputs = [str(i.get("path", "")) for i in (manifest or {}).get("inputs") or []]
    if not inputs or (manifest or {}).get("step") == "mix":
        return
    read = []
    for path in dict.fromkeys(inputs):
        name = path.rstrip("/").rsplit("/", 1)[-1]
        if name in kept_by_stage:
            read.append(kept_by_stage[name])
            continue
        try:
            upstream = _manifest(as_path(path)) if as_path(path).is_dir() else None
        except (OSError, ValueError):
            upstream = None
        read.append(((upstream or {}).get("characters") or {}).get("kept"))
    if read and all(n is not None for n in read) and entry.get("characters_kept") is not None:
        entry["characters_in"] = sum(read)
        entry["characters_removed"] = entry["characters_in"] - entry["characters_kept"]


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
