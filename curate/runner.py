"""Run a stage's tasks (on Ray, or in-process) and keep its output directory exactly-once and accounted for.

Layout of a stage directory:
  <task>.parquet            kept rows; written last, so its presence marks the task done; its footer carries
                            the task's counts (key b"curate.task")
  rejected/<task>.parquet   dropped rows with drop_stage/drop_reason/drop_detail ("error": errored)
  manifest.json             written when every task is done: counts, outputs with SHA-256, params, versions
  .curate-stage.json        the fingerprint (step, params, inputs) the outputs belong to
"""

from __future__ import annotations

import errno
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.io import is_tmp, read_json, sha256_file, write_bytes, write_json, write_parquet
from curate.schema import ERROR_REASON
from curate.stage import Input, Stage, Task, describe_error, short_hash

log = logging.getLogger("curate")

TASK_META_KEY = b"curate.task"
STATE_FILE = ".curate-stage.json"
MANIFEST = "manifest.json"
SCRATCH_DIR = ".scratch"  # a stage's global pass (prepare) writes here; removed when it ends
VERSIONED_PACKAGES = (
    "pyarrow",
    "ray",
    "pymupdf",
    "trafilatura",
    "fasttext-numpy2-wheel",
    "numpy",
    "datasketch",
)


class AccountingError(RuntimeError):
    """A stage's documents in do not equal kept + rejected + errored: a bug, never a data problem."""


# ---------------------------------------------------------------------------------------------- task body


def execute_task(stage: Stage, task: Task, out_dir: str) -> dict[str, Any]:
    """Run one task and write its outputs; the kept file goes last so that it marks completion."""
    start = time.perf_counter()
    result = stage.process(task)
    out = Path(out_dir)
    for name, data in sorted(result.sidecars.items()):
        write_bytes(data, out / name)
    rejected_path = out / "rejected" / f"{task.name}.parquet"
    if result.rejected.num_rows:
        write_parquet(result.rejected, rejected_path)
    else:
        rejected_path.unlink(missing_ok=True)
    reasons = Counter(result.rejected.column("drop_reason").to_pylist()) if result.rejected.num_rows else {}
    errored = reasons.get(ERROR_REASON, 0)
    counts = {
        "in": stage.count_in(task),
        "kept": result.kept.num_rows,
        "rejected": result.rejected.num_rows - errored,
        "errored": errored,
        "characters_kept": _characters(result.kept),
        "characters_rejected": _characters(result.rejected),
        "drop_reasons": dict(sorted(reasons.items())),
    }
    if counts["in"] != counts["kept"] + result.rejected.num_rows:
        raise AccountingError(
            f"stage {stage.name!r} task {task.name}: {counts['in']} documents in, but {counts['kept']} kept "
            f"+ {result.rejected.num_rows} rejected/errored"
        )
    # Only deterministic facts go into the file, so that a rerun writes identical bytes.
    meta = dict(result.kept.schema.metadata or {})
    meta[TASK_META_KEY] = json.dumps(counts, sort_keys=True).encode()
    write_parquet(
        result.kept.replace_schema_metadata(meta),
        out / f"{task.name}.parquet",
        row_group_size=stage.row_group_size,
    )
    return {**counts, "node": _node_id(), "seconds": round(time.perf_counter() - start, 3)}


def _characters(table: pa.Table) -> int:
    if table.num_rows == 0 or "text" not in table.column_names:
        return 0
    return int(pc.sum(pc.utf8_length(table.column("text"))).as_py() or 0)


def _node_id() -> str:
    try:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - the node id is informational only
        pass
    return "local"


# ---------------------------------------------------------------------------------------------- executors

MapResults = Iterator[tuple[int, Any, BaseException | None]]


class LocalExecutor:
    """Runs tasks one after another in this process: for tests and debugging."""

    def map(self, fn: Callable[..., Any], args_list: Sequence[tuple]) -> MapResults:
        for i, args in enumerate(args_list):
            try:
                yield i, fn(*args), None
            except Exception as exc:  # noqa: BLE001 - a failed task is recorded, not raised
                yield i, None, exc


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


class RayExecutor:
    """Runs tasks as Ray tasks with retries on worker failure and a bounded number in flight."""

    def __init__(self, max_retries: int = 3, max_in_flight: int | None = None):
        import ray

        self._ray = ray
        self._remote = ray.remote(_call).options(max_retries=max_retries, retry_exceptions=False)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.max_in_flight = max_in_flight or max(2, 2 * cpus)

    def map(self, fn: Callable[..., Any], args_list: Sequence[tuple]) -> MapResults:
        ray = self._ray
        # Large shared arguments (the stage object) go to the object store once, not once per task.
        shared = {id(a): ray.put(a) for args in args_list for a in args if isinstance(a, Stage)}
        pending: dict[Any, int] = {}
        next_index = 0
        while next_index < len(args_list) or pending:
            while next_index < len(args_list) and len(pending) < self.max_in_flight:
                args = [shared.get(id(a), a) for a in args_list[next_index]]
                pending[self._remote.remote(fn, *args)] = next_index
                next_index += 1
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                index = pending.pop(ref)
                try:
                    yield index, ray.get(ref), None
                except Exception as exc:  # noqa: BLE001 - a failed task is recorded, not raised
                    yield index, None, getattr(exc, "cause", None) or exc


def start_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to a cluster (address or RAY_ADDRESS), or start a local Ray in this process."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never phone home
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
        return
    # address="local" starts a fresh Ray even if a `ray start` cluster is running on this machine.
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        logging_level=logging.WARNING,
        _node_ip_address="127.0.0.1",
    )


# ---------------------------------------------------------------------------------------------- the stage run


def run_stage(
    stage: Stage,
    inputs: list[Input],
    out_dir: str | os.PathLike,
    executor: LocalExecutor | RayExecutor,
    progress: Callable[[str, int], Any] | None = None,
) -> dict[str, Any]:
    """Run a stage into out_dir: skip finished tasks, run the rest, check the accounting, write a manifest."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    tasks = stage.plan(inputs)
    fingerprint = _fingerprint(stage, tasks, out)
    _reset_if_changed(out, fingerprint, stage.name)
    previous = _previous_checksums(out)
    (out / MANIFEST).unlink(missing_ok=True)  # a stage without a manifest is unfinished
    write_json({"fingerprint": fingerprint, "step": stage.step, "params": stage.params()}, out / STATE_FILE)
    _remove_stale(out, {t.name for t in tasks})

    hashes: dict[Path, str] = {}  # checksums computed while validating, reused by the manifest
    todo = [t for t in tasks if not _is_finished(out, t.name, previous, stage.name, hashes)]
    failed: list[dict[str, Any]] = []
    nodes: Counter = Counter()  # tasks run per Ray node, in this invocation
    task_seconds = 0.0
    bar = progress(stage.name, len(tasks)) if progress else None
    if bar:
        bar.advance(len(tasks) - len(todo))
    if todo:
        scratch = out / SCRATCH_DIR
        shutil.rmtree(scratch, ignore_errors=True)  # a killed run's leftovers are recomputed, never reused
        scratch.mkdir()
        try:
            prepared = stage.prepare(tasks, lambda fn, args: _map_all(executor, fn, args), scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        todo = [{t.name: t for t in prepared}[t.name] for t in todo]
        for index, counts, error in executor.map(execute_task, [(stage, t, str(out)) for t in todo]):
            if error is not None:
                _raise_if_disk_full(error, out)
                failed.append(_record_failure(stage, todo[index], out, error))
            else:
                nodes[counts["node"]] += 1
                task_seconds += counts["seconds"]
            if bar:
                bar.advance(1)
    if bar:
        bar.close()

    manifest = _manifest(stage, tasks, inputs, out, failed, fingerprint, hashes)
    manifest.update(
        started=started.isoformat(timespec="seconds"),
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        wall_seconds=round(time.perf_counter() - t0, 3),
    )
    manifest["tasks"].update(run=len(todo), skipped=len(tasks) - len(todo), seconds=round(task_seconds, 3))
    manifest["nodes"] = dict(sorted(nodes.items()))
    stage.finish(out, manifest)
    write_json(manifest, out / MANIFEST)
    counts = manifest["counts"]
    if counts["in"] != counts["kept"] + counts["rejected"] + counts["errored"]:
        raise AccountingError(f"stage {stage.name!r}: counts do not add up: {counts}")
    return manifest


def _map_all(
    executor: LocalExecutor | RayExecutor, fn: Callable[..., Any], args_list: Sequence[tuple]
) -> list:
    results: list[Any] = [None] * len(args_list)
    for index, value, error in executor.map(fn, args_list):
        if error is not None:
            raise RuntimeError(f"preparation task {index} failed: {describe_error(error)}") from error
        results[index] = value
    return results


def _fingerprint(stage: Stage, tasks: list[Task], out: Path) -> str:
    workdir = out.resolve().parent
    signatures = []
    for p in sorted({p for t in tasks for p in t.inputs}):
        st = os.stat(p)
        # Inputs inside the work directory are named relative to it, so a moved work directory still resumes.
        path = Path(p).resolve()
        name = path.relative_to(workdir).as_posix() if path.is_relative_to(workdir) else str(path)
        signatures.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    params = json.dumps(stage.params(), sort_keys=True, default=str)
    return short_hash(stage.step, params, *[f"{t.name}:{t.payload!r}" for t in tasks], *signatures)


def _reset_if_changed(out: Path, fingerprint: str, name: str) -> None:
    state = out / STATE_FILE
    if not state.exists():
        return
    try:
        previous = read_json(state).get("fingerprint")
    except (OSError, ValueError):
        previous = None
    if previous != fingerprint:
        log.warning("stage %s: parameters or inputs changed since the last run; recomputing it", name)
        for child in out.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()


def _previous_checksums(out: Path) -> dict[str, str]:
    """SHA-256 of each output as the last complete run of this stage recorded it."""
    try:
        manifest = read_json(out / MANIFEST)
        return {e["path"]: e["sha256"] for e in manifest["outputs"] + manifest["rejected_outputs"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _is_finished(
    out: Path, name: str, previous: dict[str, str], stage_name: str, hashes: dict[Path, str]
) -> bool:
    """Whether a task's outputs are complete and intact; a damaged one is removed so the task runs again."""
    kept = out / f"{name}.parquet"
    if not kept.exists():
        return False
    rejected = out / "rejected" / f"{name}.parquet"
    try:
        counts = json.loads(pq.read_schema(kept).metadata[TASK_META_KEY])
        if pq.ParquetFile(kept).metadata.num_rows != counts["kept"]:
            raise ValueError("kept rows differ from the task's counts")
        dropped = counts["rejected"] + counts["errored"]
        if dropped and pq.ParquetFile(rejected).metadata.num_rows != dropped:
            raise ValueError("rejected rows differ from the task's counts")
        for path in (kept, rejected) if dropped else (kept,):
            recorded = previous.get(str(path.relative_to(out)))
            if recorded:
                hashes[path] = sha256_file(path)
                if hashes[path] != recorded:
                    raise ValueError(f"{path.name} differs from the checksum in the last manifest")
    except Exception as exc:  # noqa: BLE001 - any damage means: compute it again
        log.warning("stage %s: output of task %s is damaged (%s); recomputing it", stage_name, name, exc)
        kept.unlink(missing_ok=True)
        rejected.unlink(missing_ok=True)
        return False
    return True


class DiskFullError(OSError):
    """The output filesystem is full: nothing partial is kept, and a rerun resumes once space is freed."""


def _raise_if_disk_full(error: BaseException, out: Path) -> None:
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        raise DiskFullError(
            errno.ENOSPC,
            f"no space left while writing {out}: free some space and rerun the same command "
            "(finished shards are kept and will not be recomputed)",
        ) from error


def _remove_stale(out: Path, names: set[str]) -> None:
    for folder in (out, out / "rejected"):
        if not folder.is_dir():
            continue
        for f in folder.iterdir():
            if f.is_file() and (is_tmp(f) or (f.suffix == ".parquet" and f.stem not in names)):
                f.unlink()


def _record_failure(stage: Stage, task: Task, out: Path, error: BaseException) -> dict[str, Any]:
    message = describe_error(error)
    log.error("stage %s: task %s failed: %s", stage.name, task.name, message)
    rows = stage.error_rows(task, message)
    write_parquet(rows, out / "rejected" / f"{task.name}.parquet")
    return {"task": task.name, "inputs": list(task.inputs), "error": message}


def _task_counts(stage: Stage, task: Task, out: Path, failed: dict[str, dict]) -> dict[str, Any]:
    kept_path = out / f"{task.name}.parquet"
    if task.name not in failed:
        return json.loads(pq.read_schema(kept_path).metadata[TASK_META_KEY])
    try:
        documents = stage.count_in(task)
    except Exception:  # noqa: BLE001 - an unreadable input counts as one errored document per file
        documents = len(task.inputs)
    return {
        "in": documents,
        "kept": 0,
        "rejected": 0,
        "errored": documents,
        "characters_kept": 0,
        "characters_rejected": 0,
        "drop_reasons": {ERROR_REASON: documents},
    }


def _file_entry(path: Path, root: Path, hashes: dict[Path, str]) -> dict[str, Any]:
    return {
        "path": str(path.relative_to(root)),
        "rows": pq.ParquetFile(path).metadata.num_rows,
        "bytes": path.stat().st_size,
        "sha256": hashes.get(path) or sha256_file(path),
    }


def _manifest(
    stage: Stage,
    tasks: list[Task],
    inputs: list[Input],
    out: Path,
    failed: list[dict],
    fingerprint: str,
    hashes: dict[Path, str],
) -> dict[str, Any]:
    failed_by_name = {f["task"]: f for f in failed}
    totals: Counter = Counter()
    reasons: Counter = Counter()
    for task in tasks:
        c = _task_counts(stage, task, out, failed_by_name)
        totals.update(
            {k: c[k] for k in ("in", "kept", "rejected", "errored", "characters_kept", "characters_rejected")}
        )
        reasons.update(c["drop_reasons"])
    outputs = [
        _file_entry(out / f"{t.name}.parquet", out, hashes) for t in tasks if t.name not in failed_by_name
    ]
    rejected = [
        _file_entry(p, out, hashes) for t in tasks if (p := out / "rejected" / f"{t.name}.parquet").exists()
    ]
    schema = pq.read_schema(out / outputs[0]["path"]).remove_metadata() if outputs else None
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
    path = Path(stage_dir) / MANIFEST
    return read_json(path) if path.exists() else None
