"""OCR for pages without a usable text layer: Tesseract (through tesserocr) on CPU, offline.

The page is rendered in grey at `DPI`, recognised upright first (most scans are), and when that reads badly
or finds vertical lines, Tesseract's orientation detection (OSD) says how the page is turned: it is rendered
again the right way up and recognised again. A skew past DESKEW_ABOVE degrees is undone by rendering the
page straight and reading it again (Tesseract finds columns badly on a skewed page); a smaller one on the
lines' positions (Tesseract reports upright boxes around skewed lines). The lines come back as
`model.Line`s in points, in the upright page's frame, so the layout steps (columns, margins, paragraphs,
hyphenation) work as on a text layer.

tesserocr's wheel carries the Tesseract library; the trained models (`eng.traineddata`, `osd.traineddata`,
other languages) come from the system: Debian's `tesseract-ocr-eng`, `tesseract-ocr-osd`, ... in
/usr/share/tesseract-ocr/5/tessdata, or wherever TESSDATA_PREFIX points.
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

import pymupdf

from curate.parse.pdf.model import SPACES, Block, Line, Page

DPI = 200  # scans are read at this resolution: Tesseract's accuracy is flat from here up, its time is not
MAX_PIXELS = 40_000_000  # a larger page (posters, A0 plans) is rendered at a lower resolution
MIN_LINE_CONFIDENCE = 40  # lines Tesseract trusts less than this are noise (drawings, stains, photos)
RETRY_BELOW = 70  # a page read upright with less mean confidence is checked for orientation
DESKEW_ABOVE = 1.5  # degrees of skew past which a page is rendered straight and read again
SIZE_NOISE = 0.15  # OCR's font sizes closer than this share to the page's body size are the body size
MIN_ORIENTATION_CONFIDENCE = 2.0  # OSD's own confidence needed before a page is turned
_ENGINE = threading.Lock()
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

    # A full page with its own layout analysis; no inverted-text retries (scans are dark on light).
    return PyTessBaseAPI(
        path=str(tessdata()), lang=languages, psm=PSM.AUTO, variables={"tessedit_do_invert": "0"}
    )


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
    if width * height * zoom * zoom > MAX_PIXELS:
        zoom = math.sqrt(MAX_PIXELS / (width * height))
    pixmap = _render(page, zoom, 0)
    result = _recognise(pixmap, zoom, languages, seconds)
    if not result.words and not result.timed_out:
        # Tesseract's layout analysis sometimes takes a skewed scrap of text for a picture: read it as one
        # block of text instead.
        left = max(0.0, seconds - (time.monotonic() - start))
        result = _recognise(pixmap, zoom, languages, left, single_block=True)
    if not result.timed_out and (result.confidence < RETRY_BELOW or result.notes.get("vertical")):
        turn = _orientation(pixmap)
        if turn:
            left = max(0.0, seconds - (time.monotonic() - start))
            turned = _recognise(_render(page, zoom, turn), zoom, languages, left)
            turned.rotation = turn
            if turned.confidence > result.confidence:
                result = turned
    if not result.timed_out and abs(result.skew) >= DESKEW_ABOVE:
        # Tesseract reads skewed lines, but finds columns badly across a skew of a few degrees (it read
        # lines across both columns of a page turned 2.7 degrees): render the page straight and read again.
        left = max(0.0, seconds - (time.monotonic() - start))
        straight = _recognise(_render(page, zoom, result.rotation, result.skew), zoom, languages, left)
        if not straight.timed_out and straight.confidence >= result.confidence - 1:
            straight.rotation, straight.skew = result.rotation, result.skew
            result = straight
    result.seconds = time.monotonic() - start
    return result


def _render(page: pymupdf.Page, zoom: float, rotation: int, skew: float = 0.0) -> pymupdf.Pixmap:
    """The page in grey at this zoom, turned clockwise by `rotation` degrees and straightened by `skew`."""
    matrix = pymupdf.Matrix(zoom, zoom).prerotate(-rotation - skew)
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
    pixmap: pymupdf.Pixmap, zoom: float, languages: str, seconds: float, single_block: bool = False
) -> OcrResult:
    """Tesseract over one rendered page: its paragraphs as blocks of lines, in points."""
    from tesserocr import PSM, RIL, WritingDirection

    api = _api(languages)
    api.SetPageSegMode(PSM.SINGLE_BLOCK if single_block else PSM.AUTO)
    api.SetImageBytes(pixmap.samples, pixmap.width, pixmap.height, 1, pixmap.stride)
    api.SetSourceResolution(round(72 * zoom))
    finished = api.Recognize(timeout=max(1, int(seconds * 1000)))
    confidences = api.AllWordConfidences() if finished else []
    width, height = pixmap.width / zoom, pixmap.height / zoom
    iterator = api.GetIterator()
    raw: list[list[tuple[tuple[int, int, int, int], str, float]]] = []  # paragraphs of (box, text, size)
    skew = 0.0
    vertical = lines_seen = dropped = 0
    if finished and iterator is not None:
        skew = iterator.Orientation()[3]
        paragraph: list[tuple[tuple[int, int, int, int], str, float]] = []
        while True:
            if iterator.IsAtBeginningOf(RIL.PARA) and paragraph:
                raw.append(paragraph)
                paragraph = []
            text, box = _line(iterator, RIL.TEXTLINE)
            if text and box:
                lines_seen += 1
                if iterator.Orientation()[1] != WritingDirection.LEFT_TO_RIGHT:
                    vertical += 1
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
    blocks = _snap_sizes([_block(p, zoom, skew, pixmap.width, pixmap.height) for p in raw])
    result = OcrResult(
        page=Page(width, height, blocks, ocr=True),
        confidence=statistics.fmean(confidences) if confidences else 0.0,
        words=len(confidences),
        skew=math.degrees(skew),
        timed_out=not finished,
        dropped_lines=dropped,
    )
    result.notes["vertical"] = lines_seen > 0 and vertical > lines_seen / 2
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
    paragraph: list[tuple[tuple[int, int, int, int], str, float]], zoom: float, skew: float, w: int, h: int
) -> Block:
    """A paragraph's lines as a Block in points, straightened by the page's skew, sized from row height."""
    cos, sin = math.cos(skew), math.sin(skew)
    # One size for the paragraph, to the half point: OCR's estimates vary from line to line.
    size = round(2 * statistics.median(size for _, _, size in paragraph)) / 2
    lines = []
    for (x0, y0, x1, y1), text, _ in paragraph:
        # Turn the box's centre about the page centre by the skew; the box keeps its size.
        cx, cy = (x0 + x1) / 2 - w / 2, (y0 + y1) / 2 - h / 2
        ux, uy = cx * cos - cy * sin + w / 2, cx * sin + cy * cos + h / 2
        half_w, half_h = (x1 - x0) / 2, (y1 - y0) / 2
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
