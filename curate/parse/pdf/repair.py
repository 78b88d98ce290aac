"""Text repair: Unicode normalisation, unmapped glyphs, garbage detection and lost ligatures."""

from __future__ import annotations

import re
import unicodedata

from curate.parse.pdf.model import Page
from curate.schema import Rejection

_GARBLED_MIN_LETTERS = 0.35  # below this share of letters among visible characters the text is garbage
_GARBLED_MAX_BAD = 0.15  # above this share of control/private-use/replacement characters it is garbage
_TE_WORD = re.compile(r"\bTe\b")
# "They", "These", "Therefore", "Their" with "Th" lost: not words, not names one meets in papers.
_LOST_TH = re.compile(r"\bT(?:ey|ese|erefore|eir|ose|ereby)\b")
_T_WORD = re.compile(r"\bT([a-z]+)\b")
_LOWER_WORD = re.compile(r"\b[a-z]+\b")
_TH_EVIDENCE = 3  # this many "Te" words mean the font lost its "Th" ligature


def garbled(raw: str, numbers: bool = False) -> str | None:
    """Why text is garbage (fonts without a Unicode map give control, private-use or symbol characters
    instead of letters), or None when it reads as text; with `numbers`, digits count as letters (a page
    of a table is numbers, not garbage)."""
    visible = letters = bad = 0
    for ch in raw:
        if ch.isspace():
            continue
        visible += 1
        if ch.isalpha() or (numbers and ch.isdigit()):
            letters += 1
        elif ch == "\ufffd" or unicodedata.category(ch) in ("Cc", "Co", "Cs", "Cn"):
            bad += 1
    if letters < _GARBLED_MIN_LETTERS * visible or bad > _GARBLED_MAX_BAD * visible:
        return f"text is mostly not letters ({letters} letters, {bad} unmapped of {visible} characters)"
    return None


def check_garbled(raw: str) -> None:
    """Raise pdf_garbled for text that is mostly not letters."""
    why = garbled(raw)
    if why:
        raise Rejection("pdf_garbled", why)


def clean(text: str) -> str:
    """NFKC (ligatures, full-width forms); control characters become spaces, unmapped glyphs go."""
    text = unicodedata.normalize("NFKC", text)
    if text.isascii() and text.isprintable():
        return text
    out = []
    for i, ch in enumerate(text):
        category = unicodedata.category(ch)
        if category == "Cc":
            out.append(" ")  # often an unmapped space glyph: keep the word boundary
        elif category in ("Co", "Cs", "Cn") or ch in "\ufffd\u200b\ufeff":
            continue
        elif ch == "\u00ad" and text[i + 1 :].strip():
            continue  # a soft hyphen only matters at the end of a line, where join reads it
        else:
            out.append(ch)
    return "".join(out)


def repair_th_ligature(pages: list[Page]) -> None:
    """Restore "Th" where a font maps its "Th" ligature to "T" ("Te results", "Tese"), seen in the document.

    Only when the document shows the fault (the non-word "Te" several times, or once "Tey", "Tese" ...),
    and only for words whose "th" form the document itself uses while the "t" form it does not.
    """
    lines = [line for page in pages for block in page.blocks for line in block.lines]
    evidence = sum(len(_TE_WORD.findall(line.text)) for line in lines)
    evidence += _TH_EVIDENCE * sum(len(_LOST_TH.findall(line.text)) for line in lines)
    if evidence < _TH_EVIDENCE:
        return
    # Words as written in lowercase mid-sentence: the broken "Te" itself must not count as a word "te".
    words = set(_LOWER_WORD.findall(" ".join(line.text for line in lines)))

    def fix(match: re.Match[str]) -> str:
        rest = match.group(1)
        lower = rest.lower()
        return f"Th{rest}" if f"t{lower}" not in words and f"th{lower}" in words else match.group(0)

    for line in lines:
        if "T" in line.text:
            line.text = _T_WORD.sub(fix, line.text)
            line.lead = _T_WORD.sub(fix, line.lead)
