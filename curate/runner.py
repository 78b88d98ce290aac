"""Run a stage's tasks and keep its output directory exactly-once and accounted for.

The stage directory's files are named in curate.layout. Containment: the runner writes and deletes only
inside the stage folder, and deletes only files it can show it wrote: Parquet whose footer carries its key,
files the last manifest lists (or the stage names as its reports), its own temporary files.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import AccountingError, ConfigError, PreparationError, disk_full
from curate.executors import Executor, Resources, node_id
from curate.io import (
    parquet_rows,
    parquet_schema,
    read_json,
    sha256_file,
    write_bytes,
    write_json,
    write_parquet,
)
from curate.layout import (
    LOCK_FILE,
    MANIFEST,
    PIPELINE_FILE,
    REJECTED_DIR,
    SCRATCH_DIR,
    SCRATCH_ENV,
    SCRATCH_PREFIX,
    STATE_FILE,
    TASK_META_KEY,
    is_scratch,
    is_tmp,
    kept_file,
    rejected_file,
    task_of,
)
from curate.progress import StageProgress
from curate.schema import ERROR_REASON, latest_columns
from curate.stage import Input, Prepared, Stage, Task, describe_error, plan_tasks, short_hash
from curate.storage import StoragePath, as_path, folder_lock, is_uri

log = logging.getLogger("curate")

VERSIONED_PACKAGES = (
    "pyarrow",
    "ray",
    "pymupdf",
    "trafilatura",
    "fasttext-numpy2-wheel",
    "numpy",
    "datasketch",
)


# ---------------------------------------------------------------------------------------------- task body


def execute_task(stage: Stage, task: Task, out_dir: str) -> dict[str, Any]:
    """Run one task and write its outputs; the kept file goes last so that it marks completion."""
    start = time.perf_counter()
    result = stage.process(task)
    kept, rejected = latest_columns(result.kept), latest_columns(result.rejected)
    out = as_path(out_dir)
    for name, data in sorted(result.sidecars.items()):
        write_bytes(data, _inside(out / name, out))
    rejected_path = rejected_file(out, task.name)
    reasons = Counter(rejected.column("drop_reason").to_pylist()) if rejected.num_rows else {}
    errored = reasons.get(ERROR_REASON, 0)
    counts = {
        "in": stage.count_in(task) if result.documents_in is None else result.documents_in,
        "kept": kept.num_rows,
        "rejected": rejected.num_rows - errored,
        "errored": errored,
        "characters_kept": _characters(kept),
        "characters_rejected": _characters(rejected),
        "drop_reasons": dict(sorted(reasons.items())),
    }
    if counts["in"] != counts["kept"] + rejected.num_rows:
        raise AccountingError(
            f"stage {stage.name!r} task {task.name}: {counts['in']} documents in, but {counts['kept']} kept "
            f"+ {rejected.num_rows} rejected/errored"
        )
    # Only deterministic facts go into the files, so that a rerun writes identical bytes. The key marks both
    # files as curate's: only such files are ever deleted (see _owned).
    files = []
    if rejected.num_rows:
        write_parquet(_with_task_key(rejected, counts), rejected_path)
        files.append(_file_entry(rejected_path, out, rejected.num_rows))
    else:
        _unlink_owned(rejected_path, out)
    kept_path = kept_file(out, task.name)
    write_parquet(_with_task_key(kept, counts), kept_path, row_group_size=stage.row_group_size)
    # The manifest's entries are made here, in parallel, while the files are in the page cache: in the
    # driver, reading every output again was serial work that grew with the corpus (a second per GB).
    files.append(_file_entry(kept_path, out, kept.num_rows))
    seconds = round(time.perf_counter() - start, 3)
    return {**counts, "node": node_id(), "seconds": seconds, "files": files}


def _with_task_key(table: pa.Table, counts: dict[str, Any]) -> pa.Table:
    meta = dict(table.schema.metadata or {})
    meta[TASK_META_KEY] = json.dumps(counts, sort_keys=True).encode()
    return table.replace_schema_metadata(meta)


def _characters(table: pa.Table) -> int:
    if table.num_rows == 0 or "text" not in table.column_names:
        return 0
    return int(pc.sum(pc.utf8_length(table.column("text"))).as_py() or 0)


# ---------------------------------------------------------------------------------------------- the stage run


def run_stage(
    stage: Stage,
    inputs: list[Input],
    out_dir: str | os.PathLike,
    executor: Executor,
    progress: Callable[[StageProgress], Any] | None = None,
    resources: Resources | None = None,
) -> dict[str, Any]:
    """Run a stage into out_dir: skip finished tasks, run the rest, check the accounting, write a manifest.

    `resources` is what each of its tasks reserves on a Ray node (its global pass's tasks too). `progress`
    gets the stage's StageProgress, which the runner keeps current, and returns a view of it with close().
    """
    out = as_path(out_dir)
    check_output(stage, inputs, out)
    with stage_lock(out):
        return _run_locked(stage, inputs, out, executor, progress, resources)


@contextlib.contextmanager
def stage_lock(out: Path | StoragePath) -> Iterator[None]:
    """Create the stage folder and hold its lock (FolderBusy if another process holds it). A stage folder of
    a pipeline's work directory is locked with it: `curate run` and a single-stage command never work in it
    at once."""
    out.mkdir(parents=True, exist_ok=True)
    in_workdir = (out.parent / PIPELINE_FILE).exists() or (out.parent / LOCK_FILE).exists()
    with folder_lock(out.parent) if in_workdir else contextlib.nullcontext(), folder_lock(out):
        yield


def _run_locked(
    stage: Stage,
    inputs: list[Input],
    out: Path | StoragePath,
    executor: Executor,
    progress: Callable[[StageProgress], Any] | None,
    resources: Resources | None,
) -> dict[str, Any]:
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    tasks = plan_tasks(stage, inputs)
    fingerprint = _fingerprint(stage, tasks, out)
    previous = _take_folder(stage, tasks, out, fingerprint)
    hashes: dict[str, str] = {}  # checksums computed while validating, reused by the manifest, by path
    todo = [t for t in tasks if not _is_finished(out, t.name, previous, stage.name, hashes)]
    run = _Run(stage, out, executor, resources)
    run.run(tasks, todo, progress)
    manifest = _manifest(stage, tasks, inputs, out, run, fingerprint, hashes)
    manifest.update(
        started=started.isoformat(timespec="seconds"),
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        wall_seconds=round(time.perf_counter() - t0, 3),
    )
    task_seconds = sum(run.node_seconds.values())
    manifest["tasks"].update(run=len(todo), skipped=len(tasks) - len(todo), seconds=round(task_seconds, 3))
    manifest["nodes"] = dict(sorted(run.nodes.items()))
    manifest["node_seconds"] = {n: round(s, 3) for n, s in sorted(run.node_seconds.items())}
    manifest["resources"] = resources.ray_options() if resources else {}
    if run.global_pass:
        manifest["global_pass"] = run.global_pass
    counts = manifest["counts"]
    if counts["in"] != counts["kept"] + counts["rejected"] + counts["errored"]:
        # No manifest: the stage counts as unfinished, and a rerun recomputes it.
        raise AccountingError(f"stage {stage.name!r}: counts do not add up: {counts}")
    stage.finish(out, manifest)
    write_json(manifest, out / MANIFEST)
    return manifest


def _take_folder(
    stage: Stage, tasks: list[Task], out: Path | StoragePath, fingerprint: str
) -> dict[str, str]:
    """Make the stage folder this run's: what curate wrote for other parameters or inputs removed, the new
    fingerprint recorded, stale and temporary files gone. Returns the last manifest's checksums (that
    manifest stays until this run writes its own: its checksums find damage after a killed run)."""
    _reset_if_changed(stage, out, fingerprint)
    previous = _previous_checksums(out)
    write_json({"fingerprint": fingerprint, "step": stage.step, "params": stage.params()}, out / STATE_FILE)
    _remove_stale(stage, out, {t.name for t in tasks})
    return previous


def _stage_progress(stage: Stage, tasks: list[Task], todo: list[Task]) -> StageProgress:
    """The stage's progress before it runs: documents expected (if the stage can tell), what a rerun skips."""
    expected = [_planned_documents(stage, t) for t in tasks]
    total = None if any(n is None for n in expected) else sum(expected)
    state = StageProgress(stage.name, len(tasks), total)
    running = {t.name for t in todo}
    skipped = [n for t, n in zip(tasks, expected, strict=True) if t.name not in running]
    state.skip(len(skipped), sum(n or 0 for n in skipped))
    return state


def _planned_documents(stage: Stage, task: Task) -> int | None:
    try:
        return stage.planned_documents(task)
    except Exception:  # noqa: BLE001 - an unreadable input is its task's error to report, not the progress's
        return None


@dataclass
class _Run:
    """One invocation of a stage: where its tasks run, and what they did (the global pass's report, tasks
    that failed, tasks and task-seconds per Ray node)."""

    stage: Stage
    out: Path | StoragePath
    executor: Executor
    resources: Resources | None
    global_pass: dict[str, Any] = field(default_factory=dict)
    failed: list[dict[str, Any]] = field(default_factory=list)
    nodes: Counter = field(default_factory=Counter)
    node_seconds: Counter = field(default_factory=Counter)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # what each task that ran returned

    def run(
        self, tasks: list[Task], todo: list[Task], progress: Callable[[StageProgress], Any] | None
    ) -> None:
        """The global pass, then the unfinished tasks, while a progress view (if any) shows them."""
        state = _stage_progress(self.stage, tasks, todo)
        view = progress(state) if progress else None
        try:
            if todo:
                todo = self._prepare(tasks, todo, state)
                self._run_tasks(todo, state)
        except BaseException:
            state.stopped = True
            raise
        finally:
            state.close()
            if view is not None:
                view.close()

    def _run_tasks(self, todo: list[Task], state: StageProgress) -> None:
        """The tasks, each writing its outputs; failures recorded, progress kept current."""
        stage, out = self.stage, self.out
        work = [(stage, t, str(out)) for t in todo]
        with contextlib.closing(
            self.executor.map(execute_task, work, self.resources, state.report)
        ) as mapped:
            for index, counts, error in mapped:
                if error is not None:
                    _raise_if_disk_full(error, out)
                    self.failed.append(_record_failure(stage, todo[index], out, error))
                    state.task_finished(index, self.failed[-1]["documents"])
                else:
                    self.nodes[counts["node"]] += 1
                    self.node_seconds[counts["node"]] += counts["seconds"]
                    self.results[todo[index].name] = counts
                    state.task_finished(index, counts["in"])

    def _prepare(self, tasks: list[Task], todo: list[Task], state: StageProgress) -> list[Task]:
        """The stage's global pass in a fresh scratch folder: the unfinished tasks as it prepared them (its
        report, if it gives one, kept for the manifest)."""
        scratch = _scratch_dir(self.out)

        def map_fn(fn: Callable[..., Any], args: Sequence[tuple]) -> list:
            return _map_all(self.executor, fn, args, self.resources, scratch, state)

        try:
            # A full disk in the global pass is most likely the scratch folder's (local when out is a URI).
            prepared = self.stage.prepare(tasks, map_fn, scratch, self.out)
        except PreparationError as exc:
            raise PreparationError(
                f"stage {self.stage.name!r}: {exc}. Nothing of this stage was written; fix the cause and "
                "rerun the same command (finished stages are skipped)"
            ) from exc.__cause__
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            state.phase = ""
        if isinstance(prepared, Prepared):
            prepared, self.global_pass = prepared.tasks, prepared.report
        by_name = {t.name: t for t in prepared}
        return [by_name[t.name] for t in todo]


def _map_all(
    executor: Executor,
    fn: Callable[..., Any],
    args_list: Sequence[tuple],
    resources: Resources | None = None,
    out: Path | StoragePath | None = None,
    state: StageProgress | None = None,
) -> list:
    results: list[Any] = [None] * len(args_list)
    what = getattr(fn, "__name__", "task").strip("_").replace("_", " ")
    with contextlib.closing(executor.map(fn, args_list, resources)) as mapped:
        for done, (index, value, error) in enumerate(mapped, 1):
            if state is not None:
                state.phase = f"global pass: {what} {done}/{len(args_list)}"
            _check_result(fn, args_list[index], error, out)
            results[index] = value
    return results


def _check_result(fn: Callable[..., Any], args: tuple, error: BaseException | None, out: Any) -> None:
    """Raise PreparationError (or DiskFullError) for a failed task of a global pass."""
    if error is None:
        return
    if out is not None:
        _raise_if_disk_full(error, out)
    # The task's input files, if its arguments name any (not the scratch folder).
    paths = [a for a in map(str, args) if "/" in a and len(a) < 300]
    what = ", ".join(a for a in paths if not is_scratch(a))
    raise PreparationError(
        f"its global pass ({getattr(fn, '__name__', 'a task')}"
        f"{' on ' + what if what else ''}) failed on node {_failed_node(error)}: "
        f"{describe_error(error)}"
    ) from error


def check_output(stage: Stage, inputs: list[Input], out: Path | StoragePath) -> None:
    """Refuse, before any work, an output folder that curate could not use without harm: one that overlaps an
    input (it would read its own output, or take inputs for damaged outputs), or one that holds Parquet
    files curate did not write (a later stage would read them as documents)."""
    check_storage(stage, inputs, out)
    if not isinstance(out, StoragePath):
        for item in inputs:
            if is_uri(item.path):
                continue
            source = Path(item.path).resolve()
            target = out.resolve()
            if source == target or source.is_relative_to(target) or target.is_relative_to(source):
                raise ConfigError(
                    f"stage {stage.name!r}: its output folder {out} overlaps its input {item.path}; "
                    "write to a folder outside the inputs (--out / the work directory)"
                )
    foreign = _foreign_files(stage, out)
    if foreign:
        raise ConfigError(
            f"stage {stage.name!r}: {out} holds Parquet files that curate did not write here "
            f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); curate never deletes them: "
            "write to a new or empty folder, or move them away"
        )


def _foreign_files(stage: Stage, out: Path | StoragePath) -> list[str]:
    """Parquet files in a stage folder (or its rejected/) that curate cannot show it wrote."""
    if not out.is_dir():
        return []
    listed = _listed(stage, out)
    return [
        str(f.relative_to(out))
        for folder in (out, out / REJECTED_DIR)
        if folder.is_dir()
        for f in sorted(folder.iterdir())
        if task_of(f) is not None and not f.is_dir() and not _owned(f, out, listed)
    ]


def check_storage(stage: Stage, inputs: list[Input], out: Path | StoragePath) -> None:
    """Say clearly what cannot run on object storage, before any work."""
    remote = [i.path for i in inputs if is_uri(i.path)]
    if remote and not stage.reads_storage:
        raise ConfigError(
            f"stage {stage.name!r} (step {stage.step}) reads its input files from a local or shared-mount "
            f"folder; storage URIs ({remote[0]}) work only for the inputs of steps that read Parquet or "
            "JSONL shards (the filters, dedup, shard, mix, ...)"
        )


def _scratch_dir(out: Path | StoragePath) -> Path:
    """An empty folder for a stage's global pass: inside the output dir, or local when that is a URI."""
    if isinstance(out, StoragePath):
        # Object stores are no place for many small temporary files. On more than one node, CURATE_SCRATCH
        # must name a shared mount (README, "A work directory on S3").
        root = os.environ.get(SCRATCH_ENV) or None
        if root:
            Path(root).mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=root))
    scratch = out / SCRATCH_DIR
    shutil.rmtree(scratch, ignore_errors=True)  # a killed run's leftovers are recomputed, never reused
    scratch.mkdir()
    return scratch


def _fingerprint(stage: Stage, tasks: list[Task], out: Path | StoragePath) -> str:
    workdir = out.resolve().parent
    signatures = []
    for p in sorted({p for t in tasks for p in t.inputs}):
        path = as_path(p)
        if isinstance(path, StoragePath):
            st = path.stat()
        else:
            st = os.stat(p)
            path = Path(p).resolve()
        # Inputs inside the work directory are named relative to it, so a moved work directory still resumes.
        inside = type(path) is type(workdir) and path.is_relative_to(workdir)
        name = path.relative_to(workdir).as_posix() if inside else str(path)
        signatures.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    params = json.dumps(stage.params(), sort_keys=True, default=str)
    return short_hash(stage.step, params, *[f"{t.name}:{t.payload!r}" for t in tasks], *signatures)


def _reset_if_changed(stage: Stage, out: Path | StoragePath, fingerprint: str) -> None:
    """Remove what curate wrote for other parameters or inputs (and only that)."""
    state = out / STATE_FILE
    if not state.exists():
        return
    try:
        previous = read_json(state).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        previous = None
    if previous == fingerprint:
        return
    log.warning("stage %s: parameters or inputs changed since the last run; recomputing it", stage.name)
    listed = _listed(stage, out)
    for folder in (out, out / REJECTED_DIR):
        for f in folder.iterdir() if folder.is_dir() else []:
            if _owned(f, out, listed):
                _unlink_owned(f, out)
    _unlink_owned(out / MANIFEST, out)


def _manifest_entries(out: Path | StoragePath) -> list[dict[str, Any]]:
    """The file entries (path, sha256, ...) of the stage's last manifest; none if it is missing or bad."""
    try:
        manifest = read_json(out / MANIFEST)
        entries = manifest["outputs"] + manifest["rejected_outputs"] + manifest.get("stats_files", [])
        return [e for e in entries if isinstance(e, dict) and isinstance(e.get("path"), str)]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


def _listed(stage: Stage, out: Path | StoragePath) -> set[str]:
    """Paths (relative to the stage folder) that the stage's last manifest says curate wrote, and the
    reports the stage writes beside its outputs."""
    return {e["path"] for e in _manifest_entries(out)} | set(stage.reports)


def _previous_checksums(out: Path | StoragePath) -> dict[str, str]:
    """SHA-256 of each output as the last complete run of this stage recorded it."""
    return {e["path"]: e["sha256"] for e in _manifest_entries(out) if isinstance(e.get("sha256"), str)}


def _inside(path: Path | StoragePath, out: Path | StoragePath) -> Path | StoragePath:
    """path itself, after checking that it lies inside the stage folder (never follows a link out of it)."""
    if isinstance(path, StoragePath):
        inside = path.is_relative_to(out)
    else:
        inside = path.parent.resolve().is_relative_to(Path(out).resolve()) and path.name not in (
            "",
            ".",
            "..",
        )
    if not inside:
        raise RuntimeError(f"refusing to write or delete {path}: it is outside the stage folder {out}")
    return path


def _owned(path: Path | StoragePath, out: Path | StoragePath, listed: set[str]) -> bool:
    """Whether curate can show it wrote this file of the stage folder: its manifest lists it, it is named as
    curate names a temporary file, or it is a Parquet file whose footer carries curate's task key."""
    if path.is_symlink() or not path.is_file():
        return False
    if is_tmp(path) or str(path.relative_to(out)) in listed:
        return True
    if task_of(path) is None:
        return False
    try:
        return TASK_META_KEY in (parquet_schema(path).metadata or {})
    except Exception:  # noqa: BLE001 - unreadable: not provably ours
        return False


def _unlink_owned(path: Path | StoragePath, out: Path | StoragePath) -> None:
    _inside(path, out).unlink(missing_ok=True)


def _is_finished(
    out: Path | StoragePath, name: str, previous: dict[str, str], stage_name: str, hashes: dict[str, str]
) -> bool:
    """Whether a task's outputs are complete and intact; a damaged one is removed so the task runs again."""
    kept = kept_file(out, name)
    if not kept.exists():
        return False
    rejected = rejected_file(out, name)
    try:
        counts = json.loads(parquet_schema(kept).metadata[TASK_META_KEY])
        if parquet_rows(kept) != counts["kept"]:
            raise ValueError("kept rows differ from the task's counts")
        dropped = counts["rejected"] + counts["errored"]
        if dropped and parquet_rows(rejected) != dropped:
            raise ValueError("rejected rows differ from the task's counts")
        for path in (kept, rejected) if dropped else (kept,):
            relative = str(path.relative_to(out))
            recorded = previous.get(relative)
            if recorded:
                hashes[relative] = sha256_file(path)
                if hashes[relative] != recorded:
                    raise ValueError(f"{path.name} differs from the checksum in the last manifest")
    except Exception as exc:  # noqa: BLE001 - any damage means: compute it again
        log.warning("stage %s: output of task %s is damaged (%s); recomputing it", stage_name, name, exc)
        listed = set(previous)
        for path in (kept, rejected):
            # The damaged file's: the manifest must get the recomputed one's.
            hashes.pop(str(path.relative_to(out)), None)
            if path.exists() and not _owned(path, out, listed):
                raise ValueError(
                    f"stage {stage_name!r}: {path} is damaged and curate cannot show that it wrote it "
                    "(no readable footer, not in the manifest); delete or move it, then rerun"
                ) from exc
            _unlink_owned(path, out)
        return False
    return True


def _raise_if_disk_full(error: BaseException, out: Path | StoragePath) -> None:
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        # The folder of the file that did not fit: the stage folder, its scratch, or another (crawl state).
        where = Path(os.fsdecode(error.filename)).parent if error.filename else out
        raise disk_full(where) from error


def _remove_stale(stage: Stage, out: Path | StoragePath, names: set[str]) -> None:
    """Remove temporary files of interrupted writes, and outputs of tasks this run does not have."""
    listed = _listed(stage, out)
    for folder in (out, out / REJECTED_DIR):
        if not folder.is_dir():
            continue
        for f in folder.iterdir():
            task = task_of(f)
            stale = task is not None and task not in names
            if _owned(f, out, listed) and (is_tmp(f) or stale):
                _unlink_owned(f, out)


def _failed_node(error: BaseException) -> str:
    """The Ray node id a task failed on ("local" in-process; "unknown" if its worker died)."""
    return getattr(error, "curate_node", None) or "unknown"


def _record_failure(
    stage: Stage, task: Task, out: Path | StoragePath, error: BaseException
) -> dict[str, Any]:
    message = describe_error(error)
    node = _failed_node(error)
    log.error(
        "stage %s: task %s failed on node %s (inputs %s): %s",
        stage.name,
        task.name,
        node,
        ", ".join(task.inputs),
        message,
    )
    rows = latest_columns(stage.error_rows(task, message))
    counts = {"failed": True, "errored": rows.num_rows}
    write_parquet(_with_task_key(rows, counts), rejected_file(out, task.name))
    return {
        "task": task.name,
        "inputs": list(task.inputs),
        "node": node,
        "error": message,
        "documents": rows.num_rows,
    }


def _task_counts(
    stage: Stage, task: Task, out: Path | StoragePath, failed: dict[str, dict]
) -> dict[str, Any]:
    kept_path = kept_file(out, task.name)
    if task.name not in failed:
        return json.loads(parquet_schema(kept_path).metadata[TASK_META_KEY])
    documents = failed[task.name]["documents"]  # one error row each, in rejected/
    return {
        "in": documents,
        "kept": 0,
        "rejected": 0,
        "errored": documents,
        "characters_kept": 0,
        "characters_rejected": 0,
        "drop_reasons": {ERROR_REASON: documents},
    }


def _file_entry(
    path: Path | StoragePath, root: Path | StoragePath, rows: int | None = None, sha256: str | None = None
) -> dict[str, Any]:
    """A manifest's entry for an output file: its path in the stage folder, rows, bytes and SHA-256."""
    return {
        "path": str(path.relative_to(root)),
        "rows": parquet_rows(path) if rows is None else rows,
        "bytes": path.stat().st_size,
        "sha256": sha256 or sha256_file(path),
    }


def _manifest(
    stage: Stage,
    tasks: list[Task],
    inputs: list[Input],
    out: Path | StoragePath,
    run: _Run,
    fingerprint: str,
    hashes: dict[str, str],
) -> dict[str, Any]:
    """The stage's manifest: from what the tasks that ran returned, and the files of those a rerun skipped
    (their footers, with the checksums taken while validating them)."""
    failed = run.failed
    failed_by_name = {f["task"]: f for f in failed}
    totals: Counter = Counter()
    reasons: Counter = Counter()
    for task in tasks:
        c = run.results.get(task.name) or _task_counts(stage, task, out, failed_by_name)
        totals.update(
            {k: c[k] for k in ("in", "kept", "rejected", "errored", "characters_kept", "characters_rejected")}
        )
        reasons.update(c["drop_reasons"])
    written = {e["path"]: e for r in run.results.values() for e in r["files"]}

    def entry(path: Path | StoragePath) -> dict[str, Any]:
        relative = str(path.relative_to(out))
        return written.get(relative) or _file_entry(path, out, sha256=hashes.get(relative))

    def has_rejected(task: Task, path: Path | StoragePath) -> bool:
        # A task that ran said what it wrote; for the others (skipped, failed) the folder tells.
        if task.name in run.results:
            return str(path.relative_to(out)) in written
        return path.exists()

    outputs = [entry(kept_file(out, t.name)) for t in tasks if t.name not in failed_by_name]
    rejected = [entry(p) for t in tasks if has_rejected(t, p := rejected_file(out, t.name))]
    schema = parquet_schema(out / outputs[0]["path"]).remove_metadata() if outputs else None
    return {
        "stage": stage.name,
        "step": stage.step,
        "status": "complete" if not failed else "incomplete",
        "fingerprint": fingerprint,
        "params": stage.params(),
        "inputs": [{"path": i.path, "source": i.source} for i in inputs],
        "outputs": outputs,
        "rejected_outputs": rejected,
        "counts": {k: totals[k] for k in ("in", "kept", "rejected", "errored")},
        "characters": {"kept": totals["characters_kept"], "rejected": totals["characters_rejected"]},
        "drop_reasons": dict(sorted(reasons.items())),
        "failed_tasks": failed,
        "tasks": {"total": len(tasks)},
        "schema": schema.to_string(show_schema_metadata=False) if schema else None,
        "versions": versions(),
    }


def versions() -> dict[str, str]:
    """Versions of curate, Python and the libraries that shape the output."""
    from curate import __version__

    found = {"curate": __version__, "python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def read_manifest(stage_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The stage's manifest, or None if the stage has not finished."""
    path = as_path(stage_dir) / MANIFEST
    return read_json(path) if path.exists() else None
