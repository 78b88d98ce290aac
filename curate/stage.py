"""What a stage is: a plan of tasks over inputs, and a pure function from one task to kept and rejected rows.

Modelled on datatrove's pipeline steps: one small class per step, its parameters as dataclass fields. The
runner (curate.runner) maps `process` over the tasks on Ray; nothing here knows about Ray.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from curate.io import parquet_rows, parquet_schema, read_parquet, stage_shards
from curate.schema import (
    ERROR_REASON,
    RECORD_SCHEMA,
    REQUIRED_COLUMNS,
    conform,
    records_table,
    rejected_schema,
    split_invalid,
    with_drop,
)
from curate.storage import as_path, is_uri


@dataclass(frozen=True)
class Input:
    """One input of a stage: a file or directory, and for raw files the source tag they belong to."""

    path: str
    source: str | None = None


@dataclass(frozen=True)
class Task:
    """One unit of work: its deterministic output name, the input files it reads, and optional extra data."""

    name: str
    inputs: tuple[str, ...]
    payload: Any = None


@dataclass
class StageResult:
    """What one task produces: kept rows, rejected rows (with drop columns), and small side files."""

    kept: pa.Table
    rejected: pa.Table
    sidecars: dict[str, bytes] = field(default_factory=dict)


@dataclass
class Stage:
    """Base of every step. Subclasses declare their parameters as dataclass fields."""

    step: ClassVar[str] = ""
    name: str = ""
    row_group_size: ClassVar[int | None] = None

    def params(self) -> dict[str, Any]:
        """The parameters that define this stage's output (in the manifest and the fingerprint)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "name"}

    def plan(self, inputs: list[Input]) -> list[Task]:
        """Split the inputs into tasks with deterministic names."""
        raise NotImplementedError

    def prepare(self, tasks: list[Task], map_fn, scratch: Path, out: Any = None) -> list[Task]:
        """A global pass before the tasks run (dedup uses it); map_fn(fn, [args...]) runs fn in parallel.

        `scratch` is an empty directory, inside the stage's output directory `out` unless that is in object
        storage (then a local or CURATE_SCRATCH folder); the runner removes it when the stage ends.
        """
        return tasks

    def process(self, task: Task) -> StageResult:
        """Run one task: pure apart from reading its inputs."""
        raise NotImplementedError

    def count_in(self, task: Task) -> int:
        """How many documents this task's inputs hold (the 'in' of the accounting rule)."""
        raise NotImplementedError

    def planned_documents(self, task: Task) -> int | None:
        """Documents the task will read, when known cheaply before it runs (for progress); else None."""
        return None

    def error_rows(self, task: Task, error: str) -> pa.Table:
        """Rejected rows that stand for a task that failed as a whole, one per input."""
        rows = [{"id": f"error:{p}", "text": "", "source": "", "url": _uri(p)} for p in task.inputs]
        table = records_table(rows)
        return with_drop(table, self.name, [ERROR_REASON] * len(rows), [error] * len(rows))

    def finish(self, out_dir: Path, manifest: dict[str, Any]) -> None:
        """Called when all tasks are done, before the manifest is written (shard writes stats.json)."""


def _uri(path: str) -> str:
    """A file:// URI for a local path; a storage URI (s3://...) as it is."""
    return path if is_uri(path) else Path(path).resolve().as_uri()


def short_hash(*parts: str) -> str:
    """A short stable hash of strings, for deterministic task names."""
    digest = hashlib.blake2b(digest_size=4)
    for part in parts:
        digest.update(part.encode("utf-8", "surrogateescape"))  # file names need not be UTF-8
        digest.update(b"\0")
    return digest.hexdigest()


def describe_error(exc: BaseException) -> str:
    """One line naming an exception and where it was raised, for drop_detail."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"[:2000]


@dataclass
class TableStage(Stage):
    """A stage that maps one Parquet shard to kept and rejected rows: subclasses implement `apply`."""

    def plan(self, inputs: list[Input]) -> list[Task]:
        groups = [(as_path(i.path), stage_shards(i.path)) for i in inputs]
        prefix = len(groups) > 1  # fan-in: keep names from different upstream stages apart
        tasks = []
        seen: set[str] = set()
        for root, files in groups:
            for f in files:
                where = str(f) if is_uri(f) else os.path.abspath(f)
                if where in seen:
                    continue  # a shard named twice (its folder and itself) is read once
                seen.add(where)
                name = f"{root.name}-{f.stem}" if prefix and root.is_dir() else f.stem
                tasks.append(Task(name=name, inputs=(str(f),)))
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"stage {self.name!r}: two input shards share a name; rename or split inputs")
        return tasks

    def count_in(self, task: Task) -> int:
        return sum(parquet_rows(p) for p in task.inputs)

    def planned_documents(self, task: Task) -> int | None:
        return None if any(is_uri(p) for p in task.inputs) else self.count_in(task)  # footers: one read each

    def error_rows(self, task: Task, error: str) -> pa.Table:
        """The shard's own documents (text kept) as error rows, so that none is lost; one row per file when
        the shard cannot be read."""
        try:
            table, invalid = self.records(task)
            errors = with_drop(table, self.name, [ERROR_REASON] * table.num_rows, [error] * table.num_rows)
            return pa.concat_tables([errors, invalid], promote_options="default")
        except Exception:  # noqa: BLE001 - an unreadable shard is reported as a file
            return super().error_rows(task, error)

    def records(self, task: Task) -> tuple[pa.Table, pa.Table]:
        """The task's input rows that are records, and the rejected rows that are not (null or bad values)."""
        good, bad = zip(*(split_invalid(read_parquet(p), self.name, p) for p in task.inputs), strict=True)
        tables = [conform(t) for t in good]
        return pa.concat_tables(tables, promote_options="default"), pa.concat_tables(bad)

    def process(self, task: Task) -> StageResult:
        table, invalid = self.records(task)
        kept, rejected = self.apply(table, task)
        if invalid.num_rows:
            rejected = pa.concat_tables([rejected, invalid], promote_options="default")
        return StageResult(kept=kept, rejected=rejected)

    def apply(self, table: pa.Table, task: Task) -> tuple[pa.Table, pa.Table]:
        """Split one table of records into kept and rejected rows."""
        raise NotImplementedError


def read_records(path: str, columns: list[str] | None = None) -> pa.Table:
    """The rows of one input shard that are records (as TableStage.apply sees them, so row numbers agree):
    for a global pass that reads a shard before its task does."""
    available = set(parquet_schema(path).names)
    wanted = (
        None
        if columns is None
        else [c for c in dict.fromkeys([*REQUIRED_COLUMNS, *columns]) if c in available]
    )
    table, _ = split_invalid(read_parquet(path, wanted), "")
    return table if columns is None else table.select(columns)


def empty_rejected(schema: pa.Schema = RECORD_SCHEMA) -> pa.Table:
    """An empty table of rejected rows for a record schema."""
    return rejected_schema(schema).empty_table()
