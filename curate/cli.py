"""The `curate` command line: run pipelines, run single stages, inspect stats and sources."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
import yaml
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import Progress, ProgressColumn, TextColumn
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from curate.pool import warm_up
from curate.progress import StageProgress, format_seconds
from curate.runner import (
    AccountingError,
    DiskFullError,
    Executor,
    LocalExecutor,
    PreparationError,
    RayUnreachable,
    check_output,
    make_executor,
    run_stage,
    stage_lock,
)
from curate.sources.registry import ConfigError, Source, load_sources
from curate.stage import Input, Stage
from curate.stats.report import printable
from curate.storage import LOCK_FILE, as_path

app = typer.Typer(
    help="Build pretraining corpora for medical language models: parse, filter, deduplicate, shard, on Ray.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
sources_app = typer.Typer(help="What sources.yaml declares.", no_args_is_help=True)
app.add_typer(sources_app, name="sources")

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


def _labelled(label: str, style: str, value: str, gap: str = "  ") -> Text:
    """A styled label and a value printed verbatim: `[...]` and backslashes in data are not rich markup
    (escape() keeps `[b]` but not the backslash of a regex's `\\[`)."""
    return Text.assemble((label, style), gap, value)


def _fail(message: str, code: int = 2) -> None:
    err.print(_labelled("error:", "bold red", printable(message), gap=" "), soft_wrap=True)
    raise typer.Exit(code)


def _summarise(manifests: list[dict[str, Any]], where: Path) -> None:
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
        err.print(_labelled("warning:", "yellow", warning, gap=" "), soft_wrap=True)
    failed = [f for m in manifests for f in m["failed_tasks"]]
    if failed:
        for f in failed:
            err.print(f"[red]failed task[/] {f['task']}: {escape(printable(f['error']))}", soft_wrap=True)
        _fail(
            f"{len(failed)} task(s) failed; their inputs are in rejected/ as errors. "
            "Rerun the same command to retry only those.",
            code=1,
        )


def _execute(
    body: Callable[[Executor, Callable[[StageProgress], Any]], list[dict[str, Any]]],
    address: str | None,
    num_cpus: int | None,
    *,
    local: bool = False,
    created: Path | None = None,
) -> list[dict[str, Any]]:
    """Run body(executor, progress) on the executor for the address (or this process with local), turning
    problems into clear errors; `created`, an --out folder this command made, is removed if left empty."""
    executor: Executor | None = None
    interrupted = False
    try:
        executor = LocalExecutor() if local else _start(address, num_cpus)
        with _progress_views() as progress:
            return body(executor, progress)
    except KeyboardInterrupt:
        interrupted = True
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not break the clean-up
        _say_interrupted()
        raise typer.Exit(INTERRUPTED) from None
    except DiskFullError as exc:
        _fail(exc.strerror, code=1)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    except PreparationError as exc:
        _fail(str(exc), code=1)
    except AccountingError as exc:
        _fail(f"accounting check failed (a bug, please report it): {exc}", code=3)
    finally:
        if executor is not None:
            executor.close(kill=interrupted)
        if created is not None and created.is_dir() and {p.name for p in created.iterdir()} <= {LOCK_FILE}:
            shutil.rmtree(created)
    return []


def _warm_up(address: str | None, local: bool = False) -> None:
    """With no Ray to use, start the workers' fork server now: it imports curate's stages while this process
    does the same (about a second saved)."""
    if not address and not local:
        warm_up()


def _start(address: str | None, num_cpus: int | None) -> Executor:
    """The executor for a run; Ray that cannot be reached or started is a usage error, said in one line."""
    try:
        return make_executor(address, num_cpus)
    except RayUnreachable as exc:
        _fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - whatever Ray raised (a token, a version, a full disk), said
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        _fail(
            f"cannot {'start' if address in (None, 'local') else 'use'} Ray at {address}: "
            f"{type(exc).__name__}: {first}"
        )
    raise AssertionError("unreachable")


def _inputs(paths: list[Path]) -> list[Input]:
    """Inputs as given, each once: the same folder or file named twice is read once."""
    unique = dict.fromkeys(
        os.path.normpath(os.path.abspath(p)) if "://" not in str(p) else str(p) for p in paths
    )
    return [Input(p) for p in unique]


def _check_folder_option(path: Path | str | None, option: str) -> None:
    """A folder option that names an existing file: exit 2 before any work."""
    if path is not None and "://" not in str(path) and Path(path).exists() and not Path(path).is_dir():
        _fail(f"{option} {path}: is a file; {option} takes a folder (it is created if missing)")


def _run_single(
    step: str,
    params: dict[str, Any],
    inputs: list[Input],
    out_dir: Path,
    sources_file: Path | None,
    address: str | None,
    num_cpus: int | None,
    local: bool = False,
) -> None:
    _check_folder_option(out_dir, "--out")
    _warm_up(address, local)
    from curate.pipeline import attach_sources, make_stage

    try:
        sources = load_sources(sources_file) if sources_file else load_sources()
        stage = make_stage(step, step, params, sources)
        attach_sources(stage, inputs, sources)
    except ConfigError as exc:
        _fail(str(exc))
    manifests = _run_one_stage(stage, inputs, out_dir, address, num_cpus, local)
    _summarise(manifests, out_dir)


def _run_one_stage(
    stage: Stage, inputs: list[Input], out_dir: Path, address: str | None, num_cpus: int | None, local: bool
) -> list[dict[str, Any]]:
    """Check the inputs and the output folder, hold its lock, and run the stage into it."""
    created = None if out_dir.exists() else out_dir
    with contextlib.ExitStack() as held:
        try:
            if inputs:
                stage.plan(inputs)  # missing or empty inputs stop here, before any worker or Ray starts
            # A mistake, or another process in the folder, needs no waiting for.
            check_output(stage, inputs, as_path(out_dir))
            held.enter_context(stage_lock(as_path(out_dir)))
        except (ConfigError, FileNotFoundError, ValueError) as exc:
            _fail(str(exc))
        return _execute(
            lambda executor, progress: [run_stage(stage, inputs, out_dir, executor, progress)],
            address,
            num_cpus,
            local=local,
            created=created,
        )


@app.callback()
def main_options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more (INFO).")] = False,
) -> None:
    """Build pretraining corpora for medical language models."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False)],
    )


@app.command()
def run(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline YAML (see pipelines/).")],
    workdir: Annotated[
        str | None,  # not Path: it would turn s3://bucket into s3:/bucket
        typer.Option(
            "--workdir",
            "-w",
            help="Work directory, a folder or s3://bucket/prefix (default: the YAML's 'workdir', "
            "else work/<pipeline name>).",
        ),
    ] = None,
    address: RunAddressOpt = None,
    num_cpus: CpusOpt = None,
    sources: SourcesOpt = None,
) -> None:
    """Run a pipeline on Ray (local unless --address): each stage writes DIR/<stage>/ and feeds the next.
    Reruns skip finished shards."""
    _check_folder_option(workdir, "--workdir")
    address = address or "local"
    from curate.pipeline import check_inputs, check_pipeline, load_pipeline, run_pipeline, workdir_lock

    try:
        loaded, _ = load_pipeline(pipeline, sources)
        check_inputs(loaded)
    except ConfigError as exc:
        _fail(str(exc))
    target = as_path(workdir) if workdir else loaded.workdir or Path("work") / loaded.name
    _check_folder_option(str(target), "--workdir")
    with contextlib.ExitStack() as held:
        try:  # before any worker starts: a mistake, or another run in the folder, needs no waiting for
            check_pipeline(loaded, target)
            held.enter_context(workdir_lock(target))
        except ValueError as exc:
            _fail(str(exc))
        manifests = _execute(
            lambda executor, progress: run_pipeline(loaded, target, executor, progress), address, num_cpus
        )
    _print_mix_reports([target / m["stage"] for m in manifests if m.get("step") == "mix"])
    _print_decontamination([target / m["stage"] for m in manifests if m.get("step") == "decontaminate"])
    _summarise(manifests, target)


@app.command()
def pdf(
    inputs: InputsArg,
    out_dir: OutOpt,
    source: Annotated[str, typer.Option(help="Source tag from sources.yaml.")] = "local-pdf",
    max_pages: Annotated[int, typer.Option(help="Reject PDFs with more pages.")] = 2000,
    ocr: Annotated[
        Literal["auto", "off", "force"],
        typer.Option(help="OCR pages without a usable text layer (auto), never (off), or all pages (force)."),
    ] = "auto",
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
    sources: SourcesOpt = None,
) -> None:
    """Parse PDF files (folders are searched recursively) into records with PyMuPDF, OCR for scans."""
    _run_single(
        "pdf",
        {"source": source, "max_pages": max_pages, "ocr": ocr},
        _inputs(inputs),
        out_dir,
        sources,
        address,
        num_cpus,
    )


@app.command()
def html(
    inputs: InputsArg,
    out_dir: OutOpt,
    source: Annotated[str, typer.Option(help="Source tag from sources.yaml.")] = "local-html",
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
    sources: SourcesOpt = None,
) -> None:
    """Extract the main text of saved HTML pages (.html, .htm, .html.gz) with trafilatura."""
    _run_single("html", {"source": source}, _inputs(inputs), out_dir, sources, address, num_cpus)


@app.command()
def scrape(
    names: Annotated[list[str], typer.Argument(help="Source tags from sources.yaml.", show_default=False)],
    out_dir: OutOpt,
    limit: Annotated[int, typer.Option(help="Keep at most N documents per source (0: all).")] = 0,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue a killed scrape; what it fetched is not fetched again.")
    ] = False,
    mirror: Annotated[
        str | None, typer.Option(help="Fetch https://HOST/PATH from MIRROR/HOST/PATH (a local fixture copy).")
    ] = None,
    state: Annotated[
        Path | None, typer.Option(help="Crawl state and WARC folder (default: _crawl beside --out).")
    ] = None,
    local: Annotated[bool, typer.Option("--local", help="Crawl in this process, without Ray.")] = False,
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
    sources: SourcesOpt = None,
) -> None:
    """Crawl sources politely (robots.txt, rate limit, WARC archive) into records; one task per source."""
    from curate.scrape.stage import forget_outputs

    params = {"sources": names, "limit": limit, "resume": resume, "mirror": mirror or ""}
    _check_folder_option(state, "--state")
    if state:
        params["state"] = str(state)
    if not resume:
        forget_outputs(out_dir, names)  # a fresh scrape re-checks every page (conditional requests)
    _run_single("scrape", params, [], out_dir, sources, address, num_cpus, local=local)


@app.command()
def pmc(
    inputs: InputsArg,
    out_dir: OutOpt,
    source: Annotated[str, typer.Option(help="Source tag from sources.yaml.")] = "pmc",
    max_pages: Annotated[int, typer.Option(help="Reject PDFs with more pages.")] = 2000,
    references: Annotated[bool, typer.Option(help="Keep JATS reference lists.")] = False,
    tables: Annotated[bool, typer.Option(help="Keep JATS tables as | rows |.")] = False,
    captions: Annotated[bool, typer.Option(help="Keep figure and table captions.")] = False,
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
    sources: SourcesOpt = None,
) -> None:
    """Parse PMC OA packages (folders with .nxml/.pdf, or .tar.gz): one record per article, XML wins."""
    params = {
        "source": source,
        "max_pages": max_pages,
        "references": references,
        "tables": tables,
        "captions": captions,
    }
    _run_single("pmc", params, _inputs(inputs), out_dir, sources, address, num_cpus)


@app.command()
def pubmed(
    inputs: InputsArg,
    out_dir: OutOpt,
    source: Annotated[str, typer.Option(help="Source tag from sources.yaml.")] = "pubmed",
    min_abstract_chars: Annotated[int, typer.Option(help="Reject citations with a shorter abstract.")] = 0,
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
    sources: SourcesOpt = None,
) -> None:
    """Read PubMed baseline/update XML (pubmed*.xml.gz): one record per citation, deletions reported."""
    params = {"source": source, "min_abstract_chars": min_abstract_chars}
    _run_single("pubmed", params, _inputs(inputs), out_dir, sources, address, num_cpus)


@app.command("filter")
def filter_(
    inputs: ShardsArg,
    out_dir: OutOpt,
    lang: Annotated[list[str], typer.Option("--lang", help="Language(s) to keep (repeat).")] = ["en"],  # noqa: B006
    threshold: Annotated[float, typer.Option(help="Minimum fastText language score.")] = 0.65,
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
    sources: SourcesOpt = None,
) -> None:
    """Keep documents in the wanted languages (fastText lid.176)."""
    _run_single(
        "filter",
        {"keep": lang, "threshold": threshold},
        _inputs(inputs),
        out_dir,
        sources,
        address,
        num_cpus,
    )


@app.command()
def dedup(
    inputs: ShardsArg,
    out_dir: OutOpt,
    near: Annotated[bool, typer.Option(help="Near-duplicates (MinHash LSH) instead of exact ones.")] = False,
    threshold: Annotated[float, typer.Option(help="--near: word 5-gram Jaccard for a duplicate.")] = 0.8,
    within_source: Annotated[bool, typer.Option(help="--near: only within one source.")] = False,
    against: Annotated[
        Path | None, typer.Option(help="--near: also remove documents that duplicate this index's.")
    ] = None,
    write_index: Annotated[
        Path | None, typer.Option(help="--near: add the survivors to this index (created if absent).")
    ] = None,
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
    sources: SourcesOpt = None,
) -> None:
    """Remove exact (or with --near, near-) duplicates across sources; survivors by priority, length, id."""
    step, params = "dedup", {}
    if (against or write_index) and not near:
        _fail("--against and --write-index need --near")
    if near:
        step = "near_dedup"
        params = {"threshold": threshold, "within_source": within_source}
        params.update({k: str(v) for k, v in (("against", against), ("write_index", write_index)) if v})
    _run_single(step, params, _inputs(inputs), out_dir, sources, address, num_cpus)


@app.command()
def clean(
    inputs: ShardsArg,
    out_dir: OutOpt,
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
    sources: SourcesOpt = None,
) -> None:
    """Remove citation markers, stray reference lists and boilerplate lines; record removals in meta."""
    _run_single("clean", {}, _inputs(inputs), out_dir, sources, address, num_cpus)


quality_app = typer.Typer(
    help="Quality filters: datatrove heuristics and a trainable classifier.", no_args_is_help=True
)
app.add_typer(quality_app, name="quality")


@quality_app.command("filter")
def quality_filter(
    inputs: ShardsArg,
    out_dir: OutOpt,
    profile: Annotated[str, typer.Option(help="Thresholds: guidelines, papers or web.")] = "guidelines",
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
    sources: SourcesOpt = None,
) -> None:
    """Drop documents that Gopher quality/repetition, C4 or FineWeb heuristics reject."""
    _run_single("quality", {"profile": profile}, _inputs(inputs), out_dir, sources, address, num_cpus)


@quality_app.command("train")
def quality_train(
    positive: Annotated[Path, typer.Argument(help="Good text: a stage directory or Parquet file.")],
    negative: Annotated[Path, typer.Argument(help="Bad text, e.g. a stage's rejected/ directory.")],
    model_out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the fastText model.")],
    epoch: Annotated[int, typer.Option(help="Training epochs.")] = 20,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 0.2,
) -> None:
    """Train a fastText quality classifier on POSITIVE against NEGATIVE documents."""
    from curate.filter.classifier import TrainingError, read_texts, train_classifier

    try:
        counts = train_classifier(read_texts(positive), read_texts(negative), model_out, epoch=epoch, lr=lr)
    except (TrainingError, FileNotFoundError) as exc:
        _fail(str(exc))
    out.print(f"wrote {model_out}: {counts['positive']} positive, {counts['negative']} negative documents")


@quality_app.command("classify")
def quality_classify(
    inputs: ShardsArg,
    out_dir: OutOpt,
    model: Annotated[Path, typer.Option(help="A model from `curate quality train`.")],
    threshold: Annotated[float, typer.Option(help="Minimum probability of 'keep'.")] = 0.5,
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
    sources: SourcesOpt = None,
) -> None:
    """Keep documents a trained quality classifier scores at or above the threshold."""
    _run_single(
        "classify",
        {"model": str(model), "threshold": threshold},
        _inputs(inputs),
        out_dir,
        sources,
        address,
        num_cpus,
    )


@app.command()
def shard(
    inputs: ShardsArg,
    out_dir: OutOpt,
    target_size: Annotated[str, typer.Option(help="Approximate shard size, e.g. 256MB, 1GB.")] = "256MB",
    tokenizer: Annotated[
        Path | None, typer.Option(help="tokenizers JSON file for exact token counts (else approximate).")
    ] = None,
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
    sources: SourcesOpt = None,
) -> None:
    """Write final pretraining shards (zstd Parquet) with stats.json per shard and for the corpus."""
    _run_single(
        "shard",
        {"target_size": target_size, **({"tokenizer": str(tokenizer)} if tokenizer else {})},
        _inputs(inputs),
        out_dir,
        sources,
        address,
        num_cpus,
    )


@app.command()
def decontaminate(
    inputs: ShardsArg,
    out_dir: OutOpt,
    benchmark: Annotated[
        list[str],
        typer.Option(
            "--benchmark",
            "-b",
            help="[LAYOUT=]FILE: an evaluation set (JSONL, JSON, Parquet, CSV); layout medqa, medmcqa, "
            "pubmedqa, mmlu or text, detected from its fields if not given; repeat.",
        ),
    ],
    action: Annotated[
        str, typer.Option(help="drop the document, or cut the matching stretches out.")
    ] = "drop",
    ngram: Annotated[int, typer.Option(help="Words per n-gram.")] = 5,
    min_share: Annotated[
        float, typer.Option(help="Share of an item's n-grams one stretch of a document must hold.")
    ] = 0.2,
    min_ngrams: Annotated[int, typer.Option(help="...and at least this many of them.")] = 3,
    window: Annotated[int, typer.Option(help="--action cut: characters removed around each stretch.")] = 200,
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
    sources: SourcesOpt = None,
) -> None:
    """Remove test items of MedQA, MedMCQA, PubMedQA, MMLU (or any text) from documents: n-grams, PMIDs."""
    from curate.decontam.evalsets import LAYOUTS

    entries = []
    for value in benchmark:
        layout, sep, path = value.partition("=")
        entries.append({"path": path, "layout": layout} if sep and layout in LAYOUTS else {"path": value})
    params = {
        "benchmarks": entries,
        "action": action,
        "ngram": ngram,
        "min_share": min_share,
        "min_ngrams": min_ngrams,
        "window": window,
    }
    _run_single("decontaminate", params, [Input(str(p)) for p in inputs], out_dir, sources, address, num_cpus)
    _print_decontamination([out_dir])


@app.command()
def tokenize(
    inputs: ShardsArg,
    out_dir: OutOpt,
    tokenizer: Annotated[Path, typer.Option(help="The tokenizer.json of the model to train (tokenizers).")],
    eod_token: Annotated[
        str | None, typer.Option(help="End-of-document token (default: the tokenizer's end-of-text token).")
    ] = None,
    merge: Annotated[
        bool, typer.Option(help="Also merge the shards into train (and validation) datasets.")
    ] = True,
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
    sources: SourcesOpt = None,
) -> None:
    """Token ids of every document as Megatron-LM indexed datasets (.bin + .idx) per shard, and merged."""
    params = {"tokenizer": str(tokenizer), "eod_token": eod_token, "merge": merge}
    _run_single("tokenize", params, [Input(str(p)) for p in inputs], out_dir, sources, address, num_cpus)


def _named(values: list[str] | None, option: str, number: bool) -> list[tuple[str, Any]]:
    """NAME=VALUE pairs of a repeatable option; exit 2 with a message on a malformed one."""
    pairs = []
    for value in values or []:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            example = f"{option} guidelines={'0.5' if number else 'work/shard'}"
            _fail(f"{option} takes NAME=VALUE (e.g. {example}), not {value!r}")
        if number:
            try:
                rest = float(rest)
            except ValueError:
                _fail(f"{option} {value!r}: {rest!r} is not a number")
        pairs.append((name, rest))
    return pairs


@app.command()
def mix(
    out_dir: OutOpt,
    component: Annotated[
        list[str],
        typer.Option(
            "--component",
            "-c",
            help="NAME=PATH: a component's documents (stage dir, Parquet, JSONL file or folder); repeat.",
        ),
    ],
    share: Annotated[
        list[str] | None, typer.Option("--share", help="NAME=FRACTION of the mixture's tokens; repeat.")
    ] = None,
    epochs: Annotated[
        list[str] | None, typer.Option("--epochs", help="NAME=PASSES over a component (instead of a share).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed: the same seed gives the same mixture.")] = 0,
    validation: Annotated[float, typer.Option(help="Fraction of documents (by id hash) held out.")] = 0.0,
    total_tokens: Annotated[
        str | None, typer.Option(help="Mixture size, e.g. 48B (default: the largest that repeats nothing).")
    ] = None,
    tokenizer: Annotated[
        Path | None, typer.Option(help="tokenizers JSON file for exact token counts (else approximate).")
    ] = None,
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
) -> None:
    """Mix components to target shares of tokens (GAP-Replay's replay): seeded, whole documents, a report."""
    _warm_up(address)
    from curate.mix.stage import MixStage

    inputs = _named(component, "--component", number=False)
    names = list(dict.fromkeys(name for name, _ in inputs))
    specs: dict[str, dict[str, float]] = {}
    for option, key, pairs in (("--share", "share", share), ("--epochs", "epochs", epochs)):
        for name, value in _named(pairs, option, number=True):
            if name not in names:
                known = ", ".join(names)
                _fail(f"unknown component {name!r} in {option}; components (from --component): {known}")
            if name in specs:
                _fail(f"component {name!r} has more than one --share/--epochs")
            specs[name] = {key: value}
    for name in names:
        specs.setdefault(name, {})
    try:
        stage = MixStage(
            name="mix",
            components={name: specs[name] for name in names},
            seed=seed,
            validation=validation,
            total_tokens=total_tokens,
            tokenizer=str(tokenizer) if tokenizer else None,
            input_components=[name for name, _ in inputs],
        )
    except ValueError as exc:
        _fail(str(exc))
    _check_folder_option(out_dir, "--out")
    stage_inputs = [Input(str(path)) for _, path in inputs]
    manifests = _run_one_stage(stage, stage_inputs, out_dir, address, num_cpus, local=False)
    _print_mix_reports([out_dir] if manifests else [])
    _summarise(manifests, out_dir)


def _print_mix_reports(stage_dirs: list[Path]) -> None:
    """The table of each mix stage's report (tokens per component, shares, epochs, documents)."""
    from curate.io import read_json
    from curate.mix.report import print_mix_report
    from curate.mix.stage import REPORT

    for stage_dir in stage_dirs:
        if (stage_dir / REPORT).is_file():
            print_mix_report(read_json(stage_dir / REPORT), out)


def _print_decontamination(stage_dirs: list[Path]) -> None:
    """The table of each decontaminate stage's report (items found, documents, characters removed)."""
    from curate.decontam.report import REPORT
    from curate.io import read_json
    from curate.stats.report import print_decontamination

    for stage_dir in stage_dirs:
        if (stage_dir / REPORT).is_file():
            print_decontamination(stage_dir.name, read_json(stage_dir / REPORT), out)


@app.command()
def stats(
    path: Annotated[  # not Path: it would turn s3://bucket into s3:/bucket
        str, typer.Argument(help="A stage directory or a pipeline work directory (or s3://bucket/prefix).")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
    html_path: Annotated[
        Path | None, typer.Option("--html", help="Also write a self-contained HTML report.")
    ] = None,
    tokenizer: Annotated[
        Path | None, typer.Option(help="tokenizers JSON file for exact token counts (else approximate).")
    ] = None,
    sources_file: SourcesOpt = None,
) -> None:
    """Documents, characters, words, tokens; by source, language, licence; lengths; drops; the funnel."""
    from curate.stats.compute import collect_stats
    from curate.stats.report import print_stats, write_html

    if html_path is not None and html_path.is_dir():
        _fail(f"--html {html_path}: is a folder; --html takes the report's file name (e.g. report.html)")
    try:
        result = collect_stats(path, tokenizer=str(tokenizer) if tokenizer else None, sources=sources_file)
    except (ValueError, RuntimeError, ImportError) as exc:
        _fail(str(exc))
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
    else:
        print_stats(result, out)
    if html_path:
        write_html(result, html_path)
        err.print(f"wrote {html_path}")


@app.command()
def inspect(
    path: Annotated[
        Path, typer.Argument(help="A stage directory, its rejected/ folder, a work directory or a .parquet.")
    ],
    source: Annotated[str | None, typer.Option("--source", help="Only documents of this source tag.")] = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Rejected documents dropped for this reason.")
    ] = None,
    doc_id: Annotated[
        str | None, typer.Option("--id", help="The document with this id (kept or rejected).")
    ] = None,
    sample: Annotated[int, typer.Option("--sample", help="How many documents to show, drawn at random.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the random draw (same seed, same documents).")] = 0,
    rejected: Annotated[bool, typer.Option("--rejected", help="Read rejected/ (any reason).")] = False,
    max_chars: Annotated[
        int | None, typer.Option("--max-chars", help="Cut each text after this many characters.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines (every column) instead.")] = False,
    pager: Annotated[bool, typer.Option(help="Page the output when stdout is a terminal.")] = True,
) -> None:
    """Read documents from shards or rejected/ with their metadata, in a pager."""
    from curate.stats.inspect import json_line, miss_message, print_selection, select_documents

    try:
        selection = select_documents(
            path, source=source, reason=reason, doc_id=doc_id, sample=sample, seed=seed, rejected=rejected
        )
    except ValueError as exc:
        _fail(str(exc))
    if not selection.documents:
        _fail(miss_message(selection, source, reason, doc_id), code=1)
    if as_json:
        for doc in selection.documents:
            sys.stdout.write(json_line(doc) + "\n")
        return
    if pager and sys.stdout.isatty():
        with out.pager(styles=True):
            print_selection(selection, out, max_chars=max_chars)
    else:
        print_selection(selection, out, max_chars=max_chars)


@app.command()
def verify(
    path: Annotated[str, typer.Argument(help="A stage or pipeline work directory (or s3://bucket/prefix).")],
) -> None:
    """Re-check outputs against the manifests (files, sizes, SHA-256, rows, counts); exit 1 on problems."""
    from curate.verify import verify as verify_dir

    try:
        stages, problems = verify_dir(path)
    except ValueError as exc:
        _fail(str(exc))
    for problem in problems:
        out.print(f"[red]problem[/] {escape(printable(problem))}", soft_wrap=True)
    if problems:
        _fail(f"{len(problems)} problem(s) in {path}; rerun the pipeline to recompute damage", code=1)
    out.print(f"ok: {len(stages)} stage(s) match their manifests ({', '.join(stages)})")


def _load_sources_or_fail(path: Path | None) -> dict[str, Source]:
    try:
        return load_sources(path) if path else load_sources()
    except ConfigError as exc:
        _fail(str(exc))
    return {}


@sources_app.command("list")
def sources_list(
    sources: SourcesOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List every source: tag, content type, licence, redistributable, priority."""
    found = _load_sources_or_fail(sources)
    if as_json:
        rows = [
            {
                "name": s.name,
                "title": s.title,
                "homepage": s.homepage,
                "content": s.content,
                "license": s.license,
                "redistributable": s.redistributable,
                "priority": s.priority,
                "discovery": s.scrape.discovery.type if s.scrape else None,
            }
            for s in found.values()
        ]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    scraped = sum(1 for s in found.values() if s.scrape)
    table = Table(title=f"{len(found)} sources, {scraped} with a scraper (`curate scrape NAME`)")
    for column in ("source", "content", "discovery", "redistributable", "priority", "title"):
        table.add_column(column)
    for s in found.values():
        discovery = s.scrape.discovery.type if s.scrape else "-"  # "-": local files only, nothing to scrape
        cells = (s.name, s.content, discovery, "yes" if s.redistributable else "no", str(s.priority), s.title)
        table.add_row(*map(Text, cells))  # configured text, verbatim: `[...]` is not rich markup here
    out.print(table)


@sources_app.command("show")
def sources_show(
    name: Annotated[str, typer.Argument(help="Source tag.")],
    sources: SourcesOpt = None,
) -> None:
    """Everything sources.yaml says about one source."""
    found = _load_sources_or_fail(sources)
    if name not in found:
        _fail(f"unknown source {name!r}; known: {', '.join(sorted(found))}")
    s = found[name]
    for key, value in [
        ("source", s.name),
        ("title", s.title),
        ("homepage", s.homepage),
        ("content", s.content),
        ("license", s.license),
        ("redistributable", s.redistributable),
        ("priority", s.priority),
        ("allowed_domains", ", ".join(s.allowed_domains)),
        ("notes", s.notes),
        *sorted(s.extra.items()),
    ]:
        # Values verbatim: a selector such as a[title="x"] is not rich markup; blocks as the YAML they were.
        if isinstance(value, (dict, list)) and value:
            block = yaml.safe_dump(value, sort_keys=False, allow_unicode=True)
            text = "\n" + textwrap.indent(block, " " * 18)
        else:
            text = str(value if value is not None else "-")
        out.print(_labelled(f"{key:>16}", "bold", text.rstrip()))


@sources_app.command("check")
def sources_check(
    name: Annotated[str, typer.Argument(help="Source tag.")],
    live: Annotated[bool, typer.Option("--live", help="Check the live site, not its fixture.")] = False,
    pages: Annotated[
        int, typer.Option(help="--live: documents to fetch (and at most 4 pages per document).")
    ] = 10,
    sources: SourcesOpt = None,
) -> None:
    """Crawl a little of a source and report whether discovery and extraction still work (exit 1 if not)."""
    from curate.scrape.check import check_source
    from curate.sources.registry import find_sources_file

    found = _load_sources_or_fail(sources)
    if name not in found:
        _fail(f"unknown source {name!r}; known: {', '.join(sorted(found))}")
    try:
        where = sources or find_sources_file()
        report = check_source(found[name], live=live, pages=pages, sources_file=where)
    except ConfigError as exc:
        _fail(str(exc))
    out.print(_labelled(name, "bold", f"checked against {report.where}", gap=" "))
    for key, value in report.summary().items():
        out.print(_labelled(f"{key:>18}", "bold", str(value)))
    for problem in report.problems:
        out.print(_labelled("problem", "red", problem, gap=" "), soft_wrap=True)
    if report.unreachable:
        _fail(f"{name}: the site could not be reached, so discovery and extraction were not checked", code=1)
    if report.problems:
        _fail(f"{name}: {len(report.problems)} problem(s): discovery or extraction is broken", code=1)
    out.print(f"ok: {name} discovers and extracts as expected")


_interrupted: list[bool] = []


def _say_interrupted() -> None:
    if not _interrupted:
        _interrupted.append(True)
        err.print("[bold yellow]interrupted:[/] rerun the same command to resume", soft_wrap=True)


def main() -> None:
    """Console entry point."""
    try:
        app()
    except SystemExit as exc:
        if exc.code == INTERRUPTED:  # typer exits 130 on Ctrl-C without a word
            _say_interrupted()
        raise
