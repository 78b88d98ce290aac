"""Quality heuristics from datatrove (Gopher quality and repetition, C4, FineWeb) with medical-text defaults.

datatrove's filter classes hold the thresholds (their constructors validate them and give the defaults); the
rules are evaluated here over signals computed once per document and shared by the four filters: the word
list, its distinct words and their counts, the lines. Verdicts are datatrove's, document for document, with
the same word tokenizer (tests/filter/test_filter_quality.py compares them on real papers and pages): only the
order of the work differs, and a rule whose outcome is already decided by a cheap bound is not computed
in full.

The word tokenizer is a regex, not datatrove's English tokenizer (spaCy, which is not installed and costs most
of the time where it is, see design.md). spaCy splits more finely (hyphens and slashes between letters, `%`,
trailing periods), so its word counts and ratios differ; see the `web` profile below.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.filters.c4_filters import (
    CITATION_REGEX,
    ELLIPSIS,
    END_PUNCTUATION,
    POLICY_SUBSTRINGS,
    C4QualityFilter,
)
from datatrove.pipeline.filters.fineweb_quality_filter import FineWebQualityFilter
from datatrove.pipeline.filters.gopher_quality_filter import GopherQualityFilter
from datatrove.pipeline.filters.gopher_repetition_filter import GopherRepetitionFilter
from datatrove.utils.text import PUNCTUATION_SET
from datatrove.utils.word_tokenizers import WordTokenizer, load_word_tokenizer

from curate.schema import Verdict
from curate.stage import FilterStage

_WORD = re.compile(r"\w+(?:[-'’.,/]\w+)*|[^\w\s]+", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# Our own markup ("# " headings, written by the parsers) is not the page's text: '#' would count as symbols.
_HEADING_MARK = re.compile(r"^#{1,6} ", re.MULTILINE)
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)
_LETTER_OR_DIGIT = re.compile(r"[^\W_]")
_UNREADABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


class RegexWordTokenizer(WordTokenizer):
    """Words and punctuation marks by regex; sentences end at . ! ? followed by space (no spaCy, no nltk)."""

    def __init__(self) -> None:
        super().__init__("en")

    def word_tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return [s for s in _SENTENCE_END.split(text) if s.strip()]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        spans, start = [], 0
        for match in _SENTENCE_END.finditer(text):
            spans.append((start, match.start()))
            start = match.end()
        spans.append((start, len(text)))
        return spans


TOKENIZER = RegexWordTokenizer()

# Thresholds per filter, as datatrove's constructor arguments: datatrove's own except where medical text broke
# them. With datatrove's values ("web") 13 of the 25 PMC papers were dropped, 11 for numbers ("words" without
# letters above 20%); tests/filter/test_filter_quality.py checks that these defaults drop none of them.
DEFAULTS: dict[str, dict[str, Any]] = {
    "gopher_repetition": {},
    "gopher_quality": {
        # Guidelines are lists of recommendations and doses: more "- " lines, more numbers and units.
        "max_bullet_lines_ratio": 0.95,
        "max_non_alpha_words_ratio": 0.6,
        # Papers with many long chemical and drug names push the mean word length up.
        "max_avg_word_length": 12,
        "max_doc_words": 300_000,
    },
    "c4": {
        # Formulas and code in papers contain braces; C4's curly-bracket rule targets web code.
        "filter_curly_bracket": False,
        "min_num_sentences": 3,
    },
    "fineweb_quality": {
        # Guidelines have many headings and list items: short lines, lines without a full stop.
        "line_punct_thr": 0.05,
        "short_line_thr": 0.8,
        "new_line_ratio": 0.5,
        # Repeated table rows and headings ("Dose", "Recommendation") are normal in guidelines.
        "char_duplicates_ratio": 0.1,
    },
}
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "guidelines": DEFAULTS,
    "papers": {
        **DEFAULTS,
        # Papers are prose: datatrove's list and short-line limits hold; keep medical word lengths.
        "fineweb_quality": {"line_punct_thr": 0.05, "char_duplicates_ratio": 0.05},
    },
    # datatrove's default thresholds, applied to this module's regex words (datatrove's own English words come
    # from spaCy): the verdicts of datatrove's filters given the same tokenizer, not of a spaCy-based run.
    "web": {"gopher_repetition": {}, "gopher_quality": {}, "c4": {}, "fineweb_quality": {}},
}
# Gopher quality first: a short or symbol-only text gets the reason that says so, not a repetition ratio.
FILTER_ORDER = ("gopher_quality", "gopher_repetition", "c4", "fineweb_quality")
_CLASSES: dict[str, type[BaseFilter]] = {
    "gopher_repetition": GopherRepetitionFilter,
    "gopher_quality": GopherQualityFilter,
    "c4": C4QualityFilter,
    "fineweb_quality": FineWebQualityFilter,
}


def build_filters(profile: str, overrides: dict[str, dict[str, Any] | None]) -> dict[str, BaseFilter]:
    """datatrove filter objects for a profile, with per-filter overrides; None for a filter disables it."""
    if profile not in PROFILES:
        raise ValueError(f"unknown quality profile {profile!r}; profiles are: {', '.join(sorted(PROFILES))}")
    unknown = sorted(set(overrides) - set(FILTER_ORDER))
    if unknown:
        raise ValueError(
            f"unknown quality filter(s) {', '.join(unknown)}; filters are: {', '.join(FILTER_ORDER)}"
        )
    filters = {}
    for name in FILTER_ORDER:
        if name in overrides and overrides[name] is None:
            continue
        params = {**PROFILES[profile].get(name, {}), **(overrides.get(name) or {})}
        for key in ("top_n_grams", "dup_n_grams"):  # YAML gives lists; datatrove iterates pairs either way
            if key in params:
                params[key] = tuple(tuple(pair) for pair in params[key])
        filters[name] = _CLASSES[name](language=TOKENIZER, **params)
    return filters


# --- signals shared by the filters --------------------------------------------------------------------------

# Per distinct word: 1 if it has a character outside datatrove's punctuation set, + 2 if it has a letter.
# Words repeat across documents, so the answers are kept (bounded) rather than found again character by
# character.
_WORD_KINDS: dict[str, int] = {}
_WORD_KINDS_MAX = 1_000_000
# A polynomial hash of substrings (mod 2**64) finds repeated n-grams in numpy; equal hashes are then
# compared as strings, so a collision costs time, never a wrong verdict.
_HASH_BASE = 0x9E3779B97F4A7C15 | 1
_HASH_INVERSE = pow(_HASH_BASE, -1, 1 << 64)
_powers: dict[int, np.ndarray] = {}


_POWERS_KEPT = 1 << 22  # tables this long are kept (32 MB each); a longer text gets its own


def _power_table(base: int, size: int) -> np.ndarray:
    """base**k mod 2**64 for k < size (at least), cached and grown geometrically."""
    table = _powers.get(base)
    if table is not None and len(table) >= size:
        return table
    size = max(size, 2 * len(table) if table is not None else 1 << 16)
    table = np.full(size, base, dtype=np.uint64)
    table[0] = 1
    with np.errstate(over="ignore"):
        table = np.cumprod(table, dtype=np.uint64)
    if size <= _POWERS_KEPT:
        _powers[base] = table
    return table


def _word_kinds(words: Iterable[str]) -> list[int]:
    """The kind of each word (see _WORD_KINDS)."""
    kinds = list(map(_WORD_KINDS.get, words))
    if None not in kinds:
        return kinds
    if len(_WORD_KINDS) >= _WORD_KINDS_MAX:
        _WORD_KINDS.clear()
    for i, (word, kind) in enumerate(zip(words, kinds, strict=True)):
        if kind is None:
            kind = any(ch not in PUNCTUATION_SET for ch in word) + 2 * any(ch.isalpha() for ch in word)
            kinds[i] = _WORD_KINDS[word] = kind
    return kinds


class Doc:
    """One prepared text and what the heuristics read from it, each computed on first use."""

    def __init__(self, text: str):
        self.text = text

    @cached_property
    def words(self) -> list[str]:
        return _WORD.findall(self.text)

    @cached_property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    @cached_property
    def nonblank_lines(self) -> list[str]:
        """Lines split at \\n only (as FineWeb does), blank ones left out."""
        return [line for line in self.text.split("\n") if line.strip()]

    @cached_property
    def vocabulary(self) -> Counter[str]:
        """Distinct words in order of first use, with their counts."""
        return Counter(self.words)

    @cached_property
    def word_ids(self) -> np.ndarray:
        """The index of each word in the vocabulary."""
        index = dict(zip(self.vocabulary, range(len(self.vocabulary)), strict=True))
        return np.fromiter(map(index.__getitem__, self.words), np.int64, len(self.words))

    @cached_property
    def word_lengths(self) -> np.ndarray:
        return np.fromiter(map(len, self.words), np.int64, len(self.words))

    @cached_property
    def word_kinds(self) -> tuple[int, int, int]:
        """(words with a non-punctuation character, their total length, words with a letter)."""
        vocabulary = self.vocabulary
        kinds = np.array(_word_kinds(vocabulary), dtype=np.int8)
        counts = np.fromiter(vocabulary.values(), np.int64, len(vocabulary))
        lengths = np.fromiter(map(len, vocabulary), np.int64, len(vocabulary))
        real = (kinds & 1).astype(bool)
        return int(counts[real].sum()), int((counts * lengths)[real].sum()), int(counts[kinds >= 2].sum())

    @cached_property
    def word_starts(self) -> np.ndarray:
        """Offsets of each word (and the end) in the words written one after another."""
        return np.concatenate(([0], np.cumsum(self.word_lengths)))

    @cached_property
    def concat_hashes(self) -> tuple[np.ndarray, np.ndarray]:
        """Prefix sums that give any substring of the concatenated words a hash in O(1) (see _HASH_BASE)."""
        codes = np.frombuffer(self.joined.encode("utf-32-le", "surrogatepass"), np.uint32).astype(np.uint64)
        inverse = _power_table(_HASH_INVERSE, len(codes) + 1)
        with np.errstate(over="ignore"):
            terms = codes * inverse[: len(codes)]
            prefix = np.concatenate((np.zeros(1, np.uint64), np.cumsum(terms, dtype=np.uint64)))
        return prefix, _power_table(_HASH_BASE, len(codes) + 1)

    @cached_property
    def joined(self) -> str:
        """The words written one after another (datatrove's n-grams for repetition are slices of it)."""
        return "".join(self.words)

    def ngram_classes(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """_classes of the word n-grams (n >= 2): equal classes for equal word sequences, exactly."""
        cache = self.__dict__.setdefault("_ngram_classes", {})
        if n not in cache:
            previous = self.word_ids if n == 2 else self.ngram_classes(n - 1)[0]
            cache[n] = _classes(previous[:-1] * len(self.vocabulary) + self.word_ids[n - 1 :])
        return cache[n]


def _classes(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Equal keys grouped by one sort: the class of each position, each class's size and its earliest
    position (classes numbered in key order)."""
    order = np.argsort(keys)
    ordered = keys[order]
    starts = np.ones(len(keys), dtype=bool)
    np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
    classes = np.empty(len(keys), np.int64)
    classes[order] = np.cumsum(starts) - 1
    bounds = np.flatnonzero(starts)
    first = np.minimum.reduceat(order, bounds) if len(keys) else order
    return classes, np.diff(np.append(bounds, len(keys))), first


def _ratio(count: float, total: float) -> float:
    return count / total if total else 0.0


RuleVerdict = tuple[str, Any, Any]  # (datatrove's reason, the signal value or None, the limit or None)


def _gopher_quality(f: GopherQualityFilter, doc: Doc) -> RuleVerdict | None:
    text, n_words = doc.text, len(doc.words)
    n_real, real_chars, n_alpha = doc.word_kinds
    if f.min_doc_words and n_real < f.min_doc_words:
        return "gopher_short_doc", n_real, f.min_doc_words
    if f.max_doc_words and n_real > f.max_doc_words:
        return "gopher_long_doc", n_real, f.max_doc_words
    mean = real_chars / n_real if n_real else float("nan")  # np.mean of the lengths, as datatrove
    if f.min_avg_word_length and mean < f.min_avg_word_length:
        return "gopher_below_avg_threshold", mean, f.min_avg_word_length
    if f.max_avg_word_length and mean > f.max_avg_word_length:
        return "gopher_above_avg_threshold", mean, f.max_avg_word_length
    if f.max_symbol_word_ratio and text.count("#") / n_words > f.max_symbol_word_ratio:
        return "gopher_too_many_hashes", text.count("#") / n_words, f.max_symbol_word_ratio
    ellipses = text.count("...") + text.count("…")
    if f.max_symbol_word_ratio and ellipses / n_words > f.max_symbol_word_ratio:
        return "gopher_too_many_ellipsis", ellipses / n_words, f.max_symbol_word_ratio
    lines = doc.lines
    if f.max_bullet_lines_ratio:
        bullets = sum(1 for s in lines if s.lstrip().startswith(("•", "-"))) / len(lines)
        if bullets > f.max_bullet_lines_ratio:
            return "gopher_too_many_bullets", bullets, f.max_bullet_lines_ratio
    if f.max_ellipsis_lines_ratio:
        ends = sum(1 for s in lines if s.rstrip().endswith(("...", "…"))) / len(lines)
        if ends > f.max_ellipsis_lines_ratio:
            return "gopher_too_many_end_ellipsis", ends, f.max_ellipsis_lines_ratio
    if f.max_non_alpha_words_ratio and n_alpha / n_words < f.max_non_alpha_words_ratio:
        return "gopher_below_alpha_threshold", n_alpha / n_words, f.max_non_alpha_words_ratio
    if f.min_stop_words:
        found = sum(1 for w in f.stop_words if w in doc.vocabulary)
        if found < f.min_stop_words:
            return "gopher_enough_stop_words", found, f.min_stop_words
    return None


def _duplicates(items: list[str]) -> tuple[int, int]:
    """datatrove's find_duplicates: (repeated items, their characters), by set arithmetic."""
    distinct = set(items)
    return len(items) - len(distinct), sum(map(len, items)) - sum(map(len, distinct))


def _top_ngram_chars(doc: Doc, n: int) -> int:
    """datatrove's find_top_duplicate over word n-grams: top count (first seen on ties) x its length."""
    _, sizes, first = doc.ngram_classes(n)
    top = int(sizes.max())
    start = int(first[sizes == top].min())  # Counter.most_common(1): the first-inserted of the ties
    return (int(doc.word_lengths[start : start + n].sum()) + n - 1) * top


def _repeated_ngram_chars(doc: Doc, n: int, frac: float) -> int:
    """datatrove's find_all_duplicate (n words joined without spaces, greedy left to right); 0 when a bound
    shows that the true value is not above frac of the text either."""
    words, starts = doc.words, doc.word_starts
    positions = len(words) - n + 1
    if positions <= 1:
        return 0
    prefix, powers = doc.concat_hashes
    a, b = starts[:positions], starts[n:]
    with np.errstate(over="ignore"):
        keys = powers[b - 1] * (prefix[b] - prefix[a]) + (b - a).astype(np.uint64) * np.uint64(_HASH_BASE)
    classes, sizes, _ = _classes(keys)
    candidates = np.flatnonzero(sizes[classes] > 1)
    # Only n-grams whose hash repeats can repeat; their total length bounds what the greedy scan counts.
    if not len(candidates) or int((b - a)[candidates].sum()) / len(doc.text) <= frac:
        return 0
    joined = doc.joined
    seen: dict[int, int] = {}  # hash class -> the position that stands for it
    repeated, next_free = 0, 0
    for p, cls, start, end in zip(
        candidates.tolist(),
        classes[candidates].tolist(),
        a[candidates].tolist(),
        b[candidates].tolist(),
        strict=True,
    ):  # datatrove's scan; an n-gram seen once elsewhere can never repeat
        if p < next_free:
            continue
        if cls in seen:
            other = seen[cls]
            if joined[start:end] != joined[a[other] : b[other]]:  # a hash collision: compare strings instead
                return _repeated_ngram_strings(words, candidates.tolist(), n)
            repeated += end - start
            next_free = p + n
        else:
            seen[cls] = p
    return repeated


def _repeated_ngram_strings(words: list[str], positions: list[int], n: int) -> int:
    """The greedy scan of _repeated_ngram_chars over the n-grams' strings."""
    seen: set[str] = set()
    repeated, next_free = 0, 0
    for p in positions:
        if p < next_free:
            continue
        gram = "".join(words[p : p + n])
        if gram in seen:
            repeated += len(gram)
            next_free = p + n
        else:
            seen.add(gram)
    return repeated


def _paragraphs(text: str) -> list[str]:
    """re.split(r"\\n{2,}", text), datatrove's paragraph split, by the several times faster str.split."""
    # A run of k newlines leaves k // 2 - 1 empty pieces and, when k is odd, one "\\n" before the next piece.
    return [p[1:] if p.startswith("\n") else p for p in text.split("\n\n") if p] or [text]


def _line_runs(text: str) -> list[str]:
    """re.split("\\n+", text) (datatrove's line split) by str.split."""
    parts = text.split("\n")
    if len(parts) == 1:
        return parts
    return [parts[0], *(p for p in parts[1:-1] if p), parts[-1]]


def _gopher_repetition(f: GopherRepetitionFilter, doc: Doc) -> RuleVerdict | None:
    text = doc.text
    if not text:
        return "empty", None, None
    paragraphs = _paragraphs(text.strip())
    dups, chars = _duplicates(paragraphs)
    if f.dup_para_frac and dups / len(paragraphs) > f.dup_para_frac:
        return "dup_para_frac", dups / len(paragraphs), f.dup_para_frac
    if f.dup_para_char_frac and chars / len(text) > f.dup_para_char_frac:
        return "dup_para_char_frac", chars / len(text), f.dup_para_char_frac
    lines = _line_runs(text)
    dups, chars = _duplicates(lines)
    if f.dup_line_frac and dups / len(lines) > f.dup_line_frac:
        return "dup_line_frac", dups / len(lines), f.dup_line_frac
    if f.dup_line_char_frac and chars / len(text) > f.dup_line_char_frac:
        return "dup_line_char_frac", chars / len(text), f.dup_line_char_frac
    for n, frac in f.top_n_grams:
        if len(doc.words) < n:
            continue
        top = _top_ngram_chars(doc, n)
        if top / len(text) > frac:
            return f"top_{n}_gram", top / len(text), frac
    for n, frac in f.dup_n_grams:
        repeated = _repeated_ngram_chars(doc, n, frac)
        if repeated / len(text) > frac:
            return f"duplicated_{n}_n_grams", repeated / len(text), frac
    return None


def _c4_line_sentences(f: C4QualityFilter, line: str) -> int | str:
    """Sentences C4 counts in one line (0 for a line it drops), or the reason that drops the document."""
    line = line.strip()
    words = line.split()
    limit = f.max_word_length
    if limit != -1 and len(line) > limit and any(len(word) > limit for word in words):
        return 0
    if f.remove_citations and "[" in line:
        line = CITATION_REGEX.sub("", line)
    if f.filter_no_terminal_punct and (not line.endswith(END_PUNCTUATION) or line.endswith(ELLIPSIS)):
        return 0
    if len(words) < f.min_words_per_line:
        return 0
    lower = line.lower()
    if f.filter_lorem_ipsum and "lorem ipsum" in lower:
        return "lorem_ipsum"
    if f.filter_javascript and "javascript" in lower:
        return 0
    if f.filter_curly_bracket and "{" in line:
        return "curly_bracket"
    if f.filter_policy and any(p in lower for p in POLICY_SUBSTRINGS):
        return 0
    if f.min_num_sentences == -1:
        return 0
    if not f.split_paragraph:
        return 1
    if f.language is TOKENIZER:
        return len(_SENTENCE_END.findall(line)) + 1  # the spans of TOKENIZER.span_tokenize, counted
    return len(load_word_tokenizer(f.language).span_tokenize(line))


def _c4(f: C4QualityFilter, doc: Doc) -> RuleVerdict | None:
    text = doc.text
    if f.split_paragraph:
        units = doc.lines
    else:  # datatrove's split_into_sentences: the text cut at the ends of the tokenizer's spans
        ends = [end for _, end in load_word_tokenizer(f.language).span_tokenize(text)]
        units = [text[a:b] for a, b in zip([0, *ends[:-1]], [*ends[:-1], len(text)], strict=True)]
    # Once enough sentences are counted only "lorem ipsum" or "{" could still drop the page: when neither
    # occurs (after citation removal, which can join "lorem[1] ipsum"), the remaining lines need not be read.
    probe = CITATION_REGEX.sub("", text) if f.remove_citations and "[" in text else text
    may_drop = (f.filter_lorem_ipsum and "lorem ipsum" in probe.lower()) or (
        f.filter_curly_bracket and "{" in text
    )
    sentences = 0
    for unit in units:
        found = _c4_line_sentences(f, unit)
        if isinstance(found, str):
            return found, None, None
        sentences += found
        if not may_drop and f.min_num_sentences != -1 and sentences >= f.min_num_sentences:
            return None
    if sentences < f.min_num_sentences:
        return "too_few_sentences", sentences, f.min_num_sentences
    return None


def _fineweb(f: FineWebQualityFilter, doc: Doc) -> RuleVerdict | None:
    text, lines = doc.text, doc.nonblank_lines
    if not lines:
        return "empty", None, None
    stops = f.stop_chars
    if all(len(s) == 1 for s in stops):
        stop_set = frozenset(stops)
        ended = sum(1 for line in lines if line[-1] in stop_set)
    else:
        ended = sum(1 for line in lines if line.endswith(stops))
    ratio = ended / len(lines)
    if ratio < f.line_punct_thr and not (ratio == 0 and f.line_punct_exclude_zero):
        return "line_punct_ratio", ratio, f.line_punct_thr
    ratio = sum(1 for line in lines if len(line) <= f.short_line_length) / len(lines)
    if ratio > f.short_line_threshold:
        return "short_line_ratio", ratio, f.short_line_threshold
    ratio = _duplicates(lines)[1] / (len(text) - text.count("\n"))
    if ratio > f.char_duplicates_ratio:
        return "char_dup_ratio", ratio, f.char_duplicates_ratio
    new_lines = text.count("\n")
    # Every run of non-space characters holds at least one word: if the ratio passes with that many words,
    # it passes with the true count too (unless the words are counted already).
    if "words" not in doc.__dict__ and new_lines / len(text.split()) <= f.new_line_ratio:
        return None
    if new_lines / len(doc.words) > f.new_line_ratio:
        return "list_ratio", new_lines / len(doc.words), f.new_line_ratio
    return None


_RULES = {
    GopherQualityFilter: _gopher_quality,
    GopherRepetitionFilter: _gopher_repetition,
    C4QualityFilter: _c4,
    FineWebQualityFilter: _fineweb,
}


def evaluate(filt: BaseFilter, doc: Doc) -> RuleVerdict | None:
    """datatrove's verdict of one filter on a document: None to keep it, else (reason, value, limit)."""
    return _RULES[type(filt)](filt, doc)


def describe(reason: str, value: Any, limit: Any) -> str:
    """drop_detail: the reason, the signal value that tripped it and the limit."""
    if value is None:
        return reason if limit is None else f"{reason} (limit {limit})"
    return f"{reason} {value:.4g} (limit {limit})"


def prepare_text(text: str) -> str:
    """The text the heuristics read: heading marks and trailing spaces dropped, control characters blanked."""
    # Trailing spaces would hide a line's final full stop from FineWeb's and C4's line rules.
    text = _UNREADABLE.sub(" ", text)
    if "#" in text:  # the substring checks skip a full regex pass where it cannot match
        text = _HEADING_MARK.sub("", text)
    if " \n" in text or "\t\n" in text or text.endswith((" ", "\t")):
        text = _TRAILING_SPACE.sub("", text)
    return text


def judge(text: str, filters: dict[str, BaseFilter], max_chars: int) -> tuple[str, str] | None:
    """(drop_reason, drop_detail) of the first filter that rejects a text, or None to keep it."""
    if not _LETTER_OR_DIGIT.search(text[:max_chars]):
        return "empty", "no letters or digits"
    if len(text) > max_chars:
        return "quality_too_long", f"{len(text)} characters (limit {max_chars})"
    doc = Doc(prepare_text(text))
    for name, filt in filters.items():
        verdict = evaluate(filt, doc)
        if verdict is not None:
            return name, describe(*verdict)
    return None


@dataclass
class QualityFilter(FilterStage):
    """Drop documents that datatrove's Gopher, C4 and FineWeb heuristics reject, with medical thresholds."""

    step: ClassVar[str] = "quality"
    profile: str = "guidelines"
    gopher_repetition: dict[str, Any] | None = field(default_factory=dict)
    gopher_quality: dict[str, Any] | None = field(default_factory=dict)
    c4: dict[str, Any] | None = field(default_factory=dict)
    fineweb_quality: dict[str, Any] | None = field(default_factory=dict)
    max_chars: int = 10_000_000  # the heuristics are linear, but 10 MB of text is not a document we want

    def __post_init__(self) -> None:
        self._filters = build_filters(self.profile, self.overrides())

    def overrides(self) -> dict[str, dict[str, Any] | None]:
        """The per-filter thresholds given in YAML (None disables a filter)."""
        return {name: copy.deepcopy(getattr(self, name)) for name in FILTER_ORDER}

    def filter(self, text: str) -> Verdict:
        verdict = judge(text, self._filters, self.max_chars)
        return True if verdict is None else (False, *verdict)
