"""The MinHash kernel's former name: see curate.dedup.minhash."""

from curate.dedup.minhash import (
    band_keys,
    fmix64,
    jaccard,
    minhash,
    normalized_bytes,
    permutations,
    shingle_hashes,
    shingle_sets,
    spaced_words,
    text_signatures,
    word_hashes,
)

__all__ = [
    "band_keys",
    "fmix64",
    "jaccard",
    "minhash",
    "normalized_bytes",
    "permutations",
    "shingle_hashes",
    "shingle_sets",
    "spaced_words",
    "text_signatures",
    "word_hashes",
]
