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
_LONG_RUN = 12  # runs of letters at least this long may be words run together
_LETTERS = re.compile(r"[^\W\d_]+")
_LONG_LETTERS = re.compile(rf"[^\W\d_]{{{_LONG_RUN},}}")
_SHORT_WORDS = {
    "a",
    "an",
    "of",
    "to",
    "in",
    "on",
    "and",
    "the",
    "for",
    "with",
    "by",
    "at",
    "from",
    "or",
    "as",
}
# A line of single letters each followed by one space ("K E Y W O R D S"), words parted by two or more.
_SPACED_LINE = re.compile(r"(?:[^\W\d_] {1,3}){3,}[^\W\d_]")
_WIDE_GAP = re.compile(r" {2,}")
# Dot leaders of a table of contents ("Methods ........ 6", ". . . ."), rules drawn as "_____" or "-----":
# runs of one punctuation mark, which unmapped glyphs do not make. They are not letters, nor garbage.
_LEADERS = re.compile(r"([.·…_\-–—=*])(?: ?\1){3,}")
_TH_EVIDENCE = 3  # this many "Te" words mean the font lost its "Th" ligature


def garbled(raw: str, numbers: bool = False) -> str | None:
    """Why text is garbage (fonts without a Unicode map give control, private-use or symbol characters
    instead of letters), or None when it reads as text; with `numbers`, digits count as letters (a page
    of a table is numbers, not garbage)."""
    visible = letters = bad = 0
    for ch in _LEADERS.sub(" ", raw):
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


def unspace(text: str) -> str:
    """A line set letter-spaced ("K E Y W O R D S", "A B S T R A C T") as its words; wider gaps part them."""
    if not _SPACED_LINE.fullmatch(text.strip()):
        return text
    return " ".join(word.replace(" ", "") for word in _WIDE_GAP.split(text.strip()))


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


def respace(pages: list[Page]) -> None:
    """Put back the spaces of words set without space characters ("BiologicalEffectsofMedicinalPlants").

    Only runs of letters that change from lower to upper case inside at least twice are touched, and they
    are split only into words the document itself uses elsewhere (or the commonest short ones), with at
    most one piece unknown; a run that cannot be read that way stays whole.
    """
    lines = [line for page in pages for block in page.blocks for line in block.lines]
    glued = [line for line in lines if any(_glued(run) for run in _LONG_LETTERS.findall(line.text))]
    if not glued:
        return
    counts: dict[str, int] = {}
    for line in lines:
        for word in _LETTERS.findall(line.text.lower()):
            counts[word] = counts.get(word, 0) + 1
    known = {w for w, n in counts.items() if len(w) > 1 and (n > 1 or len(w) < _LONG_RUN)} | _SHORT_WORDS
    for line in glued:
        line.text = _LONG_LETTERS.sub(
            lambda m: _split(m.group(0), known) if _glued(m.group(0)) else m.group(0), line.text
        )


def _glued(run: str) -> bool:
    """Words run together in title case: "EffectsofMedicinalPlants"."""
    return sum(a.islower() and b.isupper() for a, b in zip(run, run[1:], strict=False)) >= 2


def _split(run: str, known: set[str]) -> str:
    """A run of letters as known words separated by spaces, or the run unchanged."""
    lower = run.lower()
    n = len(lower)
    # best[i]: (unknown pieces, pieces, start of the last piece) for the prefix of length i
    best: list[tuple[int, int, int] | None] = [None] * (n + 1)
    best[0] = (0, 0, 0)
    for end in range(1, n + 1):
        for start in range(max(0, end - 30), end):
            if best[start] is None:
                continue
            piece = lower[start:end]
            unknown = 0 if piece in known else 1
            if unknown and end - start < 4:
                continue
            cost = (best[start][0] + unknown, best[start][1] + 1, start)
            if best[end] is None or cost[:2] < best[end][:2]:
                best[end] = cost
    if best[n] is None or best[n][1] < 2:
        return run
    if best[n][0] > 1:
        return run
    cuts, end = [], n
    while end:
        start = best[end][2]
        cuts.append(run[start:end])
        end = start
    return " ".join(reversed(cuts))
