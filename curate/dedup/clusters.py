"""Near dedup after the candidates: exact Jaccard of candidate pairs, connected components, survivors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.dedup.lsh import ROW_BITS, ROW_MASK, MinHashSettings, read_docs, shard_file
from curate.dedup.minhash import jaccard, shingle_sets
from curate.dedup.survivors import choose_survivors
from curate.io import write_parquet
from curate.stage import read_records

VERIFY_CHUNK = 10_000  # candidate pairs per verification task: bounds its memory (shingles of <= 2x docs)


def shingle_task(settings: MinHashSettings, path: str, shard: int, rows: np.ndarray, scratch: str) -> int:
    """Shingle sets of one shard's candidate documents, to shingles/<shard>.parquet."""
    texts = read_records(path, columns=["text"]).column("text").take(pa.array(rows)).to_pylist()
    sets = shingle_sets([t or "" for t in texts], settings.ngram)
    docs = (np.int64(shard) << ROW_BITS) + rows.astype(np.int64)
    table = pa.table({"doc": docs, "shingles": pa.array(sets, pa.list_(pa.uint64()))})
    write_parquet(table, shard_file(Path(scratch) / "shingles", shard), row_group_size=1024)
    return len(rows)


def verify_task(pairs: np.ndarray, scratch: str) -> np.ndarray:
    """Exact Jaccard of each candidate pair, from the recomputed shingle sets."""
    table = read_docs(Path(scratch) / "shingles", np.unique(pairs))
    lists = table.column("shingles").combine_chunks()
    offsets = lists.offsets.to_numpy() - lists.offsets[0].as_py()  # list_flatten starts at the first list
    values = pc.list_flatten(lists).to_numpy()
    where = {doc: i for i, doc in enumerate(table.column("doc").to_pylist())}
    sets = [values[offsets[i] : offsets[i + 1]] for i in range(table.num_rows)]
    return np.array([jaccard(sets[where[a]], sets[where[b]]) for a, b in pairs.tolist()], np.float64)


def verify(
    settings: MinHashSettings, paths: list[str], pairs: np.ndarray, map_fn: Any, scratch: Path
) -> np.ndarray:
    """Phase 4: the candidate pairs whose exact Jaccard reaches the threshold. Shingle sets are recomputed
    for candidate documents only (one task per shard), then pairs are scored in chunks."""
    if not len(pairs):
        return pairs
    needed = np.unique(pairs)
    shards = needed >> ROW_BITS
    args = [
        (settings, paths[s], int(s), needed[shards == s] & ROW_MASK, str(scratch)) for s in np.unique(shards)
    ]
    map_fn(shingle_task, args)
    chunks = [(pairs[i : i + VERIFY_CHUNK], str(scratch)) for i in range(0, len(pairs), VERIFY_CHUNK)]
    similarity = np.concatenate(map_fn(verify_task, chunks))
    return pairs[similarity >= settings.threshold]


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


def survivors(nodes: np.ndarray, labels: np.ndarray, scratch: Path) -> pa.Table:
    """Phase 5: each clustered document (doc) with its survivor's id and whether it is the survivor
    (curate.dedup.survivors: source priority, then length, then id)."""
    members = read_docs(scratch / "docs", nodes, columns=["doc", "id", "priority", "length"])
    cluster = labels[np.searchsorted(nodes, members.column("doc").to_numpy())]
    return choose_survivors(members.append_column("cluster", pa.array(cluster)), "cluster", ("doc",))
