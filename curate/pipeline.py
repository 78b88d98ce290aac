"""Pipeline YAML: an ordered list of stages, each reading raw inputs or earlier stages' outputs."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import math
import os
import re
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.decontam.evalsets import relative_to
from curate.io import write_json
from curate.mix.stage import input_components
from curate.parse.stages import FileStage
from curate.runner import AccountingError, Resources, check_output, run_stage
from curate.sources.registry import (
    ConfigError,
    Source,
    find_sources_file,
    load_sources,
    load_yaml,
    require_source,
)
from curate.stage import Input, Stage
from curate.storage import StoragePath, as_path, folder_lock, is_uri
from curate.verify import flow_problems

# Each step's class, imported when a stage uses it: a command pays only for its own stages' libraries
# (datatrove, scipy and the scraper's together take about a second to import).
STEP_CLASSES = {
    "scrape": "curate.scrape.stage:ScrapeStage",
    "pdf": "curate.parse.stages:PdfStage",
    "html": "curate.parse.stages:HtmlStage",
    "pmc": "curate.parse.xml_stages:PmcStage",
    "pubmed": "curate.parse.xml_stages:PubmedStage",
    "filter": "curate.filter.language:LanguageFilter",
    "clean": "curate.filter.clean:CleanStage",
    "quality": "curate.filter.quality:QualityFilter",
    "classify": "curate.filter.classifier:QualityClassifier",
    "dedup": "curate.dedup.exact:ExactDedup",
    "near_dedup": "curate.dedup.minhash:MinHashDedup",
    "mix": "curate.mix.stage:MixStage",
    "shard": "curate.shard:ShardStage",
    "decontaminate": "curate.decontam.stage:DecontaminateStage",
    "tokenize": "curate.train.tokenize:TokenizeStage",
}


class _Steps(Mapping[str, type[Stage]]):
    """Step name -> stage class, importing a class's module on first use."""

    def __getitem__(self, step: str) -> type[Stage]:
        module, name = STEP_CLASSES[step].split(":")
        return getattr(importlib.import_module(module), name)

    def __iter__(self) -> Iterator[str]:
        return iter(STEP_CLASSES)

    def __len__(self) -> int:
        return len(STEP_CLASSES)


STEPS: Mapping[str, type[Stage]] = _Steps()
# Filled from sources.yaml (or the model file), not written by users in pipeline YAML.
DERIVED_FIELDS = {"name", "licenses", "priority", "model_sha256", "tokenizer_sha256", "input_components"}
DERIVED_FIELDS.add("catalog")  # scrape: the sources.yaml entries of its sources
DERIVED_FIELDS.add("benchmarks_sha256")  # decontaminate: the evaluation files' contents
PIPELINE_FILE = "pipeline.json"
# A stage name is a folder of the work directory, a pipeline name one of work/: plain names only (no "..",
# "/", leading "." or "_" (curate's own folders, such as _crawl), no markup).
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
MAX_YAML_VALUES = 100_000  # a pipeline is a few hundred values; YAML aliases can make billions


@dataclass
class PlannedStage:
    """A stage of a pipeline with its resolved inputs."""

    stage: Stage
    inputs: list[Input]
    resources: Resources | None = None  # per task on a Ray node; not part of the stage's fingerprint


@dataclass
class Pipeline:
    """A loaded pipeline: its name, default work directory, and stages in order."""

    name: str
    path: Path | None
    workdir: Path | None
    stages: list[PlannedStage]
    text: str = ""


def step_options(step: str) -> list[str]:
    """The parameters a step accepts in pipeline YAML."""
    return [f.name for f in dataclasses.fields(STEPS[step]) if f.name not in DERIVED_FIELDS]


def make_stage(step: str, name: str, params: dict[str, Any], sources: dict[str, Source]) -> Stage:
    """Build a stage from its step name and YAML/CLI parameters, filling what sources.yaml decides."""
    if step not in STEPS:
        raise ConfigError(f"stage {name!r}: unknown step {step!r}; steps are: {', '.join(sorted(STEPS))}")
    unknown = sorted(set(params) - set(step_options(step)))
    if unknown:
        raise ConfigError(
            f"stage {name!r}: unknown option(s) {', '.join(unknown)} for step {step!r}; "
            f"it takes: {', '.join(step_options(step)) or 'no options'}"
        )
    cls = STEPS[step]
    for key, value in params.items():
        problem = _param_problem(key, value, typing.get_type_hints(cls).get(key), _default(cls, key))
        if problem:
            raise ConfigError(f"stage {name!r}: option {key!r} {problem}, not {_short(value)}")
    try:
        stage = cls(name=name, **params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"stage {name!r}: {exc}") from exc
    if stage.step in ("dedup", "near_dedup") and not stage.priority:
        stage.priority = {s.name: s.priority for s in sources.values()}
    return stage


def _default(cls: type[Stage], key: str) -> Any:
    found = {f.name: f.default for f in dataclasses.fields(cls)}.get(key, dataclasses.MISSING)
    return None if found is dataclasses.MISSING else found


def _short(value: Any) -> str:
    text = (
        repr(value) if isinstance(value, (str, int, float, bool)) or value is None else type(value).__name__
    )
    return text if len(text) <= 60 else text[:57] + "..."


def _param_problem(key: str, value: Any, hint: Any, default: Any) -> str | None:
    """What is wrong with a step option's value, judged by its declared type; None if nothing.

    Counts must be positive where their default is (batch_size, num_perm, ngram, row_group_rows, ...) and
    never negative; thresholds are fractions in [0, 1]; a seed is any non-negative integer.
    """
    if hint is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be a whole number"
        if key != "seed" and isinstance(default, int) and default > 0 and value < 1:
            return "must be at least 1"
        return "must not be negative" if value < 0 else None
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return "must be a number"
        if key == "threshold" and not 0 <= value <= 1:
            return "must be a fraction between 0 and 1"
        if isinstance(default, (int, float)) and default > 0 and value <= 0:
            return "must be greater than 0"
        return "must not be negative" if value < 0 else None
    if hint is str:
        return "must be a single value" if isinstance(value, (list, dict)) else None
    strings = isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
    if typing.get_origin(hint) is list and typing.get_args(hint) == (str,) and not strings:
        return "must be a list of strings"
    if typing.get_origin(hint) is dict and not isinstance(value, dict) and value is not None:
        return "must be a mapping"
    return None


def _yaml_values(data: Any, path: Path) -> None:
    """Refuse YAML that expands (through aliases) to more values than any pipeline has: an alias bomb."""
    seen = 0
    stack = [data]
    while stack:
        item = stack.pop()
        seen += 1
        if seen > MAX_YAML_VALUES:
            raise ConfigError(
                f"{path}: expands to more than {MAX_YAML_VALUES:,} values (aliases repeating aliases?); "
                "a pipeline needs far fewer"
            )
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def check_name(name: str, what: str, where: Path) -> str:
    """A stage or pipeline name, which becomes a folder: a plain name, or a ConfigError that says so."""
    if not _PLAIN_NAME.match(name) or name.endswith("."):
        raise ConfigError(
            f"{where}: {what} name {name!r} is not a plain name: use letters, digits, '_', '-' and '.' "
            "(not first), at most 100 characters; it names a folder of the work directory"
        )
    return name


def attach_sources(stage: Stage, inputs: list[Input], sources: dict[str, Source]) -> None:
    """Check every source tag a file stage uses and give it their licences (a scrape stage: its sources)."""
    if stage.step == "scrape":
        stage.catalog = {s: require_source(sources, s) for s in stage.sources}
        return
    if not isinstance(stage, FileStage):
        return
    used = {i.source or stage.source for i in inputs}
    stage.licenses = {s: require_source(sources, s).license for s in sorted(used)}


def load_pipeline(
    path: str | os.PathLike, sources_file: str | os.PathLike | None = None
) -> tuple[Pipeline, dict]:
    """Load pipeline YAML and sources.yaml, resolving inputs; raises ConfigError naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"pipeline file not found: {path}")
    data = load_yaml(path)
    _yaml_values(data, path)
    if not isinstance(data, dict) or not isinstance(data.get("stages"), list) or not data["stages"]:
        raise ConfigError(f"{path}: expected a mapping with a non-empty 'stages:' list")
    base = path.parent
    if sources_file is None:
        sources_file = base / data["sources"] if data.get("sources") else find_sources_file(base)
    sources = load_sources(sources_file)
    planned: list[PlannedStage] = []
    names: list[str] = []
    for n, entry in enumerate(data["stages"]):
        if not isinstance(entry, dict) or "step" not in entry:
            raise ConfigError(
                f"{path}: stage #{n + 1} needs at least 'step:' (one of {', '.join(sorted(STEPS))})"
            )
        entry = dict(entry)
        step = str(entry.pop("step"))
        name = check_name(str(entry.pop("name", step)), "stage", path)
        if name in names:
            raise ConfigError(f"{path}: two stages are named {name!r}; give each a unique 'name:'")
        raw_inputs = entry.pop("inputs", None)
        try:  # scheduling options, not the step's parameters: they never change its output
            resources = Resources.parse(
                entry.pop("num_cpus", None), entry.pop("memory", None), f"{path}: stage {name!r}"
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        if step == "decontaminate":  # evaluation files are named relative to the YAML, like inputs
            entry["benchmarks"] = relative_to(entry.get("benchmarks"), base)
        stage = make_stage(step, name, entry, sources)
        if step == "scrape" and raw_inputs is None:
            inputs = []  # a scrape reads the web (or, given inputs, local copies of the sites)
        else:
            inputs = _resolve_inputs(path, name, raw_inputs, names, base)
        if stage.step == "mix":  # an input entry may name the mix component it feeds
            try:
                stage.set_input_components(input_components(raw_inputs))
            except ValueError as exc:
                raise ConfigError(f"{path}: stage {name!r}: {exc}") from exc
        attach_sources(stage, inputs, sources)
        planned.append(PlannedStage(stage, inputs, resources))
        names.append(name)
    workdir = base / data["workdir"] if data.get("workdir") else None
    name = str(data.get("name") or path.stem)
    if not workdir:  # the name then picks the folder, work/<name>
        check_name(name, "pipeline", path)
    pipeline = Pipeline(name, path, workdir, planned, path.read_text(encoding="utf-8"))
    return pipeline, sources


def _resolve_inputs(path: Path, name: str, raw: Any, earlier: list[str], base: Path) -> list[Input]:
    if raw is None:
        if not earlier:
            raise ConfigError(f"{path}: stage {name!r} is first, so it needs 'inputs:' (files or folders)")
        return [Input(f"@{earlier[-1]}")]
    if not isinstance(raw, list):
        raw = [raw]
    inputs = []
    for item in raw:
        if isinstance(item, str):
            item = {"path": item}
        if not isinstance(item, dict) or "path" not in item:
            raise ConfigError(
                f"{path}: stage {name!r}: an input is a path, a stage name, or {{path, source}}"
            )
        target = str(item["path"])
        if target in earlier:
            found = Input(f"@{target}")
        elif is_uri(target):
            found = Input(target, item.get("source"))
        else:
            found = Input(str((base / target).resolve()), item.get("source"))
        if found not in inputs:  # the same input twice is read once
            inputs.append(found)
    return inputs


def check_inputs(pipeline: Pipeline) -> None:
    """Before a run: every input names an earlier stage or a file or folder that exists, and each stage that
    reads only such files plans (finds its documents, gives unique ids), so that a mistake stops the run
    before any stage runs; stages reading earlier stages are planned when they run."""
    earlier: list[str] = []
    for planned in pipeline.stages:
        name = planned.stage.name
        for item in planned.inputs:
            if not item.path.startswith("@") and not is_uri(item.path) and not os.path.lexists(item.path):
                before = ", ".join(earlier) or "none"
                raise ConfigError(
                    f"{pipeline.path}: stage {name!r}: input {Path(item.path).name!r} is neither a stage "
                    f"before it ({before}) nor a file or folder ({item.path} does not exist)"
                )
        earlier.append(name)
        if not planned.inputs or any(i.path.startswith("@") for i in planned.inputs):
            continue
        try:
            planned.stage.plan(planned.inputs)
        except (FileNotFoundError, ValueError) as exc:
            stage = f"stage {planned.stage.name!r}"
            raise ConfigError(f"{pipeline.path}: {'' if stage in str(exc) else stage + ': '}{exc}") from exc


def run_pipeline(pipeline: Pipeline, workdir: Path, executor, progress=None) -> list[dict[str, Any]]:
    """Run every stage in order; a stage's output directory feeds the stages that name it."""
    workdir = as_path(workdir)  # a local folder, or a storage URI such as s3://bucket/prefix
    staged = check_pipeline(pipeline, workdir)
    with workdir_lock(workdir):
        return _run_stages(pipeline, staged, workdir, executor, progress)


@contextlib.contextmanager
def workdir_lock(workdir: str | os.PathLike | StoragePath) -> Iterator[None]:
    """Create the work directory and hold its lock while the block runs (FolderBusy if another holds it)."""
    workdir = as_path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    with folder_lock(workdir):
        yield


def check_pipeline(
    pipeline: Pipeline, workdir: str | os.PathLike | StoragePath
) -> list[tuple[PlannedStage, list[Input]]]:
    """Each stage with its inputs resolved in the work directory, after checking (before any work) that
    every stage can run there: storage, folders that overlap inputs, files curate did not write."""
    workdir = as_path(workdir)
    staged = [
        (p, [Input(str(workdir / i.path[1:])) if i.path.startswith("@") else i for i in p.inputs])
        for p in pipeline.stages
    ]
    check_workdir(workdir, pipeline)
    for planned, inputs in staged:
        check_output(planned.stage, inputs, workdir / planned.stage.name)
    return staged


def check_workdir(workdir: Path | StoragePath, pipeline: Pipeline) -> None:
    """Refuse a work directory inside a file input of the pipeline, or an input inside one of its stage
    folders: a stage would read curate's own outputs and reports as documents, or write over its inputs."""
    if isinstance(workdir, StoragePath):
        return
    root = workdir.resolve()
    folders = [root / planned.stage.name for planned in pipeline.stages]
    for planned in pipeline.stages:
        for item in planned.inputs:
            if item.path.startswith("@") or is_uri(item.path):
                continue  # an earlier stage's folder, or object storage
            source = Path(item.path).resolve()
            if root.is_relative_to(source) or any(source.is_relative_to(f) for f in folders):
                raise ValueError(
                    f"stage {planned.stage.name!r}: its input {item.path} and the work directory {workdir} "
                    "overlap; put the work directory outside every input folder"
                )


def _run_stages(pipeline: Pipeline, staged: list, workdir: Path | StoragePath, executor, progress) -> list:
    write_json(
        {
            "pipeline": pipeline.name,
            "file": str(pipeline.path) if pipeline.path else None,
            "stages": [p.stage.name for p in pipeline.stages],
            "yaml": pipeline.text,
        },
        workdir / PIPELINE_FILE,
    )
    manifests = []
    for planned, inputs in staged:
        out = workdir / planned.stage.name
        manifests.append(run_stage(planned.stage, inputs, out, executor, progress, planned.resources))
        # Across stages too: each one read exactly what the earlier stages it names kept.
        problems = flow_problems({m["stage"]: m for m in manifests})
        if problems:
            raise AccountingError(f"pipeline {pipeline.name!r}: {'; '.join(problems)}")
    return manifests
