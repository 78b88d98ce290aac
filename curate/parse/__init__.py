"""Parsers: raw inputs (PDF, HTML) to clean text."""
