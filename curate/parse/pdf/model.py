"""Positioned text as a page is read (from its text layer or by OCR), and patterns the steps share."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

SPACES = re.compile(r"\s+")
WORDS = re.compile(r"[^\W\d_]+")
DIGITS = re.compile(r"\d+")
TERMINAL = ".!?:;"  # a paragraph ending in one of these ends a sentence
PROSE_MIN_CHARS = 200  # a paragraph of running text is at least this long (captions, cells, notes are less)
# Headings after which nothing is body text any more (compared lowercased with all spaces removed, so
# "R EFERENCES" and "Authors' contributions" match too); an optional section number may precede them.
_BACK_MATTER_WORDS = (
    r"references?|bibliography|literaturecited|workscited|referencelist|citedliterature"
    r"|acknowledge?ments?|funding|competinginterests?|conflicts?ofinterests?(?:statement)?"
    r"|authors?'?(?:s'?)?contributions?|authorcontributions?|declarationofcompetinginterest"
)
# Back matter too in articles, but also a heading inside a long document (a guideline's "Supplementary
# material" or "Declarations of interest" chapter, a table's "Abbreviations", a study of "Disclosure"):
# these end the text only where little of it follows them before the references.
_SOFT_WORDS = (
    r"declarations?(?:of(?:competing)?interests?)?|dataavailability(?:statement)?|dataaccessibility"
    r"|availabilityofdata(?:andmaterials?)?|consentforpublication|ethicsapprovalandconsenttoparticipate"
    r"|supplementary(?:materials?|data|information)|supportinginformation|additionalfiles?|authordetails"
    r"|publisher'?snote|disclosures?(?:statement)?|financialsupport|fundinginformation|(?:listof)?abbreviations"
)
_NUMBERS = r"^(?:[\divx]+\.?)*"  # a section number before a heading: "7.", "7.1.", "IV."
_BACK_MATTER = re.compile(rf"{_NUMBERS}({_BACK_MATTER_WORDS}|{_SOFT_WORDS})[:.]?$")
SOFT_BACK_MATTER = re.compile(_SOFT_WORDS)  # fullmatch on back_matter()'s word


# The firm headings as OCR should have read them: a misreading ("Contflicts of Interest", "REFERENGES") is
# still one of them, a different word ("Preferences") is not.
_MISREAD_KEYS = (
    "references",
    "bibliography",
    "literaturecited",
    "acknowledgements",
    "acknowledgments",
    "competinginterests",
    "conflictsofinterest",
    "conflictofinterest",
    "authorscontributions",
    "authorcontributions",
)
_NUMBERING = re.compile(_NUMBERS)


def back_matter(heading: str, misread: bool = False) -> str | None:
    """The back-matter word a heading is ("references", "abbreviations", ...), spaces and case aside; with
    `misread` (OCR), also a firm heading with a letter or two wrong."""
    key = SPACES.sub("", heading).lower().replace("’", "'")
    if not key or len(key) >= 40:
        return None
    match = _BACK_MATTER.match(key)
    if match:
        return match.group(1)
    if misread:
        key = _NUMBERING.sub("", key).rstrip(":.")
        for word in _MISREAD_KEYS:
            # One wrong letter in eight, and never the first (OCR misreads shapes, not whole words).
            if key[:1] == word[0] and _edits(key, word) <= len(word) // 8:
                return word
    return None


def _edits(a: str, b: str) -> int:
    """Levenshtein distance between a and b."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ca != cb))
    return row[-1]


@dataclass(slots=True)
class Line:
    x0: float
    y0: float
    x1: float
    y1: float
    text: str
    size: float  # font size of the line's longest span
    bold: bool  # every visible span is bold
    lead: str  # leading bold text, for run-in headings ("Acknowledgements The authors thank ...")
    horizontal: bool
    direction: tuple[int, int] = (1, 0)  # writing direction, rounded


@dataclass(slots=True)
class Block:
    x0: float
    y0: float
    x1: float
    y1: float
    lines: list[Line]

    @property
    def chars(self) -> int:
        return sum(len(line.text) for line in self.lines)

    @classmethod
    def around(cls, lines: list[Line]) -> Block:
        """The block whose box encloses these lines."""
        return cls(
            min(ln.x0 for ln in lines),
            min(ln.y0 for ln in lines),
            max(ln.x1 for ln in lines),
            max(ln.y1 for ln in lines),
            lines,
        )


@dataclass(slots=True)
class Para:
    lines: list[Line]
    heading: bool
    text: str = ""
    page: int = 0

    @property
    def size(self) -> float:
        """The font size of the paragraph's longest line."""
        return max(self.lines, key=lambda ln: len(ln.text)).size

    @property
    def first(self) -> Line:
        return self.lines[0]


@dataclass(slots=True)
class Page:
    width: float
    height: float
    blocks: list[Block] = field(default_factory=list)
    images: int = 0
    unmapped: int = 0  # characters in fonts without a Unicode map (glyph numbers, not text)
    ocr: bool = False  # read by OCR: sizes are estimated from line heights, and nothing is bold

    def lines(self) -> list[Line]:
        """Every line of the page, block by block."""
        return [line for block in self.blocks for line in block.lines]
