"""Parsers: raw inputs (PDF, HTML, JATS/PMC and PubMed XML) to clean text, and their stages."""
