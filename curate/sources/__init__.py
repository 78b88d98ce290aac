"""Sources: sources.yaml, the catalogue of every source (registry.py) and its scrape settings (config.py)."""
