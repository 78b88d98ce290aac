"""Pipeline YAML: an ordered list of stages, each reading raw inputs or earlier stages' outputs."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.errors import AccountingError, ConfigError
from curate.executors import Resources
from curate.io import write_json
from curate.layout import PIPELINE_FILE
from curate.runner import check_output, run_stage
from curate.sources.registry import find_sources_file, load_sources, load_yaml
from curate.stage import Input, Stage, plan_tasks
from curate.steps import STEPS, new_stage
from curate.storage import StoragePath, as_path, folder_lock, is_uri
from curate.verify import flow_problems

# A stage name is a folder of the work directory, a pipeline name one of work/: plain names only (no "..",
# "/", leading "." or "_" (curate's own folders, such as a scrape's crawl state), no markup).
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
        # Scheduling options, not the step's parameters: they never change its output.
        resources = Resources.parse(
            entry.pop("num_cpus", None), entry.pop("memory", None), f"{path}: stage {name!r}"
        )
        stage = new_stage(step, name, entry, base)
        if raw_inputs is None and stage.inputs_optional:
            inputs = []  # a scrape reads the web (or, given inputs, local copies of the sites)
        else:
            inputs = _resolve_inputs(path, name, raw_inputs, names, base)
        try:
            stage.bind(sources, inputs)
        except ConfigError as exc:
            raise ConfigError(f"{path}: stage {name!r}: {exc}") from exc
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
        # Other keys of the entry are for the stage to read (mix: `component:`).
        options = tuple((str(k), v) for k, v in item.items() if k not in ("path", "source"))
        if target in earlier:
            found = Input(f"@{target}", options=options)
        elif is_uri(target):
            found = Input(target, item.get("source"), options)
        else:
            found = Input(str((base / target).resolve()), item.get("source"), options)
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
            plan_tasks(planned.stage, planned.inputs)
        except ConfigError as exc:
            raise ConfigError(f"{pipeline.path}: {exc}") from exc


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
    staged = [(p, [_in_workdir(i, workdir) for i in p.inputs]) for p in pipeline.stages]
    check_workdir(workdir, pipeline)
    for planned, inputs in staged:
        check_output(planned.stage, inputs, workdir / planned.stage.name)
    return staged


def _in_workdir(item: Input, workdir: Path | StoragePath) -> Input:
    """An input that names an earlier stage (@name) as that stage's folder of the work directory."""
    if not item.path.startswith("@"):
        return item
    return dataclasses.replace(item, path=str(workdir / item.path[1:]), source=None)


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
                raise ConfigError(
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
