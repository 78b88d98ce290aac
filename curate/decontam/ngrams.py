"""Test-item n-gram index and the matching of documents against it, vectorised with numpy.

Words are normalised as near_dedup does (NFKC, case folded, everything but letters and digits is a space)
and hashed once per distinct word of a batch; an n-gram's hash mixes its words' hashes (see
curate.dedup.minhash), so no n-gram string is ever built. The index is two parallel arrays sorted by hash
(uint64 n-gram hash, int32 item), 12 bytes per indexed n-gram, and a bitmap of 8 to 16 bits per n-gram
that most document n-grams fail, sparing them the binary search: 10 million test n-grams take 130-140 MB.

Why a share of n-grams within a window rather than "any 13-gram" (GPT-3, datatrove): an item copied with a
word changed every 6 to 13 words keeps few or no 13-word runs, while a long clean article shares scattered
common phrases with many items. A document is contaminated by an item when one stretch of it (the item's
length plus a quarter) holds at least `min_share` of the item's distinct n-grams. N-grams found in more than
COMMON_ITEMS items are templates ("which of the following is the most likely diagnosis"), not evidence of one
item: they are left out of the index and of the items' counts. With `min_share: 0` any single n-gram is
enough, which with `ngram: 13` is GPT-3's rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from curate.dedup.minhash import shingle_hashes, spaced_words

COMMON_ITEMS = 20  # an n-gram in more items than this is benchmark boilerplate, not one item's text
ITEM_BATCH = 5000  # items hashed per batch: bounds the memory of building the index
LONG_WORD = 3  # characters (UTF-8 bytes) of a word that counts towards an informative n-gram
MIN_LONG_WORDS = 2  # an n-gram with fewer such words is not indexed nor matched
WINDOW_SLACK = 0.25  # a match window is the item's length plus this share (inserted words, reordering)
FILTER_BITS_PER_KEY = 8  # the presence bitmap: about 1 byte per n-gram, lets ~9 in 10 misses skip the search
_GROUP_SHIFT = np.int64(32)  # (doc, item) group id and word position packed in one int64 sort key


@dataclass
class ItemIndex:
    """Sorted n-gram hashes of test items with, per item: benchmark, id, n-gram count, words, PMID."""

    ngram: int
    keys: np.ndarray  # uint64, sorted
    items: np.ndarray  # int32, the item of each key
    item_ngrams: np.ndarray  # int32: distinct indexed n-grams of each item (0: it cannot be matched)
    item_words: np.ndarray  # int32
    item_benchmark: np.ndarray  # int16, into benchmarks
    item_ids: list[str]
    benchmarks: list[str]
    pmids: dict[str, list[int]] = field(default_factory=dict)  # PMID -> items (PubMedQA)
    present: np.ndarray = field(init=False)  # bitmap of the keys' top bits
    shift: np.uint64 = field(init=False)

    def __post_init__(self) -> None:
        # A bitmap of the keys' top bits: a document n-gram whose bit is clear is no key, and most are not,
        # so the binary search (about 23 cache misses in 10 million keys) runs for few of them.
        bits = max(16, int(np.ceil(np.log2(max(len(self.keys), 1) * FILTER_BITS_PER_KEY))))
        self.shift = np.uint64(64 - bits)
        slots = self.keys >> self.shift
        self.present = np.zeros(max(1, (1 << bits) // 64), np.uint64)
        np.bitwise_or.at(self.present, slots >> np.uint64(6), np.uint64(1) << (slots & np.uint64(63)))

    def maybe(self, hashes: np.ndarray) -> np.ndarray:
        """Positions of the hashes that may be keys (every key among them)."""
        slots = hashes >> self.shift
        bits = self.present[slots >> np.uint64(6)] >> (slots & np.uint64(63))
        return np.flatnonzero(bits & np.uint64(1))

    @property
    def nbytes(self) -> int:
        """Memory of the arrays (what grows with the number of test n-grams)."""
        arrays = (self.keys, self.items, self.item_ngrams, self.item_words, self.item_benchmark, self.present)
        return sum(a.nbytes for a in arrays)


def _words(texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hashes and UTF-8 lengths of the normalised words of every text (flat), and each text's offsets.

    The words and hashes of curate.dedup.minhash.word_hashes, with the lengths that tell a word from the
    one- and two-character pieces numbers and chemical names fall into."""
    normalised = [spaced_words(t) if t else b"" for t in texts]
    data = pa.array([t or None for t in normalised], pa.large_binary()).view(pa.large_string())
    split = pc.ascii_split_whitespace(data)
    offsets = split.offsets.to_numpy().astype(np.int64)
    flat = split.flatten()
    if len(flat) == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int32), offsets
    encoded = pc.dictionary_encode(flat)
    vocabulary = encoded.dictionary.cast(pa.large_binary())
    digest = xxhash.xxh3_64_intdigest
    hashes = np.fromiter((digest(w) for w in vocabulary.to_pylist()), np.uint64, len(vocabulary))
    lengths = pc.binary_length(vocabulary).to_numpy().astype(np.int32)
    indices = encoded.indices.to_numpy()
    return hashes[indices], lengths[indices], offsets


def text_ngrams(texts: list[str], ngram: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(hash, text, word position) of every informative n-gram of the texts, and each text's word count.

    An n-gram is informative when at least MIN_LONG_WORDS of its words have LONG_WORD characters or more:
    "3 4 5 dimethylthiazol 2", from a chemical name, or "12 5 g dl", from a lab value, say little about
    which item a document holds. A text shorter than n words has none."""
    words, lengths, offsets = _words(texts)
    counts = np.diff(offsets)
    shingles, shingle_offsets = shingle_hashes(words, offsets, ngram)
    doc = np.repeat(np.arange(len(texts)), np.diff(shingle_offsets))
    pos = np.arange(len(shingles)) - shingle_offsets[doc]
    full = counts[doc] >= ngram  # shingle_hashes gives a short text one shingle of all its words
    shingles, doc, pos = shingles[full], doc[full], pos[full]
    long = np.zeros(len(words) + 1, np.int64)
    np.cumsum(lengths >= LONG_WORD, out=long[1:])
    start = offsets[doc] + pos
    informative = long[start + ngram] - long[start] >= MIN_LONG_WORDS
    return shingles[informative], doc[informative], pos[informative], counts


def item_hashes(texts: list[str], ngram: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hashes, item of each, words of each item): the distinct informative n-gram hashes of every text."""
    shingles, owner, _, counts = text_ngrams(texts, ngram)
    owner = owner.astype(np.int32)
    order = np.lexsort((shingles, owner))
    shingles, owner = shingles[order], owner[order]
    first = np.ones(len(shingles), bool)
    first[1:] = (shingles[1:] != shingles[:-1]) | (owner[1:] != owner[:-1])
    return shingles[first], owner[first], counts.astype(np.int32)


def build_index(
    batches: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    item_ids: list[str],
    item_benchmark: np.ndarray,
    benchmarks: list[str],
    pmids: dict[str, list[int]],
    ngram: int,
) -> ItemIndex:
    """The index from item_hashes() results of consecutive item batches (their item numbers are local)."""
    hashes, owners, words = [], [], []
    base = 0
    for h, o, w in batches:
        hashes.append(h)
        owners.append(o + np.int32(base))
        words.append(w)
        base += len(w)
    keys = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
    items = np.concatenate(owners) if owners else np.zeros(0, np.int32)
    item_words = np.concatenate(words) if words else np.zeros(0, np.int32)
    order = np.argsort(keys, kind="stable")
    keys, items = keys[order], items[order]
    del order
    if len(keys):
        starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
        runs = np.diff(np.append(starts, len(keys)))
        common = np.repeat(runs > COMMON_ITEMS, runs)
        keys, items = keys[~common], items[~common]
    item_ngrams = np.bincount(items, minlength=base).astype(np.int32)
    return ItemIndex(ngram, keys, items, item_ngrams, item_words, item_benchmark, item_ids, benchmarks, pmids)


@dataclass(frozen=True)
class Match:
    """An item found in a document: the stretch of words (start, end) where most of its n-grams are."""

    doc: int
    item: int
    found: int  # distinct n-grams of the item in the window
    share: float  # found / the item's indexed n-grams
    start: int  # first word of the window in the document
    end: int  # one past its last word


def required(index: ItemIndex, min_share: float, min_ngrams: int) -> np.ndarray:
    """N-grams an item needs in one window to count as found: min_share of its own, and min_ngrams."""
    need = np.ceil(index.item_ngrams * min_share - 1e-9).astype(np.int64)
    return np.maximum(need, max(1, min_ngrams))


def find_matches(texts: list[str], index: ItemIndex, min_share: float, min_ngrams: int = 1) -> list[Match]:
    """Every (document, item) where the item is found, with its best window; documents are batch rows."""
    if not len(index.keys) or not texts:
        return []
    n = index.ngram
    shingles, shingle_doc, shingle_pos, _ = text_ngrams(texts, n)
    maybe = index.maybe(shingles)
    lo = np.searchsorted(index.keys, shingles[maybe], "left")
    clipped = np.minimum(lo, len(index.keys) - 1)
    is_key = index.keys[clipped] == shingles[maybe]
    hit, lo = maybe[is_key], lo[is_key]
    if not len(hit):
        return []
    hi = np.searchsorted(index.keys, shingles[hit], "right")
    per_hit = hi - lo
    flat = np.repeat(hit, per_hit)  # one row per (document n-gram, item holding it)
    within = np.arange(len(flat)) - np.repeat(np.cumsum(per_hit) - per_hit, per_hit)
    item = index.items[np.repeat(lo, per_hit) + within].astype(np.int64)
    doc, pos, key = shingle_doc[flat], shingle_pos[flat], shingles[flat]
    # Each distinct n-gram counts once per (document, item): its first occurrence.
    order = np.lexsort((pos, key, item, doc))
    doc, item, pos, key = doc[order], item[order], pos[order], key[order]
    first = np.ones(len(doc), bool)
    first[1:] = (doc[1:] != doc[:-1]) | (item[1:] != item[:-1]) | (key[1:] != key[:-1])
    doc, item, pos = doc[first], item[first], pos[first]
    order = np.lexsort((pos, item, doc))
    doc, item, pos = doc[order], item[order], pos[order]
    new_group = np.ones(len(doc), bool)
    new_group[1:] = (doc[1:] != doc[:-1]) | (item[1:] != item[:-1])
    group = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    words_of = index.item_words[item].astype(np.int64)
    window = words_of + np.ceil(words_of * WINDOW_SLACK).astype(np.int64)
    packed = (group << _GROUP_SHIFT) + pos
    end = np.searchsorted(packed, packed + window, "left")  # first hit past each hit's window
    count = end - np.arange(len(packed))
    best = np.maximum.reduceat(count, starts)
    need = required(index, min_share, min_ngrams)[item[starts]]
    found = np.flatnonzero(best >= need)
    if not len(found):
        return []
    # The first hit of each found group whose window holds the best count.
    rows = np.flatnonzero(count == np.repeat(best, np.diff(np.append(starts, len(count)))))
    _, first_of = np.unique(group[rows], return_index=True)  # rows are in order: the first of each group
    first_best = rows[first_of]
    matches = []
    for g in found:
        row = first_best[g]
        last = end[row] - 1
        d, i = int(doc[row]), int(item[row])
        matches.append(
            Match(
                doc=d,
                item=i,
                found=int(best[g]),
                share=round(int(best[g]) / max(int(index.item_ngrams[i]), 1), 4),
                start=int(pos[row]),
                end=int(pos[last]) + n,
            )
        )
    return matches


_WORD_RUN = re.compile(r"[^\W_]+")


def word_spans(text: str) -> list[tuple[int, int]] | None:
    """Character (start, end) of each normalised word of text, in order; None if they cannot be aligned.

    Words are runs of letters and digits; a run whose normalisation splits it (NFKC of a ligature or a
    fraction) gives each of its words the run's span. None when the count differs from word_hashes'."""
    spans: list[tuple[int, int]] = []
    for m in _WORD_RUN.finditer(text):
        k = len(spaced_words(m.group()).split()) if not m.group().isascii() else 1
        spans.extend([m.span()] * k)
    if len(spans) != len(spaced_words(text).split()):
        return None
    return spans


def ngram_text(text: str, start: int, n: int) -> str:
    """The normalised words [start, start + n) of text, joined by spaces (a match's overlapping n-gram)."""
    words = spaced_words(text).split()[start : start + n]
    return b" ".join(words).decode("utf-8", "replace")


def cut_spans(text: str, windows: list[tuple[int, int]], margin: int) -> list[tuple[int, int]] | None:
    """Character spans to remove: each word window widened by `margin` characters to whitespace, merged."""
    spans = word_spans(text)
    if spans is None:
        return None
    wide = []
    for start, end in windows:
        a = max(0, spans[start][0] - margin)
        b = min(len(text), spans[min(end, len(spans)) - 1][1] + margin)
        # Widen to whitespace so that no word is cut in half.
        while a > 0 and not text[a - 1].isspace():
            a -= 1
        while b < len(text) and not text[b].isspace():
            b += 1
        wide.append((a, b))
    wide.sort()
    merged: list[tuple[int, int]] = []
    for a, b in wide:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def remove_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """text without the spans; the pieces left are separate paragraphs."""
    pieces, last = [], 0
    for a, b in spans:
        pieces.append(text[last:a])
        last = b
    pieces.append(text[last:])
    return "\n\n".join(p.strip() for p in pieces if p.strip())
