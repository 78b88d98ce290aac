"""The PDF sandbox: long-lived workers reused across files, replaced when a limit trips; the limits are real.

The hostile files really loop and really allocate inside MuPDF, so each limit is checked by what stops them:
the parent's kill (the worker never gets back to its own check between pages) and RLIMIT_AS in the worker.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from curate.parse.pdf import PdfLimits, PdfSandbox, parse_pdf
from curate.schema import Rejection
from tests.parse.pdf.samples import endless_page, huge_string_page, make_pdfs


@pytest.fixture(scope="module")
def articles(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("sandbox-pdfs")
    make_pdfs.make_demo_pdfs(out)
    return [out / name for name in ("cardiology-trial.pdf", "sepsis-review.pdf", "asthma-guideline.pdf")]


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
        with pytest.raises(Rejection) as caught:
            sandbox.parse(endless_page(tmp_path / "endless.pdf"), PdfLimits(max_seconds=1))
        assert caught.value.reason == "pdf_timeout"
        assert "killed" in caught.value.detail  # the parent's verdict, not the worker's check between pages
        assert sandbox.idle_pids() == []  # the stuck worker is gone
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
