"""The local executor: a stage's tasks in a pool of worker processes on this machine, with no Ray to start.

A local Ray costs 5 to 20 s to start and about 0.8 GB before any work; these workers are forked from a fork
server that imported curate once, so a pool starts in about a second, alongside the driver's own start.
Each worker runs one task at a time, so a worker that dies (a crash, the OOM killer) was running exactly that
task: it is retried in a fresh worker, up to max_retries times, as Ray retries a task whose worker died.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from curate.errors import ConfigError
from curate.progress import reporting

MapResults = Iterator[tuple[int, Any, BaseException | None]]
# Imported by the fork server once, so that no worker imports them again.
PRELOAD = ["curate.runner"]


class WorkerDied(RuntimeError):
    """A task's worker process died (killed, crashed, out of memory) more often than it is retried."""


def _context() -> Any:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)  # no effect once the fork server runs
    return context


def warm_up() -> None:
    """Start the fork server now, so that it imports curate while the caller goes on with its own start."""
    from multiprocessing import forkserver

    _context()
    with _without_main_script():
        forkserver.ensure_running()


class _Worker:
    def __init__(self, context: Any):
        self.conn, child = context.Pipe(duplex=True)
        self.process = context.Process(target=_worker_main, args=(child,), name="curate-worker")
        # Not a daemon: PDF parsing starts a child process of its own, which daemons may not do.
        with _without_main_script():
            self.process.start()
        child.close()

    def stop(self, kill: bool = False) -> None:
        if not kill:
            with contextlib.suppress(OSError):
                self.conn.send(None)
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.conn.close()


class ProcessExecutor:
    """Runs tasks in worker processes here (one per CPU, or num_cpus); retries tasks whose worker died.

    Resources: a stage's num_cpus per task limits how many of its tasks run at once; a task needing more
    CPUs or memory than the machine has is refused (as on Ray, where it would wait forever).
    """

    def __init__(self, num_cpus: int | None = None, max_retries: int = 3):
        self.num_cpus = num_cpus or len(os.sched_getaffinity(0)) or 1
        self._max_retries = max_retries
        self._idle: list[_Worker] = []

    def _start_worker(self) -> _Worker:
        return _Worker(_context())

    def concurrency(self, resources: Any = None) -> int:
        """How many tasks run at once: the CPUs, divided by what one task reserves."""
        per_task = getattr(resources, "num_cpus", None) or 1
        memory = getattr(resources, "memory", None)
        total_memory = _physical_memory()
        if per_task > self.num_cpus or (memory and total_memory and memory > total_memory):
            raise ConfigError(
                f"this machine cannot run a task needing num_cpus={per_task}, memory={memory} bytes "
                f"({self.num_cpus} CPUs for curate, {total_memory} bytes of memory); lower the stage's "
                "num_cpus/memory or run on a Ray cluster (--address)"
            )
        return max(1, int(self.num_cpus // per_task))

    def map(
        self,
        fn: Callable[..., Any],
        args_list: Sequence[tuple],
        resources: Any = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> MapResults:
        """Run fn(*args) for each args; yield (index, result, None) or (index, None, error) as tasks end."""
        limit = self.concurrency(resources)
        # Workers outlive a call (and the fork server was started with an earlier environment): each job
        # carries this process's environment as it is now (S3 settings, CURATE_* variables).
        environment = dict(os.environ)
        queue = deque(range(len(args_list)))
        deaths: dict[int, int] = {}
        running: dict[_Worker, int] = {}
        try:
            while queue or running:
                while queue and len(running) < limit:
                    index = queue.popleft()
                    worker = self._idle.pop() if self._idle else self._start_worker()
                    try:
                        worker.conn.send((fn, args_list[index], on_progress is not None, environment))
                    except (OSError, ValueError):  # the idle worker is gone: use a fresh one
                        worker.stop(kill=True)
                        queue.appendleft(index)
                        continue
                    running[worker] = index
                handles = [w.conn for w in running] + [w.process.sentinel for w in running]
                ready = set(wait(handles))
                for worker, index in list(running.items()):
                    if worker.conn not in ready and worker.process.sentinel not in ready:
                        continue
                    outcome = _receive(worker, index, on_progress)
                    if outcome is None:
                        continue  # progress only, or nothing yet
                    del running[worker]
                    if outcome == "died":
                        worker.stop(kill=True)
                        deaths[index] = deaths.get(index, 0) + 1
                        if deaths[index] <= self._max_retries:
                            queue.appendleft(index)
                            continue
                        error = WorkerDied(
                            f"the worker process running it died {deaths[index]} times "
                            f"(last exit code {worker.process.exitcode})"
                        )
                        error.curate_node = "local"  # type: ignore[attr-defined]
                        yield index, None, error
                        continue
                    self._idle.append(worker)
                    kind, value = outcome
                    yield (index, value, None) if kind == "done" else (index, None, value)
        finally:
            for worker in running:  # interrupted, or the caller stopped early: those tasks are abandoned
                worker.stop(kill=True)

    def close(self, kill: bool = False) -> None:
        """Stop the workers (kill: at once, without letting them finish)."""
        while self._idle:
            self._idle.pop().stop(kill=kill)


@contextlib.contextmanager
def _without_main_script() -> Iterator[None]:
    """Start processes without multiprocessing re-running the driver's main script in them (workers get
    functions from curate's modules, never from __main__, and a script without a __main__ guard, pytest's or
    Ray's worker script would run again in every worker), and with Ctrl-C blocked: the fork server and the
    workers inherit the blocked signal, so the driver alone decides what an interrupt stops (no tracebacks
    from them). Blocked, not ignored: a Ctrl-C pressed while the fork server starts (it imports curate
    first, a second or more) stays pending and stops the driver once its workers are started."""
    main = sys.modules.get("__main__")
    hidden = {k: main.__dict__.pop(k) for k in ("__file__",) if main is not None and k in main.__dict__}
    spec = getattr(main, "__spec__", None)
    if main is not None:
        main.__spec__ = None
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        if main is not None:
            main.__dict__.update(hidden)
            main.__spec__ = spec
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)  # last: a pending Ctrl-C is raised here


def _receive(
    worker: _Worker, index: int, on_progress: Callable[[int, int], None] | None
) -> tuple[str, Any] | str | None:
    """Read what a worker sent: ('done', value), ('error', exc), 'died', or None (only progress so far)."""
    try:
        while worker.conn.poll():
            kind, value = worker.conn.recv()
            if kind == "progress":
                if on_progress is not None:
                    on_progress(index, value)
                continue
            if kind == "error":
                value = _loads_error(value)
            return kind, value
    except (EOFError, OSError):
        return "died"
    if not worker.process.is_alive():
        return "died"
    return None


def _loads_error(data: bytes) -> BaseException:
    try:
        return pickle.loads(data)
    except Exception as exc:  # noqa: BLE001 - an exception class the driver cannot rebuild
        return RuntimeError(f"an error that could not be read back: {exc}")


def _worker_main(conn: Connection) -> None:
    """A worker: run (fn, args) jobs until told to stop or the driver goes away."""
    # Ctrl-C in a terminal reaches the whole process group: the driver decides what stops, and how.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    send_lock = threading.Lock()

    def send(message: tuple) -> None:
        with send_lock:
            conn.send(message)

    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            job = pickle.loads(data)
        except Exception as exc:  # noqa: BLE001 - e.g. a function defined in the driver's __main__
            why = f"a worker could not load the task ({exc}); its function and arguments must be importable"
            send(("error", _dumps_error(RuntimeError(why))))
            continue
        if job is None:
            return
        fn, args, report, environment = job
        if environment != os.environ:
            os.environ.clear()
            os.environ.update(environment)
        try:
            with reporting(lambda n: send(("progress", n))) if report else contextlib.nullcontext():
                message: tuple = ("done", fn(*args))
        except Exception as exc:  # noqa: BLE001 - a failed task is the driver's to record
            exc.curate_node = "local"  # type: ignore[attr-defined]
            message = ("error", _dumps_error(exc))
        try:
            send(message)
        except Exception as exc:  # noqa: BLE001 - a result that cannot be pickled is that task's error
            send(("error", _dumps_error(RuntimeError(f"its result could not be sent back: {exc}"))))


def _dumps_error(exc: BaseException) -> bytes:
    try:
        data = pickle.dumps(exc)
        pickle.loads(data)
        return data
    except Exception:  # noqa: BLE001 - keep the type name and message at least
        return pickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}"))


def _die_with_parent() -> None:
    """On Linux, have the kernel kill this worker when the fork server exits, which it does when the driver
    does, even on SIGKILL: no orphan keeps writing into a stage a rerun is recomputing."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent had already gone
            os._exit(1)


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
