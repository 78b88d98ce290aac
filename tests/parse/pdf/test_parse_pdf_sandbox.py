"""The PDF sandbox: long-lived workers reused across files, replaced when a limit trips; the limits are real.

The hostile files really loop and really allocate inside MuPDF, so each limit is checked by what stops them:
the parent's kill (the worker never gets back to its own check between pages) and RLIMIT_AS in the worker.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pymupdf
import pytest

from curate.parse.pdf import PdfLimits, PdfSandbox, parse_pdf
from curate.parse.pdf.ocr import unavailable
from curate.schema import Rejection
from tests.parse.pdf.samples import LETTER, endless_page, huge_string_page, make_pdfs, scan


@pytest.fixture(scope="module")
def articles(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("sandbox-pdfs")
    make_pdfs.make_demo_pdfs(out)
    return [out / name for name in ("cardiology-trial.pdf", "sepsis-review.pdf", "asthma-guideline.pdf")]


def _gone(pid: int) -> bool:
    """Whether the process has ended (no /proc entry, or a zombie not yet reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def test_one_worker_serves_many_files_and_is_recycled(articles: list[Path]) -> None:
    sandbox = PdfSandbox(recycle_after=2)
    try:
        first = sandbox.parse(articles[0])
        assert first.text == parse_pdf(articles[0]).text and first.meta == parse_pdf(articles[0]).meta
        pids = sandbox.idle_pids()
        assert len(pids) == 1
        sandbox.parse(articles[1])  # the same worker's second document: then it is replaced
        assert sandbox.idle_pids() == []
        assert sandbox.parse(articles[2]).text == parse_pdf(articles[2]).text
        assert sandbox.idle_pids() and sandbox.idle_pids() != pids
    finally:
        sandbox.close()


@pytest.mark.timeout(90)  # without the parent's kill this test would wait for 2**40 strokes
def test_a_page_that_never_ends_is_killed_by_the_parent(tmp_path: Path, articles: list[Path]) -> None:
    sandbox = PdfSandbox()
    try:
        sandbox.parse(articles[0])
        [pid] = sandbox.idle_pids()  # the worker that will take the endless page
        with pytest.raises(Rejection) as caught:
            sandbox.parse(endless_page(tmp_path / "endless.pdf"), PdfLimits(max_seconds=1))
        assert caught.value.reason == "pdf_timeout"
        assert "killed" in caught.value.detail  # the parent's verdict, not the worker's check between pages
        assert sandbox.idle_pids() == [] and _gone(pid)  # the stuck worker is ended, not left running
        assert sandbox.parse(articles[0]).text  # and a fresh one takes the next file
    finally:
        sandbox.close()


@pytest.mark.timeout(90)
def test_a_page_that_allocates_past_the_cap_is_pdf_memory(tmp_path: Path, articles: list[Path]) -> None:
    # A 300 MB string in the content stream: MuPDF's lexer asks for 512 MB on top of the worker's own
    # ~400 MB of address space. Without the cap the page would parse for minutes and be killed as a timeout.
    path = huge_string_page(tmp_path / "bomb.pdf", 300)
    assert path.stat().st_size < 2_000_000
    sandbox = PdfSandbox()
    try:
        with pytest.raises(Rejection) as caught:
            sandbox.parse(path, PdfLimits(max_memory_mb=800, max_seconds=15))
        assert caught.value.reason == "pdf_memory"
        assert "max_memory_mb=800" in caught.value.detail
        assert sandbox.idle_pids() == []
        assert sandbox.parse(articles[0], PdfLimits(max_memory_mb=800)).text
    finally:
        sandbox.close()


@pytest.mark.timeout(90)
def test_a_worker_killed_from_outside_is_pdf_crashed(tmp_path: Path, articles: list[Path]) -> None:
    """A worker that dies of a signal mid-document (the OOM killer, a segfault in MuPDF) costs that document,
    as `pdf_crashed`, and the next one gets a fresh worker."""
    sandbox = PdfSandbox()
    try:
        sandbox.parse(articles[0])
        [pid] = sandbox.idle_pids()
        killer = threading.Timer(1.0, os.kill, (pid, signal.SIGKILL))
        killer.start()
        with pytest.raises(Rejection) as caught:
            sandbox.parse(endless_page(tmp_path / "endless.pdf"), PdfLimits(max_seconds=30))
        killer.join()
        assert (caught.value.reason, caught.value.detail) == ("pdf_crashed", "the parser died of signal 9")
        assert sandbox.parse(articles[0]).text
    finally:
        sandbox.close()


@pytest.mark.requires("ocr")
@pytest.mark.timeout(120)
def test_pages_sent_to_ocr_extend_the_time_budget(tmp_path: Path) -> None:
    """Ten scanned pages take seconds of OCR (5 s on a 2-core machine): about twice max_seconds (which bounds
    reading the text layer) plus the parent's grace of 2 s; well within it plus ocr_page_seconds per page."""
    if why := unavailable("eng"):
        pytest.skip(f"OCR engine not installed here ({why}); `make ocr` installs it")
    page = scan(tmp_path / "page.pdf", LETTER * 4)
    with pymupdf.open() as doc, pymupdf.open(page) as one:
        for _ in range(10):
            doc.insert_pdf(one)
        doc.save(tmp_path / "scanned.pdf")
    sandbox = PdfSandbox()
    try:
        parsed = sandbox.parse(tmp_path / "scanned.pdf", PdfLimits(max_seconds=0.3, ocr_page_seconds=60))
    finally:
        sandbox.close()
    assert parsed.meta["ocr"]["pages"] == list(range(1, 11))
    assert parsed.text.count("Mr Example") == 40
