"""Exact deduplication on normalised text, across sources, with a deterministic survivor per cluster.

Two passes: every shard's (position, id, text hash, rank) keys are gathered and each hash's survivor
chosen; then each shard drops the rows that are not survivors. Only the small key tables travel, not text.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from curate.dedup.survivors import choose_survivors as rank_clusters
from curate.dedup.survivors import priorities, source_priorities
from curate.schema import split_verdicts
from curate.stage import DERIVED, Input, TableStage, Task, read_records

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalize_text(text: str) -> str:
    """Unicode NFKC, case-folded, punctuation and whitespace collapsed: what 'the same text' means here."""
    return _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def text_hash(text: str) -> str:
    """64-bit hash of the normalised text, as 16 hex characters (the exact-duplicate cluster key)."""
    return hashlib.blake2b(normalize_text(text).encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def duplicate_keys(table: pa.Table, priority: dict[str, int], shard: int = 0) -> pa.Table:
    """The columns that decide survivors: position (shard, row), id, hash, source priority, length."""
    texts = table.column("text").to_pylist()
    sources = table.column("source").to_pylist()
    return pa.table(
        {
            "shard": pa.array([shard] * table.num_rows, pa.int32()),
            "row": pa.array(range(table.num_rows), pa.int64()),
            "id": table.column("id"),
            "hash": pa.array([text_hash(t) for t in texts], pa.string()),
            "priority": priorities(sources, priority),
            "length": pc.utf8_length(table.column("text")).cast(pa.int64()),
        }
    )


def choose_survivors(keys: pa.Table) -> dict[tuple[int, int], str]:
    """(shard, row) -> survivor id for every row that is not its cluster's survivor (curate.dedup.survivors:
    the rule of near dedup too; a cluster is the rows of one text hash)."""
    if keys.num_rows == 0:
        return {}
    ranked = rank_clusters(keys, cluster="hash", position=("shard", "row"))
    return {
        (shard, row): survivor
        for shard, row, survivor, first in zip(
            ranked.column("shard").to_pylist(),
            ranked.column("row").to_pylist(),
            ranked.column("survivor").to_pylist(),
            ranked.column("is_survivor").to_pylist(),
            strict=True,
        )
        if not first
    }


def _shard_keys(path: str, priority: dict[str, int], shard: int) -> pa.Table:
    return duplicate_keys(read_records(path, columns=["id", "text", "source"]), priority, shard)


@dataclass
class ExactDedup(TableStage):
    """Remove documents whose normalised text equals another's; every row gets its dup_cluster."""

    step: ClassVar[str] = "dedup"
    priority: dict[str, int] = field(default_factory=dict, metadata=DERIVED)  # source -> rank, sources.yaml

    def bind(self, catalog: Mapping[str, Any], inputs: list[Input]) -> None:
        """Source priorities from sources.yaml, unless given."""
        if not self.priority:
            self.priority = source_priorities(catalog)

    def prepare(self, tasks: list[Task], map_fn, scratch: Path, out: Any = None) -> list[Task]:
        keys = map_fn(_shard_keys, [(t.inputs[0], self.priority, n) for n, t in enumerate(tasks)])
        dropped = choose_survivors(pa.concat_tables(keys)) if keys else {}
        by_shard: list[dict[int, str]] = [{} for _ in tasks]
        for (shard, row), survivor in dropped.items():
            by_shard[shard][row] = survivor
        return [Task(t.name, t.inputs, rows) for t, rows in zip(tasks, by_shard, strict=True)]

    def apply(self, table: pa.Table, task: Task) -> tuple[pa.Table, pa.Table]:
        dropped: dict[int, str] = task.payload or {}
        table = table.append_column(
            "dup_cluster", pa.array([text_hash(t) for t in table.column("text").to_pylist()], pa.string())
        )
        verdicts = [
            (False, "exact_duplicate", f"duplicate of {dropped[row]}") if row in dropped else True
            for row in range(table.num_rows)
        ]
        return split_verdicts(table, verdicts, self.name)
