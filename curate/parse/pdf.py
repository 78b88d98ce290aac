"""PDF to clean text with PyMuPDF: reading order, running headers/footers, hyphenation, references cut.

The simplest honest version: positioned text blocks from `page.get_text("dict")`, a two-column split around
the middle of the text area, repeated margin lines dropped, paragraphs rebuilt from lines, and every way a
file can be unusable turned into a `Rejection` with a reason code:

- `pdf_broken`: not a PDF, truncated, or its pages cannot be read;
- `pdf_encrypted`: still locked after trying the empty password;
- `pdf_empty`: zero pages;
- `pdf_too_many_pages`: more pages than `max_pages`;
- `pdf_no_text`: no text layer (scanned or text drawn as curves);
- `pdf_garbled`: text whose characters are mostly not letters (fonts without a Unicode map);
- `pdf_timeout`: reading the pages took longer than `max_seconds`.

Besides headers and footers, figure/table captions (by default), tables (lines that share a baseline with
two or more other pieces of text), journal furniture (licence, dates, correspondence) and page 1's author
block before the abstract are left out: the text is what a reader reads as the article.
"""

from __future__ import annotations

import contextlib
import html
import math
import os
import re
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Iterator
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
_COLUMN_MIN = 0.05  # a page is two-column when each side holds this share of its text (last pages: less)
_MARGIN = 0.12  # share of the page height at the top and bottom where running headers/footers live
_GARBLED_MIN_LETTERS = 0.35  # below this share of letters among visible characters the text is garbage
_GARBLED_MAX_BAD = 0.15  # above this share of control/private-use/replacement characters it is garbage
_CUT_FROM = 0.3  # a References heading cuts the text only when it comes after this share of the text
_TABLE_MAX_LETTERS = 0.4  # paragraphs with fewer letters than this share are table cells (numbers)
_NO_TEXT_CHARS_PER_PAGE = 20  # fewer visible characters per page than this, on image pages, is a scan

_PROSE_MIN_CHARS = 200  # a paragraph of running text is at least this long (captions, cells, notes are less)
_TABLE_ROW_SHARE = 0.5  # a block with at least this share of its text in table rows is a table
_TABLE_PAGE_SHARE = 0.4  # a page with this share of its text in table rows is a table page
_PROSE_LINE_CHARS = 40  # running text has lines at least this long on average
_SENTENCE_MIN_CHARS = 100  # before the abstract, shorter text is a label, a name or an address
_SMALL_PRINT = 0.9  # points below the body size: table cells, footnotes, affiliations
_ABSTRACT_WORDS = {"abstract", "summary", "background", "abstracts"}
# Figure and table captions ("Figure 2:", "Fig. 3.", "Table 1 |"): the JATS references leave them out.
_CAPTION = re.compile(
    r"^(?:figure|fig\.?|table|scheme|chart|plate)[\s\-–]*[a-z]?\d+[a-z]?\s*(?:[.:|(\-–—]|$)", re.I
)
# Front-page and margin furniture: licence notes, dates, correspondence, editors, citation hints.
_FURNITURE = re.compile(
    r"copyright|©|creative\s*commons|open[\s-]*access\s+article|this\s+(?:article|work)\s+is\s+(?:licensed|distributed)"
    r"|\breceived\b.{0,40}\d.{0,80}\baccepted\b|correspondence\s*(?:should|to|:)|corresponding\s*author|e-?mail\s*:"
    r"|academic\s*editor|cite\s*this\s*article|please\s*cite|^keywords?\b|^article\s*(?:history|info)|\barticle\s*id\b"
    r"|^(?:edited|reviewed)\s*by\b|\b[\w.+-]+@[\w-]+\.[\w.]+",
    re.I,
)
_ISOLATED_GRACE_S = 10.0  # start-up allowance of an isolated child, on top of its parsing time
_TE_WORD = re.compile(r"\bTe\b")
_T_WORD = re.compile(r"\bT([a-z]+)\b")
_LOWER_WORD = re.compile(r"\b[a-z]+\b")
_TH_EVIDENCE = 3  # this many "Te" words mean the font lost its "Th" ligature
_HYPHENS = "-\u2010\u2011\u00ad"
_TERMINAL = ".!?:;"
_PMCID = re.compile(r"\b(PMC\d{4,9})\b")
_PMID = re.compile(r"\bPMID:?\s*(\d{1,9})\b")
_DOI = re.compile(r"\b(10\.\d{4,9}/[^\s\"<>]+)")
_NUMBER_LINE = re.compile(
    r"^[\s\-–—(\[]*(?:page\s*)?[\divxlc]{1,4}(?:\s*(?:of|/)\s*\d+)?[\s\-–—)\].]*$", re.I
)
_LIST_ITEM = re.compile(r"^\d+[.)]\s")
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
_REFERENCE_WORDS = {
    "reference",
    "references",
    "bibliography",
    "literaturecited",
    "workscited",
    "referencelist",
    "citedliterature",
}
# Metadata titles that are file names or producer defaults rather than the article's title.
_FAKE_TITLE = re.compile(
    r"(\.(pdf|docx?|rtf|txt|fm|indd|qxd|qxp|tex|dvi|ps|eps|pm\d|p65|xml|html?)\b)"
    r"|^(untitled|microsoft word|adobe photoshop|powerpoint)|^(title|document\d*|slide \d+)$",
    re.I,
)
_YEAR = re.compile(r"\b(19|20)\d\d\b")
_JOURNAL = re.compile(r"\bjournal\b", re.I)
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
    direction: tuple[int, int] = (1, 0)  # writing direction, rounded


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

    @classmethod
    def around(cls, lines: list[_Line]) -> _Block:
        """The block whose box encloses these lines."""
        return cls(
            min(ln.x0 for ln in lines),
            min(ln.y0 for ln in lines),
            max(ln.x1 for ln in lines),
            max(ln.y1 for ln in lines),
            lines,
        )


@dataclass(slots=True)
class _Para:
    lines: list[_Line]
    heading: bool
    text: str = ""
    page: int = 0

    @property
    def size(self) -> float:
        """The font size of the paragraph's longest line."""
        return max(self.lines, key=lambda ln: len(ln.text)).size

    @property
    def first(self) -> _Line:
        return self.lines[0]


@dataclass(slots=True)
class _Page:
    width: float
    height: float
    blocks: list[_Block] = field(default_factory=list)
    images: int = 0


def parse_pdf(
    path: str | os.PathLike, *, max_pages: int = 2000, max_seconds: float = 120.0, captions: bool = False
) -> ParsedDoc:
    """Extract a PDF's body text, title and metadata, or raise Rejection with a pdf_* reason code.

    `max_seconds` bounds the time spent reading pages (checked between pages: `pdf_timeout`); `captions`
    keeps figure and table captions, which are dropped by default.
    """
    name = os.fspath(path)
    pymupdf.TOOLS.reset_mupdf_warnings()  # what MuPDF reports while opening tells a damaged file apart
    try:
        doc = pymupdf.open(name, filetype="pdf")
    except Exception as exc:  # noqa: BLE001 - every way of failing to open is the same verdict
        # The record already says which file; the detail keeps MuPDF's words without the full path.
        detail = _message(exc).replace(name, os.path.basename(name))
        raise Rejection("pdf_broken", f"cannot open: {detail}") from None
    try:
        with doc:
            pages, metadata, failed = _read(doc, max_pages, max_seconds)
    finally:
        # MuPDF keeps every warning in a process-wide store; clear it so long workers do not grow.
        pymupdf.TOOLS.reset_mupdf_warnings()
    return _assemble(pages, metadata, failed, captions)


def parse_pdf_isolated(
    path: str | os.PathLike,
    *,
    max_pages: int = 2000,
    max_seconds: float = 120.0,
    max_memory_mb: int = 4096,
    captions: bool = False,
) -> ParsedDoc:
    """parse_pdf in a child process that is killed after max_seconds and limited to max_memory_mb.

    For untrusted files: a page on which MuPDF loops or allocates without end cannot hang or crash the
    worker. Raises Rejection `pdf_timeout`, `pdf_memory` or `pdf_crashed` for those, and parse_pdf's own
    otherwise. Uses the forkserver start method.
    """
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    # The fork server imports PyMuPDF once; each child is a fork of it (~10 ms, not a fresh interpreter).
    context.set_forkserver_preload(["curate.parse.pdf"])
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(
        target=_isolated_child,
        args=(sender, os.fspath(path), max_pages, max_seconds, max_memory_mb, captions),
        daemon=True,
    )
    with _main_module_hidden():
        child.start()
    sender.close()
    try:
        # The wall-clock limit covers the child's start as well; the in-loop limit stops it earlier.
        if not receiver.poll(max_seconds + _ISOLATED_GRACE_S):
            raise Rejection("pdf_timeout", f"still parsing after {max_seconds:g} s: killed")
        try:
            kind, value = receiver.recv()
        except EOFError:
            child.join(5)
            if child.exitcode is not None and child.exitcode < 0:  # killed by a signal: segfault, OOM killer
                raise Rejection("pdf_crashed", f"the parser died of signal {-child.exitcode}") from None
            raise RuntimeError(
                f"the parser process exited with code {child.exitcode} without a result"
            ) from None
    finally:
        if child.is_alive():
            child.kill()
        child.join(5)
        receiver.close()
    if kind == "doc":
        return value
    if kind == "rejection":
        raise Rejection(*value)
    if kind == "memory":
        raise Rejection("pdf_memory", f"needs more than {max_memory_mb} MB")
    raise RuntimeError(value)


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Keep a starting child from re-importing the parent's __main__, which it does not need.

    multiprocessing re-imports the main script in every forkserver child; inside a Ray worker that script is
    Ray's default_worker.py, which made each PDF about 4x slower (measured: 12 PDFs, 4.45 s -> 0.98 s).
    """
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if main and k in main.__dict__}
    if main is not None:
        main.__dict__.pop("__file__", None)
        main.__spec__ = None  # multiprocessing reads it unguarded
    try:
        yield
    finally:
        if main is not None:
            main.__dict__.update(saved)


def _isolated_child(
    sender, path: str, max_pages: int, max_seconds: float, memory_mb: int, captions: bool
) -> None:
    """Body of parse_pdf_isolated's child: parse under an address-space limit, send the outcome back."""
    import resource

    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        result: tuple[str, object] = (
            "doc",
            parse_pdf(path, max_pages=max_pages, max_seconds=max_seconds, captions=captions),
        )
    except Rejection as rejection:
        result = ("rejection", (rejection.reason, rejection.detail))
    except MemoryError:
        result = ("memory", None)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it as an error
        result = ("error", f"{type(exc).__name__}: {_message(exc)}")
    sender.send(result)
    sender.close()


def _message(exc: BaseException) -> str:
    """An exception as one short line (MuPDF messages can span lines)."""
    text = _SPACES.sub(" ", str(exc)).strip() or type(exc).__name__
    return text[:200]


def _read(
    doc: pymupdf.Document, max_pages: int, max_seconds: float
) -> tuple[list[_Page], dict[str, str], int]:
    """Open checks, then the positioned lines of every page; only PyMuPDF calls happen in here."""
    try:
        if not doc.is_pdf:
            # MuPDF sniffs the content and opens images, EPUB or XPS despite filetype="pdf".
            kind = (doc.metadata or {}).get("format") or "another format"
            raise Rejection("pdf_broken", f"not a PDF: the file is {kind}")
        if doc.needs_pass and not doc.authenticate(""):
            raise Rejection("pdf_encrypted", "needs a password")
        count = doc.page_count
        repaired = doc.is_repaired
    except Rejection:
        raise
    except Exception as exc:  # noqa: BLE001
        raise Rejection("pdf_broken", f"cannot read: {_message(exc)}") from None
    if count == 0:
        # A truncated or corrupted file "opens" (MuPDF repairs what it can) but has no page tree left.
        problems = pymupdf.TOOLS.mupdf_warnings().strip().splitlines()
        if repaired or problems:
            why = f" ({problems[-1][:100]})" if problems else ""
            raise Rejection("pdf_broken", f"damaged or truncated: no pages could be recovered{why}")
        raise Rejection("pdf_empty", "the document has no pages")
    if count > max_pages:
        raise Rejection("pdf_too_many_pages", f"{count} pages, more than the limit of {max_pages}")
    try:
        metadata = {k: v for k, v in (doc.metadata or {}).items() if isinstance(v, str)}
    except Exception:  # noqa: BLE001 - a broken /Info dictionary only costs the metadata
        metadata = {}
    pages: list[_Page] = []
    failed: list[str] = []
    deadline = time.monotonic() + max_seconds
    for number in range(count):
        if time.monotonic() > deadline:
            raise Rejection("pdf_timeout", f"read {number} of {count} pages in the {max_seconds:g} s allowed")
        try:
            page = doc.load_page(number)
            data = page.get_text("dict", flags=_TEXT_FLAGS)
            images = len(page.get_images(full=False))
        except Exception as exc:  # noqa: BLE001 - one unreadable page should not lose the others
            failed.append(_message(exc))
            pages.append(_Page(0.0, 0.0))
            continue
        pages.append(_upright(_Page(data["width"], data["height"], _blocks(data), images)))
    if len(failed) == count:
        raise Rejection("pdf_broken", f"no page could be read: {failed[0]}")
    return pages, metadata, len(failed)


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
            run = []  # only the leading run of bold spans counts as a run-in heading
            for s, bold in zip(visible, bold_flags, strict=True):
                if not bold:
                    break
                run.append(s["text"])
            lead = "".join(run)
            dx, dy = ln["dir"]
            x0, y0, x1, y1 = ln["bbox"]
            size = main["size"]
            horizontal = abs(dy) < 0.1 and dx > 0
            if horizontal and size > 0:
                # Some fonts report ascenders of several lines' height; the baseline and size do not lie.
                base = main["origin"][1]
                y0, y1 = base - 0.8 * size, base + 0.2 * size
            direction = (round(dx), round(dy))
            lines.append(_Line(x0, y0, x1, y1, text, size, all(bold_flags), lead, horizontal, direction))
        if lines:
            blocks.append(_Block.around(lines))
    return blocks


def _upright(page: _Page) -> _Page:
    """A page whose text mostly runs up or down (a landscape table, a page set sideways), turned upright.

    Lines in the page's main direction get coordinates in that direction's frame and count as horizontal,
    so margins, tables and reading order work as on any page.
    """
    chars: Counter[tuple[int, int]] = Counter()
    for block in page.blocks:
        for line in block.lines:
            chars[line.direction] += len(line.text)
    if not chars:
        return page
    main, count = chars.most_common(1)[0]
    if main not in ((0, -1), (0, 1)) or count < 0.5 * sum(chars.values()):
        return page
    width, height = page.width, page.height
    blocks = []
    for block in page.blocks:
        for line in block.lines:
            line.horizontal = line.direction == main
            x0, y0, x1, y1 = line.x0, line.y0, line.x1, line.y1
            if main == (0, -1):  # bottom to top: the next line is to the right
                line.x0, line.x1, line.y0, line.y1 = height - y1, height - y0, x0, x1
            else:  # top to bottom: the next line is to the left
                line.x0, line.x1, line.y0, line.y1 = y0, y1, width - x1, width - x0
        blocks.append(_Block.around(block.lines))
    return _Page(height, width, blocks, page.images)


def _is_bold(span: dict) -> bool:
    font = span.get("font", "").lower()
    return bool(span["flags"] & _BOLD) or any(w in font for w in ("bold", "black", "heavy", "semibold"))


# ---------------------------------------------------------------------------------------------- assembly


def _assemble(pages: list[_Page], metadata: dict[str, str], failed: int, captions: bool) -> ParsedDoc:
    """Quality checks, then body text, title and metadata from the pages' positioned lines."""
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

    _repair_th_ligature(pages)
    body_size = _body_size(pages)
    running = _running_lines(pages)
    title = _title(metadata, pages)
    paras, two_column = _body(pages, running, body_size, title, captions)
    if not paras and running:
        # Every line repeats on every page (a one-line document copied onto several pages): keep them.
        paras, two_column = _body(pages, set(), body_size, title, captions)
    paras, cut = _cut_back_matter(paras)
    text = "\n\n".join(p.text for p in paras)
    if not text:
        raise Rejection("pdf_no_text", "no body text left after removing headers, footers and tables")

    meta: dict[str, object] = {"pages": n, "chars_per_page": round(len(text) / n)}
    doi = _doi(metadata, pages[0])
    if doi:
        meta["doi"] = doi
    first_page = " ".join(line.text for block in pages[0].blocks for line in block.lines)
    for key, pattern in (("pmcid", _PMCID), ("pmid", _PMID)):
        match = pattern.search(first_page)
        if match:
            meta[key] = match.group(1)
    if two_column:
        meta["two_column_pages"] = two_column
    if cut:
        meta["cut_from"] = cut
    if failed:
        meta["unreadable_pages"] = failed
    return ParsedDoc(text=text, title=title, meta=meta)


def _body(
    pages: list[_Page], running: set[str], body_size: float, title: str | None, captions: bool
) -> tuple[list[_Para], int]:
    """Paragraphs in reading order without margins and number tables, and the count of two-column pages."""
    two_column = 0
    paras: list[_Para] = []
    for number, page in enumerate(pages):
        blocks = _drop_table_blocks(_strip_margins(page, running))
        ordered, columns = _reading_order(page, blocks)
        two_column += columns
        for block in ordered:
            for para in _paragraphs(block, body_size):
                para.page = number
                paras.append(para)
    words, compounds = _vocabulary(paras)
    for para in paras:
        para.text = _join_lines(para.lines, words, compounds)
    kept = [p for p in paras if p.text and not _tabular(p.text) and not _furniture(p, captions)]
    kept = _merge_continuations(kept, words, compounds)
    # After merging: a paragraph set line by line (wide leading) is judged whole, not line by line.
    kept = [p for p in kept if p.heading or p.size >= body_size - _SMALL_PRINT or _prose(p.text)]
    return _cut_front_matter(kept, title), two_column


def _drop_table_blocks(blocks: list[_Block]) -> list[_Block]:
    """Blocks that are mostly table rows: lines sharing a baseline with two or more other text pieces.

    Body text has at most two pieces per baseline (one per column); a table row has a cell per column.
    """
    lines = [(ln, b) for b, block in enumerate(blocks) for ln in block.lines if ln.horizontal]
    if len(lines) < 6:
        return blocks
    lines.sort(key=lambda item: item[0].y1)
    in_row: set[int] = set()
    i = 0
    while i < len(lines):
        j = i
        base = lines[i][0].y1
        while j < len(lines) and lines[j][0].y1 - base < 2.0:
            j += 1
        row = sorted((lines[k][0] for k in range(i, j)), key=lambda ln: ln.x0)
        pieces = 1
        for left, right in zip(row, row[1:], strict=False):
            if right.x0 - left.x1 > 1.5 * max(left.size, right.size):
                pieces += 1
        if pieces >= 3:
            in_row.update(id(lines[k][0]) for k in range(i, j))
        i = j
    if not in_row:
        return blocks
    row_chars = [sum(len(ln.text) for ln in block.lines if id(ln) in in_row) for block in blocks]
    if sum(row_chars) >= _TABLE_PAGE_SHARE * sum(b.chars for b in blocks):
        # A page that is one big table: its multi-line cells do not line up row by row; keep only prose.
        return [b for b in blocks if _prose_block(b)]
    return [b for b, rows in zip(blocks, row_chars, strict=True) if rows < _TABLE_ROW_SHARE * b.chars]


def _prose_block(block: _Block) -> bool:
    """A block of running text: long, mostly letters, in lines of a column's width (cells are narrower)."""
    text = " ".join(ln.text for ln in block.lines)
    letters = sum(ch.isalpha() for ch in text)
    return (
        len(text) >= _PROSE_MIN_CHARS
        and letters >= 0.6 * len(text)
        and len(text) / len(block.lines) >= _PROSE_LINE_CHARS
    )


def _prose(text: str) -> bool:
    """Running text: long enough and ending like a sentence, or long (cut by a column or page break)."""
    return len(text) >= _PROSE_MIN_CHARS and (
        text.rstrip()[-1] in _TERMINAL + ")" or len(text) >= 1.5 * _PROSE_MIN_CHARS
    )


def _furniture(para: _Para, captions: bool) -> bool:
    """Journal furniture (licence, dates, correspondence) and, unless kept, captions: not body text."""
    text = para.text
    if not captions and _CAPTION.match(text):
        return True
    return len(text) < 700 and _FURNITURE.search(text) is not None


def _cut_front_matter(paras: list[_Para], title: str | None) -> list[_Para]:
    """On page 1, drop what comes before the abstract (authors, affiliations, dates), except the title."""
    start = None
    for i, para in enumerate(paras):
        if para.page > 0:
            break
        key = _SPACES.sub("", para.text).lower().rstrip(":.")
        first_word = para.text.split(None, 1)[0].lower().rstrip(":.")
        if (
            key in _ABSTRACT_WORDS
            or (first_word in _ABSTRACT_WORDS and len(para.text) >= 2 * _PROSE_MIN_CHARS)
            or (not para.heading and _prose(para.text) and len(para.text) >= 2 * _PROSE_MIN_CHARS)
        ):
            start = i
            break
    if not start:
        return paras
    title_words = set(_WORDS.findall((title or "").lower()))

    def keep(para: _Para) -> bool:
        words = set(_WORDS.findall(para.text.lower()))
        if title_words and words <= title_words:
            return True  # the title, perhaps over several lines
        # Sentences stay (a guideline's opening lines); names, affiliations and labels do not end like one.
        return len(para.text) >= _SENTENCE_MIN_CHARS and para.text[-1] in _TERMINAL

    return [p for p in paras[:start] if keep(p)] + paras[start:]


def _check_garbled(raw: str, visible: int) -> None:
    """Fonts without a Unicode map give control, private-use or symbol characters instead of letters."""
    letters = bad = 0
    for ch in raw:
        if ch.isalpha():
            letters += 1
        elif ch == "\ufffd" or (not ch.isspace() and unicodedata.category(ch) in ("Cc", "Co", "Cs", "Cn")):
            bad += 1
    if letters < _GARBLED_MIN_LETTERS * visible or bad > _GARBLED_MAX_BAD * visible:
        raise Rejection(
            "pdf_garbled",
            f"text is mostly not letters ({letters} letters, {bad} unmapped of {visible} characters)",
        )


def _clean(text: str) -> str:
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
            continue  # a soft hyphen only matters at the end of a line, where _join reads it
        else:
            out.append(ch)
    return "".join(out)


def _repair_th_ligature(pages: list[_Page]) -> None:
    """Restore "Th" where a font maps its "Th" ligature to "T" ("Te results", "Tese"), seen in the document.

    Only when the document shows the fault (the non-word "Te" several times), and only for words whose "th"
    form the document itself uses while the "t" form it does not.
    """
    lines = [line for page in pages for block in page.blocks for line in block.lines]
    if sum(len(_TE_WORD.findall(line.text)) for line in lines) < _TH_EVIDENCE:
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
    centre = (line.y0 + line.y1) / 2
    if page.height * _MARGIN < centre < page.height * (1 - _MARGIN):
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
            out.append(_Block.around(lines))
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
    if left_chars < _COLUMN_MIN * total or right_chars < _COLUMN_MIN * total:
        return sorted(blocks, key=lambda b: (round(b.y0), b.x0)), 0
    # A back-matter heading ("REFERENCES") in the left column across from a gap in the right one starts a
    # band of its own (Frontiers sets the references below both columns): both columns above it come first.
    # In the right column no such care is needed: the left column is read before it anyway.
    for b in list(left):
        if _is_back_matter_heading(b) and _gap_across(right, b.y0, 1.5 * (b.y1 - b.y0)):
            left.remove(b)
            full.append(b)
    full.sort(key=lambda b: b.y0)

    def band(block: _Block) -> int:
        centre = (block.y0 + block.y1) / 2
        return sum(1 for f in full if f.y0 <= centre)

    ordered: list[_Block] = []
    for i in range(len(full) + 1):
        ordered.extend(sorted((b for b in left if band(b) == i), key=lambda b: b.y0))
        ordered.extend(sorted((b for b in right if band(b) == i), key=lambda b: b.y0))
        if i < len(full):
            ordered.append(full[i])
    return ordered, 1


def _gap_across(column: list[_Block], y: float, min_gap: float) -> bool:
    """Whether a column has blocks above y and an empty stretch of at least min_gap around y."""
    above = [b.y1 for b in column if b.y1 <= y + min_gap / 2]
    if not above or any(b.y0 < y < b.y1 for b in column):
        return False
    below = [b.y0 for b in column if b.y0 >= y - min_gap / 2]
    return (min(below) if below else math.inf) - max(above) >= min_gap


def _is_back_matter_heading(block: _Block) -> bool:
    """A one-line block that is a back-matter heading (References, Acknowledgements, ...)."""
    if len(block.lines) != 1:
        return False
    key = _SPACES.sub("", block.lines[0].text).lower().replace("’", "'")
    return len(key) < 40 and _BACK_MATTER.match(key) is not None


def _is_heading(line: _Line, body_size: float) -> bool:
    """Short bold or larger-than-body lines: section headings, titles, run-in labels on their own line."""
    if len(line.text) > 150 or not any(ch.isalpha() for ch in line.text):
        return False
    return line.bold or line.size >= body_size + 1.5


def _same_row(prev: _Line, line: _Line) -> bool:
    """Whether a line continues the previous one on the same row (a font change, a superscript)."""
    return line.y0 < prev.y1 - 0.3 * (prev.y1 - prev.y0) and line.x0 >= prev.x1 - 0.5 * line.size


def _paragraphs(block: _Block, body_size: float) -> list[_Para]:
    """Split a block into paragraphs at headings and at vertical gaps larger than a line's height."""
    paras: list[_Para] = []
    prev: _Line | None = None
    for line in block.lines:
        heading = _is_heading(line, body_size)
        if prev is None:
            paras.append(_Para([line], heading))
        else:
            same_row = _same_row(prev, line)
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
            first, rest = head[-1], tail[0]
            if rest in ("and", "or", "to"):
                return left + " " + right  # "short- and long-term"
            # "anti-\ninflammatory" stays hyphenated when the document writes it so elsewhere.
            if f"{first}-{rest}" in compounds and first + rest not in words:
                return left + right
            return left[:-1] + right
        return left + right  # "IL-" + "1β", "Bcl-" + "2"
    return left + " " + right


def _join_lines(lines: list[_Line], words: set[str], compounds: set[str]) -> str:
    """A paragraph's lines as one string of running text."""
    text = ""
    prev: _Line | None = None
    for line in lines:
        piece = _SPACES.sub(" ", line.text).strip()
        if prev is not None and _same_row(prev, line) and line.x0 - prev.x1 < 0.15 * line.size:
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
            prev, start = out[-1].text, para.text[0]
            # "... were women, and" + "38% had ..." continues; "1. Offer ..." starts a list item.
            if prev[-1] not in _TERMINAL and (
                start.islower() or (start.isdigit() and not _LIST_ITEM.match(para.text))
            ):
                out[-1].text = _join(prev, para.text, words, compounds)
                continue
        out.append(para)
    return out


def _cut_back_matter(paras: list[_Para]) -> tuple[list[_Para], str | None]:
    """Drop everything from the back matter's first heading on, when it comes near the end.

    Acknowledgements, funding and the like: the first such heading. "References": the last one, because
    the word also heads table columns ("References" of the studies a review table lists).
    """
    total = sum(len(p.text) for p in paras)
    offset = 0
    cuts: list[tuple[int, str]] = []
    last_refs: tuple[int, str] | None = None
    for i, para in enumerate(paras):
        if offset >= _CUT_FROM * total:
            for candidate in (para.first.text, para.first.lead):
                key = _SPACES.sub("", candidate).lower().replace("’", "'")
                match = _BACK_MATTER.match(key) if key and len(key) < 40 else None
                if match:
                    heading = (i, _SPACES.sub(" ", candidate).strip())
                    if match.group(1) in _REFERENCE_WORDS:
                        last_refs = heading
                    elif not cuts:
                        cuts.append(heading)
                    break
        offset += len(para.text)
    if last_refs:
        cuts.append(last_refs)
    if not cuts:
        return paras, None
    i, heading = min(cuts)
    return paras[:i], heading


def _doi(metadata: dict[str, str], first: _Page) -> str | None:
    """The DOI from the metadata, else the first one printed on page 1."""
    candidates = [metadata.get(k, "") for k in ("doi", "subject", "keywords", "title")]
    candidates.append(" ".join(line.text for block in first.blocks for line in block.lines))
    for text in candidates:
        match = _DOI.search(text or "")
        if match:
            doi = match.group(1).rstrip(".,;:]}'\"”’")
            # "(doi:10.1000/xyz)" ends with the sentence's bracket; "10.1002/(SICI)..." keeps its own.
            while doi.endswith(")") and doi.count(")") > doi.count("("):
                doi = doi[:-1].rstrip(".,;:")
            return doi
    return None


def _title(metadata: dict[str, str], pages: list[_Page]) -> str | None:
    """The metadata title when page 1 confirms it, else the largest-font text on page 1."""
    first = pages[0]
    meta_title = _SPACES.sub(" ", _clean(html.unescape(metadata.get("title", "")))).strip()
    page_words = set(
        _WORDS.findall(" ".join(line.text for block in first.blocks for line in block.lines).lower())
    )
    if meta_title and not _FAKE_TITLE.search(meta_title):
        tokens = _WORDS.findall(meta_title.lower())
        # File names, job numbers and journal names fail this: the real title is printed on page 1.
        if len(tokens) >= 2 and sum(t in page_words for t in tokens) >= 0.8 * len(tokens):
            return meta_title
    # Journal names are often set larger than the title; they also appear in a margin with the year.
    cited = [
        key
        for page in pages
        for block in page.blocks
        for line in block.lines
        if (key := _margin_key(line, page)) and _YEAR.search(line.text)
    ]
    best: tuple[float, int, int] | None = None
    for b, block in enumerate(first.blocks):
        for i, line in enumerate(block.lines):
            text = _SPACES.sub(" ", line.text).strip()
            lower = text.lower()
            if (
                sum(ch.isalpha() for ch in text) < 4
                or _ARTICLE_LABEL.match(text)
                or _JOURNAL.search(text)
                or (not _YEAR.search(text) and any(lower in key for key in cited))
            ):
                continue
            if best is None or line.size > best[0] + 0.1:
                best = (line.size, b, i)
    if best is None:
        return None
    size, b, i = best
    lines = [first.blocks[b].lines[i]]
    for line in first.blocks[b].lines[i + 1 :]:
        if abs(line.size - size) > 0.5:
            break
        lines.append(line)
    else:
        # A title wrapped over two lines is sometimes two blocks: follow blocks set in the same size below.
        for block in first.blocks[b + 1 :]:
            line = block.lines[0]
            if abs(line.size - size) > 0.5 or not 0 <= line.y0 - lines[-1].y1 < size:
                break
            lines.extend(ln for ln in block.lines if abs(ln.size - size) <= 0.5)
    title = _SPACES.sub(" ", " ".join(line.text.strip() for line in lines)).strip()
    return title[:300] or None


def _tabular(text: str) -> bool:
    """A table cell or row of numbers: mostly digits and symbols, and not a sentence's end."""
    visible = [ch for ch in text if not ch.isspace()]
    letters = sum(ch.isalpha() for ch in visible)
    return letters < _TABLE_MAX_LETTERS * len(visible) and not text.endswith(".")
