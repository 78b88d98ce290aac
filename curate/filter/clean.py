"""Line-level clean-up of medical text that generic filters miss: citations, stray references, boilerplate.

Each rule removes whole lines (citation markers: the marker only); what it removed, as lines and characters
per rule, goes into `meta["clean"]`. A document left with no text is dropped as `clean_empty`.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

import pyarrow as pa

from curate.schema import Verdict, dumps_meta
from curate.stage import FilterStage

# [12], [3, 4], [5-7], [8–10], and Wikipedia's [edit] / [citation needed]; not [a] footnotes or [2018] years.
CITATION_MARKER = re.compile(
    r"\s?\[(?:\d{1,3}(?:\s*[,;–-]\s*\d{1,3})*|edit|citation needed)\]", re.IGNORECASE
)
# "(35)", "(3, 4)", "(5-7)" after a word: Vancouver-style citations in parentheses. Not "(2019)" (4 digits),
# "(n = 35)", "Table (2)", or a list "(1) ... (2) ..." (see _numbered_list).
# It first looks ahead for "(" and a digit: the lookbehinds then run there only, not after every letter.
PAREN_CITATION = re.compile(
    r"(?=\s?\(\d)(?<=[^\W\d_]|[.,;)\]])(?<!\bfig)(?<!\bfigs)(?<!\btable)(?<!\beq)(?<!\bstep)(?<!\bstage)(?<!\bgrade)"
    r"(?<!\btype)(?<!\bclass)(?<!\bphase)(?<!\bgroup)(?<!\barm)(?<!\bday)"
    r"\s?\((\d{1,3}(?:\s*[,–-]\s*\d{1,3})*)\)(?=[\s.,;:]|$)",
    re.IGNORECASE,
)
# Superscript citations flattened onto the line: "worshipped.1-3 It", "plants,4,5 and", "disease;12 the":
# numbers glued to the punctuation after a word, then a space or the end. Not "Fig.2", "pp.12", "1.5".
# The punctuation is matched (and put back) rather than looked behind for, so the search skips to it.
SUPERSCRIPT_CITATION = re.compile(
    r"(?P<mark>[.,;:])(?<=[^\W\d_]{2}[.,;:])(?<!\bfig\.)(?<!\bno\.)(?<!\bvol\.)(?<!\bpp\.)(?<!\bp\.)(?<!\bref\.)(?<!\beq\.)"
    r"\d{1,3}(?:[,–-]\d{1,3})*(?=\s|$)",
    re.IGNORECASE,
)
_PAREN_DIGIT = re.compile(r"\(\d")
_LIST_MARKER = re.compile(r"\((\d{1,2})\)")
REFERENCES_HEADING = re.compile(
    r"^(?:#+\s*)?(?:\d+\.?\s*)?(?:references|bibliography|literature cited|works cited|literatur|références)"
    r"\s*:?$",
    re.IGNORECASE,
)
# A reference entry: a year and a volume/page pattern, "et al.", or a DOI/PMID, in a line of modest length.
_YEAR = re.compile(r"\b(?:19|20)\d{2}[a-z]?\b")
_REFERENCE_MARKS = re.compile(
    r"\bet al\.|\bdoi:\s*10\.|\bdoi\.org/10\.|\bPMID:?\s*\d|\b\d+\s*\(\d+\)\s*:\s*\d+|;\s*\d+\s*:\s*\d+|"
    r"\b\d+:\d+[-–]\d+",
    re.IGNORECASE,
)
# An entry starts with its number ("[12] ", "12. ") or its first author ("Smith J, ", "Smith, J. A.,").
_ENTRY_START = re.compile(
    r"^\s*(?:- )?(?:\[\d+\]\s|\d{1,3}\.\s|[A-Z][\w'’-]+,?\s+(?:[A-Z]\.?\s?-?){1,3}[,.])"
)
MIN_REFERENCE_RUN = 3  # fewer reference-like lines in a row are more likely a paragraph citing studies
COPYRIGHT = re.compile(
    r"^(?:- )?(?:©|\(c\)\s*(?:19|20)\d{2}|copyright\b|all rights reserved|"
    r"this (?:is an open access )?(?:article|work|content|page) is (?:licensed|distributed|available) under|"
    r"licensed under (?:a |the )?creative commons|creative commons attribution|"
    r"reproduced with permission|permission to reuse)",
    re.IGNORECASE,
)
LAST_REVIEWED = re.compile(
    r"^(?:- )?(?:this )?(?:page|content|article|information)?\s*(?:was\s+)?"
    r"(?:last\s+(?:reviewed|updated|modified)|next review due|page last (?:reviewed|updated))\b",
    re.IGNORECASE,
)
COOKIES = re.compile(
    r"\bcookies?\b.*\b(?:accept|consent|agree|settings|preferences|policy|we use|continu)|"
    r"\b(?:we use|this (?:site|website) uses)\b.*\bcookies?\b|"
    r"\bby continuing to (?:use|browse)\b|"
    r"\bmanage (?:your )?(?:cookie|consent|privacy) (?:settings|preferences)\b",
    re.IGNORECASE,
)
NAVIGATION = re.compile(
    r"^(?:- )?(?:back to top|skip to (?:main )?content|skip navigation|print(?: this page)?|"
    r"share(?: this page)?|"
    r"email this page|menu|main menu|search|home|next|previous|sign in|log in|subscribe|"
    r"related (?:pages|links)|on this page|contents|table of contents|jump to)\s*[:›»>|]?$",
    re.IGNORECASE,
)
BOILERPLATE_MAX_CHARS = 400  # a longer line is content that mentions cookies or copyright, not a banner
NAV_MAX_WORDS = 8
NAV_MIN_REPEATS = 3  # a short line seen this often in one document is site chrome, not content
_HAS_WORD = re.compile(r"[^\W_]")
_DIGIT = re.compile(r"\d")
_BLANK_RUNS = re.compile(r"\n{3,}")


def _is_reference(line: str) -> bool:
    stripped = line.strip()
    if not 20 <= len(stripped) <= 1000:
        return False
    # Body text cites "Smith et al., 2010" too: an entry must also start like one.
    return bool(_ENTRY_START.match(stripped) and _YEAR.search(stripped) and _REFERENCE_MARKS.search(stripped))


def _reference_runs(lines: list[str]) -> set[int]:
    """Indexes of lines in runs of reference entries (blank lines allowed inside), with their heading."""
    drop: set[int] = set()
    content = [i for i, line in enumerate(lines) if line.strip()]
    run: list[int] = []
    for i in [*content, -1]:
        if i >= 0 and _is_reference(lines[i]):
            run.append(i)
            continue
        if len(run) >= MIN_REFERENCE_RUN:
            drop.update(run)
            before = [j for j in content if j < run[0]]
            if before and REFERENCES_HEADING.match(lines[before[-1]].strip()):
                drop.add(before[-1])
        run = []
    return drop


def _numbered_list(line: str) -> bool:
    """Whether the line numbers its items "(1) ... (2) ...": those numbers are not citations."""
    numbers = set(_LIST_MARKER.findall(line))
    return "1" in numbers and "2" in numbers


def clean_text(text: str) -> tuple[str, dict[str, dict[str, int]]]:
    """Text with boilerplate lines and citation markers removed, and {rule: {lines, chars}} of what went."""
    removed: dict[str, dict[str, int]] = {}

    def note(rule: str, chars: int, lines: int = 1) -> None:
        entry = removed.setdefault(rule, {"lines": 0, "chars": 0})
        entry["lines"] += lines
        entry["chars"] += chars

    lines = text.split("\n")
    references = _reference_runs(lines)
    counts = Counter(line.strip() for line in lines if line.strip())
    seen: Counter[str] = Counter()
    kept: list[str] = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            kept.append("")
            continue
        short = len(stripped) <= BOILERPLATE_MAX_CHARS
        seen[stripped] += 1
        rule = None
        if i in references:
            rule = "reference_list"
        elif not _HAS_WORD.search(stripped):
            rule = "no_words"  # dot leaders, rules, stray bullets from tables and page furniture
        elif short and COPYRIGHT.search(stripped):
            rule = "copyright"
        elif short and LAST_REVIEWED.search(stripped):
            rule = "last_reviewed"
        elif short and COOKIES.search(stripped):
            rule = "cookies"
        elif NAVIGATION.match(stripped):
            rule = "navigation"
        elif (
            counts[stripped] >= NAV_MIN_REPEATS
            and seen[stripped] > 1
            and len(stripped.split()) <= NAV_MAX_WORDS
            and not stripped.startswith("#")
            and not _DIGIT.search(stripped)  # repeated "Dose: 5 mg" rows are table content, not navigation
            and not stripped.endswith((".", "?", "!", ":"))
        ):
            rule = "repeated_line"
        if rule:
            note(rule, len(line) + 1)
            continue
        # A pattern runs only on lines holding the character it needs: most lines hold none of them.
        without, n = CITATION_MARKER.subn("", line) if "[" in line else (line, 0)
        if _PAREN_DIGIT.search(without) and not _numbered_list(without):
            without, m = PAREN_CITATION.subn("", without)
            n += m
        if _DIGIT.search(without):
            without, m = SUPERSCRIPT_CITATION.subn(r"\g<mark>", without)
            n += m
        if n:
            note("citation_markers", len(line) - len(without), n)
            line = without
        kept.append(line)
    cleaned = _BLANK_RUNS.sub("\n\n", "\n".join(kept)).strip()
    return cleaned, removed


@dataclass
class CleanStage(FilterStage):
    """Remove citation markers, stray reference lists and web boilerplate lines; record removals in meta."""

    step: ClassVar[str] = "clean"

    def filter_table(self, table: pa.Table) -> tuple[pa.Table, list[Verdict]]:
        """The table with clean text and meta; a document left empty is dropped (written as it came, so that
        a reader can see what was judged empty)."""
        texts, metas, verdicts = [], [], []
        for text, meta in zip(
            table.column("text").to_pylist(), table.column("meta").to_pylist(), strict=True
        ):
            text = text or ""
            cleaned, removed = clean_text(text)
            if removed:
                parsed = _load_meta(meta)
                parsed["clean"] = {"chars_removed": len(text) - len(cleaned), "rules": removed}
                meta = dumps_meta(parsed)
            texts.append(cleaned)
            metas.append(meta)
            if cleaned:
                verdicts.append(True)
            else:
                rules = ", ".join(sorted(removed))
                verdicts.append((False, "clean_empty", f"nothing left of {len(text)} characters ({rules})"))
        table = table.set_column(table.schema.get_field_index("text"), "text", pa.array(texts, pa.string()))
        table = table.set_column(table.schema.get_field_index("meta"), "meta", pa.array(metas, pa.string()))
        return table, verdicts


def _load_meta(meta: str | None) -> dict:
    """The meta column as a dict; a value that is not a JSON object is kept under 'meta_raw'."""
    try:
        parsed = json.loads(meta) if meta else {}
    except ValueError:
        return {"meta_raw": meta}
    return parsed if isinstance(parsed, dict) else {"meta_raw": meta}
