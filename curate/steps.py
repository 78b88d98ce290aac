"""The step registry: each step's name and the stage class that runs it, and building a stage from options.

Adding a step is one new file and one line here: write the stage class (a curate.stage.Stage subclass,
`step = "<name>"`, its parameters as dataclass fields; a filter subclasses FilterStage and implements
`filter`), then add `"<name>": "<module>:<Class>"` to STEP_CLASSES. Classes are imported on first use, so a
command pays only for its own stages' libraries (datatrove, scipy and the scraper's together take about a
second to import). Code outside curate (a plugin, a test) adds a step with `register`.

Class names say what a step does with documents: `<What>Filter` keeps or drops each one (a FilterStage),
`<What>Dedup` removes duplicates, `<What>Stage` reads, writes or rewrites them. The step `filter` is
language identification (LanguageFilter), kept under that name for the pipelines that use it.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from curate.errors import ConfigError
from curate.stage import Input, Stage, resolve_pipeline_paths

STEP_CLASSES: dict[str, str | type[Stage]] = {
    "scrape": "curate.scrape.stage:ScrapeStage",
    "pdf": "curate.parse.stages:PdfStage",
    "html": "curate.parse.stages:HtmlStage",
    "pmc": "curate.parse.xml_stages:PmcStage",
    "pubmed": "curate.parse.xml_stages:PubmedStage",
    "filter": "curate.filter.language:LanguageFilter",
    "clean": "curate.filter.clean:CleanStage",
    "quality": "curate.filter.quality:QualityFilter",
    "classify": "curate.filter.classifier:ClassifierFilter",
    "dedup": "curate.dedup.exact:ExactDedup",
    "near_dedup": "curate.dedup.near:NearDedup",
    "mix": "curate.mix.stage:MixStage",
    "shard": "curate.shard:ShardStage",
    "decontaminate": "curate.decontam.stage:DecontaminateStage",
    "tokenize": "curate.train.tokenize:TokenizeStage",
}


def register(step: str, stage: str | type[Stage]) -> None:
    """Add (or replace) a step: its stage class, or "module:Class" to import when a pipeline uses it."""
    STEP_CLASSES[step] = stage


class _Steps(Mapping[str, type[Stage]]):
    """Step name -> stage class, importing a class's module on first use."""

    def __getitem__(self, step: str) -> type[Stage]:
        target = STEP_CLASSES[step]
        if not isinstance(target, str):
            return target
        module, name = target.split(":")
        return getattr(importlib.import_module(module), name)

    def __iter__(self) -> Iterator[str]:
        return iter(STEP_CLASSES)

    def __len__(self) -> int:
        return len(STEP_CLASSES)


STEPS: Mapping[str, type[Stage]] = _Steps()


def stage_class(step: str, name: str | None = None) -> type[Stage]:
    """The class of a step; a ConfigError listing the steps for an unknown one."""
    if step not in STEPS:
        where = f"stage {name!r}: " if name else ""
        raise ConfigError(f"{where}unknown step {step!r}; steps are: {', '.join(sorted(STEPS))}")
    return STEPS[step]


def step_options(step: str) -> list[str]:
    """The parameters a step accepts in pipeline YAML."""
    cls = STEPS[step]
    return [f.name for f in dataclasses.fields(cls) if f.name not in cls.derived_fields()]


def make_stage(
    step: str,
    name: str,
    params: dict[str, Any],
    sources: Mapping[str, Any] | None = None,
    inputs: list[Input] | None = None,
) -> Stage:
    """A stage from its step name and YAML/CLI parameters, bound to sources.yaml (`sources`, name -> Source)
    and its inputs; ConfigError naming what is wrong."""
    stage = new_stage(step, name, params)
    stage.bind(sources or {}, inputs or [])
    return stage


def new_stage(step: str, name: str, params: dict[str, Any], base: Path | None = None) -> Stage:
    """A stage from its step name and YAML/CLI parameters, not yet bound (Stage.bind); file options that a
    pipeline YAML names relative to itself are resolved against `base`, its folder."""
    cls = stage_class(step, name)
    unknown = sorted(set(params) - set(step_options(step)))
    if unknown:
        raise ConfigError(
            f"stage {name!r}: unknown option(s) {', '.join(unknown)} for step {step!r}; "
            f"it takes: {', '.join(step_options(step)) or 'no options'}"
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in params.items():
        problem = _param_problem(key, value, typing.get_type_hints(cls).get(key), _default(fields[key]))
        if problem:
            raise ConfigError(f"stage {name!r}: option {key!r} {problem}, not {_short(value)}")
    if base is not None:
        params = {
            k: resolve_pipeline_paths(v, base) if fields[k].metadata.get("pipeline_paths") else v
            for k, v in params.items()
        }
    try:
        return cls(name=name, **params)
    except (TypeError, ValueError) as exc:  # a value the constructor refuses (ConfigError is a ValueError)
        raise ConfigError(f"stage {name!r}: {exc}") from exc


def _default(field: dataclasses.Field) -> Any:
    return None if field.default is dataclasses.MISSING else field.default


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
