"""OCR of pages without a usable text layer: scans (turned, skewed), text drawn as curves, fonts without a
Unicode map; what meta records; the routing that keeps born-digital pages on the text path.

Small pages at modest resolution keep these fast; the accuracy figures are benchmarks/pdf_ocr.py's.
"""

from __future__ import annotations

import pymupdf
import pytest

from curate.parse.pdf import PdfLimits, parse_pdf, parse_pdf_isolated
from curate.parse.pdf.model import back_matter
from curate.parse.pdf.ocr import unavailable
from curate.schema import Rejection
from tests.parse.pdf.samples import LETTER, curves, make_pdfs, scan, unmapped_font

SENTENCE = "Thank you for seeing Mr Example, aged 67, who reports increasing breathlessness on exertion"


pytestmark = pytest.mark.requires("ocr")


@pytest.fixture(scope="module", autouse=True)
def engine() -> None:
    why = unavailable("eng")
    if why:
        pytest.skip(f"OCR engine not installed here ({why}); `make ocr` installs it")


@pytest.mark.parametrize("turn", [0, 90, 180, 270])
def test_a_scanned_page_is_read_the_right_way_up(tmp_path, turn: int) -> None:
    doc = parse_pdf(scan(tmp_path / "scan.pdf", turn=turn))
    assert SENTENCE in doc.text
    assert "would be grateful for your assessment." in doc.text  # "I" in Helvetica is often read as "|"
    ocr = doc.meta["ocr"]
    assert ocr["pages"] == [1] and ocr["engine"].startswith("tesseract ") and ocr["mean_confidence"] > 80
    assert ocr.get("rotated", {}).get("1", 0) == (360 - turn) % 360


@pytest.mark.parametrize("skew", [4, -8])
def test_a_skewed_scan_is_read_straightened(tmp_path, skew: float) -> None:
    doc = parse_pdf(scan(tmp_path / "skew.pdf", skew=skew))
    assert "increasing breathlessness on exertion" in doc.text and "four kilograms" in doc.text
    assert abs(doc.meta["ocr"]["deskewed"]["1"] - skew) < 0.5


def test_a_scanned_front_page_loses_its_author_list_and_keeps_the_rest(tmp_path) -> None:
    # OCR sees no type, so the front page is not cut as a typed one is: the author list goes (names only),
    # while the title, a short label and a list before the running text stay.
    prose = [
        "Holy basil is grown in courtyards across the region and is used in",
        "daily rituals as well as in traditional remedies for coughs, fevers",
        "and skin complaints. Its leaves are chewed fresh or dried and taken",
        "as a tea, and its seeds are soaked in water overnight before use. We",
        "measured how much of each part families used over one whole year,",
        "and we asked them which of the remedies they had found to work best.",
        "",
        "Families kept a diary of every use.",
        "",
        "Leaves were weighed on a kitchen scale each week by the same person.",
    ]
    lines = [
        "Holy Basil in Village Kitchens",
        "",
        "Reshma K. Pai, Sham S. Bhat and Afreen Salman",
        "",
        "Original Article",
        "* Leaves, seeds and roots",
        "",
        *prose,
    ]
    text = parse_pdf(scan(tmp_path / "front.pdf", lines)).text
    assert "Bhat" not in text and "Salman" not in text
    for kept in (
        "Village Kitchens",
        "Original Article",
        "seeds and roots",
        "families used over one",
        "diary",
    ):
        assert kept in text


@pytest.mark.parametrize("build", [curves, unmapped_font], ids=["text-as-curves", "font-without-unicode-map"])
def test_text_without_a_usable_layer_is_read_by_ocr(tmp_path, build) -> None:
    path = build(tmp_path / "page.pdf")
    with pymupdf.open(path) as pdf:
        raw = pdf[0].get_text()
    assert "Example" not in raw  # the text layer really is missing or unreadable
    doc = parse_pdf(path)
    assert SENTENCE in doc.text and doc.meta["ocr"]["pages"] == [1]
    try:
        off = parse_pdf(path, ocr="off").text  # glyph numbers ("5IBOL ZPV") for the font without a map
    except Rejection as rejection:
        off = rejection.reason
    assert SENTENCE not in off


def test_unreadable_ink_is_low_confidence_and_off_keeps_no_text(tmp_path) -> None:
    # Text set at 3.5 points and scanned at 150 dpi (7 pixels a line): marks that look like writing, which
    # nobody can read.
    with pytest.raises(Rejection) as caught:
        parse_pdf(scan(tmp_path / "tiny.pdf", size=3.5))
    assert caught.value.reason == "pdf_low_confidence" and "confidence" in caught.value.detail
    with pytest.raises(Rejection) as caught:
        parse_pdf(scan(tmp_path / "off.pdf"), ocr="off")
    assert caught.value.reason == "pdf_no_text"


def test_the_per_page_time_cap_stops_recognition(tmp_path) -> None:
    with pytest.raises(Rejection) as caught:
        parse_pdf(scan(tmp_path / "scan.pdf", LETTER * 4), PdfLimits(ocr_page_seconds=0.001))
    assert caught.value.reason == "pdf_no_text" and "time" in caught.value.detail


def test_born_digital_pages_stay_on_the_text_path(tmp_path) -> None:
    demo = tmp_path / "demo"
    make_pdfs.make_demo_pdfs(demo)
    for name in ("cardiology-trial.pdf", "sepsis-review.pdf", "asthma-guideline.pdf"):
        assert "ocr" not in parse_pdf(demo / name).meta, name
    # A page that is only a picture (a table or figure set as an image) in an otherwise born-digital
    # document stays out, as figures do; force reads every page with ink.
    prose = "Walking after knee surgery helps patients recover sooner than resting in bed does. " * 3
    with pymupdf.open() as article, pymupdf.open(scan(tmp_path / "s.pdf")) as image:
        for _ in range(2):
            article.new_page(width=420, height=200).insert_textbox(pymupdf.Rect(20, 20, 400, 180), prose)
        article.insert_pdf(image)
        article.save(tmp_path / "with-figure.pdf")
    doc = parse_pdf(tmp_path / "with-figure.pdf")
    assert "ocr" not in doc.meta and "Mr Example" not in doc.text and "Walking after knee surgery" in doc.text
    forced = parse_pdf(tmp_path / "with-figure.pdf", ocr="force")
    assert forced.meta["ocr"]["pages"] == [1, 2, 3]
    assert "Mr Example" in forced.text and "Walking after knee surgery" in forced.text


def test_the_sandbox_reads_scans_too(tmp_path) -> None:
    doc = parse_pdf_isolated(scan(tmp_path / "scan.pdf", turn=90))
    assert SENTENCE in doc.text and doc.meta["ocr"]["rotated"] == {"1": 270}


def test_a_scanned_tables_rows_are_found_though_descenders_lower_some_cells(tmp_path) -> None:
    # OCR boxes end at the descenders ("gym", "yes") or at the baseline ("Arm1", "40"): one row's cells
    # still line up, and the table is left out as on a text layer.
    prose = [
        "Walking after knee surgery helped every patient in the trial recover",
        "sooner than resting in bed did, and none of them had a fall during",
        "the six weeks it lasted, as the table of the three wards below shows.",
    ]
    with pymupdf.open() as source:
        page = source.new_page(width=460, height=330)
        for i, line in enumerate(prose):
            page.insert_text((20, 30 + 18 * i), line, fontsize=11, fontname="helv")
        for r in range(8):
            for c, cell in enumerate(
                (f"Arm{r}", "gym" if r % 2 else "pool", f"{40 + r}", "yes" if r % 3 else "no")
            ):
                page.insert_text((20 + 110 * c, 110 + 18 * r), cell, fontsize=11, fontname="helv")
        pixmap = page.get_pixmap(dpi=150, colorspace="gray")
    doc = pymupdf.open()
    page = doc.new_page(width=520, height=390)
    page.insert_image(pymupdf.Rect(30, 30, 490, 360), pixmap=pixmap)
    doc.save(tmp_path / "table.pdf")
    text = parse_pdf(tmp_path / "table.pdf").text
    assert "as the table of the three wards below shows." in text
    assert "Arm3" not in text and "gym" not in text and "pool" not in text


_REMEDIES = [
    "Holy basil is grown in courtyards across the region and is used in",
    "daily rituals as well as in traditional remedies for coughs, fevers",
    "and skin complaints. Its leaves are chewed fresh or dried and taken",
    "as a tea, and its seeds are soaked in water overnight before use. We",
    "measured how much of each part families used over one whole year.",
    "",
]


@pytest.mark.parametrize(
    ("heading", "cut"),
    [
        # A back-matter heading read a letter or two wrong still ends the text...
        ("Contflicts of Interest", True),
        ("REFERENGES", True),
        # ... but another word a letter away from one does not.
        ("Preferences", False),
        ("Reverence", False),
        ("Results", False),
    ],
)
def test_a_misread_back_matter_heading_on_a_scan_still_ends_the_text(
    tmp_path, heading: str, cut: bool
) -> None:
    lines = [*_REMEDIES, heading, "The families who kept the diaries declare no interest in the trade."]
    doc = parse_pdf(scan(tmp_path / "tail.pdf", lines))
    assert "families used over one whole year" in doc.text
    assert ("kept the diaries" not in doc.text) is cut
    # What cut the text is a misreading, which the rule for a text layer would not take for a heading.
    assert (doc.meta.get("cut_from") is not None) is cut
    assert not cut or back_matter(doc.meta["cut_from"]) is None


def test_a_misspelt_back_matter_heading_in_a_text_layer_is_text(tmp_path) -> None:
    # A text layer holds what its author typed: there a near miss is another word, not a misreading.
    doc = pymupdf.open()
    page = doc.new_page()
    for i, line in enumerate([*_REMEDIES, "Contflicts of Interest", "The diaries were kept by families."]):
        page.insert_text((72, 72 + 14 * i), line, fontsize=10)
    doc.save(tmp_path / "typed.pdf")
    assert "The diaries were kept by families." in parse_pdf(tmp_path / "typed.pdf").text
