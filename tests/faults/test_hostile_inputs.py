"""Hostile file inputs are accounted for, one record each, and never stop a stage."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq

from curate.executors import LocalExecutor
from curate.parse.stages import HtmlStage
from curate.runner import run_stage
from curate.stage import Input

from ..conftest import REPO

PAGE = REPO / "pipelines" / "demo" / "html" / "demo-guidelines" / "sepsis-recognition.html"


def _rows(folder: Path) -> dict[str, dict]:
    files = sorted(folder.glob("*.parquet"))
    return (
        {r["id"]: r for r in pq.ParquetDataset([str(f) for f in files]).read().to_pylist()} if files else {}
    )


def test_symlinks_odd_names_and_empty_files_each_get_a_record(tmp_path: Path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(PAGE, src / "good.html")
    shutil.copy(PAGE, os.fsdecode(bytes(src) + b"/latin\xe9-name.html"))  # not valid UTF-8
    (src / "empty.html").write_bytes(b"")
    os.symlink("/etc/passwd", src / "passwd.html")
    os.symlink(src, src / "loop.html")  # a directory link that would loop if followed
    (src / "notes.txt").write_text("not an input")  # other suffixes are not inputs
    out = tmp_path / "out"
    stage = HtmlStage(name="html", source="local-html", licenses={"local-html": None})
    manifest = run_stage(stage, [Input(str(src))], out, LocalExecutor())

    assert manifest["counts"] == {"in": 5, "kept": 2, "rejected": 3, "errored": 0}
    kept = _rows(out)
    assert set(kept) == {"local-html:good", "local-html:latin\ufffd-name"}
    assert kept["local-html:latin\ufffd-name"]["url"].endswith("/latin%E9-name.html")
    rejected = {r["id"]: (r["drop_reason"], r["drop_detail"]) for r in _rows(out / "rejected").values()}
    assert (
        rejected["local-html:passwd"][0] == "input_symlink"
        and "/etc/passwd" in rejected["local-html:passwd"][1]
    )
    assert rejected["local-html:loop"][0] == "input_symlink"
    assert rejected["local-html:empty"][0] in {"html_no_text", "html_not_text"}
    assert "passwd" not in "".join(r["text"] for r in kept.values())  # the link target was never read


def test_2_gb_files_are_refused_without_being_read(tmp_path: Path):
    from curate.parse.stages import PdfStage

    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(PAGE, src / "good.html")
    for name, head in (("huge.html", b"<html><body><p>"), ("huge.pdf", b"%PDF-1.7\n")):
        with open(src / name, "wb") as fh:  # sparse: 2 GB on paper, a few bytes on disk
            fh.write(head)
            fh.truncate(2 * 1024**3)
    html = run_stage(
        HtmlStage(name="html", licenses={"local-html": None}),
        [Input(str(src))],
        tmp_path / "h",
        LocalExecutor(),
    )
    assert html["counts"] == {"in": 2, "kept": 1, "rejected": 1, "errored": 0}
    assert _rows(tmp_path / "h" / "rejected")["local-html:huge"]["drop_reason"] == "html_too_large"
    pdf = run_stage(
        PdfStage(name="pdf", licenses={"local-pdf": None}), [Input(str(src))], tmp_path / "p", LocalExecutor()
    )
    assert pdf["counts"] == {"in": 1, "kept": 0, "rejected": 1, "errored": 0}
    detail = _rows(tmp_path / "p" / "rejected")["local-pdf:huge"]
    assert detail["drop_reason"] == "pdf_too_large" and "2147483648 bytes" in detail["drop_detail"]


def test_pdf_over_its_time_limit_is_rejected_and_the_stage_goes_on(ray_session, tmp_path: Path):
    import sys

    from curate.executors import RayExecutor
    from curate.parse.stages import PdfStage

    sys.path.insert(0, str(REPO / "pipelines" / "demo"))
    from make_pdfs import make_demo_pdfs

    pdfs = make_demo_pdfs(tmp_path / "pdf")
    article = next(p for p in pdfs if p.name == "cardiology-trial.pdf")
    # Parsed in a killable child process (the default): no time at all for it means pdf_timeout.
    stage = PdfStage(name="pdf", max_seconds=0, licenses={"local-pdf": None})
    manifest = run_stage(stage, [Input(str(article))], tmp_path / "out", RayExecutor())
    assert manifest["counts"] == {"in": 1, "kept": 0, "rejected": 1, "errored": 0}
    [row] = _rows(tmp_path / "out" / "rejected").values()
    assert row["drop_reason"] == "pdf_timeout"
    ok = run_stage(
        PdfStage(name="pdf", licenses={"local-pdf": None}),
        [Input(str(article))],
        tmp_path / "ok",
        RayExecutor(),
    )
    assert ok["counts"]["kept"] == 1
