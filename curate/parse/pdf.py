"""PDF to clean text with PyMuPDF: reading order, running headers/footers, hyphenation, references cut.

The simplest honest version: positioned text blocks from `page.get_text("dict")`, a two-column split around
the middle of the text area, repeated margin lines dropped, paragraphs rebuilt from lines, and every way a
file can be unusable turned into a `Rejection` with a reason code:

- `pdf_broken`: not a PDF, truncated, or its pages cannot be read;
- `pdf_encrypted`: still locked after trying the empty password;
- `pdf_empty`: zero pages;
- `pdf_too_many_pages`: more pages than `max_pages`;
- `pdf_no_text`: no text layer (scanned or text drawn as curves);
- `pdf_garbled`: text whose characters are mostly not letters (fonts without a Unicode map).
"""

from __future__ import annotations

import math
import os
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

import pymupdf

from curate.schema import ParsedDoc, Rejection

# MuPDF prints every repaired xref and bad content stream to stderr: one line per problem per file floods
# worker logs. Problems still surface as Rejection (or are harmless), so the chatter is switched off.
pymupdf.TOOLS.mupdf_display_errors(False)
pymupdf.TOOLS.mupdf_display_warnings(False)

# "dict" without image blocks: with images PyMuPDF copies every image's bytes, which makes it ~3x slower.
_TEXT_FLAGS = pymupdf.TEXTFLAGS_DICT & ~pymupdf.TEXT_PRESERVE_IMAGES

_BOLD = 16  # span flag bit
_MARGIN = 0.1  # share of the page height at the top and bottom where running headers/footers live
_GARBLED_MIN_LETTERS = 0.35  # below this share of letters among visible characters the text is garbage
_GARBLED_MAX_BAD = 0.15  # above this share of control/private-use/replacement characters it is garbage
_CUT_FROM = 0.3  # a References heading cuts the text only when it comes after this share of the text
_NO_TEXT_CHARS_PER_PAGE = 20  # fewer visible characters per page than this, on image pages, is a scan

_HYPHENS = "-\u2010\u2011\u00ad"
_TERMINAL = ".!?:;"
_DOI = re.compile(r"\b(10\.\d{4,9}/[^\s\"<>]+)")
_NUMBER_LINE = re.compile(r"^[\s\-–—(\[]*(?:page\s*)?[\divxlc]{1,4}(?:\s*(?:of|/)\s*\d+)?[\s\-–—)\].]*$", re.I)
_DIGITS = re.compile(r"\d+")
_SPACES = re.compile(r"\s+")
_WORDS = re.compile(r"[^\W\d_]+")
_COMPOUNDS = re.compile(r"[^\W\d_]+-[^\W\d_]+")
# Headings after which nothing is body text any more (compared lowercased with all spaces removed, so
# "R EFERENCES" and "Authors' contributions" match too); an optional section number may precede them.
_BACK_MATTER = re.compile(
    r"^(?:[\divx]+\.?)*(references?|bibliography|literaturecited|workscited|referencelist|citedliterature"
    r"|acknowledge?ments?|funding|competinginterests?|conflicts?ofinterests?|declarationofcompetinginterest"
    r"|authors?'?(?:s'?)?contributions?|authorcontributions?)[:.]?$"
)
# Metadata titles that are file names or producer defaults rather than the article's title.
_FAKE_TITLE = re.compile(
    r"(\.(pdf|docx?|rtf|txt|fm|indd|qxd|qxp|tex|dvi|ps|eps|pm\d|p65|xml|html?)\b)|^(untitled|microsoft word|"
    r"adobe photoshop|powerpoint|title|document\d*|slide \d+)",
    re.I,
)
# Labels set in the title's font on some first pages ("Review Article" above the title).
_ARTICLE_LABEL = re.compile(
    r"^(original|review|research|clinical|case|short|brief|special)?\s*(article|paper|report|communication)s?$"
    r"|^(open access|corrigendum|erratum|editorial|review|research|letter|commentary)$",
    re.I,
)


@dataclass(slots=True)
class _Line:
    x0: float
    y0: float
    x1: float
    y1: float
    text: str
    size: float  # font size of the line's longest span
    bold: bool  # every visible span is bold
    lead: str  # leading bold text, for run-in headings ("Acknowledgements The authors thank ...")
    horizontal: bool


@dataclass(slots=True)
class _Block:
    x0: float
    y0: float
    x1: float
    y1: float
    lines: list[_Line]

    @property
    def chars(self) -> int:
        return sum(len(line.text) for line in self.lines)


@dataclass(slots=True)
class _Para:
    lines: list[_Line]
    heading: bool
    text: str = ""

    @property
    def first(self) -> _Line:
        return self.lines[0]


@dataclass(slots=True)
class _Page:
    width: float
    height: float
    blocks: list[_Block] = field(default_factory=list)
    images: int = 0


def parse_pdf(path: str | os.PathLike, *, max_pages: int = 2000) -> ParsedDoc:
    """Extract a PDF's body text, title and metadata, or raise Rejection with a pdf_* reason code."""
    try:
        doc = pymupdf.open(os.fspath(path), filetype="pdf")
    except Exception as exc:  # noqa: BLE001 - every way of failing to open is the same verdict
        raise Rejection("pdf_broken", f"cannot open: {_message(exc)}") from None
    try:
        with doc:
            pages, metadata = _read(doc, max_pages)
    finally:
        # MuPDF keeps every warning in a process-wide store; clear it so long workers do not grow.
        pymupdf.TOOLS.reset_mupdf_warnings()
    return _assemble(pages, metadata)


def _message(exc: BaseException) -> str:
    text = _SPACES.sub(" ", str(exc)).strip() or type(exc).__name__
    return text[:200]


def _read(doc: pymupdf.Document, max_pages: int) -> tuple[list[_Page], dict[str, str]]:
    """Open checks, then the positioned lines of every page; only PyMuPDF calls happen in here."""
    try:
        if doc.needs_pass and not doc.authenticate(""):
            raise Rejection("pdf_encrypted", "needs a password")
        count = doc.page_count
        repaired = doc.is_repaired
    except Rejection:
        raise
    except Exception as exc:  # noqa: BLE001
        raise Rejection("pdf_broken", f"cannot read: {_message(exc)}") from None
    if count == 0:
        # A truncated file "opens" after MuPDF's repair but has no recoverable page tree.
        if repaired:
            raise Rejection("pdf_broken", "damaged or truncated: no pages could be recovered")
        raise Rejection("pdf_empty", "the document has no pages")
    if count > max_pages:
        raise Rejection("pdf_too_many_pages", f"{count} pages, more than the limit of {max_pages}")
    try:
        metadata = {k: v for k, v in (doc.metadata or {}).items() if isinstance(v, str)}
    except Exception:  # noqa: BLE001 - a broken /Info dictionary only costs the metadata
        metadata = {}
    pages: list[_Page] = []
    failed: list[str] = []
    for number in range(count):
        try:
            page = doc.load_page(number)
            data = page.get_text("dict", flags=_TEXT_FLAGS)
            images = len(page.get_images(full=False))
        except Exception as exc:  # noqa: BLE001 - one unreadable page should not lose the others
            failed.append(_message(exc))
            pages.append(_Page(0.0, 0.0))
            continue
        pages.append(_Page(data["width"], data["height"], _blocks(data), images))
    if len(failed) == count:
        raise Rejection("pdf_broken", f"no page could be read: {failed[0]}")
    metadata["_failed_pages"] = str(len(failed))
    return pages, metadata


def _blocks(data: dict) -> list[_Block]:
    """Text blocks of one page's "dict" output as _Block/_Line records (raw text, NFKC later)."""
    blocks = []
    for raw in data["blocks"]:
        if raw.get("type", 0) != 0:
            continue
        lines = []
        for ln in raw["lines"]:
            spans = [s for s in ln["spans"] if s["text"]]
            text = "".join(s["text"] for s in spans)
            if not text.strip():
                continue
            visible = [s for s in spans if s["text"].strip()]
            main = max(visible, key=lambda s: len(s["text"].strip()))
            bold_flags = [_is_bold(s) for s in visible]
            lead = ""
            if bold_flags[0]:
                lead = "".join(s["text"] for s, b in zip(visible, bold_flags, strict=True) if b)
                lead = lead if not all(bold_flags) else text
                # Only the leading run of bold spans counts as a run-in heading.
                run = []
                for s, b in zip(visible, bold_flags, strict=True):
                    if not b:
                        break
                    run.append(s["text"])
                lead = "".join(run)
            dx, dy = ln["dir"]
            x0, y0, x1, y1 = ln["bbox"]
            lines.append(
                _Line(x0, y0, x1, y1, text, main["size"], all(bold_flags), lead, abs(dy) < 0.1 and dx > 0)
            )
        if lines:
            blocks.append(
                _Block(
                    min(ln.x0 for ln in lines),
                    min(ln.y0 for ln in lines),
                    max(ln.x1 for ln in lines),
                    max(ln.y1 for ln in lines),
                    lines,
                )
            )
    return blocks


def _is_bold(span: dict) -> bool:
    font = span.get("font", "").lower()
    return bool(span["flags"] & _BOLD) or any(w in font for w in ("bold", "black", "heavy", "semibold"))


# ---------------------------------------------------------------------------------------------- assembly


def _assemble(pages: list[_Page], metadata: dict[str, str]) -> ParsedDoc:
    raw = "".join(line.text for page in pages for block in page.blocks for line in block.lines)
    visible = sum(1 for ch in raw if not ch.isspace())
    n = len(pages)
    if visible == 0:
        raise Rejection("pdf_no_text", "no text layer (scanned or text drawn as curves)")
    image_pages = sum(1 for p in pages if p.images)
    if visible < _NO_TEXT_CHARS_PER_PAGE * n and image_pages >= 0.8 * n:
        raise Rejection("pdf_no_text", f"only {visible} characters of text on {n} image page(s)")
    _check_garbled(raw, visible)

    for page in pages:
        for block in page.blocks:
            for line in block.lines:
                line.text = _clean(line.text)
                line.lead = _clean(line.lead)

    body_size = _body_size(pages)
    margin_keys = _running_lines(pages)
    two_column = 0
    paras: list[_Para] = []
    for page in pages:
        blocks = _strip_margins(page, margin_keys)
        ordered, columns = _reading_order(page, blocks)
        two_column += columns
        for block in ordered:
            paras.extend(_paragraphs(block, body_size))

    words, compounds = _vocabulary(paras)
    for para in paras:
        para.text = _join_lines(para.lines, words, compounds)
    paras = _merge_continuations([p for p in paras if p.text], words, compounds)
    paras, cut = _cut_back_matter(paras)
    text = "\n\n".join(p.text for p in paras)
    if not text:
        raise Rejection("pdf_no_text", "no body text left after removing headers and footers")

    meta: dict[str, object] = {"pages": n, "chars_per_page": round(len(text) / n)}
    doi = _doi(metadata, pages[0])
    if doi:
        meta["doi"] = doi
    if two_column:
        meta["two_column_pages"] = two_column
    if cut:
        meta["cut_from"] = cut
    failed = int(metadata.get("_failed_pages", "0"))
    if failed:
        meta["unreadable_pages"] = failed
    return ParsedDoc(text=text, title=_title(metadata, pages[0], margin_keys), meta=meta)


def _check_garbled(raw: str, visible: int) -> None:
    """Fonts without a Unicode map give control, private-use or symbol characters instead of letters."""
    letters = bad = 0
    for ch in raw:
        if ch.isalpha():
            letters += 1
        elif not ch.isspace() and unicodedata.category(ch) in ("Cc", "Co", "Cs", "Cn") or ch == "\ufffd":
            bad += 1
    if letters < _GARBLED_MIN_LETTERS * visible or bad > _GARBLED_MAX_BAD * visible:
        raise Rejection(
            "pdf_garbled",
            f"text is mostly not letters ({letters} letters, {bad} unmapped of {visible} characters)",
        )


def _clean(text: str) -> str:
    """NFKC (ligatures, full-width forms) and no control, private-use or replacement characters."""
    text = unicodedata.normalize("NFKC", text)
    if text.isascii() and text.isprintable():
        return text
    return "".join(
        " " if ch in "\t\n\r" else ch
        for ch in text
        if ch in "\t\n\r" or (unicodedata.category(ch) not in ("Cc", "Co", "Cs", "Cn") and ch != "\ufffd")
    )


def _body_size(pages: list[_Page]) -> float:
    """The font size that carries most characters: body text."""
    sizes: Counter[float] = Counter()
    for page in pages:
        for block in page.blocks:
            for line in block.lines:
                sizes[round(line.size, 1)] += len(line.text)
    return sizes.most_common(1)[0][0] if sizes else 10.0


def _margin_key(line: _Line, page: _Page) -> str | None:
    """A comparable key for a line in the top or bottom margin (digits masked: page numbers vary)."""
    if line.y1 > page.height * _MARGIN and line.y0 < page.height * (1 - _MARGIN):
        return None
    return _DIGITS.sub("#", _SPACES.sub(" ", line.text).strip().lower())


def _running_lines(pages: list[_Page]) -> set[str]:
    """Margin lines that repeat on several pages: running headers, footers, licence lines."""
    seen: Counter[str] = Counter()
    for page in pages:
        keys = set()
        for block in page.blocks:
            for line in block.lines:
                key = _margin_key(line, page)
                if key:
                    keys.add(key)
        seen.update(keys)
    # Odd and even pages often carry different headers, so each appears on only half the pages.
    need = max(2, math.ceil(0.2 * len(pages)))
    return {key for key, count in seen.items() if count >= need}


def _strip_margins(page: _Page, running: set[str]) -> list[_Block]:
    """The page's blocks without running headers/footers, page numbers, and stray vertical text."""
    horizontal = sum(len(ln.text) for b in page.blocks for ln in b.lines if ln.horizontal)
    total = sum(b.chars for b in page.blocks)
    keep_vertical = horizontal < 0.5 * total  # a page set sideways keeps its text
    out = []
    for block in page.blocks:
        lines = []
        for line in block.lines:
            if not line.horizontal and not keep_vertical:
                continue  # "Downloaded from ..." and licence notes printed up the margin
            key = _margin_key(line, page)
            if key is not None and (key in running or _NUMBER_LINE.match(line.text)):
                continue
            lines.append(line)
        if len(lines) == len(block.lines):
            out.append(block)
        elif lines:
            out.append(
                _Block(
                    min(ln.x0 for ln in lines),
                    min(ln.y0 for ln in lines),
                    max(ln.x1 for ln in lines),
                    max(ln.y1 for ln in lines),
                    lines,
                )
            )
    return out


def _reading_order(page: _Page, blocks: list[_Block]) -> tuple[list[_Block], int]:
    """Blocks in reading order, and 1 if the page was read as two columns (else 0).

    On a two-column page, blocks left of the text area's middle are read before those right of it, band by
    band: blocks that straddle the middle (title, abstract, wide figures) split the page into bands.
    """
    if len(blocks) < 2:
        return blocks, 0
    wide = [b for b in blocks if b.chars >= 40] or blocks
    lo, hi = min(b.x0 for b in wide), max(b.x1 for b in wide)
    mid = (lo + hi) / 2
    tol = 0.02 * (hi - lo)
    left, right, full = [], [], []
    for b in blocks:
        if b.x1 <= mid + tol:
            left.append(b)
        elif b.x0 >= mid - tol:
            right.append(b)
        else:
            full.append(b)
    total = sum(b.chars for b in blocks)
    left_chars, right_chars = sum(b.chars for b in left), sum(b.chars for b in right)
    if left_chars < 0.15 * total or right_chars < 0.15 * total or len(left) < 2 or len(right) < 2:
        return sorted(blocks, key=lambda b: (round(b.y0), b.x0)), 0
    full.sort(key=lambda b: b.y0)
    bands: list[list[_Block]] = [[] for _ in range(len(full) + 1)]
    for b in left + right:
        centre = (b.y0 + b.y1) / 2
        bands[sum(1 for f in full if f.y0 <= centre)].append(b)
    ordered: list[_Block] = []
    for i, band in enumerate(bands):
        mids = [b for b in band if b.x1 <= mid + tol]
        ordered.extend(sorted(mids, key=lambda b: b.y0))
        ordered.extend(sorted((b for b in band if b.x1 > mid + tol), key=lambda b: b.y0))
        if i < len(full):
            ordered.append(full[i])
    return ordered, 1


def _is_heading(line: _Line, body_size: float) -> bool:
    if len(line.text) > 150 or not any(ch.isalpha() for ch in line.text):
        return False
    return line.bold or line.size >= body_size + 1.5


def _paragraphs(block: _Block, body_size: float) -> list[_Para]:
    """Split a block into paragraphs at headings and at vertical gaps larger than a line's height."""
    paras: list[_Para] = []
    prev: _Line | None = None
    for line in block.lines:
        heading = _is_heading(line, body_size)
        if prev is None:
            paras.append(_Para([line], heading))
        else:
            same_row = line.y0 < prev.y1 - 0.3 * (prev.y1 - prev.y0)
            gap = line.y0 - prev.y1
            para = paras[-1]
            if same_row or (
                heading == para.heading
                and abs(line.size - prev.size) < 1.0
                and gap <= 0.8 * max(line.y1 - line.y0, prev.y1 - prev.y0)
            ):
                para.lines.append(line)
            else:
                paras.append(_Para([line], heading))
        prev = line
    return paras


def _vocabulary(paras: list[_Para]) -> tuple[set[str], set[str]]:
    """Words and hyphenated compounds written on one line, to decide how to join a word split by a hyphen."""
    words: set[str] = set()
    compounds: set[str] = set()
    for para in paras:
        for line in para.lines:
            lower = line.text.lower()
            words.update(_WORDS.findall(lower))
            if "-" in lower:
                compounds.update(_COMPOUNDS.findall(lower))
    return words, compounds


def _join(left: str, right: str, words: set[str], compounds: set[str]) -> str:
    """Join two pieces of running text, undoing end-of-line hyphenation."""
    if not left:
        return right
    if not right:
        return left
    if left[-1] in _HYPHENS and len(left) > 1 and left[-2].isalnum():
        if left[-1] == "\u00ad":
            return left[:-1] + right
        head = _WORDS.findall(left[-40:].lower())
        tail = _WORDS.findall(right[:40].lower())
        if right[0].islower() and head and tail and left[-2].isalpha():
            joined, hyphenated = head[-1] + tail[0], f"{head[-1]}-{tail[0]}"
            # "anti-\ninflammatory" stays hyphenated when the document writes it so elsewhere.
            if hyphenated in compounds and joined not in words or tail[0] in ("and", "or", "to"):
                return left + right if tail[0] not in ("and", "or", "to") else left + " " + right
            return left[:-1] + right
        return left + right  # "IL-" + "1β", "Bcl-" + "2"
    return left + " " + right


def _join_lines(lines: list[_Line], words: set[str], compounds: set[str]) -> str:
    text = ""
    prev: _Line | None = None
    for line in lines:
        piece = _SPACES.sub(" ", line.text).strip()
        if prev is not None and line.y0 < prev.y1 - 0.3 * (prev.y1 - prev.y0) and line.x0 - prev.x1 < 0.15 * line.size:
            text += piece  # same row, touching: a superscript or a font change, not a new word
        else:
            text = _join(text, piece, words, compounds)
        prev = line
    return text.strip()


def _merge_continuations(paras: list[_Para], words: set[str], compounds: set[str]) -> list[_Para]:
    """Rejoin a paragraph split by a column or page break: no final punctuation, then a lowercase start."""
    out: list[_Para] = []
    for para in paras:
        if out and not para.heading and not out[-1].heading:
            prev = out[-1].text
            if prev[-1] not in _TERMINAL and para.text[0].islower():
                out[-1].text = _join(prev, para.text, words, compounds)
                continue
        out.append(para)
    return out


def _cut_back_matter(paras: list[_Para]) -> tuple[list[_Para], str | None]:
    """Drop everything from a References/Acknowledgements/Funding heading on, when it is near the end."""
    total = sum(len(p.text) for p in paras)
    offset = 0
    for i, para in enumerate(paras):
        if offset >= _CUT_FROM * total:
            for candidate in (para.first.text, para.first.lead):
                key = _SPACES.sub("", candidate).lower().replace("’", "'")
                if key and len(key) < 40 and _BACK_MATTER.match(key):
                    return paras[:i], _SPACES.sub(" ", candidate).strip()
        offset += len(para.text)
    return paras, None


def _doi(metadata: dict[str, str], first: _Page) -> str | None:
    """The DOI from the metadata, else the first one printed on page 1."""
    candidates = [metadata.get(k, "") for k in ("doi", "subject", "keywords", "title")]
    candidates.append(" ".join(line.text for block in first.blocks for line in block.lines))
    for text in candidates:
        match = _DOI.search(text or "")
        if match:
            return match.group(1).rstrip(".,;:)]}'\"").rstrip("”’")
    return None


def _title(metadata: dict[str, str], first: _Page, running: set[str]) -> str | None:
    """The metadata title when page 1 confirms it, else the largest-font text on page 1."""
    meta_title = _SPACES.sub(" ", _clean(metadata.get("title", ""))).strip()
    page_words = set(
        _WORDS.findall(" ".join(line.text for block in first.blocks for line in block.lines).lower())
    )
    if meta_title and not _FAKE_TITLE.search(meta_title):
        tokens = _WORDS.findall(meta_title.lower())
        # File names, job numbers and journal names fail this: the real title is printed on page 1.
        if len(tokens) >= 2 and sum(t in page_words for t in tokens) >= 0.8 * len(tokens):
            return meta_title
    best: tuple[float, int, int] | None = None
    for b, block in enumerate(first.blocks):
        for i, line in enumerate(block.lines):
            text = line.text.strip()
            if (
                sum(ch.isalpha() for ch in text) < 4
                or _ARTICLE_LABEL.match(text)
                or _margin_key(line, first) in running
            ):
                continue
            if best is None or line.size > best[0] + 0.1:
                best = (line.size, b, i)
    if best is None:
        return None
    size, b, i = best
    parts = []
    for line in first.blocks[b].lines[i:]:
        if abs(line.size - size) > 0.5:
            break
        parts.append(line.text.strip())
    title = _SPACES.sub(" ", " ".join(parts)).strip()
    return title[:300] or None
