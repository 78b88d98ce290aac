"""Near-duplicate removal with MinHash LSH, as a global pre-pass of parallel tasks and per-shard removal.

The pre-pass (`prepare`), every step a set of parallel tasks that write to a scratch directory:
  1. signatures, one task per shard: MinHash of word n-grams; each band's keys go, sorted, to
     `bands/<band>/<shard>.parquet` (key, row) and the survivor keys to `docs/<shard>.parquet` (with the
     signatures' low 32 bits when an index is queried or extended);
  2. against an index (optional): one task per band and key range joins the new keys with the index's;
     a new document whose estimated Jaccard with an indexed one reaches the threshold is removed, citing it;
  3. candidates, one task per band and key range: sort the keys, and every run of equal keys links its
     documents to the run's first (a star, so pairs grow linearly with bucket size);
  4. verification (optional, on by default), shingle sets recomputed for candidate documents only
     (one task per shard), then exact Jaccard of candidate pairs in chunks;
  5. clusters: connected components of the verified pairs; the survivor of each cluster has the best source
     priority, then the longest text, then the smallest id;
  6. extending an index (optional): one task per shard writes its survivors' band keys and signatures to a
     pending generation, made part of the index when every removal task has finished (`finish`).
The driver holds only pairs and the keys of documents in clusters, never signatures or band keys. Then each
shard's task removes its non-survivors: `drop_reason=near_duplicate`, detail naming the survivor; every row's
`dup_cluster` is the id of its cluster's survivor (its own id when it has no near-duplicate).
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from curate.dedup.index import (
    commit,
    estimate_jaccard,
    index_files,
    out_key,
    pending_dir,
    read_index,
    write_pending_info,
)
from curate.dedup.signatures import band_keys, fmix64, jaccard, shingle_sets, text_signatures
from curate.io import sha256_file, write_parquet
from curate.schema import split_by_mask
from curate.sources.registry import DEFAULT_PRIORITY
from curate.stage import TableStage, Task, read_records

log = logging.getLogger("curate")

SIGNATURE_BATCH = 2000  # documents per vectorised batch: bounds a worker's memory, not its speed
VERIFY_CHUNK = 10_000  # candidate pairs per verification task: bounds its memory (shingles of <= 2x docs)
ROW_BITS = 32  # a document is (shard << 32) | row: unique, ordered, and decodable without a lookup
ROW_MASK = (1 << ROW_BITS) - 1
PARTITION_DOCS = 2_000_000  # band keys per candidates task: bounds its memory (16 bytes a key, a few copies)
BAND_ROW_GROUP = 65_536  # band files are sorted by key in row groups, so a key range reads only its groups


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


def cluster_labels(pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The documents in pairs (sorted) and a cluster label each: connected components of the pair graph."""
    from scipy.sparse import coo_matrix  # here: scipy's import costs every curate command a third of a second
    from scipy.sparse.csgraph import connected_components

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


def key_ranges(parts: int) -> list[tuple[int, int]]:
    """The 64-bit key space cut into `parts` equal ranges [lo, hi): one candidates task each per band."""
    bounds = [(i << 64) // parts for i in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


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


def _signature_task(stage: MinHashDedup, path: str, shard: int, scratch: str) -> dict[str, int]:
    """Signatures of one shard: band keys to bands/<band>/, survivor keys (and signatures) to docs/."""
    table = read_records(path, columns=["id", "text", "source"])
    texts = [t or "" for t in table.column("text").to_pylist()]
    keys, comparable, low = [], [], []
    for start in range(0, len(texts), SIGNATURE_BATCH):
        signatures, shingles = text_signatures(
            texts[start : start + SIGNATURE_BATCH], stage.ngram, stage.num_perm, stage.seed
        )
        keys.append(band_keys(signatures, stage.bands, stage.rows))
        comparable.append(shingles > 0)
        if stage.keeps_signatures:
            low.append(signatures.astype(np.uint32))  # the low 32 bits: enough to estimate Jaccard
    keys = np.concatenate(keys) if keys else np.zeros((0, stage.bands), np.uint64)
    comparable = np.concatenate(comparable) if comparable else np.zeros(0, bool)
    if stage.within_source:
        keys ^= _source_keys(table.column("source").to_pylist())[:, None]
    root = Path(scratch)
    rows = np.flatnonzero(comparable).astype(np.uint32)
    for band in range(stage.bands):
        order = np.argsort(keys[rows, band], kind="stable")
        part = pa.table({"key": keys[rows[order], band], "row": rows[order]})
        write_parquet(part, _shard_file(root / "bands" / f"{band:03d}", shard), row_group_size=BAND_ROW_GROUP)
    priority = [stage.priority.get(s, DEFAULT_PRIORITY) for s in table.column("source").to_pylist()]
    columns = {
        "doc": (np.int64(shard) << ROW_BITS) + np.arange(len(texts), dtype=np.int64),
        "id": table.column("id"),
        "priority": pa.array(priority, pa.int32()),
        "length": pc.utf8_length(pc.fill_null(table.column("text"), "")).cast(pa.int64()),
        "comparable": pa.array(comparable),
    }
    if stage.keeps_signatures:
        flat = pa.array(np.concatenate(low).ravel() if low else np.zeros(0, np.uint32))
        columns["sig"] = pa.FixedSizeListArray.from_arrays(flat, stage.num_perm)
    write_parquet(pa.table(columns), _shard_file(root / "docs", shard), row_group_size=8192)
    return {"documents": len(texts), "without_shingles": int((~comparable).sum())}


def _band_files(scratch: str, band: int, shards: int) -> list[tuple[str, int]]:
    return [(str(_shard_file(Path(scratch) / "bands" / f"{band:03d}", s)), s) for s in range(shards)]


def _band_task(scratch: str, band: int, shards: int, lo: int, hi: int, excluded: np.ndarray) -> np.ndarray:
    """Candidate pairs among the keys in [lo, hi) of one band, leaving out excluded documents."""
    keys, docs = read_band(_band_files(scratch, band, shards), lo, hi)
    if len(excluded):
        keep = ~np.isin(docs, excluded)
        keys, docs = keys[keep], docs[keep]
    return bucket_pairs(keys, docs)


def _index_band_task(
    scratch: str, band: int, shards: int, index: tuple[str, str], lo: int, hi: int
) -> np.ndarray:
    """(new document, indexed document) pairs whose keys in [lo, hi) of one band are equal: a hash join."""
    new_keys, new_docs = read_band(_band_files(scratch, band, shards), lo, hi)
    if not len(new_keys):
        return np.zeros((0, 2), np.int64)
    files = [
        (str(_shard_file(Path(folder) / "bands" / f"{band:03d}", shard)), number)
        for number, (folder, shard) in enumerate(_indexed(*index))
    ]
    index_keys, index_docs = read_band(files, lo, hi)
    joined = pa.table({"key": new_keys, "doc": new_docs}).join(
        pa.table({"key": index_keys, "indexed": index_docs}), "key", join_type="inner"
    )
    return np.stack([joined.column("doc").to_numpy(), joined.column("indexed").to_numpy()], axis=1)


def _indexed(root: str, skip_out: str) -> list[tuple[str, int]]:
    """The index's shards (generation folder, shard) in file-number order, leaving out one output's."""
    return index_files(Path(root), read_index(Path(root)), skip_out=skip_out)


def _signatures(table: pa.Table) -> np.ndarray:
    """The sig column of a table as a (rows x num_perm) uint32 array."""
    column = table.column("sig").combine_chunks()
    return column.flatten().to_numpy().reshape(len(column), -1)


def _index_verify_task(pairs: np.ndarray, scratch: str, index: tuple[str, str]) -> pa.Table:
    """Estimated Jaccard (from signatures) and the indexed id of each (new, indexed) pair."""
    indexed = _indexed(*index)
    new_docs = np.unique(pairs[:, 0])
    new = _read_docs(Path(scratch) / "docs", new_docs, columns=["doc", "sig"])
    new_sigs = _signatures(new)[np.searchsorted(new.column("doc").to_numpy(), pairs[:, 0])]
    index_docs = np.unique(pairs[:, 1])
    parts = []
    for number in np.unique(index_docs >> ROW_BITS):
        folder, shard = indexed[int(number)]
        rows = index_docs[(index_docs >> ROW_BITS) == number] & ((1 << ROW_BITS) - 1)
        table = pq.read_table(_shard_file(Path(folder) / "docs", shard), columns=["id", "sig"])
        parts.append(table.take(pa.array(rows)))
    found = pa.concat_tables(parts)
    position = np.searchsorted(index_docs, pairs[:, 1])
    similarity = estimate_jaccard(new_sigs, _signatures(found)[position])
    return pa.table(
        {
            "doc": pairs[:, 0],
            "similarity": similarity,
            "indexed_id": found.column("id").take(pa.array(position)),
        }
    )


def best_indexed(matches: pa.Table) -> pa.Table:
    """For each new document, its most similar indexed document (ties: the smallest id)."""
    order = [("doc", "ascending"), ("similarity", "descending"), ("indexed_id", "ascending")]
    ordered = matches.take(pc.sort_indices(matches, sort_keys=order))
    doc = ordered.column("doc").to_numpy()
    first = np.concatenate([[True], doc[1:] != doc[:-1]]) if len(doc) else np.zeros(0, bool)
    return ordered.filter(pa.array(first))


def _shingle_task(stage: MinHashDedup, path: str, shard: int, rows: np.ndarray, scratch: str) -> int:
    """Shingle sets of one shard's candidate documents, to shingles/<shard>.parquet."""
    texts = read_records(path, columns=["text"]).column("text").take(pa.array(rows)).to_pylist()
    sets = shingle_sets([t or "" for t in texts], stage.ngram)
    docs = (np.int64(shard) << ROW_BITS) + rows.astype(np.int64)
    table = pa.table({"doc": docs, "shingles": pa.array(sets, pa.list_(pa.uint64()))})
    write_parquet(table, _shard_file(Path(scratch) / "shingles", shard), row_group_size=1024)
    return len(rows)


def _read_docs(folder: Path, docs: np.ndarray, columns: list[str] | None = None) -> pa.Table:
    """Rows of per-shard files under folder for the given sorted documents (only their shards are read)."""
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


def _index_write_task(
    stage: MinHashDedup, shard: int, removed: np.ndarray, scratch: str, pending: str
) -> tuple[int, str]:
    """One shard's survivors (with shingles) into a pending index generation: how many, and a digest."""
    docs = pq.read_table(_shard_file(Path(scratch) / "docs", shard), columns=["id", "sig", "comparable"])
    keep = np.array(docs.column("comparable").to_numpy(), bool)
    keep[removed] = False
    renumber = (np.cumsum(keep) - 1).astype(np.uint32)  # row in the shard -> row among the survivors
    docs_file = _shard_file(Path(pending) / "docs", shard)
    write_parquet(docs.select(["id", "sig"]).filter(pa.array(keep)), docs_file)
    for band in range(stage.bands):
        table = pq.read_table(_shard_file(Path(scratch) / "bands" / f"{band:03d}", shard))
        rows = table.column("row").to_numpy()
        mask = keep[rows]
        part = pa.table({"key": table.column("key").to_numpy()[mask], "row": renumber[rows[mask]]})
        write_parquet(
            part, _shard_file(Path(pending) / "bands" / f"{band:03d}", shard), row_group_size=BAND_ROW_GROUP
        )
    return int(keep.sum()), sha256_file(docs_file)


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
    against: str = ""  # an index directory: documents that duplicate an indexed one are removed first
    write_index: str = ""  # an index directory that this run's survivors are added to (created if absent)
    priority: dict[str, int] = field(default_factory=dict)  # source -> rank, from sources.yaml

    def __post_init__(self) -> None:
        if not self.bands or not self.rows:
            self.bands, self.rows = lsh_bands(self.threshold, self.num_perm, self.verify)
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows ({self.bands} x {self.rows}) exceed num_perm ({self.num_perm})")
        # Workers may start in another directory: index paths are made absolute here, in the driver.
        self.against = str(Path(self.against).resolve()) if self.against else ""
        self.write_index = str(Path(self.write_index).resolve()) if self.write_index else ""

    @property
    def keeps_signatures(self) -> bool:
        """Whether signatures are written to scratch (to compare with or to extend an index)."""
        return bool(self.against or self.write_index)

    def prepare(self, tasks: list[Task], map_fn, scratch: Path, out: Any = None) -> list[Task]:
        paths = [t.inputs[0] for t in tasks]
        out_dir = out if out is not None else scratch.parent  # the index names survivors by output folder
        clock = [(time.perf_counter(), time.process_time())]
        seconds: dict[str, float] = {}
        cpu_seconds: dict[str, float] = {}  # of this process: all the work with an in-process executor

        def lap(step: str) -> None:
            clock.append((time.perf_counter(), time.process_time()))
            seconds[step] = round(clock[-1][0] - clock[-2][0], 3)
            cpu_seconds[step] = round(clock[-1][1] - clock[-2][1], 3)

        indexed_docs = 0
        index = (self.against, out_key(out_dir))  # this output's own earlier survivors are not its duplicates
        if self.against:
            listing = read_index(Path(self.against), self)
            indexed_docs = sum(g["documents"] for g in listing["generations"] if g["out_key"] != index[1])
        counts = map_fn(_signature_task, [(self, p, n, str(scratch)) for n, p in enumerate(paths)])
        documents = sum(c["documents"] for c in counts)
        lap("signatures")
        ranges = key_ranges(max(1, -(-(documents + indexed_docs) // PARTITION_DOCS)))
        payloads: list[dict[int, tuple[str, bool, str]]] = [{} for _ in tasks]

        matches = pa.table({"doc": pa.array([], pa.int64()), "indexed_id": pa.array([], pa.string())})
        if indexed_docs and tasks:
            args = [
                (str(scratch), b, len(tasks), index, lo, hi) for b in range(self.bands) for lo, hi in ranges
            ]
            found = map_fn(_index_band_task, args)
            pairs = np.unique(np.concatenate(found), axis=0)
            if len(pairs):
                chunks = [
                    (pairs[i : i + VERIFY_CHUNK], str(scratch), index)
                    for i in range(0, len(pairs), VERIFY_CHUNK)
                ]
                scored = pa.concat_tables(map_fn(_index_verify_task, chunks))
                if self.verify:
                    scored = scored.filter(pc.greater_equal(scored.column("similarity"), self.threshold))
                matches = best_indexed(scored).select(["doc", "indexed_id"])
            for doc, indexed_id in zip(
                matches.column("doc").to_pylist(), matches.column("indexed_id").to_pylist(), strict=True
            ):
                payloads[doc >> ROW_BITS][doc & ROW_MASK] = (
                    indexed_id,
                    False,
                    f"near-duplicate of {indexed_id} (indexed)",
                )
        excluded = matches.column("doc").to_numpy()
        lap("index")

        args = [
            (str(scratch), b, len(tasks), lo, hi, excluded) for b in range(self.bands) for lo, hi in ranges
        ]
        found = map_fn(_band_task, args) if tasks else []
        pairs = np.unique(np.concatenate(found), axis=0) if found else np.zeros((0, 2), np.int64)
        candidates = len(pairs)
        lap("candidates")
        if self.verify and len(pairs):
            needed = np.unique(pairs)
            shards = needed >> ROW_BITS
            args = [
                (self, paths[s], int(s), needed[shards == s] & ROW_MASK, str(scratch))
                for s in np.unique(shards)
            ]
            map_fn(_shingle_task, args)
            chunks = [(pairs[i : i + VERIFY_CHUNK], str(scratch)) for i in range(0, len(pairs), VERIFY_CHUNK)]
            similarity = np.concatenate(map_fn(_verify_task, chunks))
            pairs = pairs[similarity >= self.threshold]
        lap("verify")
        nodes, labels = cluster_labels(pairs)
        if len(nodes):
            members = _read_docs(scratch / "docs", nodes, columns=["doc", "id", "priority", "length"])
            cluster = labels[np.searchsorted(nodes, members.column("doc").to_numpy())]
            chosen = choose_survivors(members.append_column("cluster", pa.array(cluster)))
            for doc, survivor, is_survivor in zip(
                chosen.column("doc").to_pylist(),
                chosen.column("survivor").to_pylist(),
                chosen.column("is_survivor").to_pylist(),
                strict=True,
            ):
                payloads[doc >> ROW_BITS][doc & ROW_MASK] = (
                    survivor,
                    is_survivor,
                    f"near-duplicate of {survivor}",
                )
        lap("clusters")
        if self.write_index:
            pending = pending_dir(Path(self.write_index), out_dir)
            shutil.rmtree(pending, ignore_errors=True)
            removed = [
                np.array(sorted(r for r, p in payload.items() if not p[1]), np.int64) for payload in payloads
            ]
            kept = map_fn(
                _index_write_task,
                [(self, n, removed[n], str(scratch), str(pending)) for n in range(len(tasks))],
            )
            write_pending_info(pending, len(tasks), sum(k for k, _ in kept), [d for _, d in kept])
            lap("index_write")
        # For benchmarks and logs; not a parameter. Pairs are (shard << 32 | row) of the task order.
        self.report = {
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "candidate_pairs": candidates,
            "pairs": pairs,
            "indexed_matches": len(excluded),
        }
        log.info(
            "stage %s: %d documents (%d without %d-grams), %d duplicates of indexed documents, "
            "%d candidate pairs, %d duplicate pairs, %d documents in %d clusters",
            self.name,
            documents,
            sum(c["without_shingles"] for c in counts),
            self.ngram,
            len(excluded),
            candidates,
            len(pairs),
            len(nodes),
            len(np.unique(labels)),
        )
        return [Task(t.name, t.inputs, p) for t, p in zip(tasks, payloads, strict=True)]

    def apply(self, table: pa.Table, task: Task) -> tuple[pa.Table, pa.Table]:
        clustered: dict[int, tuple[str, bool, str]] = task.payload or {}
        ids = table.column("id").to_pylist()
        found = [clustered.get(row, (doc_id, True, "")) for row, doc_id in enumerate(ids)]
        # An earlier exact dedup's hash-named clusters are replaced: near clusters contain them.
        table = table.drop_columns([c for c in ("dup_cluster",) if c in table.column_names])
        table = table.append_column("dup_cluster", pa.array([f[0] for f in found], pa.string()))
        keep = [f[1] for f in found]
        reasons = [None if k else "near_duplicate" for k in keep]
        details = [None if f[1] else f[2] for f in found]
        return split_by_mask(table, keep, self.name, reasons, details)

    def finish(self, out_dir: Path, manifest: dict) -> None:
        if not self.write_index:
            return
        if manifest["status"] != "complete":
            log.warning("stage %s: not adding to index %s: some tasks failed", self.name, self.write_index)
            return
        if commit(Path(self.write_index), out_dir, self):
            log.info("stage %s: survivors added to index %s", self.name, self.write_index)
