"""What every `curate` command shares: the consoles, errors as messages and exit codes, progress on the
terminal, the executor, and running one stage into a folder.

Exit codes (curate.errors): 0 done; 1 the work could not be completed (failed tasks, a full disk, a failed
global pass); 2 a usage or configuration error, said before any work; 3 a bug in curate; 130 interrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, ProgressColumn, TextColumn
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from curate.errors import BUG, FAILED, USAGE, ConfigError, exit_code, message
from curate.executors import Executor, LocalExecutor, make_executor
from curate.layout import LOCK_FILE
from curate.pool import warm_up
from curate.progress import StageProgress, format_seconds
from curate.runner import check_output, run_stage, stage_lock
from curate.sources.registry import Source, load_sources
from curate.stage import Input, Stage, plan_tasks
from curate.stats.report import printable
from curate.steps import STEPS, make_stage
from curate.storage import as_path

log = logging.getLogger("curate")

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        envvar="RAY_ADDRESS",
        help="Ray cluster (HOST:PORT), or 'local' for a Ray in this process; none: worker processes here.",
    ),
]
# A pipeline runs on Ray, a local one by default (the same scheduler as on a cluster); single-stage commands,
# often a quick look at a few shards, use worker processes here unless given an address.
RunAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        envvar="RAY_ADDRESS",
        help="Ray cluster (HOST:PORT); default: a local Ray started in this process ('local').",
    ),
]
CpusOpt = Annotated[
    int | None, typer.Option("--num-cpus", min=1, help="CPUs to use on this machine (default: all).")
]
SourcesOpt = Annotated[
    Path | None, typer.Option("--sources", help="sources.yaml to use (default: nearest one upwards).")
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output stage directory.")]
InputsArg = Annotated[list[Path], typer.Argument(help="Input files or folders.", show_default=False)]
ShardsArg = Annotated[
    list[Path], typer.Argument(help="Stage directories or Parquet files.", show_default=False)
]

# Without a terminal (nohup, CI, `ray job logs`) progress is a plain line this often, besides start and end.
PROGRESS_SECONDS = float(os.environ.get("CURATE_PROGRESS_SECONDS") or 10)
INTERRUPTED = 130  # what a shell reports for a command stopped by Ctrl-C (128 + SIGINT)


# ---------------------------------------------------------------------------------------------- progress


class _StateBar(ProgressColumn):
    def render(self, task: Any) -> ProgressBar:
        state: StageProgress = task.fields["state"]
        fraction = state.fraction
        return ProgressBar(total=1.0 if fraction is not None else None, completed=fraction or 0.0, width=30)


class _StateText(ProgressColumn):
    def render(self, task: Any) -> Text:
        state: StageProgress = task.fields["state"]
        return Text(f"{state.counts()}, {format_seconds(state.elapsed)}")


class _BarView:
    """A stage's line in the terminal's live progress display: documents, docs/s, ETA, tasks."""

    def __init__(self, progress: Progress, state: StageProgress):
        self._progress = progress
        progress.add_task(state.name, state=state)

    def close(self) -> None:
        self._progress.refresh()


class _LineView:
    """A stage's progress as plain lines: at its start, every PROGRESS_SECONDS while it runs, at its end."""

    def __init__(self, state: StageProgress):
        self._state = state
        self._stop = threading.Event()
        err.print(Text(state.line()), soft_wrap=True)
        self._thread = threading.Thread(target=self._tick, name="curate-progress", daemon=True)
        self._thread.start()

    def _tick(self) -> None:
        while not self._stop.wait(PROGRESS_SECONDS):
            err.print(Text(self._state.line()), soft_wrap=True)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        err.print(Text(self._state.line()), soft_wrap=True)


@contextmanager
def _progress_views() -> Iterator[Callable[[StageProgress], Any]]:
    """A view factory for run_stage: a live bar per stage on a terminal, plain periodic lines elsewhere."""
    if not err.is_terminal:
        yield _LineView
        return
    columns = (TextColumn("[bold]{task.description:<12}"), _StateBar(), _StateText())
    with Progress(*columns, console=err, refresh_per_second=4) as progress:
        yield lambda state: _BarView(progress, state)


# ---------------------------------------------------------------------------------------------- messages


def labelled(label: str, style: str, value: str, gap: str = "  ") -> Text:
    """A styled label and a value printed verbatim: `[...]` and backslashes in data are not rich markup
    (escape() keeps `[b]` but not the backslash of a regex's `\\[`)."""
    return Text.assemble((label, style), gap, value)


def fail(text: str, code: int = USAGE) -> None:
    """Print an error and exit with code (2: a usage error)."""
    err.print(labelled("error:", "bold red", printable(text), gap=" "), soft_wrap=True)
    raise typer.Exit(code)


def fail_with(error: BaseException) -> None:
    """Print an error that stopped a command and exit with its code; a bug says it is one."""
    if exit_code(error) == BUG:
        log.info("the error, in full:", exc_info=error)  # shown with --verbose
    fail(message(error), exit_code(error))


def summarise(manifests: list[dict[str, Any]], where: Path) -> None:
    """The table of stages run (documents in, kept, rejected, errored, tasks, seconds), warnings, and exit
    1 if any task failed."""
    table = Table(title=f"curate: {where}", title_justify="left")
    for column in ("stage", "in", "kept", "rejected", "errored", "tasks run", "skipped", "seconds"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for m in manifests:
        c = m["counts"]
        table.add_row(
            m["stage"],
            *(str(c[k]) for k in ("in", "kept", "rejected", "errored")),
            str(m["tasks"]["run"]),
            str(m["tasks"]["skipped"]),
            f"{m['wall_seconds']:.1f}",
        )
    err.print(table)
    for warning in (w for m in manifests for w in m.get("warnings", [])):
        err.print(labelled("warning:", "yellow", warning, gap=" "), soft_wrap=True)
    failed = [f for m in manifests for f in m["failed_tasks"]]
    if failed:
        for f in failed:
            err.print(f"[red]failed task[/] {f['task']}: {escape(printable(f['error']))}", soft_wrap=True)
        fail(
            f"{len(failed)} task(s) failed; their inputs are in rejected/ as errors. "
            "Rerun the same command to retry only those.",
            code=FAILED,
        )


def print_reports(stage_dirs: list[Path]) -> None:
    """The reports of the stages that write one (a mix's shares, a decontamination's finds)."""
    from curate.stats.report import print_stage_reports

    print_stage_reports(stage_dirs, out)


_interrupted: list[bool] = []


def say_interrupted() -> None:
    """Tell the user how to resume, once."""
    if not _interrupted:
        _interrupted.append(True)
        err.print("[bold yellow]interrupted:[/] rerun the same command to resume", soft_wrap=True)


# ---------------------------------------------------------------------------------------------- running


def execute(
    body: Callable[[Executor, Callable[[StageProgress], Any]], list[dict[str, Any]]],
    address: str | None,
    num_cpus: int | None,
    *,
    local: bool = False,
    created: Path | None = None,
) -> list[dict[str, Any]]:
    """Run body(executor, progress) on the executor for the address (or this process with local), turning
    errors into messages and exit codes; `created`, an --out folder this command made, is removed if left
    empty."""
    executor: Executor | None = None
    interrupted = False
    try:
        executor = LocalExecutor() if local else start_executor(address, num_cpus)
        with _progress_views() as progress:
            return body(executor, progress)
    except KeyboardInterrupt:
        interrupted = True
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not break the clean-up
        say_interrupted()
        raise typer.Exit(INTERRUPTED) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:  # noqa: BLE001 - every error ends in a message and its exit code
        fail_with(exc)
    finally:
        if executor is not None:
            executor.close(kill=interrupted)
        if created is not None and created.is_dir() and {p.name for p in created.iterdir()} <= {LOCK_FILE}:
            shutil.rmtree(created)
    return []


def warm_up_workers(address: str | None, local: bool = False) -> None:
    """With no Ray to use, start the workers' fork server now: it imports curate's stages while this process
    does the same (about a second saved)."""
    if not address and not local:
        warm_up()


def start_executor(address: str | None, num_cpus: int | None) -> Executor:
    """The executor for a run; Ray that cannot be reached or started is a usage error, said in one line."""
    try:
        return make_executor(address, num_cpus)
    except ConfigError as exc:  # an address that does not answer
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - whatever Ray raised (a token, a version, a full disk), said
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        fail(
            f"cannot {'start' if address in (None, 'local') else 'use'} Ray at {address}: "
            f"{type(exc).__name__}: {first}"
        )
    raise AssertionError("unreachable")


def as_inputs(paths: list[Path]) -> list[Input]:
    """Inputs as given, each once: the same folder or file named twice is read once."""
    unique = dict.fromkeys(
        os.path.normpath(os.path.abspath(p)) if "://" not in str(p) else str(p) for p in paths
    )
    return [Input(p) for p in unique]


def check_folder_option(path: Path | str | None, option: str) -> None:
    """A folder option that names an existing file: exit 2 before any work."""
    if path is not None and "://" not in str(path) and Path(path).exists() and not Path(path).is_dir():
        fail(f"{option} {path}: is a file; {option} takes a folder (it is created if missing)")


def load_catalog(path: Path | None) -> dict[str, Source]:
    """sources.yaml (the given one, else the nearest), or exit 2 saying what is wrong with it."""
    try:
        return load_sources(path) if path else load_sources()
    except ConfigError as exc:
        fail(str(exc))
    return {}


def run_step(
    step: str,
    params: dict[str, Any],
    inputs: list[Input],
    out_dir: Path,
    sources_file: Path | None,
    address: str | None,
    num_cpus: int | None,
    *,
    local: bool = False,
    catalog: bool = True,
) -> list[dict[str, Any]]:
    """Build one stage of a step from command-line options (None: the stage's default; paths as text),
    bound to sources.yaml unless `catalog` is False, and run it into out_dir; print the summary."""
    check_folder_option(out_dir, "--out")
    warm_up_workers(address, local)
    given = {k: str(v) if isinstance(v, Path) else v for k, v in params.items() if v is not None}
    try:
        found = load_catalog(sources_file) if catalog else {}
        stage = make_stage(step, step, given, found, inputs)
    except ConfigError as exc:
        fail(str(exc))
    manifests = run_one_stage(stage, inputs, out_dir, address, num_cpus, local)
    print_reports([out_dir] if manifests else [])
    summarise(manifests, out_dir)
    return manifests


def run_one_stage(
    stage: Stage, inputs: list[Input], out_dir: Path, address: str | None, num_cpus: int | None, local: bool
) -> list[dict[str, Any]]:
    """Check the inputs and the output folder, hold its lock, and run the stage into it."""
    created = None if out_dir.exists() else out_dir
    with contextlib.ExitStack() as held:
        try:
            if inputs:
                # Missing or empty inputs stop here, before any worker or Ray starts.
                plan_tasks(stage, inputs)
            # A mistake, or another process in the folder, needs no waiting for.
            check_output(stage, inputs, as_path(out_dir))
            held.enter_context(stage_lock(as_path(out_dir)))
        except ConfigError as exc:
            fail(str(exc))
        return execute(
            lambda executor, progress: [run_stage(stage, inputs, out_dir, executor, progress)],
            address,
            num_cpus,
            local=local,
            created=created,
        )


class StageDefaults(Mapping[str, Any]):
    """A command's option defaults, read from its stage's class (Click's default_map): the stage owns them,
    `--help` shows them, and the class is imported only when its own command runs or shows its help (a
    command pays only for its own stage's imports). `options` maps option names to the step's fields."""

    def __init__(self, step: str, options: Mapping[str, str] | None = None, fields: tuple[str, ...] = ()):
        self._step = step
        self._options = dict(options or {}) | {f: f for f in fields}
        self._found: dict[str, Any] | None = None

    def _defaults(self) -> dict[str, Any]:
        if self._found is None and not self._options:
            self._found = {}
        if self._found is None:
            declared = {f.name: f for f in dataclasses.fields(STEPS[self._step])}
            self._found = {}
            for option, name in self._options.items():
                f = declared[name]
                if f.default is not dataclasses.MISSING:
                    self._found[option] = f.default
                elif f.default_factory is not dataclasses.MISSING:
                    self._found[option] = f.default_factory()
        return self._found

    def __getitem__(self, option: str) -> Any:
        return self._defaults()[option]

    def __iter__(self) -> Iterator[str]:
        return iter(self._defaults())

    def __len__(self) -> int:
        return len(self._defaults())
