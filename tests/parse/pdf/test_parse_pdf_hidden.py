"""curate.parse.pdf on text a reader of the page never sees (left out) beside text a reader sees (kept).

Each hidden piece is a full sentence in the body's type, so that only a rule about visibility, not the rules
for scraps and small print, can leave it out.
"""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest

from curate.parse.pdf import parse_pdf

_PROSE = (
    "Patients who walked every day after knee surgery recovered sooner than those who rested, and none of "
    "them had a fall during the six weeks of the study. "
)
_HIDDEN = (
    "The steering committee agreed in private that the Zanzibar protocol would be quietly withdrawn before "
    "the next annual review of the whole trial."
)
_SEEN = (
    "The nurses agreed in public that the Kilimanjaro schedule would be kept for every patient who walked "
    "after surgery, whatever the weather."
)
_SPLIT = _HIDDEN.index(" ", 75)  # _HIDDEN as two lines of a content stream written by hand
_LINES = (_HIDDEN[:_SPLIT], _HIDDEN[_SPLIT + 1 :])


def _article(fill: tuple[float, float, float] | None = None) -> tuple[pymupdf.Document, pymupdf.Page]:
    """A page of prose above and below the space (y 300 to 400) where the cases put their sentences."""
    doc = pymupdf.open()
    page = doc.new_page()
    if fill:
        page.draw_rect(page.rect, color=None, fill=fill)
    page.insert_textbox(pymupdf.Rect(72, 72, 520, 250), _PROSE * 6, fontsize=10)
    page.insert_textbox(pymupdf.Rect(72, 440, 520, 620), "Afterwards, " + _PROSE * 5, fontsize=10)
    return doc, page


def _add_content(doc: pymupdf.Document, page: pymupdf.Page, operators: str) -> None:
    """Append a content stream to the page (its /helv font comes from the prose)."""
    xref = doc.get_new_xref()
    doc.update_object(xref, "<<>>")
    doc.update_stream(xref, operators.encode())
    contents = " ".join(f"{x} 0 R" for x in page.get_contents())
    doc.xref_set_key(page.xref, "Contents", f"[{contents} {xref} 0 R]")


def _hidden_text(top: float, state: str = "") -> str:
    """Operators showing _HIDDEN in 10 pt Helvetica from `top` (from the page's top) on, after `state`."""
    y = 842 - top
    first, second = _LINES
    return f"BT /helv 10 Tf {state} 1 0 0 1 72 {y} Tm ({first}) Tj 0 -12 Td ({second}) Tj ET"


def _text(doc: pymupdf.Document, path: Path) -> str:
    doc.save(path)
    return " ".join(parse_pdf(path, ocr="off").text.split())


def test_text_in_the_colour_of_a_tinted_page_is_left_out(tmp_path: Path) -> None:
    # Words for search engines in the page's own tint (light yellow) are not seen; words in a darker colour
    # on that tint are, and so is light grey text on a white page.
    yellow = (1, 1, 0.8)
    doc, page = _article(fill=yellow)
    page.insert_textbox(pymupdf.Rect(72, 300, 520, 340), _HIDDEN, fontsize=10, color=yellow)
    page.insert_textbox(pymupdf.Rect(72, 360, 520, 400), _SEEN, fontsize=10, color=(0.5, 0.3, 0))
    text = _text(doc, tmp_path / "tinted.pdf")
    assert "Zanzibar" not in text and _SEEN in text
    doc, page = _article()
    page.insert_textbox(pymupdf.Rect(72, 360, 520, 400), _SEEN, fontsize=10, color=(0.8, 0.8, 0.8))
    assert _SEEN in _text(doc, tmp_path / "grey.pdf")
    # Thin light glyphs (yellow at 7 pt, a superscript) barely darken a coarse rendering, but do.
    doc, page = _article()
    page.insert_textbox(pymupdf.Rect(72, 300, 520, 340), _SEEN + " " + _SEEN, fontsize=7, color=(1, 0.85, 0))
    assert _SEEN + " " + _SEEN in _text(doc, tmp_path / "yellow.pdf")


def test_transparent_text_is_left_out(tmp_path: Path) -> None:
    # Text painted at opacity 0 is not seen; at opacity 0.5 it is.
    doc, page = _article()
    page.insert_textbox(pymupdf.Rect(72, 300, 520, 340), _HIDDEN, fontsize=10, fill_opacity=0)
    page.insert_textbox(pymupdf.Rect(72, 360, 520, 400), _SEEN, fontsize=10, fill_opacity=0.5)
    text = _text(doc, tmp_path / "transparent.pdf")
    assert "Zanzibar" not in text and _SEEN in text


def test_text_that_only_clips_is_left_out(tmp_path: Path) -> None:
    # Render mode 7 makes the glyphs a clipping path: with nothing painted through them they are not seen;
    # with a colour painted through them (a heading filled with a gradient) they are.
    doc, page = _article()
    _add_content(doc, page, f"q {_hidden_text(310, '7 Tr')} Q")
    assert "Zanzibar" not in _text(doc, tmp_path / "clip.pdf")
    doc, page = _article()
    _add_content(doc, page, f"q {_hidden_text(310, '7 Tr')} 0.2 0.2 0.6 rg 0 0 595 842 re f Q")
    assert _HIDDEN in _text(doc, tmp_path / "painted.pdf")


def test_text_outside_what_mupdf_shows_is_left_out(tmp_path: Path) -> None:
    # MuPDF leaves out what it does not draw: an optional content group (layer) that is off, text outside
    # the CropBox or the MediaBox, text a clipping path cuts away. What it draws stays.
    doc, page = _article()
    page.insert_textbox(pymupdf.Rect(72, 300, 520, 340), _HIDDEN, fontsize=10, oc=doc.add_ocg("x", on=False))
    page.insert_textbox(pymupdf.Rect(72, 360, 520, 400), _SEEN, fontsize=10, oc=doc.add_ocg("y", on=True))
    text = _text(doc, tmp_path / "layers.pdf")
    assert "Zanzibar" not in text and _SEEN in text
    doc, page = _article()
    page.insert_textbox(pymupdf.Rect(72, 700, 520, 740), _HIDDEN, fontsize=10)
    page.insert_textbox(pymupdf.Rect(72, 360, 520, 400), _SEEN, fontsize=10)
    page.set_cropbox(pymupdf.Rect(0, 0, 595, 680))
    text = _text(doc, tmp_path / "cropped.pdf")
    assert "Zanzibar" not in text and _SEEN in text
    doc, page = _article()
    _add_content(doc, page, _hidden_text(-100))
    assert "Zanzibar" not in _text(doc, tmp_path / "off-page.pdf")
    doc, page = _article()
    _add_content(doc, page, f"q 0 0 10 10 re W n {_hidden_text(310)} Q")
    assert "Zanzibar" not in _text(doc, tmp_path / "clipped.pdf")
    doc, page = _article()
    _add_content(doc, page, f"q 60 480 480 80 re W n {_hidden_text(310)} Q")  # the clip holds the text
    assert _HIDDEN in _text(doc, tmp_path / "unclipped.pdf")


@pytest.mark.parametrize("state", ["", "1 Tz"])
def test_text_too_small_to_read_is_left_out(tmp_path: Path, state: str) -> None:
    # Half a point high, or squeezed to 1% of its width: the rules for small print leave it out.
    doc, page = _article()
    if state:
        _add_content(doc, page, _hidden_text(310, state))
    else:
        page.insert_textbox(pymupdf.Rect(72, 300, 520, 340), _HIDDEN, fontsize=0.5)
    assert "Zanzibar" not in _text(doc, tmp_path / "tiny.pdf")


@pytest.mark.xfail(strict=True, reason="text covered by a later opaque fill is read: see _drop_unseen")
def test_text_covered_by_an_opaque_box_is_left_out(tmp_path: Path) -> None:
    # A box painted over text hides it. Finding what is painted after a span costs a second pass over the
    # page (get_bboxlog: about 15% more time) or vector blocks that change how MuPDF groups lines.
    doc, page = _article()
    page.insert_textbox(pymupdf.Rect(72, 300, 520, 340), _HIDDEN, fontsize=10)
    page.draw_rect(pymupdf.Rect(70, 295, 525, 345), color=None, fill=(0, 0, 0))
    assert "Zanzibar" not in _text(doc, tmp_path / "covered.pdf")
