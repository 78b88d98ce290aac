"""The local executor (worker processes, no Ray): retries a task whose worker died, reports live progress, and
the runner's document counts follow what tasks report."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pyarrow as pa
import pytest

from curate.executors import LocalExecutor, Resources
from curate.io import write_parquet
from curate.pool import ProcessExecutor, WorkerDied
from curate.progress import StageProgress, report_documents
from curate.runner import run_stage
from curate.schema import records_table
from curate.stage import Input, TableStage, Task, empty_rejected


def _die_once(marker: str) -> int:
    """Kill the worker the first time (a real crash), succeed the second."""
    if not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        os._exit(1)
    return os.getpid()


def _always_die() -> None:
    os._exit(3)


def _fail() -> None:
    raise ValueError("bad shard")


def _report_slowly(n: int) -> int:
    for _ in range(n):
        report_documents(1)
        time.sleep(0.05)
    return n


@pytest.fixture(scope="module")
def pool():
    executor = ProcessExecutor(num_cpus=2, max_retries=2)
    yield executor
    executor.close()


def test_a_task_whose_worker_died_runs_again_in_a_fresh_worker(pool: ProcessExecutor, tmp_path: Path):
    marker = tmp_path / "died"
    [(index, pid, error)] = list(pool.map(_die_once, [(str(marker),)]))
    assert error is None and index == 0
    assert int(marker.read_text()) != pid  # the first worker died; another ran it


def test_a_task_that_always_kills_its_worker_fails_after_the_retries(pool: ProcessExecutor):
    results = dict((i, (v, e)) for i, v, e in pool.map(_always_die, [(), ()]))
    for value, error in results.values():
        assert value is None and isinstance(error, WorkerDied)
        assert "died 3 times" in str(error) and error.curate_node == "local"


def test_an_exception_is_the_tasks_error_and_the_worker_lives_on(pool: ProcessExecutor):
    [(_, _, error)] = list(pool.map(_fail, [()]))
    assert isinstance(error, ValueError) and str(error) == "bad shard"
    assert [e for _, _, e in pool.map(os.getpid, [()] * 3)] == [None] * 3


def test_tasks_report_documents_while_they_run(pool: ProcessExecutor):
    for executor in (pool, LocalExecutor()):
        seen: list[tuple[int, int]] = []
        events = []
        for index, value, error in executor.map(_report_slowly, [(20,), (20,)], None, _collect(seen)):
            events.append((index, sum(n for i, n in seen if i == index)))
            assert error is None and value == 20
        # Each task's reports reached the driver before its result did (batched: fewer calls than documents).
        assert all(0 < reported <= 20 for _, reported in events), events


def _collect(seen: list[tuple[int, int]]):
    return lambda index, n: seen.append((index, n))


def test_a_task_larger_than_the_machine_is_refused(pool: ProcessExecutor):
    with pytest.raises(ValueError, match="cannot run a task needing num_cpus=64"):
        list(pool.map(os.getpid, [()], Resources(num_cpus=64)))
    assert pool.concurrency(Resources(num_cpus=2)) == 1


@dataclass
class _CountingStage(TableStage):
    """Keeps every row, reporting each one as it goes."""

    step: ClassVar[str] = "counting"

    def apply(self, table: pa.Table, task: Task) -> tuple[pa.Table, pa.Table]:
        for _ in range(table.num_rows):
            report_documents(1)
        return table, empty_rejected(table.schema)


def test_stage_progress_counts_documents_of_run_and_resumed_tasks(pool: ProcessExecutor, tmp_path: Path):
    src = tmp_path / "src"
    for n in range(3):
        rows = [{"id": f"t:{n}-{i}", "text": "some words", "source": "t"} for i in range(10 + n)]
        write_parquet(records_table(rows), src / f"part-{n}.parquet")
    states: list[StageProgress] = []

    class View:
        def __init__(self, state: StageProgress):
            states.append(state)

        def close(self) -> None:
            pass

    run_stage(_CountingStage(name="c"), [Input(str(src))], tmp_path / "out", pool, View)
    (tmp_path / "out" / "part-1.parquet").unlink()  # a rerun runs that task alone
    run_stage(_CountingStage(name="c"), [Input(str(src))], tmp_path / "out", pool, View)
    first, second = states
    assert (first.documents, first.documents_done, first.tasks_done, first.stopped) == (33, 33, 3, False)
    assert (second.documents, second.documents_done, second.tasks_done) == (33, 33, 3)
    assert "33/33 docs" in second.line() and "3/3 tasks" in second.line()


def test_progress_line_rate_and_eta():
    state = StageProgress("filter", tasks=4, documents=1000)
    state.started -= 10  # ten seconds in
    state.report(0, 100)
    state.report(0, 100)
    state.task_finished(0, 250)  # the final count replaces what the task reported
    state.report(0, 50)  # a late report of a finished task is not counted again
    assert state.documents_done == 250 and state.tasks_done == 1
    assert state.rate == pytest.approx(25, rel=0.01)
    assert state.eta == pytest.approx(30, rel=0.02)
    line = state.line()
    assert line.startswith("filter: running (25%), 250/1,000 docs, 25 docs/s, ETA 0:00:30, 1/4 tasks")
    unknown = StageProgress("scrape", tasks=2, documents=None)
    unknown.started -= 4
    unknown.report(0, 8)
    unknown.task_finished(0, 8)
    assert unknown.eta == pytest.approx(4, rel=0.05)  # by tasks: one of two took four seconds
    assert "8 docs, 2.0 docs/s" in unknown.line()


def _environment(name: str) -> str | None:
    return os.environ.get(name)


def test_workers_see_the_environment_as_it_is_when_tasks_are_sent(pool: ProcessExecutor, monkeypatch):
    list(pool.map(os.getpid, [(), ()]))  # workers (and their fork server) started before the change
    monkeypatch.setenv("CURATE_TEST_SETTING", "after the start")
    values = [v for _, v, _ in pool.map(_environment, [("CURATE_TEST_SETTING",)] * 2)]
    assert values == ["after the start"] * 2


def test_ray_tasks_report_documents_through_an_actor(ray_session):
    from curate.executors import RayExecutor

    seen: list[tuple[int, int]] = []
    events = []
    for _, value, error in RayExecutor().map(_report_slowly, [(60,)], None, _collect(seen)):
        events.append(sum(n for _, n in seen))
        assert error is None and value == 60
    assert 0 < events[0] <= 60  # reports arrived while the task ran, before its result


def test_ctrl_c_while_workers_start_is_not_lost(tmp_path: Path) -> None:
    import subprocess
    import sys

    # Ctrl-C reaches the driver while it starts its workers (the fork server can take a second or more to
    # import curate): the workers must not get it, but the driver must still stop when they are started.
    script = (
        "import os, signal\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, whatever we inherit\n"
        "from curate.pool import ProcessExecutor, _without_main_script\n"
        "try:\n"
        "    with _without_main_script():\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        print('held')  # not raised inside: the workers it starts must not see it either\n"
        "    print('lost')\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted')\n"
        "executor = ProcessExecutor(num_cpus=1)\n"
        "print([v for _, v, _ in executor.map(abs, [(-3,)])])\n"
        "executor.close()\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["held", "interrupted", "[3]"], run.stdout + run.stderr
