"""curate: build pretraining corpora for medical language models."""

__version__ = "0.1.0"
