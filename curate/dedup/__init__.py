"""Deduplication: exact (normalised text, exact.py) and near (MinHash LSH, near.py and its phases)."""
