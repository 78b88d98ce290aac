"""Hand-written PDFs for the PDF tests: hostile files built byte by byte, pages with a given layout."""

from __future__ import annotations

import importlib.util
import zlib
from pathlib import Path
from types import ModuleType

import pymupdf

from tests.conftest import REPO


def _load_make_pdfs() -> ModuleType:
    # pipelines/ is not a package: load the script by path, as a user would run it.
    spec = importlib.util.spec_from_file_location("make_pdfs", REPO / "pipelines" / "demo" / "make_pdfs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_pdfs = _load_make_pdfs()
minimal_pdf = make_pdfs.pdf_file  # a PDF file from numbered object bodies, object 1 the catalog


def stream(content: bytes, entries: bytes = b"") -> bytes:
    """A stream object's body with its /Length."""
    return b"<< /Length %d %s >>\nstream\n" % (len(content), entries) + content + b"\nendstream"


_ONE_PAGE = [
    b"<< /Type /Catalog /Pages 2 0 R >>",
    b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
    b"/Resources << /Font << /F1 5 0 R >> /XObject << /X 6 0 R >> >> >>",
]
_FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def endless_page(path: Path, depth: int = 40) -> Path:
    """A 3 KB page that draws a form that draws the next form twice, `depth` deep: 2**depth strokes.

    MuPDF walks all of them inside one `get_text` call (about 100,000 a second), so at depth 40 the call
    never returns: only killing the process ends it.
    """
    forms = []
    for level in range(depth):
        if level == depth - 1:
            forms.append(stream(b"0 0 m 1 1 l S", b"/Type /XObject /Subtype /Form /BBox [0 0 612 792]"))
        else:
            forms.append(
                stream(
                    b"/X Do /X Do",
                    b"/Type /XObject /Subtype /Form /BBox [0 0 612 792] "
                    b"/Resources << /XObject << /X %d 0 R >> >>" % (7 + level),
                )
            )
    content = stream(b"BT /F1 12 Tf 72 720 Td (Start) Tj ET /X Do")
    path.write_bytes(minimal_pdf([*_ONE_PAGE, content, _FONT, *forms]))
    return path


def huge_string_page(path: Path, megabytes: int) -> Path:
    """A page whose compressed content stream holds one string of `megabytes` MB (about 1 KB per MB here).

    MuPDF's lexer keeps the whole string in a buffer it doubles as it grows: reading the page allocates
    more than twice that much. The megabyte of "a" is deflated once and its block repeated (a full flush
    makes each block stand alone), so building the file takes milliseconds.
    """
    head, tail, chunk = b"BT /F1 12 Tf 72 700 Td (", b") Tj ET", b"a" * (1 << 20)
    packer = zlib.compressobj(1, zlib.DEFLATED, -15)
    first = packer.compress(head) + packer.flush(zlib.Z_FULL_FLUSH)
    block = packer.compress(chunk) + packer.flush(zlib.Z_FULL_FLUSH)
    last = packer.compress(tail) + packer.flush()
    checksum = zlib.adler32(head)
    for _ in range(megabytes):
        checksum = zlib.adler32(chunk, checksum)
    checksum = zlib.adler32(tail, checksum)
    data = b"\x78\x01" + first + block * megabytes + last + checksum.to_bytes(4, "big")
    content = stream(data, b"/Filter /FlateDecode")
    page = _ONE_PAGE[2].replace(b" /XObject << /X 6 0 R >>", b"")
    path.write_bytes(minimal_pdf([*_ONE_PAGE[:2], page, content, _FONT]))
    return path


LETTER = [
    "Northfield General Practice, 12 March 2024.",
    "Thank you for seeing Mr Example, aged 67, who reports",
    "increasing breathlessness on exertion over three months.",
    "He has mild ankle swelling and his weight has risen by",
    "four kilograms. I would be grateful for your assessment.",
]


def scan(
    path: Path, lines: list[str] = LETTER, *, turn: int = 0, skew: float = 0.0, size: float = 11.0
) -> Path:
    """An image-only page, as a scanner makes it: the lines rendered at 150 dpi in grey, then placed on a
    page turned by `turn` degrees (0, 90, 180, 270) and skewed by `skew` degrees; no text layer."""
    with pymupdf.open() as source:
        page = source.new_page(width=420, height=40 + 18 * len(lines))
        for i, line in enumerate(lines):
            page.insert_text((20, 30 + 18 * i), line, fontsize=size, fontname="helv")
        pixmap = page.get_pixmap(matrix=pymupdf.Matrix(150 / 72, 150 / 72).prerotate(skew), colorspace="gray")
    doc = pymupdf.open()
    width, height = pixmap.width * 72 / 150, pixmap.height * 72 / 150
    if turn in (90, 270):
        width, height = height, width
    page = doc.new_page(width=width + 60, height=height + 60)
    page.insert_image(pymupdf.Rect(30, 30, 30 + width, 30 + height), pixmap=pixmap, rotate=turn)
    doc.save(path)
    return path


def curves(path: Path, lines: list[str] = LETTER) -> Path:
    """A page whose text is drawn as vector outlines (no font, no text layer), via PyMuPDF's SVG export."""
    with pymupdf.open() as source:
        page = source.new_page(width=420, height=40 + 18 * len(lines))
        for i, line in enumerate(lines):
            page.insert_text((20, 30 + 18 * i), line, fontsize=11, fontname="helv")
        svg = page.get_svg_image(text_as_path=True)
    with pymupdf.open(stream=svg.encode(), filetype="svg") as drawing:
        path.write_bytes(drawing.convert_to_pdf())
    return path


def unmapped_font(path: Path, lines: list[str] = LETTER) -> Path:
    """Text in an embedded composite font whose /ToUnicode map was removed: extraction gives glyph ids."""
    doc = pymupdf.open()
    page = doc.new_page(width=420, height=40 + 18 * len(lines))
    page.insert_font(fontname="F0", fontbuffer=pymupdf.Font("tiro").buffer)
    for i, line in enumerate(lines):
        page.insert_text((20, 30 + 18 * i), line, fontsize=11, fontname="F0")
    for xref in range(1, doc.xref_length()):
        if doc.xref_get_key(xref, "Subtype")[1] == "/Type0":
            doc.xref_set_key(xref, "ToUnicode", "null")
    doc.save(path)
    return path
