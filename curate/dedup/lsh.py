"""LSH for near dedup: band parameters, band files in a scratch folder, and candidate pairs per bucket.

Scratch layout of a near_dedup global pass (one file per input shard, numbered in task order):
  bands/<band>/<shard>.parquet   (key uint64, row uint32), sorted by key in row groups of BAND_ROW_GROUP
  docs/<shard>.parquet           doc, id, priority, length, comparable (and sig, the low 32 bits of the
                                 signature, when an index is queried or extended)
  shingles/<shard>.parquet       doc, shingle set: of candidate documents only (curate.dedup.clusters)
A document is (shard << ROW_BITS) | row: unique, ordered, and decodable without a lookup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from curate.dedup.minhash import band_keys, fmix64, text_signatures
from curate.dedup.survivors import priorities
from curate.io import write_parquet
from curate.stage import read_records

SIGNATURE_BATCH = 2000  # documents per vectorised batch: bounds a worker's memory, not its speed
ROW_BITS = 32
ROW_MASK = (1 << ROW_BITS) - 1
PARTITION_DOCS = 2_000_000  # band keys per candidates task: bounds its memory (16 bytes a key, a few copies)
BAND_ROW_GROUP = 65_536  # band files are sorted by key in row groups, so a key range reads only its groups


class MinHashSettings(Protocol):
    """The parameters the phases of near dedup share (the NearDedup stage has them)."""

    threshold: float
    num_perm: int
    ngram: int
    seed: int
    bands: int
    rows: int
    verify: bool
    within_source: bool
    priority: dict[str, int]

    @property
    def keeps_signatures(self) -> bool: ...


def lsh_bands(threshold: float, num_perm: int, verify: bool) -> tuple[int, int]:
    """Bands x rows from datasketch's optimiser; when verifying, a miss weighs 19x a false candidate."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    weights = (0.05, 0.95) if verify else (0.5, 0.5)
    return optimal_bands(threshold, num_perm, *weights)


def optimal_bands(threshold: float, num_perm: int, fp_weight: float, fn_weight: float) -> tuple[int, int]:
    """datasketch's `lsh._optimal_param`: the (bands, rows) with the least weighted area of false positives
    (below the threshold) and false negatives (above it), the first minimum over bands then rows. The areas
    are integrals of polynomials of degree bands x rows <= num_perm, which Gauss-Legendre with
    num_perm / 2 + 1 nodes gives exactly: the same answer as datasketch's scipy quad, without importing
    datasketch and scipy.integrate (a second or more on every near_dedup command)."""
    pairs = np.array([(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)], float)
    nodes, node_weights = np.polynomial.legendre.leggauss(num_perm // 2 + 1)

    def area(low: float, high: float, positive: bool) -> np.ndarray:
        s = (high - low) / 2 * nodes + (high + low) / 2
        candidate = (
            1 - (1 - s[None, :] ** pairs[:, 1:2]) ** pairs[:, 0:1]
        )  # P(a pair of similarity s is found)
        return (high - low) / 2 * ((candidate if positive else 1 - candidate) @ node_weights)

    error = area(0.0, threshold, True) * fp_weight + area(threshold, 1.0, False) * fn_weight
    bands, rows = pairs[int(np.argmin(error))]
    return int(bands), int(rows)


def bucket_pairs(keys: np.ndarray, docs: np.ndarray) -> np.ndarray:
    """(n x 2) pairs (first document of a bucket, another document of it) for documents sharing a key."""
    if len(keys) < 2:
        return np.zeros((0, 2), np.int64)
    order = np.lexsort((docs, keys))
    keys, docs = keys[order], docs[order]
    starts = np.concatenate([[True], keys[1:] != keys[:-1]])
    first = docs[np.flatnonzero(starts)][np.cumsum(starts) - 1]
    return np.stack([first[~starts], docs[~starts]], axis=1)


def _source_keys(sources: list[str | None]) -> np.ndarray:
    """A 64-bit key per document's source, mixed into band keys so that buckets stay within one source."""
    return fmix64(np.array([xxhash.xxh3_64_intdigest((s or "").encode()) for s in sources], np.uint64))


def shard_file(folder: Path, shard: int) -> Path:
    """The file of one shard (or index shard) in a folder of per-shard files."""
    return folder / f"{shard:06d}.parquet"


def band_folder(root: Path, band: int) -> Path:
    """The folder of one band's files under a scratch folder or an index generation."""
    return root / "bands" / f"{band:03d}"


def key_ranges(parts: int) -> list[tuple[int, int]]:
    """The 64-bit key space cut into `parts` equal ranges [lo, hi): one candidates task each per band."""
    bounds = [(i << 64) // parts for i in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def partitions(documents: int) -> list[tuple[int, int]]:
    """The key ranges for a number of documents (each range's band keys fit one task's memory)."""
    return key_ranges(max(1, -(-documents // PARTITION_DOCS)))


def _range_filter(lo: int, hi: int) -> pc.Expression | None:
    parts = []
    if lo > 0:
        parts.append(pc.field("key") >= pa.scalar(lo, pa.uint64()))
    if hi < 1 << 64:
        parts.append(pc.field("key") < pa.scalar(hi, pa.uint64()))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else parts[0] & parts[1]


def read_band(files: list[tuple[str, int]], lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Keys in [lo, hi) of key-sorted band files (path, file number), with documents (number << 32 | row).

    Files are sorted by key in row groups, so a range reads only the row groups that can hold it.
    """
    keys, docs = [np.zeros(0, np.uint64)], [np.zeros(0, np.int64)]
    where = _range_filter(lo, hi)
    for path, number in files:
        table = pq.read_table(path, filters=where)
        keys.append(table.column("key").to_numpy())
        docs.append((np.int64(number) << ROW_BITS) + table.column("row").to_numpy().astype(np.int64))
    return np.concatenate(keys), np.concatenate(docs)


def band_files(scratch: str, band: int, shards: int) -> list[tuple[str, int]]:
    """One band's files of every shard in a scratch folder, numbered by shard."""
    return [(str(shard_file(band_folder(Path(scratch), band), s)), s) for s in range(shards)]


def read_docs(folder: Path, docs: np.ndarray, columns: list[str] | None = None) -> pa.Table:
    """Rows of per-shard files under folder for the given sorted documents (only their shards are read)."""
    parts = []
    for shard in np.unique(docs >> ROW_BITS):
        wanted = pa.array(docs[(docs >> ROW_BITS) == shard])
        table = pq.read_table(
            shard_file(folder, int(shard)), columns=columns, filters=pc.field("doc").isin(wanted)
        )
        parts.append(table)
    return pa.concat_tables(parts)


# ---------------------------------------------------------------------------------------------- signatures


def signature_task(settings: MinHashSettings, path: str, shard: int, scratch: str) -> dict[str, int]:
    """Signatures of one shard: band keys to bands/<band>/, survivor keys (and signatures) to docs/."""
    table = read_records(path, columns=["id", "text", "source"])
    texts = [t or "" for t in table.column("text").to_pylist()]
    keys, comparable, low = [], [], []
    for start in range(0, len(texts), SIGNATURE_BATCH):
        signatures, shingles = text_signatures(
            texts[start : start + SIGNATURE_BATCH], settings.ngram, settings.num_perm, settings.seed
        )
        keys.append(band_keys(signatures, settings.bands, settings.rows))
        comparable.append(shingles > 0)
        if settings.keeps_signatures:
            low.append(signatures.astype(np.uint32))  # the low 32 bits: enough to estimate Jaccard
    keys = np.concatenate(keys) if keys else np.zeros((0, settings.bands), np.uint64)
    comparable = np.concatenate(comparable) if comparable else np.zeros(0, bool)
    if settings.within_source:
        keys ^= _source_keys(table.column("source").to_pylist())[:, None]
    root = Path(scratch)
    rows = np.flatnonzero(comparable).astype(np.uint32)
    for band in range(settings.bands):
        order = np.argsort(keys[rows, band], kind="stable")
        part = pa.table({"key": keys[rows[order], band], "row": rows[order]})
        write_parquet(part, shard_file(band_folder(root, band), shard), row_group_size=BAND_ROW_GROUP)
    columns = {
        "doc": (np.int64(shard) << ROW_BITS) + np.arange(len(texts), dtype=np.int64),
        "id": table.column("id"),
        "priority": priorities(table.column("source").to_pylist(), settings.priority),
        "length": pc.utf8_length(pc.fill_null(table.column("text"), "")).cast(pa.int64()),
        "comparable": pa.array(comparable),
    }
    if settings.keeps_signatures:
        flat = pa.array(np.concatenate(low).ravel() if low else np.zeros(0, np.uint32))
        columns["sig"] = pa.FixedSizeListArray.from_arrays(flat, settings.num_perm)
    write_parquet(pa.table(columns), shard_file(root / "docs", shard), row_group_size=8192)
    return {"documents": len(texts), "without_shingles": int((~comparable).sum())}


def signatures(
    settings: MinHashSettings, paths: list[str], map_fn: Any, scratch: Path
) -> list[dict[str, int]]:
    """Phase 1, one task per shard: MinHash of word n-grams, band keys and document keys to scratch."""
    return map_fn(signature_task, [(settings, p, n, str(scratch)) for n, p in enumerate(paths)])


# ---------------------------------------------------------------------------------------------- candidates


def band_task(scratch: str, band: int, shards: int, lo: int, hi: int, excluded: np.ndarray) -> np.ndarray:
    """Candidate pairs among the keys in [lo, hi) of one band, leaving out excluded documents."""
    keys, docs = read_band(band_files(scratch, band, shards), lo, hi)
    if len(excluded):
        keep = ~np.isin(docs, excluded)
        keys, docs = keys[keep], docs[keep]
    return bucket_pairs(keys, docs)


def candidates(
    bands: int,
    shards: int,
    ranges: list[tuple[int, int]],
    excluded: np.ndarray,
    map_fn: Any,
    scratch: Path,
) -> np.ndarray:
    """Phase 3, one task per band and key range: every run of equal keys links its documents to the run's
    first (a star, so pairs grow linearly with bucket size); the distinct pairs, sorted."""
    args = [(str(scratch), b, shards, lo, hi, excluded) for b in range(bands) for lo, hi in ranges]
    found = map_fn(band_task, args) if shards else []
    return np.unique(np.concatenate(found), axis=0) if found else np.zeros((0, 2), np.int64)
