"""Spiders, one site or API per module of this package, found by `spider_for` (Scrapy's SpiderLoader).

Adding a spider for a source that sources.yaml alone cannot describe: a new module here with a Spider
subclass (curate.scrape.spiders.base) decorated `@register("<source name, spider: name or discovery type>")`.
Nothing else names it: the loader imports every module of the package the first time a spider is asked for.
"""

from __future__ import annotations

import importlib
import pkgutil

from curate.errors import ConfigError
from curate.scrape.spiders.base import SPIDERS, Spider
from curate.scrape.spiders.generic import GenericSpider
from curate.sources.config import GENERIC_DISCOVERY
from curate.sources.registry import Source

_loaded: list[bool] = []


def load_spiders() -> dict[str, type[Spider]]:
    """Every registered spider class by name, after importing each module of this package once."""
    if not _loaded:
        for module in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{module.name}")
        _loaded.append(True)
    return SPIDERS


def spider_for(source: Source) -> Spider:
    """The registered class for this source name, else the YAML-driven generic spider; ConfigError when the
    source has no `scrape:` block (local-only sources)."""
    spiders = load_spiders()
    config = source.scrape
    if config is None:
        raise ConfigError(f"source {source.name!r} has no 'scrape:' block in sources.yaml: nothing to crawl")
    if config.spider:
        if config.spider not in spiders:
            known = ", ".join(sorted(spiders))
            raise ConfigError(
                f"source {source.name!r}: scrape.spider {config.spider!r} is not registered ({known})"
            )
        return spiders[config.spider](source)
    cls = spiders.get(source.name) or spiders.get(config.discovery.type)
    if cls is not None:
        return cls(source)
    if config.discovery.type in GENERIC_DISCOVERY:
        return GenericSpider(source)
    raise ConfigError(
        f"source {source.name!r}: discovery type {config.discovery.type!r} needs a spider class; add a "
        f"module to curate/scrape/spiders/ with @register({source.name!r}), or name one with scrape.spider"
    )


__all__ = ["GenericSpider", "Spider", "load_spiders", "spider_for"]
