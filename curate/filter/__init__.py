"""Filters: language identification and (later) quality heuristics."""
