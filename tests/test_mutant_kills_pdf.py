"""The PDF sandbox's limits, each pinned by a test that fails when it is removed (the mutations of
`make mutants`, tests/mutation/mutations.py, module pdf)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pymupdf
import pytest

from curate.parse.pdf import PdfLimits, PdfSandbox
from curate.parse.pdf.ocr import unavailable
from curate.schema import Rejection

from .pdf_samples import LETTER, endless_page, make_pdfs, scan


@pytest.fixture(scope="module")
def article(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sandbox-kills")
    make_pdfs.make_demo_pdfs(out)
    return out / "cardiology-trial.pdf"


def _gone(pid: int) -> bool:
    """Whether the process has ended and been reaped (no /proc entry, or only a zombie's)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


@pytest.mark.timeout(90)
def test_a_worker_stuck_past_its_budget_is_ended_not_left_running(tmp_path: Path, article: Path) -> None:
    sandbox = PdfSandbox()
    try:
        sandbox.parse(article)
        [pid] = sandbox.idle_pids()  # the worker that will take the endless page
        with pytest.raises(Rejection) as caught:
            sandbox.parse(endless_page(tmp_path / "endless.pdf"), PdfLimits(max_seconds=1))
        assert caught.value.reason == "pdf_timeout"
        assert _gone(pid), f"worker {pid} still runs the endless page"
    finally:
        sandbox.close()


@pytest.mark.timeout(90)
def test_a_worker_killed_from_outside_is_pdf_crashed(tmp_path: Path, article: Path) -> None:
    """A worker that dies of a signal mid-document (the OOM killer, a segfault in MuPDF) costs that document,
    as `pdf_crashed`, and the next one gets a fresh worker."""
    sandbox = PdfSandbox()
    try:
        sandbox.parse(article)
        [pid] = sandbox.idle_pids()
        killer = threading.Timer(1.0, os.kill, (pid, signal.SIGKILL))
        killer.start()
        with pytest.raises(Rejection) as caught:
            sandbox.parse(endless_page(tmp_path / "endless.pdf"), PdfLimits(max_seconds=30))
        killer.join()
        assert (caught.value.reason, caught.value.detail) == ("pdf_crashed", "the parser died of signal 9")
        assert sandbox.parse(article).text
    finally:
        sandbox.close()


@pytest.mark.requires("ocr")
@pytest.mark.timeout(120)
def test_pages_sent_to_ocr_extend_the_time_budget(tmp_path: Path) -> None:
    """Six scanned pages take seconds of OCR (4.5 s here): more than max_seconds, which bounds reading the
    text layer, plus the parent's grace of 2 s; well within it plus ocr_page_seconds per page."""
    if why := unavailable("eng"):
        pytest.skip(f"OCR engine not installed here ({why}); `make ocr` installs it")
    page = scan(tmp_path / "page.pdf", LETTER * 4)
    with pymupdf.open() as doc, pymupdf.open(page) as one:
        for _ in range(6):
            doc.insert_pdf(one)
        doc.save(tmp_path / "scanned.pdf")
    sandbox = PdfSandbox()
    try:
        parsed = sandbox.parse(tmp_path / "scanned.pdf", PdfLimits(max_seconds=0.5, ocr_page_seconds=60))
    finally:
        sandbox.close()
    assert parsed.meta["ocr"]["pages"] == list(range(1, 7))
    assert parsed.text.count("Mr Example") == 24
