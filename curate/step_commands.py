"""One `curate` command per step: each maps its options to the step's parameters and runs one stage.

An option named in `_step(...)` takes the stage's own default when left out (shown in --help, read from the
stage class: curate.command.StageDefaults); paths are passed as text. Adding a command for a new step: a
function here, decorated with `@_step("<step>", "<option>", ...)`, whose body is `_run("<step>", locals())`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from curate.command import (
    AddressOpt,
    CpusOpt,
    InputsArg,
    OutOpt,
    ShardsArg,
    SourcesOpt,
    StageDefaults,
    as_inputs,
    check_folder_option,
    fail,
    out,
    run_step,
)
from curate.errors import ConfigError
from curate.stage import Input

_COMMANDS: list[tuple[str | None, str, Callable[..., Any], dict[str, Any]]] = []
# Options every step command has; the others are the step's parameters.
_COMMON = ("inputs", "out_dir", "address", "num_cpus", "sources")


def _step(step: str, *fields: str, name: str | None = None, group: str | None = None):
    """Register a function as the command of a step (named `name`, default the step's, in a `group` of
    commands); its options `fields`, named as the step's parameters, default to the stage's values."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        _COMMANDS.append((group, name or step, fn, {"default_map": StageDefaults(step, fields=fields)}))
        return fn

    return wrap


def _run(step: str, given: dict[str, Any], inputs: list[Input] | None = None, **kwargs: Any) -> None:
    """Run a step command: its step parameters from the command's arguments (`given`, its locals())."""
    params = {k: v for k, v in given.items() if k not in _COMMON}
    found = as_inputs(given["inputs"]) if inputs is None else inputs
    where = (given["out_dir"], given.get("sources"), given["address"], given["num_cpus"])
    run_step(step, params, found, *where, **kwargs)


def register(app: typer.Typer) -> None:
    """Add the step commands to the `curate` app (the quality filters as a group of their own)."""
    groups = {
        "quality": typer.Typer(
            help="Quality filters: datatrove heuristics and a trainable classifier.", no_args_is_help=True
        )
    }
    for group, name, fn, settings in _COMMANDS:
        (groups[group] if group else app).command(name, context_settings=settings)(fn)
    for name, sub in groups.items():
        app.add_typer(sub, name=name)


TokenizerOpt = Annotated[
    Path | None, typer.Option(help="tokenizers JSON file for exact token counts (else approximate).")
]
SourceTagOpt = Annotated[str | None, typer.Option(help="Source tag from sources.yaml.")]
MaxPagesOpt = Annotated[int | None, typer.Option(help="Reject PDFs with more pages.")]
OcrOpt = Annotated[
    Literal["auto", "off", "force"] | None,
    typer.Option(help="OCR pages without a usable text layer (auto), never (off), or all pages (force)."),
]


@_step("pdf", "source", "max_pages", "ocr")
def pdf(
    inputs: InputsArg,
    out_dir: OutOpt,
    source: SourceTagOpt = None,
    max_pages: MaxPagesOpt = None,
    ocr: OcrOpt = None,
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
    sources: SourcesOpt = None,
) -> None:
    """Parse PDF files (folders are searched recursively) into records with PyMuPDF, OCR for scans."""
    _run("pdf", locals())


@_step("html", "source")
def html(
    inputs: InputsArg,
    out_dir: OutOpt,
    source: SourceTagOpt = None,
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
    sources: SourcesOpt = None,
) -> None:
    """Extract the main text of saved HTML pages (.html, .htm, .html.gz) with trafilatura."""
    _run("html", locals())


@_step("scrape", "limit")
def scrape(
    names: Annotated[list[str], typer.Argument(help="Source tags from sources.yaml.", show_default=False)],
    out_dir: OutOpt,
    limit: Annotated[int | None, typer.Option(help="Keep at most N documents per source (0: all).")] = None,
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

    check_folder_option(state, "--state")
    params = {"sources": names, "limit": limit, "resume": resume, "mirror": mirror or "", "state": state}
    if not resume:
        forget_outputs(out_dir, names)  # a fresh scrape re-checks every page (conditional requests)
    run_step("scrape", params, [], out_dir, sources, address, num_cpus, local=local)


@_step("pmc", "source", "max_pages", "references", "tables", "captions")
def pmc(
    inputs: InputsArg,
    out_dir: OutOpt,
    source: SourceTagOpt = None,
    max_pages: MaxPagesOpt = None,
    references: Annotated[bool | None, typer.Option(help="Keep JATS reference lists.")] = None,
    tables: Annotated[bool | None, typer.Option(help="Keep JATS tables as | rows |.")] = None,
    captions: Annotated[bool | None, typer.Option(help="Keep figure and table captions.")] = None,
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
    sources: SourcesOpt = None,
) -> None:
    """Parse PMC OA packages (folders with .nxml/.pdf, or .tar.gz): one record per article, XML wins."""
    _run("pmc", locals())


@_step("pubmed", "source", "min_abstract_chars")
def pubmed(
    inputs: InputsArg,
    out_dir: OutOpt,
    source: SourceTagOpt = None,
    min_abstract_chars: Annotated[
        int | None, typer.Option(help="Reject citations with a shorter abstract.")
    ] = None,
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
    sources: SourcesOpt = None,
) -> None:
    """Read PubMed baseline/update XML (pubmed*.xml.gz): one record per citation, deletions reported."""
    _run("pubmed", locals())


@_step("filter", "keep", "threshold")
def filter_(
    inputs: ShardsArg,
    out_dir: OutOpt,
    keep: Annotated[list[str] | None, typer.Option("--lang", help="Language(s) to keep (repeat).")] = None,
    threshold: Annotated[float | None, typer.Option(help="Minimum fastText language score.")] = None,
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
    sources: SourcesOpt = None,
) -> None:
    """Keep documents in the wanted languages (fastText lid.176)."""
    _run("filter", locals())


@_step("near_dedup", "threshold", "within_source", name="dedup")
def dedup(
    inputs: ShardsArg,
    out_dir: OutOpt,
    near: Annotated[bool, typer.Option(help="Near-duplicates (MinHash LSH) instead of exact ones.")] = False,
    threshold: Annotated[
        float | None, typer.Option(help="--near: word 5-gram Jaccard for a duplicate.")
    ] = None,
    within_source: Annotated[bool | None, typer.Option(help="--near: only within one source.")] = None,
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
    if (against or write_index) and not near:
        fail("--against and --write-index need --near")
    given = dict(locals())
    if not near:
        given = {
            k: v for k, v in given.items() if k in ("inputs", "out_dir", "address", "num_cpus", "sources")
        }
    given.pop("near", None)
    _run("near_dedup" if near else "dedup", given)


@_step("clean")
def clean(
    inputs: ShardsArg,
    out_dir: OutOpt,
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
    sources: SourcesOpt = None,
) -> None:
    """Remove citation markers, stray reference lists and boilerplate lines; record removals in meta."""
    _run("clean", locals())


@_step("quality", "profile", name="filter", group="quality")
def quality_filter(
    inputs: ShardsArg,
    out_dir: OutOpt,
    profile: Annotated[str | None, typer.Option(help="Thresholds: guidelines, papers or web.")] = None,
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
    sources: SourcesOpt = None,
) -> None:
    """Drop documents that Gopher quality/repetition, C4 or FineWeb heuristics reject."""
    _run("quality", locals())


@_step("classify", name="train", group="quality")  # no option from the step: a model file, not a stage
def quality_train(
    positive: Annotated[Path, typer.Argument(help="Good text: a stage directory or Parquet file.")],
    negative: Annotated[Path, typer.Argument(help="Bad text, e.g. a stage's rejected/ directory.")],
    model_out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the fastText model.")],
    epoch: Annotated[int, typer.Option(help="Training epochs.")] = 20,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 0.2,
) -> None:
    """Train a fastText quality classifier on POSITIVE against NEGATIVE documents."""
    from curate.filter.classifier import read_texts, train_classifier

    try:
        counts = train_classifier(read_texts(positive), read_texts(negative), model_out, epoch=epoch, lr=lr)
    except (ConfigError, FileNotFoundError) as exc:
        fail(str(exc))
    out.print(f"wrote {model_out}: {counts['positive']} positive, {counts['negative']} negative documents")


@_step("classify", "threshold", group="quality")
def quality_classify(
    inputs: ShardsArg,
    out_dir: OutOpt,
    model: Annotated[Path, typer.Option(help="A model from `curate quality train`.")],
    threshold: Annotated[float | None, typer.Option(help="Minimum probability of 'keep'.")] = None,
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
    sources: SourcesOpt = None,
) -> None:
    """Keep documents a trained quality classifier scores at or above the threshold."""
    _run("classify", locals())


@_step("shard", "target_size")
def shard(
    inputs: ShardsArg,
    out_dir: OutOpt,
    target_size: Annotated[str | None, typer.Option(help="Approximate shard size, e.g. 256MB, 1GB.")] = None,
    tokenizer: TokenizerOpt = None,
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
    sources: SourcesOpt = None,
) -> None:
    """Write final pretraining shards (zstd Parquet) with stats.json per shard and for the corpus."""
    _run("shard", locals())


@_step("decontaminate", "action", "ngram", "min_share", "min_ngrams", "window")
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
        str | None, typer.Option(help="drop the document, or cut the matching stretches out.")
    ] = None,
    ngram: Annotated[int | None, typer.Option(help="Words per n-gram.")] = None,
    min_share: Annotated[
        float | None, typer.Option(help="Share of an item's n-grams one stretch of a document must hold.")
    ] = None,
    min_ngrams: Annotated[int | None, typer.Option(help="...and at least this many of them.")] = None,
    window: Annotated[
        int | None, typer.Option(help="--action cut: characters removed around each stretch.")
    ] = None,
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
    sources: SourcesOpt = None,
) -> None:
    """Remove test items of MedQA, MedMCQA, PubMedQA, MMLU (or any text) from documents: n-grams, PMIDs."""
    given = dict(locals())
    from curate.decontam.evalsets import benchmark_options

    given["benchmarks"] = benchmark_options(given.pop("benchmark"))
    _run("decontaminate", given, [Input(str(p)) for p in inputs])


@_step("tokenize", "eod_token", "merge")
def tokenize(
    inputs: ShardsArg,
    out_dir: OutOpt,
    tokenizer: Annotated[Path, typer.Option(help="The tokenizer.json of the model to train (tokenizers).")],
    eod_token: Annotated[
        str | None, typer.Option(help="End-of-document token (default: the tokenizer's end-of-text token).")
    ] = None,
    merge: Annotated[
        bool | None,
        # typer shows a flag's default from its declaration, not from the stage: said in words here.
        typer.Option(
            help="Also merge the shards into train (and validation) datasets (the default).",
            show_default=False,
        ),
    ] = None,
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
    sources: SourcesOpt = None,
) -> None:
    """Token ids of every document as Megatron-LM indexed datasets (.bin + .idx) per shard, and merged."""
    _run("tokenize", locals(), [Input(str(p)) for p in inputs])


@_step("mix", "seed", "validation")
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
    seed: Annotated[
        int | None, typer.Option(help="Sampling seed: the same seed gives the same mixture.")
    ] = None,
    validation: Annotated[
        float | None, typer.Option(help="Fraction of documents (by id hash) held out.")
    ] = None,
    total_tokens: Annotated[
        str | None, typer.Option(help="Mixture size, e.g. 48B (default: the largest that repeats nothing).")
    ] = None,
    tokenizer: TokenizerOpt = None,
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
) -> None:
    """Mix components to target shares of tokens (GAP-Replay's replay): seeded, whole documents, a report."""
    from curate.mix.mixing import component_options

    try:
        named, specs = component_options(component, share, epochs)
    except ConfigError as exc:
        fail(str(exc))
    params = {"components": specs, "seed": seed, "validation": validation}
    params |= {"total_tokens": total_tokens, "tokenizer": tokenizer}
    inputs = [Input(str(path), options=(("component", name),)) for name, path in named]
    # A mix reads its components' documents, not sources.yaml.
    run_step("mix", params, inputs, out_dir, None, address, num_cpus, catalog=False)
