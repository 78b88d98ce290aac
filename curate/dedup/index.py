"""A near-duplicate index: the band keys and signatures of an already deduplicated corpus, on disk.

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

from curate.io import read_json, write_json
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
        raise FileNotFoundError(f"{root} is not a near-duplicate index (no {INDEX_FILE})")
    index = read_json(path)
    if stage is not None and index["params"] != index_params(stage):
        raise ValueError(
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
