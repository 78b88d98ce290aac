"""sources.yaml: the registry of every source curate knows, loaded and checked with clear errors."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from curate.dedup.survivors import DEFAULT_PRIORITY
from curate.errors import ConfigError

SOURCES_FILE = "sources.yaml"
CONTENT_TYPES = ("html", "pdf", "xml", "api", "parquet")


@dataclass(frozen=True)
class Source:
    """One source: where it lives, what it serves, its licence, and how duplicates from it rank."""

    name: str
    title: str
    homepage: str | None
    content: str
    license: str | None
    redistributable: bool
    priority: int = DEFAULT_PRIORITY
    allowed_domains: tuple[str, ...] = ()
    notes: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    # The validated `scrape:` block (curate.sources.config.ScrapeConfig); None for local-only sources.
    # extra["scrape"] keeps the raw block, whose politeness keys the fetcher reads (FetchSettings).
    scrape: Any = field(default=None, compare=False)


def find_sources_file(start: str | os.PathLike | None = None) -> Path:
    """$CURATE_SOURCES, else the nearest sources.yaml from start (default: the working directory) upwards,
    else the one beside the curate package (a source checkout)."""
    if env := os.environ.get("CURATE_SOURCES"):
        return Path(env)
    here = Path(start or Path.cwd()).resolve()
    for folder in [here, *here.parents]:
        if (folder / SOURCES_FILE).is_file():
            return folder / SOURCES_FILE
    bundled = Path(__file__).resolve().parents[2] / SOURCES_FILE
    if bundled.is_file():
        return bundled
    raise ConfigError(
        f"no {SOURCES_FILE} found in {here} or its parents; pass --sources PATH or set CURATE_SOURCES"
    )


def load_yaml(path: str | os.PathLike) -> Any:
    """Safe-load a YAML file, turning syntax errors into a ConfigError that names the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from exc


def load_sources(path: str | os.PathLike | None = None) -> dict[str, Source]:
    """Load and validate sources.yaml (found with find_sources_file when no path is given)."""
    path = Path(path) if path else find_sources_file()
    data = load_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("sources"), dict):
        raise ConfigError(f"{path}: expected a mapping with a 'sources:' mapping of name -> settings")
    sources = {}
    for name, entry in data["sources"].items():
        sources[str(name)] = _parse_source(path, str(name), entry)
    return sources


def _parse_source(path: Path, name: str, entry: Any) -> Source:
    where = f"{path}: source {name!r}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping of settings, got {type(entry).__name__}")
    known = {
        "title",
        "homepage",
        "content",
        "license",
        "redistributable",
        "priority",
        "allowed_domains",
        "notes",
    }
    content = entry.get("content")
    if content not in CONTENT_TYPES:
        raise ConfigError(f"{where}: 'content' must be one of {', '.join(CONTENT_TYPES)}, got {content!r}")
    if not isinstance(entry.get("redistributable"), bool):
        raise ConfigError(f"{where}: 'redistributable' must be true or false")
    priority = entry.get("priority", DEFAULT_PRIORITY)
    if not isinstance(priority, int):
        raise ConfigError(f"{where}: 'priority' must be an integer (lower wins among duplicates)")
    domains = entry.get("allowed_domains") or []
    if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
        raise ConfigError(f"{where}: 'allowed_domains' must be a list of host names")
    extra = {k: v for k, v in entry.items() if k not in known}
    scrape = None
    if "scrape" in entry:
        from curate.sources.config import parse_scrape  # loaded on first use (with the fetcher's settings)

        if not domains:
            raise ConfigError(f"{where}: a source with a 'scrape' block needs 'allowed_domains'")
        scrape, extra["scrape"] = parse_scrape(where, entry["scrape"], entry.get("homepage"))
    return Source(
        name=name,
        title=str(entry.get("title") or name),
        homepage=entry.get("homepage"),
        content=content,
        license=entry.get("license"),
        redistributable=entry["redistributable"],
        priority=priority,
        allowed_domains=tuple(domains),
        notes=entry.get("notes"),
        extra=extra,
        scrape=scrape,
    )
