"""Sources: the registry in sources.yaml (and, later, scrapers for sources YAML cannot describe)."""

from curate.sources.registry import (
    ConfigError,
    Source,
    find_sources_file,
    load_sources,
    load_yaml,
    require_source,
)

__all__ = ["ConfigError", "Source", "find_sources_file", "load_sources", "load_yaml", "require_source"]
