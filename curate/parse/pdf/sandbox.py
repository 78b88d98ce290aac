"""A pool of long-lived sandboxed parser processes: a PDF that loops or allocates cannot take the caller.

Each worker parses under an address-space limit (RLIMIT_AS, `max_memory_mb`) and the caller kills it when a
document runs past its time budget (`max_seconds`, plus `ocr_page_seconds` for each page the worker
announces it sends to OCR). A worker serves many documents: starting a process per PDF cost more than
parsing most of them (0.44x in-process speed); it is replaced after `recycle_after` documents, and at once
when it was killed, ran out of memory, crashed or failed, so a damaged MuPDF state never parses another file.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

from curate.parse.pdf.limits import PdfLimits
from curate.parse.pdf.parse import DEFAULT_LIMITS, parse_pdf
from curate.parse.pdf.read import message, out_of_memory
from curate.schema import ParsedDoc, Rejection

RECYCLE_AFTER = 500  # documents one worker parses before a fresh process replaces it (bounds slow leaks)
_GRACE_S = 2.0  # on top of the budget: the worker's own check between pages normally answers first
_START_S = 120.0  # a new worker must be ready within this (the first one also starts the fork server)
_MAX_IDLE = 4  # idle workers kept per pool; more (after a burst of threads) are stopped


class _Worker:
    """One sandboxed process and the pipe to it."""

    def __init__(self, memory_mb: int) -> None:
        context = multiprocessing.get_context("forkserver")
        # The fork server imports PyMuPDF once; each worker is a fork of it, not a fresh interpreter.
        context.set_forkserver_preload(["curate.parse.pdf.sandbox"])
        self.conn, child = context.Pipe()
        self.memory_mb = memory_mb
        self.done = 0
        self.process = context.Process(target=_serve, args=(child, memory_mb), daemon=True)
        with _main_module_hidden():
            self.process.start()
        child.close()
        if not self.conn.poll(_START_S):
            self.stop()
            raise RuntimeError(f"the PDF parser process did not start within {_START_S:g} s")
        self.conn.recv()  # "ready"

    def stop(self) -> None:
        """End the process now (it may be stuck in C code, so no polite request first)."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()


class PdfSandbox:
    """Parse PDFs in a pool of sandboxed worker processes, one per concurrent caller, reused across files."""

    def __init__(self, recycle_after: int = RECYCLE_AFTER) -> None:
        self.recycle_after = recycle_after
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()

    def parse(self, path: str | os.PathLike, limits: PdfLimits = DEFAULT_LIMITS, **options: Any) -> ParsedDoc:
        """parse_pdf in a worker; Rejection `pdf_timeout`, `pdf_memory` or `pdf_crashed` past a limit."""
        worker = self._take(limits.max_memory_mb)
        reusable = False
        try:
            worker.conn.send((os.fspath(path), limits, options))
            kind, value = _outcome(worker, limits)
            worker.done += 1
            reusable = kind in ("doc", "rejection")
        finally:
            if reusable and worker.done < self.recycle_after:
                self._give_back(worker)
            else:
                worker.stop()
        if kind == "doc":
            return value
        if kind == "rejection":
            raise Rejection(*value)
        if kind == "memory":
            raise Rejection("pdf_memory", f"needs more than max_memory_mb={limits.max_memory_mb}")
        raise RuntimeError(value)

    def idle_pids(self) -> list[int]:
        """Process ids of the workers waiting for a document (to see reuse and recycling)."""
        with self._lock:
            return [worker.process.pid for worker in self._idle if worker.process.pid is not None]

    def close(self) -> None:
        """Stop the idle workers."""
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.stop()

    def _take(self, memory_mb: int) -> _Worker:
        with self._lock:
            for i, worker in enumerate(self._idle):
                if worker.memory_mb == memory_mb and worker.process.is_alive():
                    return self._idle.pop(i)
        return _Worker(memory_mb)  # outside the lock: starting takes a while

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            self._idle.append(worker)
            extra = self._idle[:-_MAX_IDLE]
            del self._idle[:-_MAX_IDLE]
        for old in extra:
            old.stop()


def _outcome(worker: _Worker, limits: PdfLimits) -> tuple[str, Any]:
    """The worker's answer within the budget (extended per OCR page it announces); killed past that."""
    start = time.monotonic()
    deadline = start + limits.max_seconds + _GRACE_S
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not worker.conn.poll(remaining):
            worker.stop()
            raise Rejection(
                "pdf_timeout",
                f"still parsing after {time.monotonic() - start:.0f} s "
                f"(max_seconds={limits.max_seconds:g}): killed",
            )
        try:
            kind, value = worker.conn.recv()
        except (EOFError, OSError):
            worker.process.join(5)
            code = worker.process.exitcode
            if code is not None and code < 0:  # killed by a signal: segfault, the OOM killer
                raise Rejection("pdf_crashed", f"the parser died of signal {-code}") from None
            raise RuntimeError(f"the parser process exited with code {code} without a result") from None
        if kind != "extend":
            return kind, value
        deadline += value


_SANDBOX = PdfSandbox()


def parse_pdf_isolated(
    path: str | os.PathLike, limits: PdfLimits = DEFAULT_LIMITS, **options: Any
) -> ParsedDoc:
    """parse_pdf in this process's pool of sandboxed workers, under the limits' time and memory caps.

    For untrusted files: a page on which MuPDF loops or allocates without end cannot hang or crash the
    caller. Raises Rejection `pdf_timeout`, `pdf_memory` or `pdf_crashed` for those, and parse_pdf's own
    otherwise. `options` are parse_pdf's (captions, ocr, ocr_languages).
    """
    return _SANDBOX.parse(path, limits, **options)


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Keep a starting child from re-importing the parent's __main__, which it does not need.

    multiprocessing re-imports the main script in every forkserver child; inside a Ray worker that script is
    Ray's default_worker.py, which made each PDF about 4x slower (measured: 12 PDFs, 4.45 s -> 0.98 s).
    """
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if main and k in main.__dict__}
    if main is not None:
        main.__dict__.pop("__file__", None)
        main.__spec__ = None  # multiprocessing reads it unguarded
    try:
        yield
    finally:
        if main is not None:
            main.__dict__.update(saved)


def _serve(conn: Connection, memory_mb: int) -> None:
    """A worker's life: the memory cap, then parse what the parent sends until it goes or a limit trips."""
    import resource

    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    conn.send(("ready", os.getpid()))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        path, limits, options = job

        def extend(seconds: float) -> None:
            conn.send(("extend", seconds))

        try:
            result: tuple[str, Any] = (
                "doc",
                parse_pdf(path, limits, on_ocr_page=extend, **options),
            )
        except Rejection as rejection:
            result = ("rejection", (rejection.reason, rejection.detail))
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it as an error
            failure = f"{type(exc).__name__}: {message(exc)}"
            result = ("memory", None) if out_of_memory(exc) else ("error", failure)
        conn.send(result)
        if result[0] not in ("doc", "rejection"):
            return  # the parent replaces this worker: its state after a failure is not to be trusted
