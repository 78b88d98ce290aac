"""A near-duplicate index: the band keys and signatures of an already deduplicated corpus, on disk; the
near_dedup phases that query it (before candidates) and extend it (after clusters).

Layout of an index directory (one writer at a time):
  index.json                       MinHash parameters and the committed generations, in order
  gens/<gen>/bands/<band>/<shard>.parquet   (key uint64, row uint32), sorted by key
  gens/<gen>/docs/<shard>.parquet           (id, sig: num_perm x uint32): row r of the band files is row r
  pending/<out>/                   a generation written by a run that has not finished yet

A generation holds the survivors of one stage output directory (`out`); running that stage again replaces
it, so adding the same output twice never duplicates it. Signatures are stored as the low 32 bits of each
permutation's minimum (num_perm x 4 bytes a document): enough to estimate Jaccard similarity (the share of
equal values) without the shingle sets, which would take about 8 bytes per word.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.dedup.lsh import (
    BAND_ROW_GROUP,
    ROW_BITS,
    MinHashSettings,
    band_files,
    band_folder,
    read_band,
    read_docs,
    shard_file,
)
from curate.errors import ConfigError, MissingInput
from curate.io import read_json, sha256_file, write_json, write_parquet
from curate.stage import short_hash
from curate.storage import is_uri

INDEX_FILE = "index.json"
INDEX_VERSION = 1


def index_params(stage: Any) -> dict[str, Any]:
    """The parameters that must match between an index and a stage that queries or extends it."""
    return {
        "num_perm": stage.num_perm,
        "ngram": stage.ngram,
        "seed": stage.seed,
        "bands": stage.bands,
        "rows": stage.rows,
        "within_source": stage.within_source,
    }


def out_name(out_dir: Any) -> str:
    """An output directory's full name: a resolved local path, or a storage URI as it is."""
    return str(out_dir) if is_uri(out_dir) else str(Path(out_dir).resolve())


def out_key(out_dir: Any) -> str:
    """The name under which a stage output directory's survivors live in an index."""
    return short_hash(out_name(out_dir))


def read_index(root: Path, stage: Any | None = None) -> dict[str, Any]:
    """index.json of an index directory, checked against a stage's parameters when given."""
    path = Path(root) / INDEX_FILE
    if not path.exists():
        raise MissingInput(f"{root} is not a near-duplicate index (no {INDEX_FILE})")
    index = read_json(path)
    if stage is not None and index["params"] != index_params(stage):
        raise ConfigError(
            f"index {root} was built with {index['params']}, but this run uses {index_params(stage)}; "
            "query it with the same threshold, permutations, n-gram, seed and within_source"
        )
    return index


def index_files(root: Path, index: dict[str, Any], skip_out: str | None = None) -> list[tuple[str, int]]:
    """Every shard of the committed generations as (generation folder, shard), in file-number order."""
    files = []
    for gen in index["generations"]:
        if gen["out_key"] != skip_out:
            files += [(str(Path(root) / "gens" / gen["folder"]), shard) for shard in range(gen["shards"])]
    return files


def pending_dir(root: Path, out_dir: Any) -> Path:
    """Where a run into out_dir writes its survivors before it has finished."""
    return Path(root) / "pending" / out_key(out_dir)


def commit(root: Path, out_dir: Any, stage: Any) -> bool:
    """Make out_dir's pending survivors a generation of the index (replacing its earlier one); idempotent."""
    root = Path(root)
    pending = pending_dir(root, out_dir)
    if not pending.exists():
        return False  # committed by an earlier finish of this run, or never prepared here
    key = out_key(out_dir)
    index = (
        read_index(root, stage)
        if (root / INDEX_FILE).exists()
        else {"version": INDEX_VERSION, "params": index_params(stage), "generations": []}
    )
    info = read_json(pending / "generation.json")
    # Named by content: a rerun that finds the same survivors keeps the live folder and drops its copy.
    folder = f"{key}-{info['digest']}"
    target = root / "gens" / folder
    if any(g["folder"] == folder for g in index["generations"]) and target.exists():
        shutil.rmtree(pending)
        return False
    if target.exists():
        shutil.rmtree(target)  # not live: left by a run killed before it wrote index.json
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(pending, target)
    entry = {"out_key": key, "out": out_name(out_dir), "folder": folder, **info}
    generations = [g for g in index["generations"] if g["out_key"] != key]
    position = next((i for i, g in enumerate(index["generations"]) if g["out_key"] == key), len(generations))
    generations.insert(position, entry)
    index["generations"] = generations
    # index.json names the live folders: a kill before this write leaves the old generation in force.
    write_json(index, root / INDEX_FILE)
    live = {g["folder"] for g in generations}
    for child in (root / "gens").iterdir():
        if child.name not in live:
            shutil.rmtree(child, ignore_errors=True)
    return True


def write_pending_info(pending: Path, shards: int, documents: int, digests: list[str]) -> None:
    """Record what a pending generation holds (written after its shard files), with a digest of it."""
    digest = short_hash(*digests)  # of every shard's docs file: ids and signatures of the survivors
    write_json({"shards": shards, "documents": documents, "digest": digest}, pending / "generation.json")


def estimate_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise share of equal signature values of two (pairs x num_perm) arrays: MinHash's estimate."""
    return (a == b).mean(axis=1)


# ---------------------------------------------------------------------------------------------- query


def indexed_documents(root: str, out_dir: Any, settings: MinHashSettings) -> int:
    """Documents of an index that a run into out_dir compares with (its own earlier survivors are not)."""
    listing = read_index(Path(root), settings)
    return sum(g["documents"] for g in listing["generations"] if g["out_key"] != out_key(out_dir))


def _indexed(root: str, skip_out: str) -> list[tuple[str, int]]:
    """The index's shards (generation folder, shard) in file-number order, leaving out one output's."""
    return index_files(Path(root), read_index(Path(root)), skip_out=skip_out)


def _signatures(table: pa.Table) -> np.ndarray:
    """The sig column of a table as a (rows x num_perm) uint32 array."""
    column = table.column("sig").combine_chunks()
    return column.flatten().to_numpy().reshape(len(column), -1)


def index_band_task(
    scratch: str, band: int, shards: int, index: tuple[str, str], lo: int, hi: int
) -> np.ndarray:
    """(new document, indexed document) pairs whose keys in [lo, hi) of one band are equal: a hash join."""
    new_keys, new_docs = read_band(band_files(scratch, band, shards), lo, hi)
    if not len(new_keys):
        return np.zeros((0, 2), np.int64)
    files = [
        (str(shard_file(band_folder(Path(folder), band), shard)), number)
        for number, (folder, shard) in enumerate(_indexed(*index))
    ]
    index_keys, index_docs = read_band(files, lo, hi)
    joined = pa.table({"key": new_keys, "doc": new_docs}).join(
        pa.table({"key": index_keys, "indexed": index_docs}), "key", join_type="inner"
    )
    return np.stack([joined.column("doc").to_numpy(), joined.column("indexed").to_numpy()], axis=1)


def index_verify_task(pairs: np.ndarray, scratch: str, index: tuple[str, str]) -> pa.Table:
    """Estimated Jaccard (from signatures) and the indexed id of each (new, indexed) pair."""
    indexed = _indexed(*index)
    new_docs = np.unique(pairs[:, 0])
    new = read_docs(Path(scratch) / "docs", new_docs, columns=["doc", "sig"])
    new_sigs = _signatures(new)[np.searchsorted(new.column("doc").to_numpy(), pairs[:, 0])]
    index_docs = np.unique(pairs[:, 1])
    parts = []
    for number in np.unique(index_docs >> ROW_BITS):
        folder, shard = indexed[int(number)]
        rows = index_docs[(index_docs >> ROW_BITS) == number] & ((1 << ROW_BITS) - 1)
        table = pq.read_table(shard_file(Path(folder) / "docs", shard), columns=["id", "sig"])
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


def query(
    settings: MinHashSettings,
    shards: int,
    ranges: list[tuple[int, int]],
    index: tuple[str, str],
    map_fn: Any,
    scratch: Path,
    chunk: int,
) -> pa.Table:
    """Phase 2: new documents (doc) that duplicate an indexed one (indexed_id): one task per band and key
    range joins the new keys with the index's, then chunks of pairs are scored from signatures."""
    args = [(str(scratch), b, shards, index, lo, hi) for b in range(settings.bands) for lo, hi in ranges]
    found = map_fn(index_band_task, args)
    pairs = np.unique(np.concatenate(found), axis=0)
    matches = pa.table({"doc": pa.array([], pa.int64()), "indexed_id": pa.array([], pa.string())})
    if len(pairs):
        chunks = [(pairs[i : i + chunk], str(scratch), index) for i in range(0, len(pairs), chunk)]
        scored = pa.concat_tables(map_fn(index_verify_task, chunks))
        if settings.verify:
            scored = scored.filter(pc.greater_equal(scored.column("similarity"), settings.threshold))
        matches = best_indexed(scored).select(["doc", "indexed_id"])
    return matches


# ---------------------------------------------------------------------------------------------- extend


def index_write_task(
    settings: MinHashSettings, shard: int, removed: np.ndarray, scratch: str, pending: str
) -> tuple[int, str]:
    """One shard's survivors (with shingles) into a pending index generation: how many, and a digest."""
    docs = pq.read_table(shard_file(Path(scratch) / "docs", shard), columns=["id", "sig", "comparable"])
    keep = np.array(docs.column("comparable").to_numpy(), bool)
    keep[removed] = False
    renumber = (np.cumsum(keep) - 1).astype(np.uint32)  # row in the shard -> row among the survivors
    docs_file = shard_file(Path(pending) / "docs", shard)
    write_parquet(docs.select(["id", "sig"]).filter(pa.array(keep)), docs_file)
    for band in range(settings.bands):
        table = pq.read_table(shard_file(band_folder(Path(scratch), band), shard))
        rows = table.column("row").to_numpy()
        mask = keep[rows]
        part = pa.table({"key": table.column("key").to_numpy()[mask], "row": renumber[rows[mask]]})
        write_parquet(
            part, shard_file(band_folder(Path(pending), band), shard), row_group_size=BAND_ROW_GROUP
        )
    return int(keep.sum()), sha256_file(docs_file)


def extend(
    settings: MinHashSettings,
    root: str,
    out_dir: Any,
    removed: list[np.ndarray],
    map_fn: Any,
    scratch: Path,
) -> None:
    """Phase 6: every shard's survivors (all but `removed` rows) into a pending generation of the index at
    root, made part of it by `commit` when every removal task has finished."""
    pending = pending_dir(Path(root), out_dir)
    shutil.rmtree(pending, ignore_errors=True)
    kept = map_fn(
        index_write_task,
        [(settings, n, removed[n], str(scratch), str(pending)) for n in range(len(removed))],
    )
    write_pending_info(pending, len(removed), sum(k for k, _ in kept), [d for _, d in kept])
