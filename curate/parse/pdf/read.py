"""Reading a PDF with PyMuPDF: the checks on opening, then the positioned lines of each text layer."""

from __future__ import annotations

import itertools
import math
import re
import statistics
import time
from functools import cache

import numpy as np
import pymupdf

from curate.parse.pdf.layout import upright
from curate.parse.pdf.model import SPACES, Block, Line, Page
from curate.schema import Rejection

# "dict" without image blocks: with images PyMuPDF copies every image's bytes, which makes it ~3x slower.
_TEXT_FLAGS = pymupdf.TEXTFLAGS_DICT & ~pymupdf.TEXT_PRESERVE_IMAGES
_BOLD = 16  # span flag bit
_PALE = 0xF0  # text whose every colour channel is at least this is white on a white page
_DARK_SHARE = 0.3  # of a white span's rendered pixels not white: it stands on a ground (text is thinner)
_GROUND_DPI = 36  # resolution of the rendering that shows what white text stands on
_NOT_WHITE = 200  # a rendered grey level below this is ground (a band, a box, a picture), not paper
# Span char_flags bits (MuPDF's FZ_STEXT_FILLED, _STROKED, _CLIPPED): glyphs painted, outlined, or used as a
# clipping path (render mode 7). Invisible text (mode 3, a scan's OCR layer) has none of them.
_PAINTED = 16 | 32 | 64
_CLIPPED = 64
_LIGHT = 0x80  # text at least this light (in grey) may be the colour of a tinted page or box under it
_HIGH_BITS = 0x808080  # a colour without them has every channel under _LIGHT: neither pale nor light
_FLAT = 4  # grey levels: a span's box whose pixels all lie within this range shows none of its glyphs
_NOT_NAME = re.compile(r"#20|[\s\-_,]")
# TeX's Computer Modern maths fonts as some producers embed them: glyphs named after Latin-1 lookalikes
# ("equal" as "onequarter", the parentheses as "eth" and "Thorn"), or left at their TeX code (minus is 0,
# the braces "f" and "g"; the maths italic's slash is "="), and a ToUnicode map that repeats the names.
_TEX_MATH = {
    "texcmmathssymbols": str.maketrans(
        {"¼": "=", "½": "-", "þ": "+", "ð": "(", "Þ": ")", "\x00": "\u2212", "f": "{", "g": "}"}
    ),
    "texcmmathsitalic": str.maketrans({"=": "/"}),
}
_OUT_OF_MEMORY = ("malloc", "calloc", "realloc", "out of memory", "cannot allocate")
# Runs of letters longer than words ("BiologicalEffectsofMedicinal"), or long with a capital inside
# ("StatisticalAnalysis"), are words set without space characters: the line's glyph positions are read to
# find the gaps (only for such lines: glyph by glyph extraction costs twice the text's).
_GLUED = re.compile(r"[^\W\d_]{21,}|(?=[^\W\d_]{12})[^\W\d_]*[a-z][A-Z]")
# MuPDF makes a space of a gap wider than about 0.15 em; titles set tight leave 0.12 em between words and
# no space character, while kerning moves letters by up to 0.1 em. A gap this much wider (in em) than the
# line's usual gap and than the narrower of its neighbours (letter-spaced "F I G U R E" stays whole) is a
# space, inside a run of at least _GLUED_RUN characters without one.
_WORD_GAP = 0.1
_GLUED_RUN = 12
_ENDS_WORD = ".,;:!?)]}\u201d\u2019%"
_STARTS_WORD = "([{\u201c\u2018"


def message(exc: BaseException) -> str:
    """An exception as one short line (MuPDF messages can span lines)."""
    text = SPACES.sub(" ", str(exc)).strip() or type(exc).__name__
    return text[:200]


def out_of_memory(exc: BaseException) -> bool:
    """Whether an exception is a failed allocation (MuPDF's reach Python as RuntimeError "malloc failed")."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return any(word in text for word in _OUT_OF_MEMORY)


def read_pages(
    doc: pymupdf.Document, max_pages: int, max_seconds: float
) -> tuple[list[Page], dict[str, str], int]:
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
        raise Rejection("pdf_broken", f"cannot read: {message(exc)}") from None
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
    pages: list[Page] = []
    failed: list[str] = []
    deadline = time.monotonic() + max_seconds
    for number in range(count):
        if time.monotonic() > deadline:
            raise Rejection("pdf_timeout", f"read {number} of {count} pages in the {max_seconds:g} s allowed")
        try:
            page = doc.load_page(number)
            data = page.get_text("dict", flags=_TEXT_FLAGS)
            _drop_unseen(page, data)
            for block in data["blocks"]:
                for line in block.get("lines", ()):
                    if line["dir"] == (1.0, 0.0) and _glued(line):
                        _space_by_position(page, line)
            images = len(page.get_images(full=False))
            unmapped = _unmapped_chars(doc, page, data)
        except Exception as exc:  # noqa: BLE001 - one unreadable page should not lose the others
            if out_of_memory(exc):
                raise  # the memory limit, not a damaged page: the sandbox reports pdf_memory
            failed.append(message(exc))
            pages.append(Page(0.0, 0.0))
            continue
        pages.append(
            upright(Page(data["width"], data["height"], text_blocks(data), images, unmapped=unmapped))
        )
    if len(failed) == count:
        raise Rejection("pdf_broken", f"no page could be read: {failed[0]}")
    return pages, metadata, len(failed)


def _drop_unseen(page: pymupdf.Page, data: dict) -> None:
    """Remove the spans no reader sees: white text on a white page (figure titles hidden beside their
    captions, words for search engines), text in the colour of the tint under it, transparent text, and
    glyphs that only clip with nothing painted through them. White text on a dark band, box, image or
    shading stays, and so does invisible text (a scan's OCR layer)."""
    pale, doubtful = [], []
    for block in data["blocks"]:
        for line in block.get("lines", ()):
            for span in line["spans"]:
                if (
                    not span.get("color", 0) & _HIGH_BITS
                    and span.get("alpha", 255) == 255
                    and not span.get("char_flags", 0) & _CLIPPED
                ):
                    continue  # dark opaque text, the usual span, is told apart first: pages have thousands
                if _pale(span):
                    pale.append(span)
                elif _doubtful(span):
                    doubtful.append(span)
    if not pale and not doubtful:
        return  # the usual page: nothing is rendered
    # One coarse rendering answers for every kind of ground (fills, strokes, images, shadings, patterns).
    pixmap = page.get_pixmap(dpi=_GROUND_DPI, colorspace=pymupdf.csGRAY, alpha=False)
    rows = np.frombuffer(pixmap.samples, dtype=np.uint8).reshape(pixmap.height, pixmap.stride)
    grey = rows[:, : pixmap.width]
    scale = _GROUND_DPI / 72

    def box(span: dict) -> np.ndarray:
        x0, y0, x1, y1 = span["bbox"]
        return grey[int(y0 * scale) : math.ceil(y1 * scale), int(x0 * scale) : math.ceil(x1 * scale)]

    # White text is seen where it stands on a ground; for the doubtful, what was painted does not matter,
    # only whether the glyphs show: their box is of one level (thin light glyphs, yellow at 7 pt, still
    # leave a few darker pixels at this resolution).
    unseen = {id(s) for s in pale if (b := box(s)).size and (b < _NOT_WHITE).mean() < _DARK_SHARE}
    unseen |= {id(s) for s in doubtful if (b := box(s)).size and int(b.max()) - int(b.min()) < _FLAT}
    for block in data["blocks"]:
        for line in block.get("lines", ()):
            line["spans"] = [s for s in line["spans"] if id(s) not in unseen]


def _pale(span: dict) -> bool:
    """Text painted white, or as good as white (MuPDF gives invisible text, a scan's OCR layer, as black)."""
    color = span.get("color", 0)
    return all((color >> shift) & 0xFF >= _PALE for shift in (16, 8, 0))


def _doubtful(span: dict) -> bool:
    """Text painted light, see-through or only as a clip: whether it shows depends on what lies under it.

    Only such spans send their page to be rendered: dark opaque text is the usual page's, and costs nothing.
    """
    flags = span.get("char_flags", 16)
    if not flags & _PAINTED:
        return False  # invisible text is meant to be read (the OCR layer over a scan)
    color = span.get("color", 0)
    light = 0.3 * (color >> 16 & 0xFF) + 0.59 * (color >> 8 & 0xFF) + 0.11 * (color & 0xFF) >= _LIGHT
    return light or span.get("alpha", 255) < 255 or bool(flags & _CLIPPED)


def _unmapped_chars(doc: pymupdf.Document, page: pymupdf.Page, data: dict) -> int:
    """Characters on the page set in fonts that give glyph numbers, not letters, to text extraction.

    A composite font with the Identity encoding and no /ToUnicode map: MuPDF can only hand out its glyph
    ids, which read as shifted letters ("8BMLJOH" for "Walking") that no letter count can tell from text.
    """
    blind = set()
    for xref, _, kind, basefont, _, encoding, *_ in page.get_fonts(full=True):
        if (
            kind == "Type0"
            and encoding.startswith("Identity")
            and doc.xref_get_key(xref, "ToUnicode")[0] == "null"
        ):
            blind.add(_font_key(basefont))
    if not blind:
        return 0
    return sum(
        len(span["text"])
        for block in data["blocks"]
        for line in block.get("lines", ())
        for span in line["spans"]
        if _font_key(span["font"]) in blind
    )


def _glued(line: dict) -> bool:
    """Whether a line has words run together: see _GLUED."""
    return any(_GLUED.search(span["text"]) for span in line["spans"])


def _space_by_position(page: pymupdf.Page, line: dict) -> None:
    """Put a space between glyphs of a "dict" line that stand a word's gap apart with no space character
    between them ("Corrigendumto" in a title set tight), from the glyph positions of this line alone."""
    x0, y0, x1, y1 = line["bbox"]
    # Glyph by glyph extraction of the whole page costs 7x its "dict": only the line's box is read again.
    raw = page.get_text("rawdict", flags=_TEXT_FLAGS, clip=pymupdf.Rect(x0 - 1, y0 - 1, x1 + 1, y1 + 1))
    text = "".join(span["text"] for span in line["spans"])
    for raw_line in (raw_line for block in raw["blocks"] for raw_line in block.get("lines", ())):
        glyphs = [(span["size"], char) for span in raw_line["spans"] for char in span["chars"]]
        if "".join(char["c"] for _, char in glyphs) == text:
            break
    else:
        return  # the line does not read the same on its own: leave it
    spaces = _word_gaps(glyphs, text)
    start = 0
    for span in line["spans"]:
        end = start + len(span["text"])
        span["text"] = "".join(" " + text[k] if k in spaces else text[k] for k in range(start, end))
        start = end


def _word_gaps(glyphs: list[tuple[float, dict]], text: str) -> set[int]:
    """Indices of the glyphs before which a gap is a space: see _WORD_GAP."""
    gaps: list[float | None] = [None]  # in em, before each glyph; None where either side is a space
    for (size_a, a), (size_b, b) in itertools.pairwise(glyphs):
        spaced = a["c"].isspace() or b["c"].isspace()
        gaps.append(None if spaced else (b["bbox"][0] - a["bbox"][2]) / max(size_a, size_b, 1.0))
    measured = [gap for gap in gaps if gap is not None]
    if not measured:
        return set()
    usual = statistics.median(measured)  # letter-spaced type has wide gaps everywhere
    glued = [False] * len(text)
    for run in re.finditer(rf"\S{{{_GLUED_RUN},}}", text):
        glued[run.start() + 1 : run.end()] = [True] * (run.end() - run.start() - 1)
    spaces = set()
    for k, gap in enumerate(gaps):
        if gap is None or not glued[k] or not _word_ends(text[k - 1], text[k]):
            continue
        beside = [g for g in (gaps[k - 1], gaps[k + 1] if k + 1 < len(gaps) else None) if g is not None]
        if gap > max(usual, min(beside, default=usual)) + _WORD_GAP:
            spaces.add(k)
    return spaces


def _word_ends(before: str, after: str) -> bool:
    """Whether a word may end between these characters (not inside "Mu¨ller" nor between primes)."""
    return (before.isalnum() or before in _ENDS_WORD) and (after.isalnum() or after in _STARTS_WORD)


@cache
def _misnamed_glyphs(font: str) -> dict[int, str] | None:
    """The repair table for a TeX maths font with misnamed glyphs (a few fonts serve every span)."""
    return _TEX_MATH.get(_font_key(font))


def _font_key(name: str) -> str:
    """A font name comparable between the resources and the spans: no subset tag, spaces or hyphens."""
    return _NOT_NAME.sub("", name.split("+", 1)[-1]).lower()


def text_blocks(data: dict) -> list[Block]:
    """Text blocks of one page's "dict" output as Block/Line records (raw text, NFKC later)."""
    blocks = []
    for raw in data["blocks"]:
        if raw.get("type", 0) != 0:
            continue
        lines = []
        for ln in raw["lines"]:
            spans = [s for s in ln["spans"] if s["text"]]
            for span in spans:
                misnamed = _misnamed_glyphs(span.get("font", ""))
                if misnamed:
                    span["text"] = span["text"].translate(misnamed)
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
            lines.append(Line(x0, y0, x1, y1, text, size, all(bold_flags), lead, horizontal, direction))
        if lines:
            blocks.append(Block.around(lines))
    return blocks


def _is_bold(span: dict) -> bool:
    font = span.get("font", "").lower()
    return bool(span["flags"] & _BOLD) or any(w in font for w in ("bold", "black", "heavy", "semibold"))
