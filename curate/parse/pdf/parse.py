"""parse_pdf: a PDF file to a ParsedDoc (text, title, meta), or a Rejection with a pdf_* reason code."""

from __future__ import annotations

import os
from collections.abc import Callable

import pymupdf

from curate.parse.pdf import layout, matter, repair
from curate.parse.pdf.limits import PdfLimits, check_ocr_mode
from curate.parse.pdf.model import Page, Para
from curate.parse.pdf.read import message, read_pages
from curate.schema import ParsedDoc, Rejection

# MuPDF prints every repaired xref and bad content stream to stderr: one line per problem per file floods
# worker logs. Problems still surface as Rejection (or are harmless), so the chatter is switched off.
pymupdf.TOOLS.mupdf_display_errors(False)
pymupdf.TOOLS.mupdf_display_warnings(False)

_NO_TEXT_CHARS_PER_PAGE = 20  # fewer visible characters per page than this, on image pages, is a scan
DEFAULT_LIMITS = PdfLimits()


def parse_pdf(
    path: str | os.PathLike,
    limits: PdfLimits = DEFAULT_LIMITS,
    *,
    captions: bool = False,
    ocr: str = "auto",
    on_ocr_page: Callable[[float], None] | None = None,
) -> ParsedDoc:
    """Extract a PDF's body text, title and metadata, or raise Rejection with a pdf_* reason code.

    `limits.max_seconds` bounds the time spent reading pages (checked between pages: `pdf_timeout`); pages
    without a usable text layer are read by OCR (`ocr`: auto, off or force), each adding at most
    `limits.ocr_page_seconds`, announced first through `on_ocr_page` (the sandbox extends its deadline).
    `captions` keeps figure and table captions, which are dropped by default.
    """
    check_ocr_mode(ocr)
    name = os.fspath(path)
    pymupdf.TOOLS.reset_mupdf_warnings()  # what MuPDF reports while opening tells a damaged file apart
    try:
        doc = pymupdf.open(name, filetype="pdf")
    except Exception as exc:  # noqa: BLE001 - every way of failing to open is the same verdict
        # The record already says which file; the detail keeps MuPDF's words without the full path.
        detail = message(exc).replace(name, os.path.basename(name))
        raise Rejection("pdf_broken", f"cannot open: {detail}") from None
    try:
        with doc:
            pages, metadata, failed = read_pages(doc, limits.max_pages, limits.max_seconds)
    finally:
        # MuPDF keeps every warning in a process-wide store; clear it so long workers do not grow.
        pymupdf.TOOLS.reset_mupdf_warnings()
    return _assemble(pages, metadata, failed, captions)


def _assemble(pages: list[Page], metadata: dict[str, str], failed: int, captions: bool) -> ParsedDoc:
    """Quality checks, then body text, title and metadata from the pages' positioned lines."""
    raw = "".join(line.text for page in pages for block in page.blocks for line in block.lines)
    visible = sum(1 for ch in raw if not ch.isspace())
    n = len(pages)
    if visible == 0:
        raise Rejection("pdf_no_text", "no text layer (scanned or text drawn as curves)")
    image_pages = sum(1 for p in pages if p.images)
    if visible < _NO_TEXT_CHARS_PER_PAGE * n and image_pages >= 0.8 * n:
        raise Rejection("pdf_no_text", f"only {visible} characters of text on {n} image page(s)")
    repair.check_garbled(raw, visible)

    for page in pages:
        for block in page.blocks:
            for line in block.lines:
                line.text = repair.clean(line.text)
                line.lead = repair.clean(line.lead)

    repair.repair_th_ligature(pages)
    body_size = layout.body_size(pages)
    running = layout.running_lines(pages)
    title = matter.title(metadata, pages)
    paras, two_column = _body(pages, running, body_size, title, captions)
    if not paras and running:
        # Every line repeats on every page (a one-line document copied onto several pages): keep them.
        paras, two_column = _body(pages, set(), body_size, title, captions)
    paras, cut = matter.cut_back_matter(paras)
    text = "\n\n".join(p.text for p in paras)
    if not text:
        raise Rejection("pdf_no_text", "no body text left after removing headers, footers and tables")

    meta: dict[str, object] = {"pages": n, "chars_per_page": round(len(text) / n)}
    doi = matter.doi(metadata, pages[0])
    if doi:
        meta["doi"] = doi
    first_page = " ".join(line.text for block in pages[0].blocks for line in block.lines)
    for key, pattern in (("pmcid", matter.PMCID), ("pmid", matter.PMID)):
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
    pages: list[Page], running: set[str], body_size: float, title: str | None, captions: bool
) -> tuple[list[Para], int]:
    """Paragraphs in reading order without margins and number tables, and the count of two-column pages."""
    two_column = 0
    paras: list[Para] = []
    for number, page in enumerate(pages):
        blocks = layout.drop_table_blocks(layout.strip_margins(page, running))
        ordered, columns = layout.reading_order(page, blocks)
        two_column += columns
        for block in ordered:
            for para in layout.paragraphs(block, body_size):
                para.page = number
                paras.append(para)
    words, compounds = layout.vocabulary(paras)
    for para in paras:
        para.text = layout.join_lines(para.lines, words, compounds)
    kept = [p for p in paras if p.text and not layout.tabular(p.text) and not matter.furniture(p, captions)]
    kept = layout.merge_continuations(kept, words, compounds)
    # After merging: a paragraph set line by line (wide leading) is judged whole, not line by line.
    kept = [p for p in kept if p.heading or p.size >= body_size - layout.SMALL_PRINT or layout.prose(p.text)]
    return matter.cut_front_matter(kept, title), two_column
