"""parse_pdf: a PDF file to a ParsedDoc (text, title, meta), or a Rejection with a pdf_* reason code."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import pymupdf

import curate.parse.pdf.layout as layout
import curate.parse.pdf.matter as matter
import curate.parse.pdf.ocr as ocr
import curate.parse.pdf.repair as repair
from curate.parse.pdf.limits import PdfLimits, check_ocr_mode
from curate.parse.pdf.model import Page, Para
from curate.parse.pdf.ocr import OcrResult
from curate.parse.pdf.read import message, out_of_memory, read_pages
from curate.schema import ParsedDoc, Rejection

# MuPDF prints every repaired xref and bad content stream to stderr: one line per problem per file floods
# worker logs. Problems still surface as Rejection (or are harmless), so the chatter is switched off.
pymupdf.TOOLS.mupdf_display_errors(False)
pymupdf.TOOLS.mupdf_display_warnings(False)

_NO_TEXT_CHARS_PER_PAGE = 20  # a page with fewer visible characters has no usable text layer
LOW_CONFIDENCE = 50  # OCR of a page with a lower mean word confidence is noise (a photo, a drawing)
DEFAULT_LIMITS = PdfLimits()


def parse_pdf(
    path: str | os.PathLike,
    limits: PdfLimits = DEFAULT_LIMITS,
    *,
    captions: bool = False,
    ocr: str = "auto",
    ocr_languages: str = "eng",
    on_ocr_page: Callable[[float], None] | None = None,
) -> ParsedDoc:
    """Extract a PDF's body text, title and metadata, or raise Rejection with a pdf_* reason code.

    `limits.max_seconds` bounds the time spent reading pages (checked between pages: `pdf_timeout`). Pages
    without a usable text layer are read by OCR (`ocr`: auto; off: never; force: every page with ink) in
    `ocr_languages` ('eng', 'eng+fra'), each for at most `limits.ocr_page_seconds`, announced first through
    `on_ocr_page` (the sandbox extends its deadline). `captions` keeps figure and table captions.
    """
    check_ocr_mode(ocr)
    name = os.fspath(path)
    pymupdf.TOOLS.reset_mupdf_warnings()  # what MuPDF reports while opening tells a damaged file apart
    try:
        doc = pymupdf.open(name, filetype="pdf")
    except Exception as exc:  # noqa: BLE001 - every way of failing to open is the same verdict
        if out_of_memory(exc):
            raise
        # The record already says which file; the detail keeps MuPDF's words without the full path.
        detail = message(exc).replace(name, os.path.basename(name))
        raise Rejection("pdf_broken", f"cannot open: {detail}") from None
    try:
        with doc:
            pages, metadata, failed = read_pages(doc, limits.max_pages, limits.max_seconds)
            report = _read_by_ocr(doc, pages, ocr, ocr_languages, limits, on_ocr_page)
    finally:
        # MuPDF keeps every warning in a process-wide store; clear it so long workers do not grow.
        pymupdf.TOOLS.reset_mupdf_warnings()
    return _assemble(pages, metadata, failed, captions, report)


@dataclass
class _OcrReport:
    """What OCR did for one document, for its meta and for the reason when nothing is left to read."""

    wanted: list[int] = field(default_factory=list)  # pages (0-based) that needed OCR
    unavailable: str | None = None
    read: dict[int, OcrResult] = field(default_factory=dict)  # pages whose text came from OCR
    low_confidence: dict[int, float] = field(default_factory=dict)  # pages whose OCR was not trusted
    timed_out: list[int] = field(default_factory=list)
    languages: str = "eng"

    def meta(self) -> dict[str, object]:
        """The document's `meta["ocr"]`: pages (1-based), engine, confidence, turned and skewed pages."""
        words = sum(r.words for r in self.read.values())
        out: dict[str, object] = {
            "pages": [i + 1 for i in sorted(self.read)],
            "engine": ocr.engine_version(),
            "languages": self.languages,
            "mean_confidence": round(
                sum(r.confidence * r.words for r in self.read.values()) / max(1, words), 1
            ),
            "words": words,
        }
        rotated = {str(i + 1): r.rotation for i, r in sorted(self.read.items()) if r.rotation}
        skewed = {
            str(i + 1): round(r.skew, 1) for i, r in sorted(self.read.items()) if abs(r.skew) >= ocr.MIN_SKEW
        }
        for key, value in (
            ("rotated", rotated),
            ("deskewed", skewed),
            ("low_confidence_pages", {str(i + 1): round(c, 1) for i, c in self.low_confidence.items()}),
            ("timed_out_pages", [i + 1 for i in self.timed_out]),
        ):
            if value:
                out[key] = value
        return out

    def why_nothing(self) -> str:
        """What OCR contributed to a document left without text, for the rejection's detail."""
        if not self.wanted:
            return ""
        if self.unavailable:
            return f"; OCR unavailable: {self.unavailable}"
        if self.timed_out:
            return f"; OCR ran out of time (ocr_page_seconds) on {len(self.timed_out)} page(s)"
        return f"; OCR of {len(self.wanted)} page(s) found no text it trusts"


def _read_by_ocr(
    doc: pymupdf.Document,
    pages: list[Page],
    mode: str,
    languages: str,
    limits: PdfLimits,
    on_ocr_page: Callable[[float], None] | None,
) -> _OcrReport:
    """OCR the pages that need it (see _needs_ocr) and put what it read in their place."""
    report = _OcrReport(languages=languages)
    if mode == "off":
        return report
    unusable = {i: why for i, page in enumerate(pages) if (why := _unusable(page, mode))}
    # In a document whose text layer is good, a page with no text at all holds a figure or a table set as
    # an image (PMC has whole pages of them): the text path leaves tables and figures out, so does OCR.
    # A scan has no text on most pages; a page with unmapped glyphs is text whatever the rest is.
    scanned = 2 * len(unusable) >= len(pages)
    report.wanted = [
        i for i, why in unusable.items() if (scanned or why == "garbled") and _has_ink(doc, i, pages[i])
    ]
    if not report.wanted:
        return report
    report.unavailable = ocr.unavailable(languages)
    if report.unavailable:
        return report
    for i in report.wanted:
        if on_ocr_page is not None:
            on_ocr_page(limits.ocr_page_seconds)
        result = ocr.ocr_page(doc.load_page(i), languages, limits.ocr_page_seconds)
        if result.timed_out:
            report.timed_out.append(i)
        if result.words and result.confidence < LOW_CONFIDENCE:
            report.low_confidence[i] = result.confidence
        elif result.page.blocks:
            result.page.images = pages[i].images
            pages[i] = layout.upright(result.page)
            report.read[i] = result
            continue
        if mode == "auto":
            pages[i].blocks = []  # the text layer that sent the page to OCR is unusable: nothing to keep
    return report


def _unusable(page: Page, mode: str) -> str | None:
    """Why a page's text layer cannot be used ("none", "garbled"; every page under force), else None."""
    if page.width == 0:
        return None  # MuPDF could not read the page at all
    if mode == "force":
        return "forced"
    raw = "".join(line.text for line in page.lines())
    visible = sum(not ch.isspace() for ch in raw)
    if visible < _NO_TEXT_CHARS_PER_PAGE:
        return "none"
    return "garbled" if repair.garbled(raw, numbers=True) or 2 * page.unmapped >= visible else None


def _has_ink(doc: pymupdf.Document, number: int, page: Page) -> bool:
    """Whether anything is drawn on the page: images, vector paths or glyphs."""
    if page.images:
        return True
    try:
        return any(kind != "ignore-text" for kind, _ in doc.load_page(number).get_bboxlog())
    except Exception:  # noqa: BLE001 - a page MuPDF cannot draw has nothing to read
        return False


def _assemble(
    pages: list[Page], metadata: dict[str, str], failed: int, captions: bool, report: _OcrReport
) -> ParsedDoc:
    """Quality checks, then body text, title and metadata from the pages' positioned lines."""
    raw = "".join(line.text for page in pages for block in page.blocks for line in block.lines)
    visible = sum(1 for ch in raw if not ch.isspace())
    n = len(pages)
    if visible == 0 and report.low_confidence:
        worst = ", ".join(f"page {i + 1}: {c:.0f}" for i, c in sorted(report.low_confidence.items())[:5])
        raise Rejection("pdf_low_confidence", f"OCR text too uncertain to keep (mean confidence {worst})")
    if visible == 0:
        raise Rejection(
            "pdf_no_text", "no text layer (scanned or text drawn as curves)" + report.why_nothing()
        )
    image_pages = sum(1 for p in pages if p.images)
    if not report.read and visible < _NO_TEXT_CHARS_PER_PAGE * n and image_pages >= 0.8 * n:
        raise Rejection(
            "pdf_no_text", f"only {visible} characters of text on {n} image page(s)" + report.why_nothing()
        )
    repair.check_garbled(raw)

    for page in pages:
        for block in page.blocks:
            for line in block.lines:
                line.text = repair.unspace(repair.clean(line.text))
                line.lead = repair.unspace(repair.clean(line.lead))

    repair.respace(pages)
    repair.repair_th_ligature(pages)
    body_size = layout.body_size(pages)
    running = layout.running_lines(pages)
    title = matter.title(metadata, pages)
    paras, two_column = _body(pages, running, body_size, title, captions)
    if not paras and running:
        # Every line repeats on every page (a one-line document copied onto several pages): keep them.
        paras, two_column = _body(pages, set(), body_size, title, captions)
    paras, cut = matter.cut_back_matter(paras, {i for i, page in enumerate(pages) if page.ocr})
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
    if report.read:
        meta["ocr"] = report.meta()
    elif report.timed_out or report.low_confidence:
        meta["ocr"] = report.meta()  # the pages OCR could not read are worth knowing about
    return ParsedDoc(text=text, title=title, meta=meta)


def _body(
    pages: list[Page], running: set[str], body_size: float, title: str | None, captions: bool
) -> tuple[list[Para], int]:
    """Paragraphs in reading order without margins and number tables, and the count of two-column pages."""
    two_column = 0
    paras: list[Para] = []
    for number, page in enumerate(pages):
        blocks = layout.drop_tables(layout.strip_margins(page, running), body_size)
        ordered, columns = layout.reading_order(page, blocks)
        two_column += columns
        # OCR gives paragraphs, not lines: only a text layer can come line by line, or double-spaced.
        for block in ordered if page.ocr else layout.rejoin_lines(ordered):
            for para in layout.paragraphs(block, body_size, spaced=not page.ocr):
                para.page = number
                paras.append(para)
    words, compounds = layout.vocabulary(paras)
    for para in paras:
        para.text = layout.join_lines(para.lines, words, compounds)
    kept = [p for p in paras if p.text and not layout.tabular(p.text)]
    kept = [p for p in (kept if captions else matter.drop_captions(kept)) if not matter.furniture(p)]
    kept = layout.merge_continuations(kept, words, compounds, body_size)
    # After merging: a paragraph set line by line (wide leading) is judged whole, not line by line.
    kept = layout.drop_small_print(kept, body_size)
    return matter.cut_front_matter(kept, title, typed=not pages[0].ocr), two_column
