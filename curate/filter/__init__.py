"""Filters: language identification, clean-up, quality heuristics and the quality classifier."""
