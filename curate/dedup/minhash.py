"""The MinHash kernel: signatures and LSH band keys for a batch of documents, vectorised with numpy.

Each distinct word of a batch is hashed once (xxh3, 64 bits); a word n-gram's hash is a fixed arithmetic mix
of its words' hashes, so no n-gram string is ever built. The permutations are datasketch's "affine64" scheme
(same seed -> same a, b; MurmurHash3 finalizer, then a*h+b mod 2^64): our signature of a document equals
`datasketch.MinHash(num_perm, seed, scheme="affine64", hashfunc=...)` fed the same n-gram hashes.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

MAX_HASH = np.uint64(2**64 - 1)
# Shingle hashes per chunk of the permutation loop: small enough to stay in cache, large enough for numpy.
CHUNK_SHINGLES = 1 << 15
# Odd constants (fixed seed) that weigh each word of an n-gram differently, so that word order counts.
_MIX = np.random.default_rng(0x5EED).integers(0, 2**63, size=64, dtype=np.uint64) * np.uint64(2) + np.uint64(
    1
)
_FMIX64 = (np.uint64(33), np.uint64(0xFF51AFD7ED558CCD), np.uint64(33), np.uint64(0xC4CEB9FE1A85EC53))


# ASCII bytes that are not letters or digits become spaces; bytes of multi-byte characters pass through.
_ASCII_NON_WORD = bytes(b if b >= 128 or chr(b).isalnum() else 32 for b in range(256))
_ASCII = bytes(range(128))


@lru_cache(maxsize=1)
def _composing_seconds() -> frozenset[str]:
    """Characters that can compose with the character before them (NFC quick check 'maybe')."""
    seconds = {chr(c) for c in (*range(0x1161, 0x1176), *range(0x11A8, 0x11C3))}  # Hangul vowels, finals
    for code in range(0x30000):
        parts = unicodedata.decomposition(chr(code)).split()
        if len(parts) == 2 and not parts[0].startswith("<"):
            seconds.add(chr(int(parts[1], 16)))
    return frozenset(seconds)


def _context_free(char: str) -> bool:
    return unicodedata.combining(char) == 0 and char not in _composing_seconds()


@lru_cache(maxsize=1 << 16)
def _fold(char: str) -> str | None:
    """What normalize_text makes of one non-ASCII character, or None if that depends on its neighbours."""
    normal = unicodedata.normalize("NFKC", char)
    if not (_context_free(char) and all(_context_free(c) for c in normal)):
        return None
    return "".join(c if c.isalnum() else " " for c in normal.casefold())


def spaced_words(text: str) -> bytes:
    """The words of normalize_text(text) in UTF-8, separated by runs of spaces."""
    data = text.encode("utf-8", "surrogatepass")
    if not text.isascii():
        # NFKC and case folding act on each character alone unless one combines with its neighbours: then
        # each distinct non-ASCII character is replaced by its cached folding, without a Unicode regex.
        chars = set(data.translate(None, _ASCII).decode("utf-8", "surrogatepass"))
        folds = {c: _fold(c) for c in chars}
        if None in folds.values():
            folded = unicodedata.normalize("NFKC", text).casefold()
            data = folded.encode("utf-8", "surrogatepass")
            chars = set(data.translate(None, _ASCII).decode("utf-8", "surrogatepass"))
            folds = {c: c if c.isalnum() else " " for c in chars}
        for char, fold in folds.items():
            if fold != char:
                data = data.replace(
                    char.encode("utf-8", "surrogatepass"), fold.encode("utf-8", "surrogatepass")
                )
    return data.lower().translate(_ASCII_NON_WORD).strip()


def normalized_bytes(text: str) -> bytes:
    """UTF-8 of curate.dedup.exact.normalize_text(text)."""
    return b" ".join(spaced_words(text).split())


def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer, element-wise (the pre-mix datasketch applies to every hash)."""
    s, m1, _, m2 = _FMIX64
    h = h ^ (h >> s)
    h = h * m1
    h = h ^ (h >> s)
    h = h * m2
    return h ^ (h >> s)


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) of datasketch's affine64 permutations for a seed: a odd, both uniform 64-bit."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 63, num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = gen.randint(0, 1 << 64, num_perm, dtype=np.uint64)
    return a, b


def word_hashes(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of the normalised words of every text (flat) and each text's offsets into them."""
    normalised = [spaced_words(t) if t else b"" for t in texts]
    # Empty texts become nulls so that they split into no words rather than one empty word.
    data = pa.array([t or None for t in normalised], pa.large_binary()).view(pa.large_string())
    words = pc.ascii_split_whitespace(data)  # splits bytes; never validates or decodes UTF-8
    offsets = words.offsets.to_numpy().astype(np.int64)
    flat = words.flatten()
    if len(flat) == 0:
        return np.zeros(0, np.uint64), offsets
    encoded = pc.dictionary_encode(flat)
    vocabulary = encoded.dictionary.cast(pa.large_binary()).to_pylist()
    digest = xxhash.xxh3_64_intdigest
    vocab_hashes = np.fromiter((digest(w) for w in vocabulary), np.uint64, len(vocabulary))
    return vocab_hashes[encoded.indices.to_numpy()], offsets


def shingle_hashes(words: np.ndarray, offsets: np.ndarray, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of every word n-gram of each text (a text shorter than n is one shingle) and offsets."""
    if ngram < 1 or ngram > len(_MIX):
        raise ValueError(f"ngram must be between 1 and {len(_MIX)}, got {ngram}")
    lengths = np.diff(offsets)
    total = len(words)
    mixed = words * _MIX[0]
    for k in range(1, min(ngram, total)):
        mixed[: total - k] += words[k:] * _MIX[k]
    # The last n-1 positions of each text start no full n-gram.
    tails = offsets[1:, None] - np.arange(1, ngram)[None, :]
    valid = np.ones(total, bool)
    valid[tails[tails >= offsets[:-1, None]]] = False
    counts = np.maximum(lengths - ngram + 1, 0)
    short = np.flatnonzero((lengths > 0) & (lengths < ngram))
    if len(short):
        # Texts with fewer words than n: one shingle of all their words, mixed the same way.
        for d in short:
            start, n = offsets[d], lengths[d]
            mixed[start] = (words[start : start + n] * _MIX[:n]).sum(dtype=np.uint64)
        valid[offsets[short]] = True
        counts[short] = 1
    shingle_offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(counts, out=shingle_offsets[1:])
    return mixed[valid], shingle_offsets


def minhash(shingles: np.ndarray, offsets: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """(documents x num_perm) uint64 signatures; a document without shingles gets all MAX_HASH."""
    a, b = permutations(num_perm, seed)
    n_docs = len(offsets) - 1
    signatures = np.full((n_docs, num_perm), MAX_HASH, np.uint64)
    mixed = fmix64(shingles)
    counts = np.diff(offsets)
    doc = 0
    while doc < n_docs:
        # A chunk of whole documents (at least one) of about CHUNK_SHINGLES shingles.
        end = int(np.searchsorted(offsets, offsets[doc] + CHUNK_SHINGLES, side="right")) - 1
        end = min(max(end, doc + 1), n_docs)
        present = np.flatnonzero(counts[doc:end] > 0) + doc
        if len(present):
            lo, hi = offsets[doc], offsets[end]
            chunk = mixed[lo:hi]
            starts = offsets[present] - lo
            work = np.empty_like(chunk)
            for j in range(num_perm):
                np.multiply(chunk, a[j], out=work)
                work += b[j]
                signatures[present, j] = np.minimum.reduceat(work, starts)
        doc = end
    return signatures


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(documents x bands) uint64: one hash per band of `rows` signature values."""
    if bands * rows > signatures.shape[1]:
        raise ValueError(f"{bands} bands x {rows} rows need {bands * rows} permutations")
    keys = np.empty((signatures.shape[0], bands), np.uint64)
    for band in range(bands):
        block = signatures[:, band * rows : (band + 1) * rows]
        keys[:, band] = fmix64((block * _MIX[:rows]).sum(axis=1, dtype=np.uint64) + np.uint64(band))
    return keys


def text_signatures(texts: list[str], ngram: int, num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Signatures of texts and how many shingles each has (0: nothing to compare, never a duplicate)."""
    words, offsets = word_hashes(texts)
    shingles, shingle_offsets = shingle_hashes(words, offsets, ngram)
    return minhash(shingles, shingle_offsets, num_perm, seed), np.diff(shingle_offsets)


def shingle_sets(texts: list[str], ngram: int) -> list[np.ndarray]:
    """Each text's distinct shingle hashes, sorted (for exact Jaccard)."""
    words, offsets = word_hashes(texts)
    shingles, shingle_offsets = shingle_hashes(words, offsets, ngram)
    return [np.unique(shingles[shingle_offsets[i] : shingle_offsets[i + 1]]) for i in range(len(texts))]


def jaccard(x: np.ndarray, y: np.ndarray) -> float:
    """Jaccard similarity of two sorted arrays of distinct hashes (0 when both are empty)."""
    if len(x) == 0 and len(y) == 0:
        return 0.0
    common = len(np.intersect1d(x, y, assume_unique=True))
    return common / (len(x) + len(y) - common)
