"""The `curate` command line: run pipelines, run single stages, inspect stats and sources."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from curate.pipeline import attach_sources, load_pipeline, make_stage, run_pipeline
from curate.runner import (
    AccountingError,
    DiskFullError,
    LocalExecutor,
    PreparationError,
    RayExecutor,
    run_stage,
    start_ray,
)
from curate.sources.registry import ConfigError, Source, load_sources
from curate.stage import Input
from curate.storage import as_path

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
    typer.Option("--address", envvar="RAY_ADDRESS", help="Ray cluster address; none starts a local Ray."),
]
CpusOpt = Annotated[int | None, typer.Option("--num-cpus", help="CPUs for a local Ray (default: all).")]
SourcesOpt = Annotated[
    Path | None, typer.Option("--sources", help="sources.yaml to use (default: nearest one upwards).")
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output stage directory.")]
InputsArg = Annotated[list[Path], typer.Argument(help="Input files or folders.", show_default=False)]
ShardsArg = Annotated[
    list[Path], typer.Argument(help="Stage directories or Parquet files.", show_default=False)
]


class _Bar:
    """One progress bar of a stage, counting finished tasks."""

    def __init__(self, progress: Progress, name: str, total: int):
        self._progress = progress
        self._task = progress.add_task(name, total=total)

    def advance(self, n: int) -> None:
        self._progress.advance(self._task, n)

    def close(self) -> None:
        self._progress.refresh()


def _progress_factory(progress: Progress):
    return lambda name, total: _Bar(progress, name, total)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("tasks"),
        TimeElapsedColumn(),
        console=err,
    )


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
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
    failed = [f for m in manifests for f in m["failed_tasks"]]
    if failed:
        for f in failed:
            err.print(f"[red]failed task[/] {f['task']}: {escape(f['error'])}", soft_wrap=True)
        _fail(
            f"{len(failed)} task(s) failed; their inputs are in rejected/ as errors. "
            "Rerun the same command to retry only those.",
            code=1,
        )


def _execute(body, executor: LocalExecutor | None = None) -> list[dict[str, Any]]:
    """Run body(executor, progress) with Ray started (or the given executor), turning configuration problems
    into clear errors."""
    try:
        with _progress() as progress:
            return body(executor or RayExecutor(), _progress_factory(progress))
    except DiskFullError as exc:
        _fail(exc.strerror, code=1)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    except PreparationError as exc:
        _fail(str(exc), code=1)
    except AccountingError as exc:
        _fail(f"accounting check failed (a bug, please report it): {exc}", code=3)
    return []


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
    try:
        sources = load_sources(sources_file) if sources_file else load_sources()
        stage = make_stage(step, step, params, sources)
        attach_sources(stage, inputs, sources)
    except ConfigError as exc:
        _fail(str(exc))
    if not local:
        start_ray(address, num_cpus)
    manifests = _execute(
        lambda executor, progress: [run_stage(stage, inputs, out_dir, executor, progress)],
        LocalExecutor() if local else None,
    )
    _summarise(manifests, out_dir)


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
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
    sources: SourcesOpt = None,
) -> None:
    """Run a pipeline: each stage writes DIR/<stage>/ and feeds the next. Reruns skip finished shards."""
    try:
        loaded, _ = load_pipeline(pipeline, sources)
    except ConfigError as exc:
        _fail(str(exc))
    target = as_path(workdir) if workdir else loaded.workdir or Path("work") / loaded.name
    start_ray(address, num_cpus)
    manifests = _execute(lambda executor, progress: run_pipeline(loaded, target, executor, progress))
    _print_mix_reports([target / m["stage"] for m in manifests if m.get("step") == "mix"])
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
        [Input(str(p)) for p in inputs],
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
    _run_single(
        "html", {"source": source}, [Input(str(p)) for p in inputs], out_dir, sources, address, num_cpus
    )


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
    _run_single("pmc", params, [Input(str(p)) for p in inputs], out_dir, sources, address, num_cpus)


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
    _run_single("pubmed", params, [Input(str(p)) for p in inputs], out_dir, sources, address, num_cpus)


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
        [Input(str(p)) for p in inputs],
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
    _run_single(step, params, [Input(str(p)) for p in inputs], out_dir, sources, address, num_cpus)


@app.command()
def clean(
    inputs: ShardsArg,
    out_dir: OutOpt,
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
    sources: SourcesOpt = None,
) -> None:
    """Remove citation markers, stray reference lists and boilerplate lines; record removals in meta."""
    _run_single("clean", {}, [Input(str(p)) for p in inputs], out_dir, sources, address, num_cpus)


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
    _run_single(
        "quality", {"profile": profile}, [Input(str(p)) for p in inputs], out_dir, sources, address, num_cpus
    )


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
        [Input(str(p)) for p in inputs],
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
        [Input(str(p)) for p in inputs],
        out_dir,
        sources,
        address,
        num_cpus,
    )


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
    start_ray(address, num_cpus)
    stage_inputs = [Input(str(path)) for _, path in inputs]
    manifests = _execute(lambda ex, progress: [run_stage(stage, stage_inputs, out_dir, ex, progress)])
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
    from curate.stats.inspect import miss_message, print_selection, select_documents

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
            sys.stdout.write(json.dumps(doc, ensure_ascii=False, default=str) + "\n")
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
        out.print(f"[red]problem[/] {escape(problem)}", soft_wrap=True)
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
        table.add_row(
            s.name, s.content, discovery, "yes" if s.redistributable else "no", str(s.priority), s.title
        )
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
        out.print(f"[bold]{key:>16}[/]  {value if value is not None else '-'}")


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
    out.print(f"[bold]{name}[/] checked against {escape(report.where)}")
    for key, value in report.summary().items():
        out.print(f"[bold]{key:>18}[/]  {escape(str(value))}")
    for problem in report.problems:
        out.print(f"[red]problem[/] {escape(problem)}", soft_wrap=True)
    if report.problems:
        _fail(f"{name}: {len(report.problems)} problem(s): discovery or extraction is broken", code=1)
    out.print(f"ok: {name} discovers and extracts as expected")


def main() -> None:
    """Console entry point."""
    app()
