"""Deduplication: exact (normalised text) now; MinHash near-duplicates next."""
