"""An oracle for near-dedup tests that shares no code with curate: plain word 5-gram sets and exact Jaccard.

Normalisation is what the README documents for both dedup stages: Unicode NFKC, case folded, punctuation
and spacing collapsed (every run of characters that are not letters or digits is one word break). A text
shorter than n words is one shingle; a text without words has none.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np

_BREAK = re.compile(r"[\W_]+")


def plain_words(text: str) -> list[str]:
    """The words of a text after NFKC, case folding and punctuation removal."""
    return _BREAK.sub(" ", unicodedata.normalize("NFKC", text).casefold()).split()


def plain_ngrams(text: str, n: int = 5) -> list[tuple[str, ...]]:
    """Every word n-gram of a text in order (repeats kept); one shingle of all words when shorter than n."""
    words = plain_words(text)
    if 0 < len(words) < n:
        return [tuple(words)]
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def plain_jaccard(a: str, b: str, n: int = 5) -> float:
    """Exact Jaccard similarity of two texts' word n-gram sets (0 when neither has any)."""
    x, y = set(plain_ngrams(a, n)), set(plain_ngrams(b, n))
    return len(x & y) / len(x | y) if x or y else 0.0


def substituted(rng: np.random.Generator, words: list[str], count: int, tag: str) -> list[str]:
    """A copy of words with `count` words replaced by new ones, at least 5 words apart and 4 from either end.

    Each such substitution replaces exactly 5 of the text's 5-grams, so with S distinct 5-grams the copy's
    Jaccard is (S - 5 count) / (S + 5 count): a similarity set by construction (and checked by the oracle).
    """
    slots = np.arange(4, len(words) - 4, 5)
    chosen = sorted(rng.choice(slots, count, replace=False).tolist())
    copy = list(words)
    for n, position in enumerate(chosen):
        copy[position] = f"{tag}x{n}"
    return copy


def _full_width(word: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in word)


def restyled(words: list[str]) -> str:
    """Words joined with the case, width and punctuation a normaliser must ignore: 'W1, w2. ｗ3 w4 -'."""
    marks = [",", ".", "", ";", "!", " -", ""]
    styled = [_full_width(w) if i % 11 == 5 else w.upper() if i % 7 == 0 else w for i, w in enumerate(words)]
    return " ".join(w + marks[i % len(marks)] for i, w in enumerate(styled))
