"""What a stage is: a plan of tasks over inputs, and a pure function from one task to kept and rejected rows.

Modelled on datatrove's pipeline steps: one small class per step, its parameters as dataclass fields. The
runner (curate.runner) maps `process` over the tasks on Ray; nothing here knows about Ray.

A stage declares what the code around it needs to know, so that the pipeline, the runner and the command
line name no step:
  - `step`: its name in pipeline YAML and the step registry (curate.steps);
  - parameters that users never write (filled from sources.yaml or from files) carry DERIVED metadata;
    options naming files that a pipeline YAML gives relative to itself carry PIPELINE_PATHS metadata;
  - `bind(catalog, inputs)` takes what sources.yaml and the inputs decide (licences, priorities, ...);
  - `reads_storage`: whether its inputs may be storage URIs (s3://...); `inputs_optional`: whether it may
    run without inputs (a scrape reads the web); `reports`: files its `finish` writes beside the outputs.
Between calls, a stage holds only its parameters and what `prepare` builds for the tasks (their payloads, or
an index the stage object carries to its workers): `process` returns how many documents a task read when
only reading told (StageResult.documents_in), and `prepare` its report for the manifest (Prepared).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from curate.errors import ConfigError
from curate.io import parquet_rows, parquet_schema, read_parquet, stage_shards
from curate.schema import (
    ERROR_REASON,
    RECORD_SCHEMA,
    REQUIRED_COLUMNS,
    Verdict,
    conform,
    records_table,
    rejected_schema,
    split_invalid,
    split_verdicts,
    with_drop,
)
from curate.storage import as_path, is_uri

# Field metadata: a parameter filled from sources.yaml or from files, never written in pipeline YAML.
DERIVED = {"derived": True}
# Field metadata: an option whose file paths a pipeline YAML gives relative to its own folder.
PIPELINE_PATHS = {"pipeline_paths": True}


@dataclass(frozen=True)
class Input:
    """One input of a stage: a file or directory, for raw files the source tag they belong to, and the
    other keys of its pipeline YAML entry (such as mix's `component:`)."""

    path: str
    source: str | None = None
    options: tuple[tuple[str, Any], ...] = ()

    def option(self, key: str) -> Any:
        """The value of one key of the input's YAML entry, or None."""
        return dict(self.options).get(key)


@dataclass(frozen=True)
class Task:
    """One unit of work: its deterministic output name, the input files it reads, and optional extra data."""

    name: str
    inputs: tuple[str, ...]
    payload: Any = None


@dataclass
class StageResult:
    """What one task produces: kept rows, rejected rows (with drop columns), and small side files.

    `documents_in` is how many documents the task read, when only reading them told (a crawl, a tarball of
    articles); None: the stage's `count_in` says.
    """

    kept: pa.Table
    rejected: pa.Table
    sidecars: dict[str, bytes] = field(default_factory=dict)
    documents_in: int | None = None


@dataclass
class Prepared:
    """What a global pass returns when it has more to say than the prepared tasks: a report (counts, phase
    timings) that the runner writes to the stage's manifest as `global_pass`."""

    tasks: list[Task]
    report: dict[str, Any]


@dataclass
class Stage:
    """Base of every step. Subclasses declare their parameters as dataclass fields."""

    step: ClassVar[str] = ""
    name: str = ""
    row_group_size: ClassVar[int | None] = None
    reads_storage: ClassVar[bool] = False  # its input files may be storage URIs (read through curate.io)
    inputs_optional: ClassVar[bool] = False  # runs without inputs (a scrape: the web is its input)
    # Files `finish` writes beside the outputs: curate's own, removed when the parameters change.
    reports: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def derived_fields(cls) -> set[str]:
        """Parameters that sources.yaml or files fill, not pipeline YAML (and `name`, set apart in YAML)."""
        return {"name"} | {f.name for f in dataclasses.fields(cls) if f.metadata.get("derived")}

    def bind(self, catalog: Mapping[str, Any], inputs: list[Input]) -> None:
        """Take what sources.yaml (`catalog`: name -> curate.sources.registry.Source) and the inputs decide;
        raise ConfigError for a source the catalog lacks (see require_source). By default nothing."""

    def params(self) -> dict[str, Any]:
        """The parameters that define this stage's output (in the manifest and the fingerprint)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "name"}

    def plan(self, inputs: list[Input]) -> list[Task]:
        """Split the inputs into tasks with deterministic names."""
        raise NotImplementedError

    def prepare(self, tasks: list[Task], map_fn, scratch: Path, out: Any = None) -> list[Task] | Prepared:
        """A global pass before the tasks run (dedup uses it); map_fn(fn, [args...]) runs fn in parallel.
        Returns the tasks as the pass prepared them (with their payloads), or those and a report (Prepared).

        `scratch` is an empty directory, inside the stage's output directory `out` unless that is in object
        storage (then a local or CURATE_SCRATCH folder); the runner removes it when the stage ends.
        """
        return tasks

    def process(self, task: Task) -> StageResult:
        """Run one task: pure apart from reading its inputs."""
        raise NotImplementedError

    def count_in(self, task: Task) -> int:
        """How many documents this task's inputs hold (the 'in' of the accounting rule), unless its result
        says (StageResult.documents_in)."""
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


def plan_tasks(stage: Stage, inputs: list[Input]) -> list[Task]:
    """The stage's tasks for its inputs; an input it cannot use (missing, empty, ambiguous) is a ConfigError
    (MissingInput where it is not there) that names the stage."""
    try:
        return stage.plan(inputs)
    except ConfigError as exc:
        where = f"stage {stage.name!r}"
        if where in str(exc):
            raise
        raise type(exc)(f"{where}: {exc}") from exc


def require_source(catalog: Mapping[str, Any], name: str) -> Any:
    """The named source of a catalog, or a ConfigError that lists the known ones."""
    if name not in catalog:
        known = ", ".join(sorted(catalog))
        raise ConfigError(f"unknown source {name!r}: add it to sources.yaml (known sources: {known})")
    return catalog[name]


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

    reads_storage: ClassVar[bool] = True

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
            raise ConfigError(f"stage {self.name!r}: two input shards share a name; rename or split inputs")
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


@dataclass
class FilterStage(TableStage):
    """A stage that keeps or drops each document (datatrove's BaseFilter): the base class owns the loop over
    a shard, the drop columns and the rejected rows; a subclass writes only its verdict (see Verdict).

    Implement `filter` for one document's text, or `filter_table` where a whole table at once is what makes
    a filter fast (one model call for a batch) or where it adds columns (a score) or rewrites the documents
    it keeps (clean's text and meta). A document it drops is written as it was read, with the columns added.
    A verdict of plain False is given the step's name as its reason.
    """

    def filter(self, text: str) -> Verdict:
        """True to keep a document with this text; False, (False, reason) or (False, reason, detail) not."""
        raise NotImplementedError

    def filter_table(self, table: pa.Table) -> tuple[pa.Table, list[Verdict]]:
        """The table as this filter leaves it (the columns read in place, rewritten or not, then any it adds)
        and each row's verdict."""
        return table, [self.filter(text or "") for text in table.column("text").to_pylist()]

    def apply(self, table: pa.Table, task: Task) -> tuple[pa.Table, pa.Table]:
        filtered, verdicts = self.filter_table(table)
        return split_verdicts(filtered, verdicts, self.name, reason=self.step or self.name, as_read=table)


def resolve_pipeline_paths(value: Any, base: Path) -> Any:
    """An option's file paths relative to base (a pipeline file's folder): a path, a {path, ...} mapping,
    or a list of them; other values as they are."""
    if isinstance(value, (str, Mapping)):
        value = [value]
    if not isinstance(value, (list, tuple)):
        return value
    out = []
    for entry in value:
        if isinstance(entry, str):
            entry = str(base / Path(entry).expanduser())
        elif isinstance(entry, Mapping) and isinstance(entry.get("path"), str):
            entry = {**entry, "path": str(base / Path(entry["path"]).expanduser())}
        out.append(entry)
    return out


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
