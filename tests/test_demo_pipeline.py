"""The whole demo pipeline on a real local Ray: counts, schema, accounting, reruns, resume after a kill."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from curate.executors import RayExecutor
from curate.parse.pdf.ocr import unavailable
from curate.parse.stages import PdfStage
from curate.pipeline import load_pipeline, run_pipeline
from curate.runner import run_stage
from curate.schema import RECORD_COLUMNS
from curate.stage import Input

from .conftest import REPO

DEMO = REPO / "pipelines" / "demo.yaml"
STAGES = ["guidelines", "papers", "scraped", "language", "clean", "quality", "dedup", "near_dedup"]
STAGES += ["decontaminate", "shard"]
SOURCES = {"demo-guidelines", "demo-wiki", "demo-papers", "nice", "who"}


@pytest.fixture(scope="module")
def demo_pdfs() -> Path:
    sys.path.insert(0, str(REPO / "pipelines" / "demo"))
    from make_pdfs import make_demo_pdfs

    folder = REPO / "pipelines" / "demo" / "pdf"
    make_demo_pdfs(folder)
    return folder


@pytest.fixture(scope="module")
def demo_run(ray_session, demo_pdfs, tmp_path_factory) -> tuple[Path, list[dict]]:
    workdir = tmp_path_factory.mktemp("demo")
    pipeline, _ = load_pipeline(DEMO)
    manifests = run_pipeline(pipeline, workdir, RayExecutor())
    return workdir, manifests


def _rows(folder: Path) -> list[dict]:
    files = sorted(str(p) for p in folder.glob("*.parquet"))
    return pq.ParquetDataset(files).read().to_pylist() if files else []


def _reasons(stage_dir: Path) -> dict[str, str]:
    return {r["id"]: r["drop_reason"] for r in _rows(stage_dir / "rejected")}


def _shard_checksums(workdir: Path) -> dict[str, str]:
    manifest = json.loads((workdir / "shard" / "manifest.json").read_text())
    return {o["path"]: o["sha256"] for o in manifest["outputs"]}


def test_every_stage_accounts_for_every_document(demo_run):
    workdir, manifests = demo_run
    assert [m["stage"] for m in manifests] == STAGES
    for m in manifests:
        c = m["counts"]
        assert c["in"] == c["kept"] + c["rejected"] + c["errored"], m["stage"]
        assert m["status"] == "complete"
        # The manifest's numbers are the files' numbers.
        assert sum(o["rows"] for o in m["outputs"]) == c["kept"]
        assert sum(o["rows"] for o in m["rejected_outputs"]) == c["rejected"] + c["errored"]
    by_stage = {m["stage"]: m["counts"] for m in manifests}
    # Each stage reads exactly what the stages it names kept.
    assert by_stage["language"]["in"] == sum(by_stage[s]["kept"] for s in ("guidelines", "papers", "scraped"))
    chain = STAGES[STAGES.index("language") :]
    for before, after in zip(chain[:-1], chain[1:], strict=True):
        assert by_stage[after]["in"] == by_stage[before]["kept"], after
    assert by_stage["shard"]["kept"] == by_stage["shard"]["in"]


def test_bad_inputs_are_rejected_with_their_reasons(demo_run):
    workdir, _ = demo_run
    html = _reasons(workdir / "guidelines")
    assert html == {"demo-wiki:stub": "html_no_text", "demo-wiki:download": "html_not_text"}
    pdf = _reasons(workdir / "papers")
    expected = {"demo-papers:locked-report": "pdf_encrypted", "demo-papers:truncated": "pdf_broken"}
    if unavailable("eng"):  # without Tesseract's models the scan stays unread
        expected["demo-papers:scanned-letter"] = "pdf_no_text"
    else:  # the scanned letter is read by OCR and goes on through the pipeline
        letter = {r["id"]: r for r in _rows(workdir / "papers")}["demo-papers:scanned-letter"]
        assert json.loads(letter["meta"])["ocr"]["pages"] == [1] and "breathlessness" in letter["text"]
    assert pdf == expected
    language = _rows(workdir / "language" / "rejected")
    assert [(r["source"], r["drop_reason"], r["lang"]) for r in language] == [("demo-wiki", "lang", "de")]


def test_the_wiki_copy_of_a_guideline_is_removed_across_sources(demo_run):
    workdir, _ = demo_run
    dropped = _rows(workdir / "dedup" / "rejected")
    assert len(dropped) == 1
    assert dropped[0]["source"] == "demo-wiki" and dropped[0]["drop_reason"] == "exact_duplicate"
    survivor = dropped[0]["drop_detail"].removeprefix("duplicate of ")
    assert survivor == "demo-guidelines:hypertension-in-adults"
    kept = {r["id"]: r for r in _rows(workdir / "dedup")}
    assert kept[survivor]["dup_cluster"] == dropped[0]["dup_cluster"]


def test_the_edited_wiki_copy_is_a_near_duplicate_and_the_guideline_survives(demo_run):
    workdir, _ = demo_run
    dropped = _rows(workdir / "near_dedup" / "rejected")
    assert [(r["id"], r["drop_reason"]) for r in dropped] == [
        ("demo-wiki:sepsis-guideline-copy", "near_duplicate")
    ]
    assert dropped[0]["drop_detail"] == "near-duplicate of demo-guidelines:sepsis-recognition"
    kept = {r["id"]: r for r in _rows(workdir / "shard")}
    assert kept["demo-guidelines:sepsis-recognition"]["dup_cluster"] == dropped[0]["dup_cluster"]


def test_decontamination_cuts_one_item_of_each_layout_out_of_the_demo(demo_run):
    workdir, _ = demo_run
    report = json.loads((workdir / "decontaminate" / "decontamination.json").read_text())
    assert {name: b["items_found"] for name, b in report["benchmarks"].items()} == dict.fromkeys(
        ("held_out", "medmcqa", "medqa", "mmlu", "pubmedqa"), 1
    )
    assert (report["documents_contaminated"], report["documents_cut"]) == (5, 5)
    cut = {r["id"]: r for r in _rows(workdir / "shard") if "decontaminate" in json.loads(r["meta"])}
    trial = cut["demo-papers:cardiology-trial"]["text"]  # its title and abstract are a PubMedQA item
    assert "312 adults discharged" not in trial and "Participants were randomly assigned" in trial
    assert "Blood pressure readings vary" not in cut["demo-guidelines:hypertension-in-adults"]["text"]


def test_quality_keeps_every_guideline_page_and_says_why_it_drops(demo_run):
    workdir, manifests = demo_run
    quality = next(m for m in manifests if m["stage"] == "quality")
    dropped = _rows(workdir / "quality" / "rejected")
    assert len(dropped) == quality["counts"]["rejected"]
    assert not [r for r in dropped if r["source"].startswith("demo-")]
    assert all(r["drop_stage"] == "quality" and r["drop_reason"] and r["drop_detail"] for r in dropped)


def test_final_shards_are_clean_loadable_records(demo_run):
    workdir, manifests = demo_run
    shard_dir = workdir / "shard"
    dataset = ds.dataset(sorted(str(p) for p in shard_dir.glob("*.parquet")), format="parquet")
    table = dataset.to_table()
    assert table.column_names[: len(RECORD_COLUMNS)] == RECORD_COLUMNS
    assert {"lang", "lang_score", "dup_cluster"} <= set(table.column_names)
    assert table.num_rows == manifests[-1]["counts"]["kept"]
    rows = table.to_pylist()
    assert len({r["id"] for r in rows}) == len(rows)
    assert {r["source"] for r in rows} == SOURCES
    for r in rows:
        assert len(r["text"]) > 300 and r["lang"] == "en"
        if r["source"].startswith("demo-"):  # local files
            assert r["license"].startswith("CC0") and r["url"].startswith("file://")
        else:  # scraped from the local copy of a site: the real URL, the source's licence
            assert r["url"].startswith(("https://www.nice.org.uk/", "https://iris.who.int/"))
            assert r["license"].startswith(("NICE", "WHO"))
        json.loads(r["meta"])
    for path in shard_dir.glob("shard-*.parquet"):
        assert pq.ParquetFile(path).metadata.row_group(0).column(1).compression == "ZSTD"
        stats = json.loads(path.with_name(path.stem + ".stats.json").read_text())
        assert stats["documents"] == pq.ParquetFile(path).metadata.num_rows
    corpus = json.loads((shard_dir / "stats.json").read_text())
    assert corpus["documents"] == table.num_rows


def test_rerun_skips_everything_and_changes_nothing(demo_run):
    workdir, first = demo_run
    before = _shard_checksums(workdir)
    pipeline, _ = load_pipeline(DEMO)
    again = run_pipeline(pipeline, workdir, RayExecutor())
    assert all(m["tasks"]["run"] == 0 for m in again)
    assert [m["counts"] for m in again] == [m["counts"] for m in first]
    assert _shard_checksums(workdir) == before


def test_resume_after_a_kill_gives_identical_output(demo_run, tmp_path: Path):
    workdir, _ = demo_run
    copy = tmp_path / "killed"
    shutil.copytree(workdir, copy)
    # A kill during the language stage: one of its shards never renamed into place, later stages not run.
    victim = sorted((copy / "language").glob("*.parquet"))[0]
    victim.rename(victim.with_name(f".{victim.name}.tmp-0badc0de"))
    for stage in STAGES[STAGES.index("language") :]:
        (copy / stage / "manifest.json").unlink()
    shutil.rmtree(copy / "shard")
    pipeline, _ = load_pipeline(DEMO)
    resumed = run_pipeline(pipeline, copy, RayExecutor())
    runs = {m["stage"]: m["tasks"]["run"] for m in resumed}
    assert runs["guidelines"] == runs["papers"] == runs["scraped"] == 0 and runs["language"] == 1
    assert _shard_checksums(copy) == _shard_checksums(workdir)
    assert not list(copy.rglob("*.tmp-*"))


def test_cli_runs_the_demo_and_stats_agree_with_manifests(demo_pdfs, tmp_path: Path):
    workdir = tmp_path / "cli"
    curate = [sys.executable, "-m", "curate"]
    run = subprocess.run(
        [*curate, "run", str(DEMO), "--workdir", str(workdir), "--num-cpus", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stderr
    assert "shard" in run.stderr  # the summary table
    stats = subprocess.run(
        [*curate, "stats", str(workdir), "--json"], capture_output=True, text=True, cwd=REPO
    )
    assert stats.returncode == 0, stats.stderr
    result = json.loads(stats.stdout)
    final = json.loads((workdir / "shard" / "manifest.json").read_text())
    assert result["documents"] == final["counts"]["kept"]
    assert result["characters"] == final["characters"]["kept"]
    assert set(result["by_source"]) == SOURCES
    assert set(result["by_lang"]) == {"en"}
    assert result["rejected"]["exact_duplicate"] == 1 and result["rejected"]["lang"] == 1
    assert result["rejected"]["near_duplicate"] == 1
    funnel = {f["stage"]: f for f in result["funnel"]}
    for stage in STAGES:
        manifest = json.loads((workdir / stage / "manifest.json").read_text())
        assert funnel[stage]["kept"] == manifest["counts"]["kept"]


def test_pdf_stage_parses_all_pmc_articles(ray_session, evaldata: Path, tmp_path: Path):
    out = tmp_path / "pmc"
    manifest = run_stage(
        PdfStage(name="pdf", source="pmc"), [Input(str(evaldata / "pmc_pdf_jats"))], out, RayExecutor()
    )
    assert manifest["counts"] == {"in": 25, "kept": 25, "rejected": 0, "errored": 0}
    assert all(len(r["text"]) > 1000 for r in _rows(out))


def test_pdf_stage_accounts_for_every_hard_case(ray_session, evaldata: Path, tmp_path: Path):
    out = tmp_path / "hard"
    manifest = run_stage(PdfStage(name="pdf"), [Input(str(evaldata / "pdf_hard_cases"))], out, RayExecutor())
    c = manifest["counts"]
    assert c["in"] == 22 and c["errored"] == 0
    assert c["kept"] + c["rejected"] == 22
    rejected = _rows(out / "rejected")
    assert all(r["drop_reason"].startswith("pdf_") and r["drop_detail"] for r in rejected)
    assert {"pdf_encrypted", "pdf_broken", "pdf_no_text"} <= {r["drop_reason"] for r in rejected}
