"""PDF to clean text with PyMuPDF: reading order, running headers/footers, hyphenation, references cut, OCR.

Positioned text blocks from `page.get_text("dict")` (or from OCR for pages without a usable text layer), a
two-column split around the middle of the text area, repeated margin lines dropped, paragraphs rebuilt from
lines, and every way a file can be unusable turned into a `Rejection` with a reason code:

- `pdf_broken`: not a PDF, truncated, or its pages cannot be read;
- `pdf_encrypted`: still locked after trying the empty password;
- `pdf_empty`: zero pages;
- `pdf_too_many_pages`: more pages than `max_pages`;
- `pdf_too_large`: more bytes than `max_bytes` (checked by the stage before opening);
- `pdf_no_text`: no text layer and nothing OCR could read (blank pages, or OCR off);
- `pdf_garbled`: text whose characters are mostly not letters (fonts without a Unicode map) and OCR off;
- `pdf_low_confidence`: the only text is OCR output the engine itself does not trust (noise, drawings);
- `pdf_timeout`: reading the pages took longer than the budget;
- `pdf_memory` / `pdf_crashed`: the sandboxed worker ran out of memory or died.

Besides headers and footers, figure/table captions (by default), tables (lines that share a baseline with
two or more other pieces of text), journal furniture (licence, dates, correspondence, affiliations) and page
1's author block before the abstract are left out: the text is what a reader reads as the article.

Modules: `limits` (PdfLimits), `read` (opening, text layer), `ocr` (pages without one), `layout` (reading
order, margins, tables, paragraphs), `repair` (Unicode, ligatures, garbage), `matter` (title, front and back
matter, furniture), `parse` (parse_pdf), `sandbox` (the pool of sandboxed workers).
"""

from __future__ import annotations

from typing import Any

from curate.parse.pdf.limits import OCR_MODES, PdfLimits

__all__ = ["OCR_MODES", "PdfLimits", "PdfSandbox", "parse_pdf", "parse_pdf_isolated"]


def __getattr__(name: str) -> Any:
    """The parser on first use: importing the limits (as the stage and CLI do) does not load PyMuPDF."""
    if name == "parse_pdf":
        from curate.parse.pdf.parse import parse_pdf

        return parse_pdf
    if name in ("PdfSandbox", "parse_pdf_isolated"):
        from curate.parse.pdf import sandbox

        return getattr(sandbox, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
