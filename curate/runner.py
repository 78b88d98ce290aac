"""Run a stage's tasks (on Ray, or in-process) and keep its output directory exactly-once and accounted for.

Layout of a stage directory:
  <task>.parquet            kept rows; written last, so its presence marks the task done; its footer carries
                            the task's counts (key b"curate.task")
  rejected/<task>.parquet   dropped rows with drop_stage/drop_reason/drop_detail ("error": errored)
  manifest.json             written when every task is done: counts, outputs with SHA-256, params, versions;
                            the previous one stays until then, so a resumed run still has its checksums
  .curate-stage.json        the fingerprint (step, params, inputs) the outputs belong to
  .curate.lock              held (flock) by the process working in the folder

Containment: the runner writes and deletes only inside the stage folder, and deletes only files it can show
it wrote: Parquet whose footer carries its key, files the last manifest lists, its own temporary files.
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
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from curate.io import (
    is_tmp,
    parquet_rows,
    parquet_schema,
    read_json,
    sha256_file,
    write_bytes,
    write_json,
    write_parquet,
)
from curate.pool import ProcessExecutor
from curate.progress import StageProgress, reporting
from curate.schema import ERROR_REASON, latest_columns
from curate.stage import Input, Stage, Task, describe_error, short_hash
from curate.storage import LOCK_FILE, StoragePath, as_path, folder_lock, is_uri

log = logging.getLogger("curate")

TASK_META_KEY = b"curate.task"
STATE_FILE = ".curate-stage.json"
MANIFEST = "manifest.json"
SCRATCH_DIR = ".scratch"  # a stage's global pass (prepare) writes here; removed when it ends
REJECTED_DIR = "rejected"
PIPELINE_FILE = "pipeline.json"  # in a pipeline's work directory (written by curate.pipeline)
# Steps besides TableStages that read their input files through curate.io, so those may be storage URIs.
STORAGE_INPUT_STEPS = {"shard", "mix"}
VERSIONED_PACKAGES = (
    "pyarrow",
    "ray",
    "pymupdf",
    "trafilatura",
    "fasttext-numpy2-wheel",
    "numpy",
    "datasketch",
)


class PreparationError(RuntimeError):
    """A task of a stage's global pass (dedup, near_dedup, mix, pubmed) failed: the stage cannot go on."""


class AccountingError(RuntimeError):
    """A stage's documents in do not equal kept + rejected + errored: a bug, never a data problem."""


@dataclass(frozen=True)
class Resources:
    """What one task of a stage reserves on a Ray node; scheduling only, so not part of the fingerprint."""

    num_cpus: float | None = None
    memory: int | None = None  # bytes

    @classmethod
    def parse(cls, num_cpus: Any = None, memory: Any = None, where: str = "") -> Resources:
        """Check YAML values (num_cpus: 2 or 0.5; memory: "2GB", "512MiB" or bytes); ValueError says what."""
        from curate.shard import parse_size

        prefix = f"{where}: " if where else ""
        bad_cpus = isinstance(num_cpus, bool) or not isinstance(num_cpus, (int, float)) or not num_cpus > 0
        if num_cpus is not None and bad_cpus:
            raise ValueError(
                f"{prefix}num_cpus must be a positive number (e.g. 1, 2 or 0.5), not {num_cpus!r}"
            )
        if memory is not None:
            try:
                memory = parse_size(memory) if not isinstance(memory, bool) else None
            except ValueError:
                memory = None
            if not memory or memory <= 0:
                raise ValueError(f"{prefix}memory must be a size such as 2GB, 512MiB or a number of bytes")
        return cls(num_cpus, memory)

    def ray_options(self) -> dict[str, Any]:
        """Keyword arguments for a Ray remote function's .options()."""
        options: dict[str, Any] = {}
        if self.num_cpus is not None:
            options["num_cpus"] = self.num_cpus
        if self.memory is not None:
            options["memory"] = self.memory
        return options


# ---------------------------------------------------------------------------------------------- task body


def execute_task(stage: Stage, task: Task, out_dir: str) -> dict[str, Any]:
    """Run one task and write its outputs; the kept file goes last so that it marks completion."""
    start = time.perf_counter()
    result = stage.process(task)
    kept, rejected = latest_columns(result.kept), latest_columns(result.rejected)
    out = as_path(out_dir)
    for name, data in sorted(result.sidecars.items()):
        write_bytes(data, _inside(out / name, out))
    rejected_path = out / REJECTED_DIR / f"{task.name}.parquet"
    reasons = Counter(rejected.column("drop_reason").to_pylist()) if rejected.num_rows else {}
    errored = reasons.get(ERROR_REASON, 0)
    counts = {
        "in": stage.count_in(task),
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
    if rejected.num_rows:
        write_parquet(_with_task_key(rejected, counts), rejected_path)
    else:
        _unlink_owned(rejected_path, out)
    write_parquet(
        _with_task_key(kept, counts), out / f"{task.name}.parquet", row_group_size=stage.row_group_size
    )
    return {**counts, "node": _node_id(), "seconds": round(time.perf_counter() - start, 3)}


def _with_task_key(table: pa.Table, counts: dict[str, Any]) -> pa.Table:
    meta = dict(table.schema.metadata or {})
    meta[TASK_META_KEY] = json.dumps(counts, sort_keys=True).encode()
    return table.replace_schema_metadata(meta)


def _characters(table: pa.Table) -> int:
    if table.num_rows == 0 or "text" not in table.column_names:
        return 0
    return int(pc.sum(pc.utf8_length(table.column("text"))).as_py() or 0)


def _node_id() -> str:
    try:
        ray = sys.modules.get("ray")  # never imported here just to ask: a local worker has no Ray
        if ray is not None and ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - the node id is informational only
        pass
    return "local"


# ---------------------------------------------------------------------------------------------- executors

MapResults = Iterator[tuple[int, Any, BaseException | None]]


class LocalExecutor:
    """Runs tasks one after another in this process: for tests and debugging (resources are ignored)."""

    def map(
        self,
        fn: Callable[..., Any],
        args_list: Sequence[tuple],
        resources: Resources | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> MapResults:
        for i, args in enumerate(args_list):
            try:
                if on_progress is None:
                    value = fn(*args)
                else:
                    with reporting(lambda n, i=i: on_progress(i, n)):
                        value = fn(*args)
                yield i, value, None
            except Exception as exc:  # noqa: BLE001 - a failed task is recorded, not raised
                exc.curate_node = "local"  # type: ignore[attr-defined]
                yield i, None, exc

    def close(self, kill: bool = False) -> None:
        """Nothing to stop."""


def _call(fn: Callable[..., Any], report_to: tuple[Any, int] | None, *args: Any) -> Any:
    try:
        if report_to is None:
            return fn(*args)
        inbox, index = report_to
        with reporting(lambda n: inbox.add.remote(index, n), interval=1.0):
            return fn(*args)
    except Exception as exc:
        # Exceptions pickle their __dict__, so the driver learns which node the task failed on.
        exc.curate_node = _node_id()  # type: ignore[attr-defined]
        raise


class _ProgressInbox:
    """A Ray actor that collects documents reported by running tasks until the driver takes them."""

    def __init__(self) -> None:
        self._counts: Counter = Counter()

    def add(self, index: int, n: int) -> None:
        self._counts[index] += n

    def take(self) -> dict[int, int]:
        counts, self._counts = self._counts, Counter()
        return dict(counts)


class RayExecutor:
    """Runs tasks as Ray tasks with retries on worker failure and a bounded number in flight."""

    def __init__(self, max_retries: int = 3, max_in_flight: int | None = None):
        import ray

        self._ray = ray
        self._remote = ray.remote(_call)
        self._options = {"max_retries": max_retries, "retry_exceptions": False}
        self._cpus = int(ray.cluster_resources().get("CPU", 1))
        self._max_in_flight = max_in_flight

    def in_flight_limit(self, resources: Resources | None = None) -> int:
        """Tasks submitted at once: twice what the cluster can run, so the object store never fills."""
        if self._max_in_flight:
            return self._max_in_flight
        per_task = (resources.num_cpus if resources and resources.num_cpus else None) or 1
        return max(2, int(2 * self._cpus / per_task))

    def check_fits(self, resources: Resources | None) -> None:
        """Refuse a task size no node can hold: Ray would otherwise wait for it forever."""
        if not resources or (resources.num_cpus is None and resources.memory is None):
            return
        nodes = [n["Resources"] for n in self._ray.nodes() if n.get("Alive")]
        if any(
            (resources.num_cpus or 0) <= n.get("CPU", 0) and (resources.memory or 0) <= n.get("memory", 0)
            for n in nodes
        ):
            return
        largest = max(nodes, key=lambda n: n.get("CPU", 0), default={})
        raise ValueError(
            f"no node of the cluster can run a task needing num_cpus={resources.num_cpus}, "
            f"memory={resources.memory} bytes (largest node: {largest.get('CPU', 0):g} CPUs, "
            f"{int(largest.get('memory', 0))} bytes of memory); lower the stage's num_cpus/memory"
        )

    def map(
        self,
        fn: Callable[..., Any],
        args_list: Sequence[tuple],
        resources: Resources | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> MapResults:
        ray = self._ray
        self.check_fits(resources)
        remote = self._remote.options(**self._options, **(resources.ray_options() if resources else {}))
        limit = self.in_flight_limit(resources)
        # Large shared arguments (the stage object) go to the object store once, not once per task.
        shared = {id(a): ray.put(a) for args in args_list for a in args if isinstance(a, Stage)}
        # Tasks report documents to a small actor; the driver collects them while it waits.
        inbox = ray.remote(num_cpus=0)(_ProgressInbox).remote() if on_progress else None
        taking = None
        pending: dict[Any, int] = {}
        next_index = 0
        try:
            while next_index < len(args_list) or pending:
                while next_index < len(args_list) and len(pending) < limit:
                    args = [shared.get(id(a), a) for a in args_list[next_index]]
                    report_to = (inbox, next_index) if inbox is not None else None
                    pending[remote.remote(fn, report_to, *args)] = next_index
                    next_index += 1
                done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5 if inbox else None)
                if inbox is not None:
                    taking = taking or inbox.take.remote()
                    if ray.wait([taking], timeout=0)[0]:
                        for index, n in ray.get(taking).items():
                            on_progress(index, n)
                        taking = None
                for ref in done:
                    index = pending.pop(ref)
                    try:
                        yield index, ray.get(ref), None
                    except Exception as exc:  # noqa: BLE001 - a failed task is recorded, not raised
                        yield index, None, getattr(exc, "cause", None) or exc
        finally:
            # The caller stopped early (a failed global pass, a full disk): stop the tasks still running, so
            # none writes into a scratch folder after it is removed.
            for ref in pending:
                ray.cancel(ref, force=True)
            if pending:
                ray.wait(list(pending), num_returns=len(pending), timeout=60)
            if inbox is not None:
                with contextlib.suppress(Exception):
                    ray.kill(inbox)

    def close(self, kill: bool = False) -> None:
        """Ray stays up until the process ends (or ray.shutdown())."""


Executor = LocalExecutor | ProcessExecutor | RayExecutor


class RayUnreachable(ConnectionError):
    """--address names a Ray cluster this machine cannot reach: a usage error, said before anything runs."""


def probe_ray_address(address: str, timeout: float = 5.0) -> None:
    """Check that the GCS port of `address` (HOST:PORT, ray://HOST:PORT) accepts a TCP connection, so that a
    wrong address fails in seconds instead of Ray retrying for minutes; raise RayUnreachable saying why."""
    target = address.split("://", 1)[-1].rstrip("/")
    host, _, port_text = target.rpartition(":")
    if not host:
        host, port_text = target, "6379"
    host = host.strip("[]")  # [::1]:6379
    try:
        port = int(port_text)
    except ValueError:
        raise RayUnreachable(
            f"cannot reach Ray at {address}: expected HOST:PORT (e.g. 10.0.0.5:6379), or 'local'"
        ) from None
    found: list[Any] = []
    failure: list[BaseException] = []

    def resolve() -> None:
        try:
            found.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            failure.append(exc)

    # getaddrinfo has no timeout of its own: a thread bounds it.
    resolver = threading.Thread(target=resolve, daemon=True)
    resolver.start()
    resolver.join(timeout)
    if not found:
        why = f"{failure[0]}" if failure else f"no answer within {timeout:g} s"
        raise RayUnreachable(f"cannot reach Ray at {address}: host {host!r} does not resolve ({why})")
    errors = []
    for family, kind, proto, _, sockaddr in found:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(timeout)
                sock.connect(sockaddr)
                return
        except OSError as exc:
            errors.append(f"{sockaddr[0]}: {exc.strerror or exc}")
    raise RayUnreachable(
        f"cannot reach Ray at {address} ({'; '.join(errors)}): is `ray start --head` running there, and is "
        "PORT its GCS port (6379 by default)? Without --address (and RAY_ADDRESS) curate runs locally"
    )


def start_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to a cluster (address or RAY_ADDRESS), or with address 'local' start a Ray in this process."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never phone home
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address not in ("local", "auto"):
        probe_ray_address(address)
    import ray

    if ray.is_initialized():
        return
    if address and address != "local":
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
        return
    # A private Ray of this process: its token is generated and used here alone, so Ray's notice that token
    # authentication is on says nothing to act on.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    # address="local" starts a fresh Ray even if a `ray start` cluster is running on this machine.
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        logging_level=logging.WARNING,
        _node_ip_address="127.0.0.1",
    )


def make_executor(address: str | None = None, num_cpus: int | None = None) -> Executor:
    """The executor for a run: Ray when an address is given (or RAY_ADDRESS), else a local process pool."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if not address:
        return ProcessExecutor(num_cpus)
    start_ray(address, num_cpus)
    return RayExecutor()


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
    executor: LocalExecutor | RayExecutor,
    progress: Callable[[str, int], Any] | None,
    resources: Resources | None,
) -> dict[str, Any]:
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    tasks = stage.plan(inputs)
    fingerprint = _fingerprint(stage, tasks, out)
    _reset_if_changed(out, fingerprint, stage.name)
    # The last manifest stays until this run writes its own: its checksums find damage after a killed run.
    previous = _previous_checksums(out)
    write_json({"fingerprint": fingerprint, "step": stage.step, "params": stage.params()}, out / STATE_FILE)
    _remove_stale(out, {t.name for t in tasks})

    hashes: dict[Any, str] = {}  # checksums computed while validating, reused by the manifest
    todo = [t for t in tasks if not _is_finished(out, t.name, previous, stage.name, hashes)]
    failed: list[dict[str, Any]] = []
    nodes: Counter = Counter()  # tasks run per Ray node, in this invocation
    node_seconds: Counter = Counter()
    state = _stage_progress(stage, tasks, todo)
    view = progress(state) if progress else None
    try:
        _run_tasks(stage, tasks, todo, out, executor, resources, state, failed, nodes, node_seconds)
    except BaseException:
        state.stopped = True
        raise
    finally:
        state.close()
        if view is not None:
            view.close()
    task_seconds = sum(node_seconds.values())

    manifest = _manifest(stage, tasks, inputs, out, failed, fingerprint, hashes)
    manifest.update(
        started=started.isoformat(timespec="seconds"),
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        wall_seconds=round(time.perf_counter() - t0, 3),
    )
    manifest["tasks"].update(run=len(todo), skipped=len(tasks) - len(todo), seconds=round(task_seconds, 3))
    manifest["nodes"] = dict(sorted(nodes.items()))
    manifest["node_seconds"] = {n: round(s, 3) for n, s in sorted(node_seconds.items())}
    manifest["resources"] = resources.ray_options() if resources else {}
    counts = manifest["counts"]
    if counts["in"] != counts["kept"] + counts["rejected"] + counts["errored"]:
        # No manifest: the stage counts as unfinished, and a rerun recomputes it.
        raise AccountingError(f"stage {stage.name!r}: counts do not add up: {counts}")
    stage.finish(out, manifest)
    write_json(manifest, out / MANIFEST)
    return manifest


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


def _run_tasks(
    stage: Stage,
    tasks: list[Task],
    todo: list[Task],
    out: Path | StoragePath,
    executor: Executor,
    resources: Resources | None,
    state: StageProgress,
    failed: list[dict[str, Any]],
    nodes: Counter,
    node_seconds: Counter,
) -> None:
    """The global pass, then the unfinished tasks; failures recorded, progress kept current."""
    if not todo:
        return
    scratch = _scratch_dir(out)
    try:
        # A full disk in the global pass is most likely the scratch folder's (local when out is a URI).
        prepared = stage.prepare(
            tasks, lambda fn, args: _map_all(executor, fn, args, resources, scratch, state), scratch, out
        )
    except PreparationError as exc:
        raise PreparationError(
            f"stage {stage.name!r}: {exc}. Nothing of this stage was written; fix the cause and rerun "
            "the same command (finished stages are skipped)"
        ) from exc.__cause__
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        state.phase = ""
    todo = [{t.name: t for t in prepared}[t.name] for t in todo]
    work = [(stage, t, str(out)) for t in todo]
    with contextlib.closing(executor.map(execute_task, work, resources, state.report)) as mapped:
        for index, counts, error in mapped:
            if error is not None:
                _raise_if_disk_full(error, out)
                failed.append(_record_failure(stage, todo[index], out, error))
                state.task_finished(index, failed[-1]["documents"])
            else:
                nodes[counts["node"]] += 1
                node_seconds[counts["node"]] += counts["seconds"]
                state.task_finished(index, counts["in"])


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
    what = ", ".join(a for a in paths if SCRATCH_DIR not in a and "curate-scratch-" not in a)
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
                raise ValueError(
                    f"stage {stage.name!r}: its output folder {out} overlaps its input {item.path}; "
                    "write to a folder outside the inputs (--out / the work directory)"
                )
    foreign = _foreign_files(out)
    if foreign:
        raise ValueError(
            f"stage {stage.name!r}: {out} holds Parquet files that curate did not write here "
            f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); curate never deletes them: "
            "write to a new or empty folder, or move them away"
        )


def _foreign_files(out: Path | StoragePath) -> list[str]:
    """Parquet files in a stage folder (or its rejected/) that curate cannot show it wrote."""
    if not out.is_dir():
        return []
    listed = _listed(out)
    return [
        str(f.relative_to(out))
        for folder in (out, out / REJECTED_DIR)
        if folder.is_dir()
        for f in sorted(folder.iterdir())
        if f.name.endswith(".parquet") and not f.is_dir() and not _owned(f, out, listed)
    ]


def check_storage(stage: Stage, inputs: list[Input], out: Path | StoragePath) -> None:
    """Say clearly what cannot run on object storage, before any work."""
    from curate.stage import TableStage

    remote = [i.path for i in inputs if is_uri(i.path)]
    if remote and not (isinstance(stage, TableStage) or stage.step in STORAGE_INPUT_STEPS):
        raise ValueError(
            f"stage {stage.name!r} (step {stage.step}) reads its input files from a local or shared-mount "
            f"folder; storage URIs ({remote[0]}) work only for the inputs of Parquet stages, shard and mix"
        )


def _scratch_dir(out: Path | StoragePath) -> Path:
    """An empty folder for a stage's global pass: inside the output dir, or local when that is a URI."""
    if isinstance(out, StoragePath):
        # Object stores are no place for many small temporary files. On more than one node, CURATE_SCRATCH
        # must name a shared mount (README, "A work directory on S3").
        root = os.environ.get("CURATE_SCRATCH") or None
        if root:
            Path(root).mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="curate-scratch-", dir=root))
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


def _reset_if_changed(out: Path | StoragePath, fingerprint: str, name: str) -> None:
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
    log.warning("stage %s: parameters or inputs changed since the last run; recomputing it", name)
    listed = _listed(out)
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


def _listed(out: Path | StoragePath) -> set[str]:
    """Paths (relative to the stage folder) that the stage's last manifest says curate wrote."""
    listed = {e["path"] for e in _manifest_entries(out)}
    try:  # a report a stage writes beside its outputs (the mix report)
        report = read_json(out / MANIFEST).get("mix", {}).get("report")
    except (OSError, ValueError, AttributeError):
        report = None
    return listed | ({report} if isinstance(report, str) else set())


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
    if not path.name.endswith(".parquet"):
        return False
    try:
        return TASK_META_KEY in (parquet_schema(path).metadata or {})
    except Exception:  # noqa: BLE001 - unreadable: not provably ours
        return False


def _unlink_owned(path: Path | StoragePath, out: Path | StoragePath) -> None:
    _inside(path, out).unlink(missing_ok=True)


def _is_finished(
    out: Path | StoragePath, name: str, previous: dict[str, str], stage_name: str, hashes: dict[Any, str]
) -> bool:
    """Whether a task's outputs are complete and intact; a damaged one is removed so the task runs again."""
    kept = out / f"{name}.parquet"
    if not kept.exists():
        return False
    rejected = out / "rejected" / f"{name}.parquet"
    try:
        counts = json.loads(parquet_schema(kept).metadata[TASK_META_KEY])
        if parquet_rows(kept) != counts["kept"]:
            raise ValueError("kept rows differ from the task's counts")
        dropped = counts["rejected"] + counts["errored"]
        if dropped and parquet_rows(rejected) != dropped:
            raise ValueError("rejected rows differ from the task's counts")
        for path in (kept, rejected) if dropped else (kept,):
            recorded = previous.get(str(path.relative_to(out)))
            if recorded:
                hashes[path] = sha256_file(path)
                if hashes[path] != recorded:
                    raise ValueError(f"{path.name} differs from the checksum in the last manifest")
    except Exception as exc:  # noqa: BLE001 - any damage means: compute it again
        log.warning("stage %s: output of task %s is damaged (%s); recomputing it", stage_name, name, exc)
        listed = set(previous)
        for path in (kept, rejected):
            hashes.pop(path, None)  # the damaged file's: the manifest must get the recomputed one's
            if path.exists() and not _owned(path, out, listed):
                raise ValueError(
                    f"stage {stage_name!r}: {path} is damaged and curate cannot show that it wrote it "
                    "(no readable footer, not in the manifest); delete or move it, then rerun"
                ) from exc
            _unlink_owned(path, out)
        return False
    return True


class DiskFullError(OSError):
    """The output filesystem is full: nothing partial is kept, and a rerun resumes once space is freed."""


def _raise_if_disk_full(error: BaseException, out: Path | StoragePath) -> None:
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        # The folder of the file that did not fit: the stage folder, its scratch, or another (crawl state).
        where = Path(os.fsdecode(error.filename)).parent if error.filename else out
        raise DiskFullError(
            errno.ENOSPC,
            f"no space left while writing {where}: free some space there and rerun the same command "
            "(finished shards are kept and will not be recomputed)",
        ) from error


def _remove_stale(out: Path | StoragePath, names: set[str]) -> None:
    """Remove temporary files of interrupted writes, and outputs of tasks this run does not have."""
    listed = _listed(out)
    for folder in (out, out / REJECTED_DIR):
        if not folder.is_dir():
            continue
        for f in folder.iterdir():
            stale = f.name.endswith(".parquet") and f.name.removesuffix(".parquet") not in names
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
    write_parquet(_with_task_key(rows, counts), out / REJECTED_DIR / f"{task.name}.parquet")
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
    kept_path = out / f"{task.name}.parquet"
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


def _file_entry(path: Path | StoragePath, root: Path | StoragePath, hashes: dict[Any, str]) -> dict[str, Any]:
    return {
        "path": str(path.relative_to(root)),
        "rows": parquet_rows(path),
        "bytes": path.stat().st_size,
        "sha256": hashes.get(path) or sha256_file(path),
    }


def _manifest(
    stage: Stage,
    tasks: list[Task],
    inputs: list[Input],
    out: Path | StoragePath,
    failed: list[dict],
    fingerprint: str,
    hashes: dict[Any, str],
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
