"""Quality heuristics from datatrove (Gopher quality and repetition, C4, FineWeb) with medical-text defaults.

datatrove's filter objects make every decision; curate feeds them a regex word tokenizer (datatrove's English
tokenizer is spaCy, which is not installed and costs most of the time where it is, see design.md) and adds
the signal value that tripped a filter to `drop_detail`.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from datatrove.data import Document
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
from datatrove.pipeline.filters.gopher_repetition_filter import (
    GopherRepetitionFilter,
    find_all_duplicate,
    find_duplicates,
    find_top_duplicate,
    get_n_grams,
)
from datatrove.utils.text import PUNCTUATION_SET
from datatrove.utils.word_tokenizers import WordTokenizer

from curate.schema import split_by_mask
from curate.stage import TableStage, Task

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
# letters above 20%); tests/test_filter_quality.py checks that these defaults drop none of them.
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


def _ratio(count: float, total: float) -> float:
    return count / total if total else 0.0


def signal(filt: BaseFilter, reason: str, text: str) -> str:
    """The value behind a datatrove verdict, recomputed the way the filter computes it, for drop_detail."""
    words = TOKENIZER.word_tokenize(text)
    lines = text.splitlines()
    if isinstance(filt, GopherQualityFilter):
        real = [w for w in words if any(ch not in PUNCTUATION_SET for ch in w)]
        values = {
            "gopher_short_doc": (len(real), filt.min_doc_words),
            "gopher_long_doc": (len(real), filt.max_doc_words),
            "gopher_below_avg_threshold": (np.mean([len(w) for w in real]), filt.min_avg_word_length),
            "gopher_above_avg_threshold": (np.mean([len(w) for w in real]), filt.max_avg_word_length),
            "gopher_too_many_hashes": (_ratio(text.count("#"), len(words)), filt.max_symbol_word_ratio),
            "gopher_too_many_ellipsis": (
                _ratio(text.count("...") + text.count("…"), len(words)),
                filt.max_symbol_word_ratio,
            ),
            "gopher_too_many_bullets": (
                _ratio(sum(s.lstrip().startswith(("•", "-")) for s in lines), len(lines)),
                filt.max_bullet_lines_ratio,
            ),
            "gopher_too_many_end_ellipsis": (
                _ratio(sum(s.rstrip().endswith(("...", "…")) for s in lines), len(lines)),
                filt.max_ellipsis_lines_ratio,
            ),
            "gopher_below_alpha_threshold": (
                _ratio(sum(any(c.isalpha() for c in w) for w in words), len(words)),
                filt.max_non_alpha_words_ratio,
            ),
            "gopher_enough_stop_words": (len(filt.stop_words & set(words)), filt.min_stop_words),
        }
    elif isinstance(filt, GopherRepetitionFilter):
        paragraphs = filt.paragraph_exp.split(text.strip())
        para_dups, para_chars = find_duplicates(paragraphs)
        split_lines = filt._line_splitter.split(text)
        line_dups, line_chars = find_duplicates(split_lines)
        values = {
            "dup_para_frac": (_ratio(para_dups, len(paragraphs)), filt.dup_para_frac),
            "dup_para_char_frac": (_ratio(para_chars, len(text)), filt.dup_para_char_frac),
            "dup_line_frac": (_ratio(line_dups, len(split_lines)), filt.dup_line_frac),
            "dup_line_char_frac": (_ratio(line_chars, len(text)), filt.dup_line_char_frac),
        }
        for n, limit in filt.top_n_grams:
            grams = get_n_grams(words, n)
            top = find_top_duplicate(grams) if grams else 0
            values[f"top_{n}_gram"] = (_ratio(top, len(text)), limit)
        for n, limit in filt.dup_n_grams:
            if reason == f"duplicated_{n}_n_grams":
                values[reason] = (_ratio(find_all_duplicate(words, n), len(text)), limit)
    elif isinstance(filt, FineWebQualityFilter):
        kept = [line for line in text.split("\n") if line.strip()]
        values = {
            "line_punct_ratio": (
                _ratio(sum(line.endswith(filt.stop_chars) for line in kept), len(kept)),
                filt.line_punct_thr,
            ),
            "short_line_ratio": (
                _ratio(sum(len(line) <= filt.short_line_length for line in kept), len(kept)),
                filt.short_line_threshold,
            ),
            "char_dup_ratio": (
                _ratio(find_duplicates(kept)[1], len(text.replace("\n", ""))),
                filt.char_duplicates_ratio,
            ),
            "list_ratio": (_ratio(text.count("\n"), len(words)), filt.new_line_ratio),
        }
    else:  # C4: lorem_ipsum and curly_bracket name their cause
        values = {"too_few_sentences": (_c4_sentences(filt, text), filt.min_num_sentences)}
    value, limit = values.get(reason, (None, None))
    if value is None:
        return reason if limit is None else f"{reason} (limit {limit})"
    return f"{reason} {value:.4g} (limit {limit})"


def _c4_sentences(filt: C4QualityFilter, text: str) -> int:
    """The sentences C4's filter counts: those in lines that survive its line rules (as in datatrove)."""
    count = 0
    for line in text.splitlines() if filt.split_paragraph else TOKENIZER.sent_tokenize(text):
        line = line.strip()
        words = line.split()
        if filt.max_word_length != -1 and any(len(w) > filt.max_word_length for w in words):
            continue
        if filt.remove_citations:
            line = CITATION_REGEX.sub("", line)
        if filt.filter_no_terminal_punct and (not line.endswith(END_PUNCTUATION) or line.endswith(ELLIPSIS)):
            continue
        lower = line.lower()
        if len(words) < filt.min_words_per_line or (filt.filter_javascript and "javascript" in lower):
            continue
        if filt.filter_policy and any(p in lower for p in POLICY_SUBSTRINGS):
            continue
        count += len(TOKENIZER.span_tokenize(line)) if filt.split_paragraph else 1
    return count


def prepare_text(text: str) -> str:
    """The text the heuristics read: heading marks and trailing spaces dropped, control characters blanked."""
    # Trailing spaces would hide a line's final full stop from FineWeb's and C4's line rules.
    return _TRAILING_SPACE.sub("", _HEADING_MARK.sub("", _UNREADABLE.sub(" ", text)))


def judge(text: str, filters: dict[str, BaseFilter], max_chars: int) -> tuple[str, str] | None:
    """(drop_reason, drop_detail) of the first filter that rejects a text, or None to keep it."""
    if not _LETTER_OR_DIGIT.search(text[:max_chars]):
        return "empty", "no letters or digits"
    if len(text) > max_chars:
        return "quality_too_long", f"{len(text)} characters (limit {max_chars})"
    prepared = prepare_text(text)
    for name, filt in filters.items():
        # C4's filter rewrites doc.text as it goes; work on a copy so kept rows stay as they were.
        verdict = filt.filter(Document(text=prepared, id=""))
        if verdict is True or (isinstance(verdict, tuple) and verdict[0]):
            continue
        sub_reason = verdict[1] if isinstance(verdict, tuple) else name
        return name, signal(filt, sub_reason, prepared)
    return None


@dataclass
class QualityFilter(TableStage):
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

    def apply(self, table: pa.Table, task: Task) -> tuple[pa.Table, pa.Table]:
        keep, reasons, details = [], [], []
        for text in table.column("text").to_pylist():
            verdict = judge(text or "", self._filters, self.max_chars)
            keep.append(verdict is None)
            reasons.append(verdict[0] if verdict else None)
            details.append(verdict[1] if verdict else None)
        return split_by_mask(table, keep, self.name, reasons, details)
