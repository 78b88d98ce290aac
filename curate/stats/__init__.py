"""Corpus statistics: terminal tables, JSON and an HTML report."""
