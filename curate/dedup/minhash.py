"""Near-duplicate removal with MinHash LSH, as a global pre-pass of parallel tasks and per-shard removal.

The pre-pass (`prepare`), every step a set of parallel tasks that write to a scratch directory:
  1. signatures, one task per shard: MinHash of word n-grams; each band's hash goes to
     `bands/<band>/<shard>.parquet` (key, doc) and the survivor keys to `docs/<shard>.parquet`;
  2. candidates, one task per band: sort that band's keys, and every run of equal keys links its documents
     to the run's first (a star, so pairs grow linearly with bucket size);
  3. verification (optional, on by default), shingle sets recomputed for candidate documents only
     (one task per shard), then exact Jaccard of candidate pairs in chunks;
  4. clusters: connected components of the verified pairs; the survivor of each cluster has the best source
     priority, then the longest text, then the smallest id.
The driver holds only pairs and the keys of documents in clusters, never signatures. Then each shard's task
removes its non-survivors: `drop_reason=near_duplicate`, detail naming the survivor; every row's
`dup_cluster` is the id of its cluster's survivor (its own id when it has no near-duplicate).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from curate.dedup.signatures import band_keys, fmix64, jaccard, shingle_sets, text_signatures
from curate.io import read_parquet, write_parquet
from curate.schema import split_by_mask
from curate.sources.registry import DEFAULT_PRIORITY
from curate.stage import TableStage, Task

log = logging.getLogger("curate")

SIGNATURE_BATCH = 2000  # documents per vectorised batch: bounds a worker's memory, not its speed
VERIFY_CHUNK = 50_000  # candidate pairs per verification task: bounds its memory (shingles of <= 2x docs)
ROW_BITS = 32  # a document is (shard << 32) | row: unique, ordered, and decodable without a lookup


def lsh_bands(threshold: float, num_perm: int, verify: bool) -> tuple[int, int]:
    """Bands x rows from datasketch's optimiser; when verifying, a miss weighs 19x a false candidate."""
    from datasketch.lsh import _optimal_param

    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    weights = (0.05, 0.95) if verify else (0.5, 0.5)
    return _optimal_param(threshold, num_perm, *weights)


def bucket_pairs(keys: np.ndarray, docs: np.ndarray) -> np.ndarray:
    """(n x 2) pairs (first document of a bucket, another document of it) for documents sharing a key."""
    if len(keys) < 2:
        return np.zeros((0, 2), np.int64)
    order = np.lexsort((docs, keys))
    keys, docs = keys[order], docs[order]
    starts = np.concatenate([[True], keys[1:] != keys[:-1]])
    first = docs[np.flatnonzero(starts)][np.cumsum(starts) - 1]
    return np.stack([first[~starts], docs[~starts]], axis=1)


def cluster_labels(pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The documents in pairs (sorted) and a cluster label each: connected components of the pair graph."""
    nodes = np.unique(pairs)
    if len(nodes) == 0:
        return nodes, np.zeros(0, np.int64)
    index = np.searchsorted(nodes, pairs)
    graph = coo_matrix((np.ones(len(pairs), np.int8), (index[:, 0], index[:, 1])), shape=(len(nodes),) * 2)
    _, labels = connected_components(graph, directed=False)
    return nodes, labels.astype(np.int64)


def choose_survivors(members: pa.Table) -> pa.Table:
    """Cluster members (doc, id, priority, length, cluster) with their survivor's id and is_survivor."""
    order = [
        ("cluster", "ascending"),
        ("priority", "ascending"),
        ("length", "descending"),
        ("id", "ascending"),
        ("doc", "ascending"),
    ]
    ordered = members.take(pc.sort_indices(members, sort_keys=order))
    cluster = ordered.column("cluster").to_numpy()
    first = np.concatenate([[True], cluster[1:] != cluster[:-1]]) if len(cluster) else np.zeros(0, bool)
    ids = ordered.column("id").to_numpy(zero_copy_only=False)
    survivor = ids[np.flatnonzero(first)][np.cumsum(first) - 1] if len(cluster) else ids
    return ordered.append_column("survivor", pa.array(survivor, pa.string())).append_column(
        "is_survivor", pa.array(first)
    )


def _source_keys(sources: list[str | None]) -> np.ndarray:
    """A 64-bit key per document's source, mixed into band keys so that buckets stay within one source."""
    return fmix64(np.array([xxhash.xxh3_64_intdigest((s or "").encode()) for s in sources], np.uint64))


def _shard_file(folder: Path, shard: int) -> Path:
    return folder / f"{shard:06d}.parquet"


def _signature_task(stage: MinHashDedup, path: str, shard: int, scratch: str) -> dict[str, int]:
    """Signatures of one shard: band keys to bands/<band>/, survivor keys to docs/; returns counts."""
    table = read_parquet(path, columns=["id", "text", "source"])
    texts = [t or "" for t in table.column("text").to_pylist()]
    docs = (np.int64(shard) << ROW_BITS) + np.arange(len(texts), dtype=np.int64)
    keys = np.zeros((0, stage.bands), np.uint64)
    comparable = np.zeros(0, bool)
    for start in range(0, len(texts), SIGNATURE_BATCH):
        signatures, shingles = text_signatures(
            texts[start : start + SIGNATURE_BATCH], stage.ngram, stage.num_perm, stage.seed
        )
        keys = np.concatenate([keys, band_keys(signatures, stage.bands, stage.rows)])
        comparable = np.concatenate([comparable, shingles > 0])
    if stage.within_source:
        keys ^= _source_keys(table.column("source").to_pylist())[:, None]
    root = Path(scratch)
    for band in range(stage.bands):
        part = pa.table({"key": keys[comparable, band], "doc": docs[comparable]})
        write_parquet(part, _shard_file(root / "bands" / f"{band:03d}", shard))
    priority = [stage.priority.get(s, DEFAULT_PRIORITY) for s in table.column("source").to_pylist()]
    survivor_keys = pa.table(
        {
            "doc": docs,
            "id": table.column("id"),
            "priority": pa.array(priority, pa.int32()),
            "length": pc.utf8_length(pc.fill_null(table.column("text"), "")).cast(pa.int64()),
        }
    )
    write_parquet(survivor_keys, _shard_file(root / "docs", shard), row_group_size=8192)
    return {"documents": len(texts), "without_shingles": int((~comparable).sum())}


def _band_task(band_dir: str) -> np.ndarray:
    """Candidate pairs of one band: documents whose band keys are equal."""
    files = sorted(Path(band_dir).glob("*.parquet"))
    if not files:
        return np.zeros((0, 2), np.int64)
    table = pa.concat_tables([pq.read_table(f) for f in files])
    return bucket_pairs(table.column("key").to_numpy(), table.column("doc").to_numpy())


def _shingle_task(stage: MinHashDedup, path: str, shard: int, rows: np.ndarray, scratch: str) -> int:
    """Shingle sets of one shard's candidate documents, to shingles/<shard>.parquet."""
    texts = read_parquet(path, columns=["text"]).column("text").take(pa.array(rows)).to_pylist()
    sets = shingle_sets([t or "" for t in texts], stage.ngram)
    docs = (np.int64(shard) << ROW_BITS) + rows.astype(np.int64)
    table = pa.table({"doc": docs, "shingles": pa.array(sets, pa.list_(pa.uint64()))})
    write_parquet(table, _shard_file(Path(scratch) / "shingles", shard), row_group_size=1024)
    return len(rows)


def _read_docs(folder: Path, docs: np.ndarray, columns: list[str] | None = None) -> pa.Table:
    """Rows of per-shard files under folder for the given documents (only their shards are read)."""
    parts = []
    for shard in np.unique(docs >> ROW_BITS):
        wanted = pa.array(docs[(docs >> ROW_BITS) == shard])
        table = pq.read_table(
            _shard_file(folder, int(shard)), columns=columns, filters=pc.field("doc").isin(wanted)
        )
        parts.append(table)
    return pa.concat_tables(parts)


def _verify_task(pairs: np.ndarray, scratch: str) -> np.ndarray:
    """Exact Jaccard of each candidate pair, from the recomputed shingle sets."""
    table = _read_docs(Path(scratch) / "shingles", np.unique(pairs))
    lists = table.column("shingles").combine_chunks()
    offsets = lists.offsets.to_numpy() - lists.offsets[0].as_py()  # list_flatten starts at the first list
    values = pc.list_flatten(lists).to_numpy()
    where = {doc: i for i, doc in enumerate(table.column("doc").to_pylist())}
    sets = [values[offsets[i] : offsets[i + 1]] for i in range(table.num_rows)]
    return np.array([jaccard(sets[where[a]], sets[where[b]]) for a, b in pairs.tolist()], np.float64)


@dataclass
class MinHashDedup(TableStage):
    """Remove near-duplicate documents (MinHash LSH over word n-grams, optional exact Jaccard check)."""

    step: ClassVar[str] = "near_dedup"
    threshold: float = 0.8  # Jaccard similarity of word n-gram sets above which two documents are duplicates
    num_perm: int = 128
    ngram: int = 5
    seed: int = 1
    bands: int = 0  # 0: from datasketch's optimiser for the threshold
    rows: int = 0
    verify: bool = True  # check candidate pairs with exact Jaccard (drops LSH false positives)
    within_source: bool = False  # only documents of the same source can be duplicates
    priority: dict[str, int] = field(default_factory=dict)  # source -> rank, from sources.yaml

    def __post_init__(self) -> None:
        if not self.bands or not self.rows:
            self.bands, self.rows = lsh_bands(self.threshold, self.num_perm, self.verify)
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows ({self.bands} x {self.rows}) exceed num_perm ({self.num_perm})")

    def prepare(self, tasks: list[Task], map_fn, scratch: Path) -> list[Task]:
        paths = [t.inputs[0] for t in tasks]
        clock = [time.perf_counter()]
        seconds: dict[str, float] = {}

        def lap(step: str) -> None:
            clock.append(time.perf_counter())
            seconds[step] = round(clock[-1] - clock[-2], 3)

        counts = map_fn(_signature_task, [(self, p, n, str(scratch)) for n, p in enumerate(paths)])
        lap("signatures")
        bands = [(str(scratch / "bands" / f"{b:03d}"),) for b in range(self.bands)]
        found = map_fn(_band_task, bands) if tasks else []
        pairs = np.unique(np.concatenate(found), axis=0) if found else np.zeros((0, 2), np.int64)
        candidates = len(pairs)
        lap("candidates")
        if self.verify and len(pairs):
            needed = np.unique(pairs)
            shards = needed >> ROW_BITS
            args = [
                (self, paths[s], int(s), needed[shards == s] & ((1 << ROW_BITS) - 1), str(scratch))
                for s in np.unique(shards)
            ]
            map_fn(_shingle_task, args)
            chunks = [(pairs[i : i + VERIFY_CHUNK], str(scratch)) for i in range(0, len(pairs), VERIFY_CHUNK)]
            similarity = np.concatenate(map_fn(_verify_task, chunks))
            pairs = pairs[similarity >= self.threshold]
        lap("verify")
        nodes, labels = cluster_labels(pairs)
        payloads: list[dict[int, tuple[str, bool]]] = [{} for _ in tasks]
        if len(nodes):
            members = _read_docs(scratch / "docs", nodes)
            cluster = labels[np.searchsorted(nodes, members.column("doc").to_numpy())]
            chosen = choose_survivors(members.append_column("cluster", pa.array(cluster)))
            for doc, survivor, is_survivor in zip(
                chosen.column("doc").to_pylist(),
                chosen.column("survivor").to_pylist(),
                chosen.column("is_survivor").to_pylist(),
                strict=True,
            ):
                payloads[doc >> ROW_BITS][doc & ((1 << ROW_BITS) - 1)] = (survivor, is_survivor)
        lap("clusters")
        # For benchmarks and logs; not a parameter. Pairs are (shard << 32 | row) of the task order.
        self.report = {"seconds": seconds, "candidate_pairs": candidates, "pairs": pairs}
        log.info(
            "stage %s: %d documents (%d without %d-grams), %d candidate pairs, %d duplicate pairs, "
            "%d documents in %d clusters",
            self.name,
            sum(c["documents"] for c in counts),
            sum(c["without_shingles"] for c in counts),
            self.ngram,
            candidates,
            len(pairs),
            len(nodes),
            len(np.unique(labels)),
        )
        return [Task(t.name, t.inputs, p) for t, p in zip(tasks, payloads, strict=True)]

    def apply(self, table: pa.Table, task: Task) -> tuple[pa.Table, pa.Table]:
        clustered: dict[int, tuple[str, bool]] = task.payload or {}
        ids = table.column("id").to_pylist()
        survivors = [clustered.get(row, (doc_id, True)) for row, doc_id in enumerate(ids)]
        # An earlier exact dedup's hash-named clusters are replaced: near clusters contain them.
        table = table.drop_columns([c for c in ("dup_cluster",) if c in table.column_names])
        table = table.append_column("dup_cluster", pa.array([s for s, _ in survivors], pa.string()))
        keep = [is_survivor for _, is_survivor in survivors]
        reasons = [None if k else "near_duplicate" for k in keep]
        details = [None if k else f"near-duplicate of {s}" for s, k in survivors]
        return split_by_mask(table, keep, self.name, reasons, details)
