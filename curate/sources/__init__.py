"""Sources: sources.yaml, the catalogue of every source (registry.py) and its scrape settings (config.py)."""

from curate.sources.registry import (
    ConfigError,
    Source,
    find_sources_file,
    load_sources,
    load_yaml,
    require_source,
)

__all__ = ["ConfigError", "Source", "find_sources_file", "load_sources", "load_yaml", "require_source"]
