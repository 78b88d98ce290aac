"""The `scrape:` block of a sources.yaml entry: discovery, extraction rules, politeness, checked at load."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from cssselect import SelectorError
from lxml.cssselect import CSSSelector

from curate.errors import ConfigError

# Where a guideline's own text ends: what follows is back matter, not guidance.
DEFAULT_STOP_HEADINGS = (
    "References",
    "Bibliography",
    "Acknowledgements",
    "Acknowledgments",
    "Disclaimer",
    "Conflicts of interest",
    "Conflict of interest",
    "Disclosures",
    "Funding",
    "Footnotes",
)

# Discovery types: the generic spider handles the first three from YAML alone; the others need a class
# (registered by discovery type for eutils and mediawiki, by source name or `spider:` for api).
GENERIC_DISCOVERY = ("sitemap", "listing", "letters")
DISCOVERY_TYPES = (*GENERIC_DISCOVERY, "api", "eutils", "mediawiki")

# Besides these, a scrape block holds the fetcher's settings (curate.fetch.fetcher.FetchSettings: rate_limit,
# user_agent, max_bytes, timeout, retries, concurrency, allow_private, ...), read from source.extra["scrape"].
_SPIDER_KEYS = {"discovery", "extract", "spider", "max_pages"}
# Pages one crawl of a source may queue (start pages included): the bound on a site that links without end
# (a listing of 200,000 links, a calendar). Links past it are counted and reported, never fetched.
DEFAULT_MAX_PAGES = 100_000
_LISTING_KEYS = {"type", "start", "links", "pattern", "exclude", "next", "follow", "also", "pdf_link"}
_DISCOVERY_KEYS = {
    "sitemap": {"type", "start", "pattern", "exclude", "also", "pdf_link"},
    "listing": _LISTING_KEYS,
    "letters": _LISTING_KEYS | {"letters"},
    # API-driven discovery: the class reads its own options from `discovery` (checked below where known).
    "api": None,
    "eutils": {"type", "start", "term", "batch", "retmax", "max_results", "email", "tool", "base"},
    "mediawiki": {"type", "start", "api", "namespace", "limit", "merge_suffixes", "drop_titles"},
}
_EXTRACT_KEYS = {
    "main",
    "drop",
    "title",
    "title_strip",
    "start_at",
    "stop_headings",
    "tables",
    "drop_lines",
    "strip_markers",
    "drop_chapters",
}


@dataclass(frozen=True)
class ExtractRules:
    """How to cut a source's page down to its text (all from the source's `scrape.extract` block)."""

    main: tuple[str, ...] = ()  # alternatives, first that matches wins (all its matches kept, in order)
    drop: tuple[str, ...] = ()
    title: tuple[str, ...] = ()  # alternatives for the document title; default <h1>, then <title>
    title_strip: str | None = None  # regex removed from the title (a site-name suffix)
    start_at: str | None = None  # the text starts at this element when the page has it
    stop_headings: tuple[str, ...] = DEFAULT_STOP_HEADINGS
    tables: bool = False
    drop_lines: tuple[str, ...] = ()
    strip_markers: bool = True


@dataclass(frozen=True)
class Level:
    """One level of index pages before the listing: links to the next level, optionally a next page."""

    links: str
    pattern: str | None = None
    next: str | None = None


@dataclass(frozen=True)
class Discovery:
    """How a source's documents are found."""

    type: str
    start: tuple[str, ...]
    links: str | None = None  # listing: links to article pages (or PDFs)
    pattern: str | None = None  # an article URL must match this regex (re.search)
    exclude: str | None = None  # ... and must not match this one
    next: str | None = None  # listing: the next listing page
    follow: tuple[Level, ...] = ()  # index levels before the listing (letters is one such level)
    also: str | None = None  # on an article page: links to more article pages (e.g. a second tab)
    pdf_link: str | None = None  # PDF sources: on an article (landing) page, the link to its PDF
    options: dict[str, Any] = field(default_factory=dict, compare=False)  # api/eutils/mediawiki settings


@dataclass(frozen=True)
class ScrapeConfig:
    """A source's whole `scrape:` block, validated."""

    discovery: Discovery
    extract: ExtractRules
    spider: str | None = None  # a registered spider class by name (default: the source's own name)
    drop_chapters: str | None = None
    max_pages: int = DEFAULT_MAX_PAGES


def parse_scrape(where: str, block: Any, homepage: str | None) -> tuple[ScrapeConfig, dict[str, Any]]:
    """Validate a `scrape:` block; returns the spider's config and the raw block (the fetcher's settings)."""
    # Imported here: the fetcher (httpx, warcio) loads only when sources.yaml has a scrape block.
    from curate.fetch.fetcher import FetchSettings

    if not isinstance(block, dict):
        raise ConfigError(f"{where}: 'scrape' must be a mapping (discovery, extract, rate_limit, ...)")
    where = f"{where}: scrape"
    _unknown(where, block, _SPIDER_KEYS | FetchSettings.keys())
    FetchSettings.from_block(block, where)
    spider = block.get("spider")
    if spider is not None and not isinstance(spider, str):
        raise ConfigError(f"{where}.spider: must be the name of a registered spider class")
    max_pages = block.get("max_pages", DEFAULT_MAX_PAGES)
    if isinstance(max_pages, bool) or not isinstance(max_pages, int) or max_pages < 1:
        raise ConfigError(f"{where}.max_pages: must be a whole number >= 1, got {max_pages!r}")
    discovery = _discovery(f"{where}.discovery", block.get("discovery"), homepage)
    extract_block = block.get("extract") or {}
    rules, drop_chapters = _extract(f"{where}.extract", extract_block)
    config = ScrapeConfig(
        discovery=discovery, extract=rules, spider=spider, drop_chapters=drop_chapters, max_pages=max_pages
    )
    return config, dict(block)


def _discovery(where: str, block: Any, homepage: str | None) -> Discovery:
    if not isinstance(block, dict):
        raise ConfigError(f"{where}: required: a mapping with 'type' (one of {', '.join(DISCOVERY_TYPES)})")
    kind = block.get("type")
    if kind not in DISCOVERY_TYPES:
        raise ConfigError(
            f"{where}.type: unknown discovery type {kind!r}; use one of {', '.join(DISCOVERY_TYPES)}"
        )
    allowed = _DISCOVERY_KEYS[kind]
    if allowed is not None:
        _unknown(where, block, allowed)
    start = block.get("start", [homepage] if homepage else [])
    if isinstance(start, str):
        start = [start]
    if not isinstance(start, list) or not all(
        isinstance(u, str) and re.match(r"https?://", u) for u in start
    ):
        raise ConfigError(f"{where}.start: must be a list of http(s) URLs")
    if not start and kind not in ("eutils",):
        raise ConfigError(f"{where}.start: no start URL (and no homepage to start from)")
    follow: list[Level] = []
    if kind == "letters":
        follow.append(Level(links=_selector(where, "letters", block.get("letters"), required=True)))
    for i, level in enumerate(block.get("follow") or []):
        if not isinstance(level, dict):
            raise ConfigError(
                f"{where}.follow[{i}]: must be a mapping with 'links' (and optional pattern, next)"
            )
        _unknown(f"{where}.follow[{i}]", level, {"links", "pattern", "next"})
        follow.append(
            Level(
                links=_selector(f"{where}.follow[{i}]", "links", level.get("links"), required=True),
                pattern=_regex(f"{where}.follow[{i}]", "pattern", level.get("pattern")),
                next=_selector(f"{where}.follow[{i}]", "next", level.get("next")),
            )
        )
    needs_links = kind in ("listing", "letters")
    options = {k: v for k, v in block.items() if k not in _LISTING_KEYS}
    if kind == "eutils" and not isinstance(block.get("term"), str):
        raise ConfigError(f"{where}.term: required for discovery type 'eutils' (the PubMed search term)")
    if kind == "mediawiki" and not (isinstance(block.get("api"), str) and block["api"].startswith("http")):
        raise ConfigError(f"{where}.api: required for discovery type 'mediawiki' (the URL of api.php)")
    return Discovery(
        type=kind,
        start=tuple(start),
        links=_selector(
            where,
            "links",
            block.get("links"),
            required=needs_links,
            why="a CSS selector for the article links",
        ),
        pattern=_regex(where, "pattern", block.get("pattern")),
        exclude=_regex(where, "exclude", block.get("exclude")),
        next=_selector(where, "next", block.get("next")),
        follow=tuple(follow),
        also=_selector(where, "also", block.get("also")),
        pdf_link=_selector(where, "pdf_link", block.get("pdf_link")),
        options=options,
    )


def _extract(where: str, block: Any) -> tuple[ExtractRules, str | None]:
    if not isinstance(block, dict):
        raise ConfigError(f"{where}: must be a mapping (main, drop, title, stop_headings, ...)")
    _unknown(where, block, _EXTRACT_KEYS)
    stops = block.get("stop_headings", list(DEFAULT_STOP_HEADINGS))
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise ConfigError(f"{where}.stop_headings: must be a list of heading texts")
    for key in ("tables", "strip_markers"):
        if key in block and not isinstance(block[key], bool):
            raise ConfigError(f"{where}.{key}: must be true or false")
    drop_lines = _list(where, "drop_lines", block.get("drop_lines"))
    for pattern in drop_lines:
        _regex(where, "drop_lines", pattern)
    rules = ExtractRules(
        main=tuple(
            _selector(where, "main", s, required=True) for s in _list(where, "main", block.get("main"))
        ),
        drop=tuple(
            _selector(where, "drop", s, required=True) for s in _list(where, "drop", block.get("drop"))
        ),
        title=tuple(
            _selector(where, "title", s, required=True) for s in _list(where, "title", block.get("title"))
        ),
        title_strip=_regex(where, "title_strip", block.get("title_strip")),
        start_at=_selector(where, "start_at", block.get("start_at")),
        stop_headings=tuple(stops),
        tables=block.get("tables", False),
        drop_lines=tuple(drop_lines),
        strip_markers=block.get("strip_markers", True),
    )
    return rules, _regex(where, "drop_chapters", block.get("drop_chapters"))


def _list(where: str, key: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}.{key}: must be a string or a list of strings")
    return value


def _selector(where: str, key: str, value: Any, *, required: bool = False, why: str = "") -> str | None:
    if value is None:
        if required:
            raise ConfigError(f"{where}.{key}: required{': ' + why if why else ''}")
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}.{key}: must be a CSS selector string, got {value!r}")
    try:
        CSSSelector(value)
    except SelectorError as exc:
        raise ConfigError(f"{where}.{key}: invalid CSS selector {value!r}: {exc}") from exc
    return value


def _regex(where: str, key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{key}: must be a regular expression string, got {value!r}")
    try:
        re.compile(value)
    except re.error as exc:
        raise ConfigError(f"{where}.{key}: invalid regular expression {value!r}: {exc}") from exc
    return value


def _unknown(where: str, block: dict, allowed: set[str]) -> None:
    extra = sorted(set(block) - allowed)
    if extra:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(str, extra))}; allowed: {', '.join(sorted(allowed))}"
        )
