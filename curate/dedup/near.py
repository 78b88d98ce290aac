"""Near-duplicate removal with MinHash LSH: a global pass of parallel phases, then per-shard removal.

The global pass (`prepare`), every phase a set of parallel tasks that write to a scratch folder:
  1. signatures (curate.dedup.lsh), one task per shard: MinHash of word n-grams; each band's keys go,
     sorted, to the scratch folder, and each document's survivor keys (and signature, for an index);
  2. against an index (curate.dedup.index, optional): a new document whose estimated Jaccard with an
     indexed one reaches the threshold is removed, citing it;
  3. candidates (curate.dedup.lsh), one task per band and key range: documents sharing a bucket;
  4. verification (curate.dedup.clusters, on by default): exact Jaccard of candidate pairs;
  5. clusters (curate.dedup.clusters): connected components of the verified pairs; one survivor each by
     curate.dedup.survivors' rule (source priority, then the longest text, then the smallest id);
  6. extending an index (curate.dedup.index, optional): the survivors' band keys and signatures go to a
     pending generation, made part of the index when every removal task has finished (`finish`).
The driver holds only pairs and the keys of documents in clusters, never signatures or band keys. Then each
shard's task removes its non-survivors: `drop_reason=near_duplicate`, detail naming the survivor; every row's
`dup_cluster` is the id of its cluster's survivor (its own id when it has no near-duplicate).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from curate.dedup import clusters, index, lsh
from curate.dedup.lsh import ROW_BITS, ROW_MASK
from curate.dedup.survivors import source_priorities
from curate.schema import split_verdicts
from curate.stage import DERIVED, Input, Prepared, TableStage, Task

log = logging.getLogger("curate")

# A document's fate after the global pass: (survivor id, is it the survivor, drop detail).
Fate = tuple[str, bool, str]


class _Clock:
    """Wall and CPU seconds of each phase (CPU of this process: all the work with an in-process executor)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}
        self._last = (time.perf_counter(), time.process_time())

    def lap(self, phase: str) -> None:
        now = (time.perf_counter(), time.process_time())
        self.seconds[phase] = round(now[0] - self._last[0], 3)
        self.cpu_seconds[phase] = round(now[1] - self._last[1], 3)
        self._last = now


@dataclass
class NearDedup(TableStage):
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
    priority: dict[str, int] = field(default_factory=dict, metadata=DERIVED)  # source -> rank, sources.yaml

    def __post_init__(self) -> None:
        if not self.bands or not self.rows:
            self.bands, self.rows = lsh.lsh_bands(self.threshold, self.num_perm, self.verify)
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows ({self.bands} x {self.rows}) exceed num_perm ({self.num_perm})")
        # Workers may start in another directory: index paths are made absolute here, in the driver.
        self.against = str(Path(self.against).resolve()) if self.against else ""
        self.write_index = str(Path(self.write_index).resolve()) if self.write_index else ""

    def bind(self, catalog: Mapping[str, Any], inputs: list[Input]) -> None:
        """Source priorities from sources.yaml, unless given."""
        if not self.priority:
            self.priority = source_priorities(catalog)

    @property
    def keeps_signatures(self) -> bool:
        """Whether signatures are written to scratch (to compare with or to extend an index)."""
        return bool(self.against or self.write_index)

    def prepare(self, tasks: list[Task], map_fn, scratch: Path, out: Any = None) -> Prepared:
        paths = [t.inputs[0] for t in tasks]
        out_dir = out if out is not None else scratch.parent  # the index names survivors by output folder
        clock = _Clock()
        fates: list[dict[int, Fate]] = [{} for _ in tasks]
        indexed = index.indexed_documents(self.against, out_dir, self) if self.against else 0
        counts = lsh.signatures(self, paths, map_fn, scratch)
        documents = sum(c["documents"] for c in counts)
        clock.lap("signatures")
        ranges = lsh.partitions(documents + indexed)
        matches = (
            self._query_index(tasks, ranges, map_fn, scratch, out_dir, fates) if indexed and tasks else None
        )
        excluded = matches.column("doc").to_numpy() if matches is not None else np.zeros(0, np.int64)
        clock.lap("index")
        pairs = lsh.candidates(self.bands, len(tasks), ranges, excluded, map_fn, scratch)
        candidates = len(pairs)
        clock.lap("candidates")
        if self.verify:
            pairs = clusters.verify(self, paths, pairs, map_fn, scratch)
        clock.lap("verify")
        nodes, labels = clusters.cluster_labels(pairs)
        if len(nodes):
            self._mark_survivors(clusters.survivors(nodes, labels, scratch), fates)
        clock.lap("clusters")
        if self.write_index:
            removed = [np.array(sorted(r for r, f in fate.items() if not f[1]), np.int64) for fate in fates]
            index.extend(self, self.write_index, out_dir, removed, map_fn, scratch)
            clock.lap("index_write")
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
        report = {
            "seconds": clock.seconds,
            "cpu_seconds": clock.cpu_seconds,
            "candidate_pairs": candidates,
            "duplicate_pairs": len(pairs),
            "indexed_matches": len(excluded),
        }
        return Prepared([Task(t.name, t.inputs, f) for t, f in zip(tasks, fates, strict=True)], report)

    def _query_index(
        self,
        tasks: list[Task],
        ranges: list[tuple[int, int]],
        map_fn: Any,
        scratch: Path,
        out_dir: Any,
        fates: list[dict[int, Fate]],
    ) -> pa.Table:
        """Documents that duplicate an indexed one (this output's own earlier survivors are not)."""
        found = (self.against, index.out_key(out_dir))
        matches = index.query(self, len(tasks), ranges, found, map_fn, scratch, clusters.VERIFY_CHUNK)
        for doc, indexed_id in zip(
            matches.column("doc").to_pylist(), matches.column("indexed_id").to_pylist(), strict=True
        ):
            fates[doc >> ROW_BITS][doc & ROW_MASK] = (
                indexed_id,
                False,
                f"near-duplicate of {indexed_id} (indexed)",
            )
        return matches

    @staticmethod
    def _mark_survivors(chosen: pa.Table, fates: list[dict[int, Fate]]) -> None:
        for doc, survivor, is_survivor in zip(
            chosen.column("doc").to_pylist(),
            chosen.column("survivor").to_pylist(),
            chosen.column("is_survivor").to_pylist(),
            strict=True,
        ):
            fates[doc >> ROW_BITS][doc & ROW_MASK] = (survivor, is_survivor, f"near-duplicate of {survivor}")

    def apply(self, table: pa.Table, task: Task) -> tuple[pa.Table, pa.Table]:
        clustered: dict[int, Fate] = task.payload or {}
        ids = table.column("id").to_pylist()
        found = [clustered.get(row, (doc_id, True, "")) for row, doc_id in enumerate(ids)]
        # An earlier exact dedup's hash-named clusters are replaced: near clusters contain them.
        table = table.drop_columns([c for c in ("dup_cluster",) if c in table.column_names])
        table = table.append_column("dup_cluster", pa.array([f[0] for f in found], pa.string()))
        verdicts = [True if survives else (False, "near_duplicate", why) for _, survives, why in found]
        return split_verdicts(table, verdicts, self.name)

    def finish(self, out_dir: Path, manifest: dict) -> None:
        if not self.write_index:
            return
        if manifest["status"] != "complete":
            log.warning("stage %s: not adding to index %s: some tasks failed", self.name, self.write_index)
            return
        if index.commit(Path(self.write_index), out_dir, self):
            log.info("stage %s: survivors added to index %s", self.name, self.write_index)
