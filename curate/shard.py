"""The final stage: repack records into pretraining shards of a target size, with stats per shard."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from curate.io import (
    parquet_rows,
    parquet_schema,
    read_json,
    read_parquet,
    sha256_file,
    stage_shards,
    write_json,
)
from curate.layout import PIPELINE_FILE, VALIDATION_PREFIX
from curate.schema import conform, split_invalid
from curate.stage import DERIVED, Input, Stage, StageResult, Task, empty_rejected, short_hash
from curate.storage import StoragePath
from curate.units import parse_size

STATS_SUFFIX = ".stats.json"
PARTIAL_SUFFIX = ".stats.arrow"  # each document's length and source, and the sums: stats.json merges them
SHARD_SIDECARS = (STATS_SUFFIX, PARTIAL_SUFFIX)  # the files written beside each shard
_SHARD_NAME = re.compile(rf"^(?:{VALIDATION_PREFIX})?shard-\d{{5}}$")


def plan_slices(files: list[tuple[str, int, int]], target_bytes: int) -> list[list[tuple[str, int, int]]]:
    """Cut (path, rows, bytes) files into consecutive (path, offset, length) slices of about target_bytes."""
    shards: list[list[tuple[str, int, int]]] = []
    current: list[tuple[str, int, int]] = []
    filled = 0.0
    for path, rows, size in files:
        per_row = size / rows if rows else 0.0
        offset = 0
        while offset < rows:
            room = max(1, int((target_bytes - filled) / per_row)) if per_row else rows
            length = min(rows - offset, room)
            current.append((path, offset, length))
            filled += length * per_row
            offset += length
            if filled >= target_bytes:
                shards.append(current)
                current, filled = [], 0.0
    if current:
        shards.append(current)
    return shards


@dataclass
class ShardStage(Stage):
    """Pretraining shards: zstd Parquet of about target_size each, small row groups for streaming."""

    step: ClassVar[str] = "shard"
    reads_storage: ClassVar[bool] = True
    target_size: str = "256MB"
    row_group_rows: int = 1000
    tokenizer: str | None = None  # a tokenizers JSON file: exact token counts in the stats, else approximate
    tokenizer_sha256: str = field(default="", metadata=DERIVED)  # of the file: another one recomputes

    def __post_init__(self) -> None:
        parse_size(self.target_size)  # fail when the pipeline is loaded, not after the stages before it ran
        if self.tokenizer:
            from curate.tokens import tokenizer_file

            self.tokenizer, self.tokenizer_sha256 = tokenizer_file(self.tokenizer)

    @property
    def row_group_size(self) -> int:  # type: ignore[override]
        return self.row_group_rows

    def plan(self, inputs: list[Input]) -> list[Task]:
        # The mix stage writes its validation split to validation-*.parquet: those rows get shards of their
        # own (validation-shard-*), so a training job never reads them by accident.
        splits: dict[str, list[tuple[str, int, int]]] = {}
        unreadable: list[Task] = []
        for path in [f for i in inputs for f in stage_shards(i.path)]:
            try:
                rows = parquet_rows(path)
            except Exception:  # noqa: BLE001 - a task of its own fails on it and names it (an error row)
                name = f"unreadable-{short_hash(str(path))}"
                unreadable.append(Task(name=name, inputs=(str(path),), payload=((str(path), 0, 0),)))
                continue
            if rows:
                prefix = VALIDATION_PREFIX if path.name.startswith(VALIDATION_PREFIX) else ""
                splits.setdefault(prefix, []).append((str(path), rows, path.stat().st_size))
        return [
            Task(
                name=f"{prefix}shard-{n:05d}",
                inputs=tuple(dict.fromkeys(p for p, _, _ in s)),
                payload=tuple(s),
            )
            for prefix, files in sorted(splits.items())
            for n, s in enumerate(plan_slices(files, parse_size(self.target_size)))
        ] + unreadable

    def count_in(self, task: Task) -> int:
        return sum(length for _, _, length in task.payload)

    planned_documents = count_in

    def process(self, task: Task) -> StageResult:
        from curate.stats.compute import table_stats_and_partial
        from curate.tokens import cached_tokenizer

        if task.name.startswith("unreadable-"):  # fails, naming the file, for the failed task's record
            try:
                parquet_rows(task.inputs[0])
            except Exception as exc:  # noqa: BLE001 - any reader error: the same message
                raise ValueError(f"{task.inputs[0]} is not readable Parquet ({exc})") from exc
        # Rows that are not records (a null or non-UTF-8 id, text or source) are rejected one by one.
        parts, invalid = [], []
        for p, offset, length in task.payload:
            good, bad = split_invalid(read_parquet(p).slice(offset, length), self.name, p, offset)
            parts.append(conform(good))
            invalid.append(bad)
        table = pa.concat_tables(parts, promote_options="default")
        tokenizer = cached_tokenizer(self.tokenizer, self.tokenizer_sha256) if self.tokenizer else None
        stats, partial = table_stats_and_partial(table, tokenizer)
        sidecars = {
            f"{task.name}{STATS_SUFFIX}": json.dumps(stats, indent=2, sort_keys=True).encode(),
            f"{task.name}{PARTIAL_SUFFIX}": partial,
        }
        rejected = pa.concat_tables([empty_rejected(table.schema), *invalid], promote_options="default")
        return StageResult(kept=table, rejected=rejected, sidecars=sidecars)

    def finish(self, out_dir: Path | StoragePath, manifest: dict[str, Any]) -> None:
        from curate.stats.compute import collect_stats

        shards = {Path(o["path"]).stem for o in manifest["outputs"]}
        for suffix in SHARD_SIDECARS:  # of shards an earlier run wrote, named as curate names them
            for f in out_dir.glob(f"*{suffix}"):
                task = f.name.removesuffix(suffix)
                if _SHARD_NAME.match(task) and task not in shards:
                    f.unlink()
        # The corpus stats merge what each shard's task counted: reading every shard again here was the
        # largest serial part of a full-scale run (half an hour of the driver's time at GAP-Replay's size).
        partials = {f"{shard}.parquet": out_dir / f"{shard}{PARTIAL_SUFFIX}" for shard in shards}
        stats = collect_stats(out_dir, tokenizer=self.tokenizer, partials=partials) if shards else None
        if stats is not None:
            # Where it was computed is not a property of the corpus: a moved or re-run corpus keeps its bytes.
            where = ("path", "sources_file", "tokenizer")
            write_json({k: v for k, v in stats.items() if k not in where}, out_dir / "stats.json")
        manifest.update(corpus_manifest(out_dir, manifest, stats))


def corpus_manifest(
    out_dir: Path | StoragePath, manifest: dict[str, Any], stats: dict[str, Any] | None
) -> dict[str, Any]:
    """What a training job needs to verify the shards it reads, added to the shard stage's manifest.json:
    the schema field by field, totals, the stats files with checksums, and the pipeline YAML that made them
    (the manifest already lists every shard with its rows, bytes and SHA-256, and the library versions)."""
    schema = None
    if manifest["outputs"]:
        arrow = parquet_schema(out_dir / manifest["outputs"][0]["path"])
        schema = [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in arrow]
    stats_files = [out_dir / "stats.json"] + [
        out_dir / f"{Path(o['path']).stem}{suffix}" for o in manifest["outputs"] for suffix in SHARD_SIDECARS
    ]
    totals = {
        "shards": len(manifest["outputs"]),
        "documents": sum(o["rows"] for o in manifest["outputs"]),
        "bytes": sum(o["bytes"] for o in manifest["outputs"]),
    }
    if stats is not None:
        # tokens: exact, with the stage's tokenizer; None without one (tokens_approximate is always there).
        totals.update({k: stats.get(k) for k in ("characters", "words", "tokens", "tokens_approximate")})
    return {
        "schema_fields": schema,
        "totals": totals,
        "stats_files": [
            {"path": f.name, "bytes": f.stat().st_size, "sha256": sha256_file(f)}
            for f in stats_files
            if f.exists()
        ],
        "pipeline": _pipeline_of(out_dir),
    }


def _pipeline_of(out_dir: Path | StoragePath) -> dict[str, Any] | None:
    """The pipeline (name, file, YAML text, stage order) whose work directory holds out_dir, if any."""
    path = out_dir.parent / PIPELINE_FILE
    try:
        pipeline = read_json(path)
    except (OSError, ValueError):
        return None
    if not isinstance(pipeline, dict) or out_dir.name not in (pipeline.get("stages") or []):
        return None
    return {k: pipeline.get(k) for k in ("pipeline", "file", "stages", "yaml")}
