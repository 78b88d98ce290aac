"""Progress of a running stage in documents: tasks report documents as they finish them, the driver shows the
count, the rate and the time left.

Stage code calls `report_documents(n)` when it is done with n documents; outside a task nothing listens and it
costs nothing. The executor running a task routes the reports to the driver (through the worker's pipe, or
a small Ray actor on a cluster), where the runner adds them to the stage's `StageProgress`. When a task ends,
its final count replaces what it reported, so a retried task is never counted twice, and stages that report
nothing while they run still advance task by task.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

_sink: Callable[[int], None] | None = None


def report_documents(n: int = 1) -> None:
    """Tell the driver that the running task has finished n more documents (a no-op outside a task)."""
    if _sink is not None and n:
        _sink(n)


@contextmanager
def reporting(sink: Callable[[int], None], interval: float = 0.25) -> Iterator[None]:
    """Within the block, report_documents() reaches sink, batched to at most one call per interval."""
    global _sink
    lock = threading.Lock()  # a stage may report from threads (the scraper's fetches)
    pending = 0
    last = 0.0

    def batched(n: int) -> None:
        nonlocal pending, last
        with lock:
            pending += n
            now = time.monotonic()
            if now - last < interval:
                return
            n, pending, last = pending, 0, now
            sink(n)

    previous, _sink = _sink, batched
    try:
        yield
    finally:
        # What is still pending is not sent: the task's final count, which the driver gets with its result,
        # replaces everything it reported.
        _sink = previous


@dataclass
class StageProgress:
    """Tasks and documents of one running stage, as the runner learns them; views read it from a thread."""

    name: str
    tasks: int
    documents: int | None  # expected documents in, None when the stage cannot know before it runs
    tasks_done: int = 0
    documents_done: int = 0
    phase: str = ""  # what a global pass is doing (it reports tasks, not documents)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    stopped: bool = False  # ended by an error or an interrupt, not done
    _skipped_tasks: int = 0
    _skipped_documents: int = 0
    _live: dict[int, int] = field(default_factory=dict)
    _ended: set[int] = field(default_factory=set)

    def skip(self, tasks: int, documents: int) -> None:
        """Tasks a rerun found finished: counted as done, but not in the rate."""
        self._skipped_tasks += tasks
        self._skipped_documents += documents
        self.tasks_done += tasks
        self.documents_done += documents

    def report(self, task: int, documents: int) -> None:
        """A running task (by its index in this run) finished some documents."""
        if task in self._ended:
            return  # a late report from a task already counted in full
        self._live[task] = self._live.get(task, 0) + documents
        self.documents_done += documents

    def task_finished(self, task: int, documents: int) -> None:
        """A task ended (kept, rejected or failed) having read `documents` documents in all."""
        self._ended.add(task)
        self.documents_done += documents - self._live.pop(task, 0)
        self.tasks_done += 1

    def close(self) -> None:
        """The stage is over."""
        self.phase = ""
        self.finished = time.monotonic()

    @property
    def elapsed(self) -> float:
        """Seconds since the stage started (until it finished)."""
        return (self.finished or time.monotonic()) - self.started

    @property
    def rate(self) -> float | None:
        """Documents per second in this run (resumed documents left out); None before the first one."""
        done = self.documents_done - self._skipped_documents
        return done / self.elapsed if done > 0 and self.elapsed > 0 else None

    @property
    def eta(self) -> float | None:
        """Seconds left: by documents when their total is known, else by tasks; None until there is a rate."""
        if self.finished is not None:
            return 0.0
        if self.documents is not None and self.rate:
            return max(0.0, (self.documents - self.documents_done) / self.rate)
        ran = self.tasks_done - self._skipped_tasks
        if ran > 0:
            return self.elapsed * (self.tasks - self.tasks_done) / ran
        return None

    def counts(self) -> str:
        """'1,200/2,000 docs, 312 docs/s, ETA 0:00:04, 2/4 tasks' (what is known of it)."""
        docs = f"{self.documents_done:,}" + (f"/{self.documents:,}" if self.documents is not None else "")
        parts = [f"{docs} docs"]
        rate = self.rate
        if rate is not None:
            parts.append(f"{rate:,.0f} docs/s" if rate >= 10 else f"{rate:.1f} docs/s")
        eta = self.eta
        if self.finished is None:
            parts.append(f"ETA {format_seconds(eta)}" if eta is not None else "ETA -")
        parts.append(f"{self.tasks_done}/{self.tasks} tasks")
        if self.phase:
            parts.append(self.phase)
        return ", ".join(parts)

    def line(self) -> str:
        """One plain line for logs: the stage, how far it is, and its elapsed time."""
        percent = ""
        if self.documents:
            percent = f" ({100 * self.documents_done / self.documents:.0f}%)"
        state = "stopped" if self.stopped else "done" if self.finished is not None else "running"
        return f"{self.name}: {state}{percent}, {self.counts()}, {format_seconds(self.elapsed)} elapsed"

    @property
    def fraction(self) -> float | None:
        """How much is done, from documents if their total is known, else from tasks; None if neither."""
        if self.documents:
            return min(1.0, self.documents_done / self.documents)
        if self.tasks:
            return self.tasks_done / self.tasks
        return None


def format_seconds(seconds: float | None) -> str:
    """H:MM:SS."""
    if seconds is None:
        return "-"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
