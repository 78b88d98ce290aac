"""OCR for pages without a usable text layer: Tesseract (through tesserocr) on CPU, offline.

The page's skew is measured on a small rendering (_lines) and the page rendered straight, in grey, at `DPI`
down and `DPI * SQUEEZE` across; it is recognised upright first (most scans are), and when that reads
badly or finds its lines sideways, Tesseract's orientation detection (OSD) says how the page is turned: it
is rendered again the right way up (and straight) and recognised again. What skew Tesseract still sees is
undone on the lines' positions (it reports upright boxes around skewed lines). The lines come back as
`model.Line`s in points, in the upright page's frame, so the layout steps (columns, margins, paragraphs,
hyphenation) work as on a text layer.

Where the time goes (perf with call graphs, dense two-column PMC pages at 200 dpi): 70% in the LSTM, called
once per text line (451 calls for 466 lines; lines later dropped as noise take under 1% of its steps),
12% in layout analysis (table detection, which took half of it and cut tables into lines that read as
prose, is off), 3% in the beam search, 2% in paragraph detection, the rest in rendering, thresholding and
OSD. The LSTM's time grows with each line's width once Tesseract has scaled the line to the model's height,
hence the squeeze. Measured and left out (pages/s/core within the machine's noise of 3%, or less
accurate): the dictionaries off (load_*_dawg), fuzzy-space repair, the music mask and bigram correction off,
dotproduct=avx2 (the same word F1, no faster); lstm_use_matrix off (5% faster, `linn` word F1 0.976 to
0.958); one uniform block (PSM 6, 11% faster, but columns read across); OSD at 100 dpi (missed two of
four quarter turns); squeezing to 0.65 (median F1 on rendered PMC pages 0.964 to 0.946, no faster
measurably here); paragraphs found from geometry before recognition (paragraph_text_based=0: 4% faster,
but table and body paragraphs split differently, median F1 0.964 to 0.956); the fixed-pitch test off (the
same text, 1-2% faster, within the noise); a shorter OSD (min_characters_to_try 25: a third less OSD time,
but a tall-table page turned the wrong way).

tesserocr's wheel carries the Tesseract library; the trained models (`eng.traineddata`, `osd.traineddata`,
other languages) come from the system: Debian's `tesseract-ocr-eng`, `tesseract-ocr-osd`, ... in
/usr/share/tesseract-ocr/5/tessdata, or wherever TESSDATA_PREFIX points. Debian's are the integer "fast"
models (LSTM only, 4 MB for English), the quickest Tesseract has.
"""

from __future__ import annotations

import math
import os
import re
import statistics
import threading
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pymupdf

from curate.parse.pdf.model import SPACES, Block, Line, Page

# Tesseract scales each text line to its model's height (36 px) and runs its LSTM along it: the time goes
# with the line's length in those steps. Pages are rendered at DPI down and DPI * SQUEEZE across, which
# shortens every line; the model, trained on condensed type too, reads it about as well. Rendered PMC
# pages (benchmarks/pdf_ocr.py's six articles, pages/s/core on a loaded 2-core machine and median word F1):
# 200 dpi square 0.57 and 0.967; 200 x 0.7, 0.75 and 0.967; 150 x 0.7, 0.89 and 0.964; 150 x 0.6, 0.98
# and 0.933. Below 150 dpi, or narrower, the hard cases (300 dpi bilevel scans) fall under 0.90.
DPI = 150
SQUEEZE = 0.7
MAX_PIXELS = 40_000_000  # a larger page (posters, A0 plans) is rendered at a lower resolution
MIN_LINE_CONFIDENCE = 40  # lines Tesseract trusts less than this are noise (drawings, stains, photos)
RETRY_BELOW = 70  # a page read upright with less mean confidence is checked for orientation
MAX_SKEW = 10.0  # degrees of skew looked for; past this a scan is a picture of a page, not a page
MIN_SKEW = 0.5  # degrees of skew from which a page is rendered straight before it is read
SKEW_GAIN = 1.1  # the straightened rows must be this much sharper than the page as it is
SKEW_PIXELS = 600_000  # the skew is measured on a rendering of about this many pixels (72 dpi for Letter)
SKEW_MIN_INK, SKEW_SAMPLE = 500, 40_000  # dark pixels needed, and at most used
# Columns of ink this much sharper than its rows: the page may be turned a quarter (or hold a tall table), and
# OSD is asked before it is read. Upright text pages measure 0.2-0.9; quarter-turned ones 1.1-16, and a
# turned page missed here is read twice (upright, badly, then turned); an upright page caught costs one OSD.
SIDEWAYS = 1.0
SIZE_NOISE = 0.15  # OCR's font sizes closer than this share to the page's body size are the body size
MIN_ORIENTATION_CONFIDENCE = 2.0  # OSD's own confidence needed before a page is turned
_ENGINE = threading.Lock()
# No inverted-text retries (scans are dark on light); no table detection (it cut tables into lines that
# read as prose, and took half the layout's time); no vertical text blocks (it took prose and tables on
# upright pages for vertical text: word F1 against the text layer of ten rendered PMC pages 0.93 instead
# of 0.85; turned pages are OSD's). Some textord_ variables are process-wide in Tesseract: every instance
# here sets the same.
_VARIABLES = {
    "tessedit_do_invert": "0",
    "textord_tabfind_find_tables": "0",
    "textord_tabfind_vertical_text": "0",
}
_BULLET = re.compile(r"^[•·●○◦▪■□♦◆©®¢«»°*]\s+(?=\w)")
_TESSDATA_DIRS = (
    "/usr/share/tesseract-ocr/5/tessdata",
    "/usr/share/tesseract-ocr/4.00/tessdata",
    "/usr/share/tessdata",
    "/usr/local/share/tessdata",
    "/opt/homebrew/share/tessdata",
)


@dataclass(slots=True)
class OcrResult:
    """What OCR read on one page: upright lines in points and how far to trust them."""

    page: Page
    confidence: float  # mean word confidence, 0-100
    words: int
    rotation: int = 0  # degrees the page was turned to read it
    skew: float = 0.0  # degrees of skew undone (by rendering the page straight, or on the lines' positions)
    timed_out: bool = False
    dropped_lines: int = 0  # lines below MIN_LINE_CONFIDENCE
    seconds: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)


def tessdata() -> Path | None:
    """The folder holding Tesseract's trained models: TESSDATA_PREFIX, else the usual system places."""
    candidates = [os.environ.get("TESSDATA_PREFIX", ""), *_TESSDATA_DIRS]
    for folder in candidates:
        if folder and (Path(folder) / "eng.traineddata").is_file():
            return Path(folder)
        if folder and (Path(folder) / "tessdata" / "eng.traineddata").is_file():
            return Path(folder) / "tessdata"
    return None


@cache
def unavailable(languages: str) -> str | None:
    """Why OCR cannot run here with these languages ('eng+fra'), or None when it can."""
    try:
        import tesserocr  # noqa: F401
    except ImportError as exc:
        return f"tesserocr is not installed ({exc}); run `make install`"
    folder = tessdata()
    if folder is None:
        return "no Tesseract models (eng.traineddata) found: install tesseract-ocr-eng or set TESSDATA_PREFIX"
    missing = [
        lang for lang in [*languages.split("+"), "osd"] if not (folder / f"{lang}.traineddata").is_file()
    ]
    if missing:
        names = ", ".join(f"tesseract-ocr-{lang}" for lang in missing)
        return f"Tesseract models missing in {folder}: {', '.join(missing)} (install {names})"
    return None


@cache
def engine_version() -> str:
    """The Tesseract library's version, as recorded in each OCRed document's meta."""
    import tesserocr

    return "tesseract " + tesserocr.tesseract_version().split()[1]


@cache
def _api(languages: str) -> Any:
    """One Tesseract instance per worker process and language set (loading the model takes ~0.1 s)."""
    from tesserocr import PSM, PyTessBaseAPI

    # A full page with its own layout analysis, with the variables above.
    return PyTessBaseAPI(path=str(tessdata()), lang=languages, psm=PSM.AUTO, variables=dict(_VARIABLES))


@cache
def _osd() -> Any:
    from tesserocr import PSM, PyTessBaseAPI

    return PyTessBaseAPI(path=str(tessdata()), lang="osd", psm=PSM.OSD_ONLY)


def ocr_page(page: pymupdf.Page, languages: str = "eng", seconds: float = 60.0) -> OcrResult:
    """Read one page by OCR; at most `seconds` of recognition (a partial page past that, `timed_out`)."""
    with _ENGINE:  # one Tesseract instance per process: threads parsing in-process take turns
        return _ocr_page(page, languages, seconds)


def _ocr_page(page: pymupdf.Page, languages: str, seconds: float) -> OcrResult:
    start = time.monotonic()
    zoom = DPI / 72
    width, height = page.rect.width, page.rect.height
    if width * height * zoom * zoom * SQUEEZE > MAX_PIXELS:
        zoom = math.sqrt(MAX_PIXELS / (width * height * SQUEEZE))
    across = zoom * SQUEEZE

    def read(rotation: int, skew: float) -> OcrResult:
        # Tesseract reads skewed lines, but finds columns badly across a skew of a few degrees (it read
        # lines across both columns of a page turned 2.7 degrees): the page is rendered straight.
        left = max(0.0, seconds - (time.monotonic() - start))
        pixmap = _render(page, across, zoom, rotation, skew)
        result = _recognise(pixmap, across, zoom, languages, left)
        if not result.words and not result.timed_out:
            # Tesseract's layout analysis sometimes takes a scrap of text for a picture: read it as one
            # block of text instead.
            left = max(0.0, seconds - (time.monotonic() - start))
            result = _recognise(pixmap, across, zoom, languages, left, single_block=True)
        result.rotation, result.skew = rotation, skew + result.skew
        return result

    osd: list[int] = []  # OSD's answer, asked for at most once (0.2-0.4 s a page)

    def orientation() -> int:
        # Judged on the page as it is (a turned page's squeeze would be along its lines).
        if not osd:
            osd.append(_orientation(_render(page, zoom, zoom, 0)))
        return osd[0]

    skew, sideways = _lines(page, 0)
    # A page whose ink lines up in columns is turned a quarter (or a tall table): OSD before reading it.
    first = orientation() if sideways else 0
    result = read(first, skew if first == 0 else _lines(page, first)[0])
    if not result.timed_out and (result.confidence < RETRY_BELOW or result.notes.get("sideways")):
        # Read badly: upright, OSD may know better (unless it was asked already); turned by OSD's guess,
        # upright may.
        other = orientation() if first == 0 else 0
        if other != first:
            second = read(other, _lines(page, other)[0])
            # Sideways lines can come out as confident as the turned page's, but the layout steps need
            # them across: a turned page that reads well wins.
            across_wins = result.notes.get("sideways") and second.confidence >= RETRY_BELOW
            if across_wins or second.confidence > result.confidence:
                result = second
    result.seconds = time.monotonic() - start
    return result


def _lines(page: pymupdf.Page, rotation: int) -> tuple[float, bool]:
    """Degrees the page's lines slope once it is turned by `rotation` (0 when straight or not lines), and
    whether its ink lines up in columns rather than rows (a page turned a quarter).

    The skew is the angle at which the page's ink, projected along it, piles up in the sharpest rows
    (Postl's projection profile), from a small rendering: steps of 0.5 degree, then 0.05 around the best.
    """
    zoom = min(1.0, math.sqrt(SKEW_PIXELS / max(1.0, page.rect.width * page.rect.height)))
    matrix = pymupdf.Matrix(zoom, zoom).prerotate(-rotation)
    pixmap = page.get_pixmap(matrix=matrix, colorspace=pymupdf.csGRAY, alpha=False)
    grey = np.frombuffer(pixmap.samples, np.uint8).reshape(pixmap.height, pixmap.stride)[:, : pixmap.width]
    ys, xs = np.nonzero(grey < 128)
    if len(ys) < SKEW_MIN_INK:
        return 0.0, False
    step = max(1, len(ys) // SKEW_SAMPLE)
    ys, xs = ys[::step], xs[::step]

    def sharpness(along: np.ndarray, across: np.ndarray, degrees: float = 0.0) -> float:
        # Sum of squared counts per row, times rows over points squared: 1 for ink spread evenly.
        rows = np.rint(along - (across - across.mean()) * math.tan(math.radians(degrees))).astype(np.int64)
        counts = np.bincount(rows - rows.min())
        return float(np.dot(counts, counts)) * len(counts) / len(rows) ** 2

    def rows(degrees: float) -> float:
        return sharpness(ys, xs, degrees)

    coarse = max(np.arange(-MAX_SKEW, MAX_SKEW + 0.01, 0.5), key=rows)
    best = float(max(np.arange(coarse - 0.5, coarse + 0.51, 0.05), key=rows))
    sideways = sharpness(xs, ys) > SIDEWAYS * rows(best)
    if abs(best) < MIN_SKEW or rows(best) < SKEW_GAIN * rows(0.0):
        return 0.0, sideways  # straight enough, or no rows of text to line up (a photo, a drawing)
    return round(best, 2), sideways


def _render(
    page: pymupdf.Page, across: float, zoom: float, rotation: int, skew: float = 0.0
) -> pymupdf.Pixmap:
    """The page in grey at these zooms (along and across the lines), turned clockwise by `rotation` degrees
    and straightened by `skew`: turned first, so `across` applies along the upright page's lines."""
    matrix = pymupdf.Matrix(across, zoom).prerotate(-rotation - skew)
    return page.get_pixmap(matrix=matrix, colorspace=pymupdf.csGRAY, alpha=False)


def _orientation(pixmap: pymupdf.Pixmap) -> int:
    """Degrees OSD says the page must be turned to read it (0, 90, 180, 270); 0 when it cannot tell."""
    osd = _osd()
    osd.SetImageBytes(pixmap.samples, pixmap.width, pixmap.height, 1, pixmap.stride)
    osd.SetSourceResolution(DPI)
    try:
        found = osd.DetectOrientationScript()
    except RuntimeError:  # too few characters to tell
        return 0
    finally:
        osd.Clear()
    if not found or found.get("orient_conf", 0.0) < MIN_ORIENTATION_CONFIDENCE:
        return 0
    return int(found["orient_deg"]) % 360


def _recognise(
    pixmap: pymupdf.Pixmap,
    across: float,
    zoom: float,
    languages: str,
    seconds: float,
    single_block: bool = False,
) -> OcrResult:
    """Tesseract over one page rendered at these zooms: its paragraphs as blocks of lines, in points."""
    from tesserocr import PSM, RIL, Orientation, WritingDirection

    api = _api(languages)
    api.SetPageSegMode(PSM.SINGLE_BLOCK if single_block else PSM.AUTO)
    api.SetImageBytes(pixmap.samples, pixmap.width, pixmap.height, 1, pixmap.stride)
    api.SetSourceResolution(round(72 * zoom))
    finished = api.Recognize(timeout=max(1, int(seconds * 1000)))
    confidences = api.AllWordConfidences() if finished else []
    width, height = pixmap.width / across, pixmap.height / zoom
    iterator = api.GetIterator()
    raw: list[list[tuple[tuple[int, int, int, int], str, float]]] = []  # paragraphs of (box, text, size)
    skew = 0.0
    sideways = lines_seen = dropped = 0
    if finished and iterator is not None:
        # Tesseract measures the lines' slope on the squeezed image: steeper by zoom / across.
        skew = math.atan(math.tan(iterator.Orientation()[3]) * across / zoom)
        paragraph: list[tuple[tuple[int, int, int, int], str, float]] = []
        while True:
            if iterator.IsAtBeginningOf(RIL.PARA) and paragraph:
                raw.append(paragraph)
                paragraph = []
            text, box = _line(iterator, RIL.TEXTLINE)
            if text and box:
                lines_seen += 1
                # Tesseract reads a page turned a quarter as sideways lines, some of them confidently.
                orientation, direction = iterator.Orientation()[:2]
                if orientation != Orientation.PAGE_UP or direction != WritingDirection.LEFT_TO_RIGHT:
                    sideways += 1
                confidence = iterator.Confidence(RIL.TEXTLINE)
                if confidence >= MIN_LINE_CONFIDENCE:
                    # The row's x-height plus ascenders is steadier than its box (descenders or not).
                    paragraph.append((box, text, iterator.RowAttributes()["row_height"] / zoom))
                else:
                    dropped += 1
            if not iterator.Next(RIL.TEXTLINE):
                break
        if paragraph:
            raw.append(paragraph)
    api.Clear()
    blocks = _snap_sizes([_block(p, across, zoom, skew, pixmap.width, pixmap.height) for p in raw])
    result = OcrResult(
        page=Page(width, height, blocks, ocr=True),
        confidence=statistics.fmean(confidences) if confidences else 0.0,
        words=len(confidences),
        skew=math.degrees(skew),
        timed_out=not finished,
        dropped_lines=dropped,
    )
    result.notes["sideways"] = lines_seen > 0 and sideways > lines_seen / 2
    return result


def _snap_sizes(blocks: list[Block]) -> list[Block]:
    """Sizes within SIZE_NOISE of the page's commonest size become that size: OCR's estimates of one font
    vary by a point or so, which the layout would read as small print or as headings."""
    sizes: dict[float, int] = {}
    for block in blocks:
        for line in block.lines:
            sizes[line.size] = sizes.get(line.size, 0) + len(line.text)
    if not sizes:
        return blocks
    body = max(sizes, key=sizes.__getitem__)
    for block in blocks:
        for line in block.lines:
            if abs(line.size - body) <= SIZE_NOISE * body:
                line.size = body
    return blocks


def _line(iterator: Any, level: int) -> tuple[str, tuple[int, int, int, int] | None]:
    """The text and box of the iterator's current element ('' when Tesseract has none)."""
    try:
        text = SPACES.sub(" ", iterator.GetUTF8Text(level) or "").strip()
    except RuntimeError:  # "No text returned"
        return "", None
    # Tesseract reads a list's bullet as "©", "¢" or "«"; a "©" would also make the line look like a licence.
    return _BULLET.sub("• ", text), iterator.BoundingBox(level)


def _block(
    paragraph: list[tuple[tuple[int, int, int, int], str, float]],
    across: float,
    zoom: float,
    skew: float,
    w: int,
    h: int,
) -> Block:
    """A paragraph's lines as a Block in points, straightened by the page's skew, sized from row height."""
    cos, sin = math.cos(skew), math.sin(skew)
    # One size for the paragraph, to the half point: OCR's estimates vary from line to line.
    size = round(2 * statistics.median(size for _, _, size in paragraph)) / 2
    stretch = zoom / across  # back to square pixels, where the skew is a rotation
    lines = []
    for (x0, y0, x1, y1), text, _ in paragraph:
        # Turn the box's centre about the page centre by the skew; the box keeps its size.
        cx, cy = (x0 + x1 - w) / 2 * stretch, (y0 + y1 - h) / 2
        ux, uy = cx * cos - cy * sin + w * stretch / 2, cx * sin + cy * cos + h / 2
        half_w, half_h = (x1 - x0) / 2 * stretch, (y1 - y0) / 2
        lines.append(
            Line(
                (ux - half_w) / zoom,
                (uy - half_h) / zoom,
                (ux + half_w) / zoom,
                (uy + half_h) / zoom,
                text,
                size,
                False,
                "",
                True,
            )
        )
    return Block.around(lines)
