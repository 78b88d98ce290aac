"""Sources: sources.yaml, the catalogue of every source (registry.py) and its scrape settings (config.py)."""

from curate.sources.registry import Source, find_sources_file, load_sources, load_yaml

__all__ = ["Source", "find_sources_file", "load_sources", "load_yaml"]
