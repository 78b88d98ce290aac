"""The `curate` command line: run pipelines, run single stages, inspect stats and sources.

Flags become library calls and their results are printed: the per-step commands are in
curate/step_commands.py, what every command shares (consoles, exit codes, progress) in curate/command.py.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import textwrap
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from curate import step_commands
from curate.command import (
    INTERRUPTED,
    CpusOpt,
    RunAddressOpt,
    SourcesOpt,
    check_folder_option,
    err,
    execute,
    fail,
    labelled,
    load_catalog,
    out,
    print_reports,
    say_interrupted,
    summarise,
)
from curate.errors import FAILED, ConfigError
from curate.stats.report import printable
from curate.storage import as_path

app = typer.Typer(
    help="Build pretraining corpora for medical language models: parse, filter, deduplicate, shard, on Ray.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
sources_app = typer.Typer(help="What sources.yaml declares.", no_args_is_help=True)
app.add_typer(sources_app, name="sources")


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
    check_folder_option(workdir, "--workdir")
    address = address or "local"
    from curate.pipeline import check_inputs, check_pipeline, load_pipeline, run_pipeline, workdir_lock

    try:
        loaded, _ = load_pipeline(pipeline, sources)
        check_inputs(loaded)
    except ConfigError as exc:
        fail(str(exc))
    target = as_path(workdir) if workdir else loaded.workdir or Path("work") / loaded.name
    check_folder_option(str(target), "--workdir")
    with contextlib.ExitStack() as held:
        try:  # before any worker starts: a mistake, or another run in the folder, needs no waiting for
            check_pipeline(loaded, target)
            held.enter_context(workdir_lock(target))
        except ConfigError as exc:
            fail(str(exc))
        manifests = execute(
            lambda executor, progress: run_pipeline(loaded, target, executor, progress), address, num_cpus
        )
    print_reports([target / m["stage"] for m in manifests])
    summarise(manifests, target)


step_commands.register(app)


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
        fail(f"--html {html_path}: is a folder; --html takes the report's file name (e.g. report.html)")
    try:
        result = collect_stats(path, tokenizer=str(tokenizer) if tokenizer else None, sources=sources_file)
    except (ConfigError, ImportError) as exc:
        fail(str(exc))
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
    except ConfigError as exc:
        fail(str(exc))
    if not selection.documents:
        fail(miss_message(selection, source, reason, doc_id), code=FAILED)
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
    except ConfigError as exc:
        fail(str(exc))
    for problem in problems:
        out.print(f"[red]problem[/] {escape(printable(problem))}", soft_wrap=True)
    if problems:
        fail(f"{len(problems)} problem(s) in {path}; rerun the pipeline to recompute damage", code=FAILED)
    out.print(f"ok: {len(stages)} stage(s) match their manifests ({', '.join(stages)})")


@sources_app.command("list")
def sources_list(
    sources: SourcesOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List every source: tag, content type, licence, redistributable, priority."""
    found = load_catalog(sources)
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
    found = load_catalog(sources)
    if name not in found:
        fail(f"unknown source {name!r}; known: {', '.join(sorted(found))}")
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
        out.print(labelled(f"{key:>16}", "bold", text.rstrip()))


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

    found = load_catalog(sources)
    if name not in found:
        fail(f"unknown source {name!r}; known: {', '.join(sorted(found))}")
    try:
        where = sources or find_sources_file()
        report = check_source(found[name], live=live, pages=pages, sources_file=where)
    except ConfigError as exc:
        fail(str(exc))
    out.print(labelled(name, "bold", f"checked against {report.where}", gap=" "))
    for key, value in report.summary().items():
        out.print(labelled(f"{key:>18}", "bold", str(value)))
    for problem in report.problems:
        out.print(labelled("problem", "red", problem, gap=" "), soft_wrap=True)
    if report.unreachable:
        fail(
            f"{name}: the site could not be reached, so discovery and extraction were not checked",
            code=FAILED,
        )
    if report.problems:
        fail(f"{name}: {len(report.problems)} problem(s): discovery or extraction is broken", code=FAILED)
    out.print(f"ok: {name} discovers and extracts as expected")


def main() -> None:
    """Console entry point."""
    try:
        app()
    except SystemExit as exc:
        if exc.code == INTERRUPTED:  # typer exits 130 on Ctrl-C without a word
            say_interrupted()
        raise
