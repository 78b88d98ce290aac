"""Mutation testing with named mutations: does some test fail when a guarantee is broken on purpose?

Each mutation (tests/mutation/mutations.py) replaces one snippet of curate's code. For each, in a private copy
of the repository, the snippet is replaced, the mutated module's tests run (pytest -x, stopping at the first
failure) and the snippet is put back. A mutant is killed when a test fails (or the run times out), and
survives when every test passes. Prints the kill rate per module and writes mutants.json (machine and date
inside): to benchmarks/results/ for a run of every mutation, else to work/.

    .venv/bin/python tests/mutation/mutants.py [--module dedup,filter] [--name GLOB] [--check] [--jobs N]

Snippets are found by content, not line number: a snippet that moved to another file under curate/ is
still found (and reported as moved, so the list can be updated); one found nowhere, or more than once, is
reported as stale and not run. `--check` only does that matching (seconds): run it after a refactor.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(Path(__file__).resolve().parent), str(REPO / "benchmarks")]

from _results import write_results  # noqa: E402
from mutations import GOAL, MODULES, MUTATIONS, Mutation  # noqa: E402

FAILED_LINE = re.compile(r"^(FAILED|ERROR) (\S+)", re.MULTILINE)


@dataclass
class Outcome:
    """What happened to one mutant."""

    name: str
    module: str
    status: str  # killed, survived, timeout (counts as killed), stale, equivalent, or error (of the tool)
    file: str = ""
    line: int = 0
    killed_by: list[str] = field(default_factory=list)
    seconds: float = 0.0
    note: str = ""


def locate(mutation: Mutation, root: Path) -> tuple[Path | None, str]:
    """The file under root that holds the snippet exactly once, and a note when it moved or is stale."""
    hinted = root / mutation.file
    if hinted.is_file():
        count = hinted.read_text(encoding="utf-8").count(mutation.find)
        if count == 1:
            return hinted, ""
        if count > 1:
            return None, f"stale: snippet found {count} times in {mutation.file}; make it unique"
    found = [
        (path, text.count(mutation.find))
        for path in sorted((root / "curate").rglob("*.py"))
        if mutation.find in (text := path.read_text(encoding="utf-8"))
    ]
    if len(found) == 1 and found[0][1] == 1:
        return found[0][0], f"moved: now in {found[0][0].relative_to(root)} (update its file in mutations.py)"
    where = ", ".join(f"{p.relative_to(root)} x{n}" for p, n in found) or "nowhere under curate/"
    return None, f"stale: snippet of {mutation.file} found {where}"


def copy_repo(target: Path) -> Path:
    """A copy of the repository's files (tracked and untracked, not ignored), with ../shared beside it."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    repo = target / "repo"
    for name in filter(None, (n.decode() for n in listed)):
        source = REPO / name
        if source.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    if (REPO.parent / "shared").exists():
        (target / "shared").symlink_to(REPO.parent / "shared")
    return repo


def environment(repo: Path) -> dict[str, str]:
    """The copy's curate is imported (PYTHONPATH wins over the editable install), and no .pyc is written."""
    env = dict(os.environ, PYTHONPATH=str(repo), PYTHONDONTWRITEBYTECODE="1", RAY_USAGE_STATS_ENABLED="0")
    env.pop("CURATE_REQUIRE", None)
    return env


def run_tests(
    repo: Path, tests: list[str], timeout: float, stop_first: bool = True
) -> tuple[str, list[str], float]:
    """('passed' | 'failed' | 'timeout', failing test ids, seconds) of pytest over tests in the copy."""
    command = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", "--no-header"]
    command += ["-x"] if stop_first else []
    start = time.monotonic()
    process = subprocess.Popen(
        command + tests,
        cwd=repo,
        env=environment(repo),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so that a timeout ends the tests' own subprocesses (Ray, servers) too
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return "timeout", [], time.monotonic() - start
    seconds = time.monotonic() - start
    if process.returncode == 0:
        return "passed", [], seconds
    failing = [m.group(2) for m in FAILED_LINE.finditer(output)]
    if not failing:  # collection errors, a crash: keep the tail so that the report says what happened
        failing = ["(no test named) " + " | ".join(output.strip().splitlines()[-3:])]
    return "failed", failing, seconds


def tests_of(mutation: Mutation, override: list[str] | None = None) -> list[str]:
    """The pytest arguments that judge a mutant: --tests, else its own, else its module's."""
    return list(override or mutation.tests or MODULES[mutation.module])


def union(selections: list[list[str]]) -> list[str]:
    """One pytest argument list that runs every test of the selections once: a test whose file is named
    whole is not named again (pytest would run it twice)."""
    ordered = list(dict.fromkeys(arg for tests in selections for arg in tests))
    whole = {arg for arg in ordered if "::" not in arg}
    return [arg for arg in ordered if "::" not in arg or arg.split("::", 1)[0] not in whole]


def run_mutant(mutation: Mutation, repo: Path, tests: list[str], timeout: float) -> Outcome:
    """Apply one mutation in the copy, run its tests, restore the file."""
    outcome = Outcome(mutation.name, mutation.module, "stale")
    path, outcome.note = locate(mutation, repo)
    if path is None:
        return outcome
    original = path.read_text(encoding="utf-8")
    outcome.file = str(path.relative_to(repo))
    outcome.line = original[: original.index(mutation.find)].count("\n") + 1
    path.write_text(original.replace(mutation.find, mutation.replace, 1), encoding="utf-8")
    try:
        result, failing, outcome.seconds = run_tests(repo, tests, timeout)
    finally:
        path.write_text(original, encoding="utf-8")
    outcome.seconds = round(outcome.seconds, 1)
    outcome.killed_by = failing
    outcome.status = {"passed": "survived", "failed": "killed", "timeout": "timeout"}[result]
    if mutation.equivalent:
        outcome.note = f"judged equivalent: {mutation.equivalent}" + (
            "" if outcome.status == "survived" else " (but it was killed: drop the equivalence note)"
        )
        outcome.status = "equivalent" if outcome.status == "survived" else outcome.status
    return outcome


def summary(outcomes: list[Outcome]) -> dict[str, dict]:
    """Per module: mutants, killed (timeouts included), survived, equivalent, stale, kill rate."""
    table: dict[str, dict] = {}
    for o in outcomes:
        row = table.setdefault(
            o.module, {"mutants": 0, "killed": 0, "survived": 0, "equivalent": 0, "stale": 0, "error": 0}
        )
        row["mutants"] += 1
        row[{"timeout": "killed"}.get(o.status, o.status)] += 1
    for row in table.values():
        judged = row["killed"] + row["survived"]
        row["kill_rate"] = round(row["killed"] / judged, 3) if judged else None
    return table


def run_all(jobs: list[tuple[str, Any]], copies: list[Path], work: Callable[[Path, Any], None]) -> None:
    """Run work(copy, job) for every job, one thread per copy of the repository."""
    pending: queue.Queue = queue.Queue()
    for job in jobs:
        pending.put(job)

    def worker(repo: Path) -> None:
        while True:
            try:
                job = pending.get_nowait()
            except queue.Empty:
                return
            work(repo, job)

    threads = [threading.Thread(target=worker, args=(repo,)) for repo in copies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", default="", help="comma-separated modules (default: all)")
    parser.add_argument("--name", default="*", help="only mutations whose name matches this glob")
    parser.add_argument("--check", action="store_true", help="only check that every snippet matches")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once, each in its own copy")
    parser.add_argument(
        "--timeout",
        type=float,
        default=0,
        help="seconds per mutant (default: 2x its module's baseline + 120)",
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the unmutated run of each module's tests"
    )
    parser.add_argument("--tests", nargs="+", help="pytest arguments to judge every chosen mutant with")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for mutants.json (default: benchmarks/results for a run of every mutation, else work/)",
    )
    args = parser.parse_args()
    began = time.monotonic()

    modules = [m for m in args.module.split(",") if m] or list(MODULES)
    if unknown := sorted(set(modules) - set(MODULES)):
        parser.error(f"unknown module(s) {unknown}; modules: {', '.join(MODULES)}")
    chosen = [m for m in MUTATIONS if m.module in modules and fnmatch.fnmatch(m.name, args.name)]
    if len({m.name for m in MUTATIONS}) != len(MUTATIONS):
        parser.error("mutation names must be unique")
    everything = len(chosen) == len(MUTATIONS) and not args.tests
    out = args.out or (REPO / "benchmarks" / "results" if everything else REPO / "work")

    if args.check:
        bad = 0
        for mutation in chosen:
            path, note = locate(mutation, REPO)
            bad += path is None
            label = "ok   " if path and not note else "STALE" if path is None else "MOVED"
            print(f"{label} {mutation.name} {note}".rstrip())
        print(f"{len(chosen) - bad} of {len(chosen)} snippets match")
        return 1 if bad else 0

    lock = threading.Lock()
    work = Path(tempfile.mkdtemp(prefix="curate-mutants-"))
    try:
        copies = [copy_repo(work / f"copy{n}") for n in range(max(1, args.jobs))]
        probe = subprocess.run(
            [sys.executable, "-c", "import curate; print(curate.__file__)"],
            cwd=copies[0],
            env=environment(copies[0]),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if not probe.startswith(str(copies[0])):
            print(f"the copy's curate is not the one imported ({probe}); is curate installed non-editable?")
            return 2
        # Each module's tests (those of its chosen mutants) run once unmutated: they must pass, and their time
        # sets the limit of the module's mutants.
        selections = {
            module: union([tests_of(m, args.tests) for m in chosen if m.module == module])
            for module in modules
        }
        selections = {module: tests for module, tests in selections.items() if tests}
        baselines: dict[str, float] = {}
        broken: list[str] = []

        def baseline(repo: Path, job: tuple[str, Any]) -> None:
            module = job[1]
            if args.no_baseline:
                baselines[module] = 0.0
                return
            result, failing, seconds = run_tests(repo, selections[module], timeout=1800, stop_first=False)
            with lock:
                baselines[module] = seconds
                print(f"baseline {module} ({len(selections[module])} test args): {result} in {seconds:.0f} s")
                if result != "passed":
                    print(f"  these tests fail without any mutation ({failing}): fix them first", flush=True)
                    broken.append(module)

        run_all([("baseline", m) for m in selections], copies, baseline)
        if broken:
            return 2

        outcomes: list[Outcome] = []

        def mutant(repo: Path, job: tuple[str, Any]) -> None:
            mutation = job[1]
            tests = tests_of(mutation, args.tests)
            limit = args.timeout or (
                2 * baselines[mutation.module] + 120 if baselines[mutation.module] else 900
            )
            try:
                outcome = run_mutant(mutation, repo, tests, limit)
            except Exception as exc:  # noqa: BLE001 - reported as a broken run, the others go on
                outcome = Outcome(mutation.name, mutation.module, "error", note=repr(exc))
            with lock:
                outcomes.append(outcome)
                killer = outcome.killed_by[0] if outcome.killed_by else ""
                line = f"{outcome.status:>10} {outcome.module}/{outcome.name} {outcome.seconds:.0f}s"
                print(f"{line} {killer} {outcome.note}".rstrip(), flush=True)

        run_all([("mutant", m) for m in chosen], copies, mutant)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    order = {m.name: n for n, m in enumerate(MUTATIONS)}
    outcomes.sort(key=lambda o: order[o.name])
    table = summary(outcomes)
    wall = round(time.monotonic() - began)
    print(f"\n{'module':<10}{'mutants':>8}{'killed':>8}{'survived':>9}{'equiv.':>8}{'stale':>7}{'rate':>8}")
    for module, row in table.items():
        rate = f"{row['kill_rate']:.0%}" if row["kill_rate"] is not None else "-"
        print(
            f"{module:<10}{row['mutants']:>8}{row['killed']:>8}{row['survived']:>9}{row['equivalent']:>8}"
            f"{row['stale']:>7}{rate:>8}"
        )
    for o in outcomes:
        if o.status in ("survived", "stale", "error", "equivalent"):
            print(f"{o.status}: {o.module}/{o.name} ({o.file}:{o.line}) {o.note}")
    print(f"{len(outcomes)} mutants in {wall // 60} min {wall % 60} s with --jobs {args.jobs}")
    equivalent = [
        {"module": m.module, "name": m.name, "reason": m.equivalent} for m in chosen if m.equivalent
    ]
    write_results(
        "mutants",
        {
            "goal": GOAL,
            "jobs": args.jobs,
            "wall_seconds": wall,
            "baseline_seconds": {m: round(s, 1) for m, s in baselines.items()},
            "modules": table,
            "equivalent": equivalent,
            "mutants": [asdict(o) for o in outcomes],
        },
        out,
    )
    below = [m for m, row in table.items() if row["kill_rate"] is not None and row["kill_rate"] < GOAL]
    return 1 if below or any(row["stale"] or row["error"] for row in table.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
