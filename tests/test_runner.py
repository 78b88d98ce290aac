"""The stage runner without Ray: atomic outputs, resume, fingerprints, failures, accounting, manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curate.dedup.exact import ExactDedup
from curate.filter.language import LanguageFilter
from curate.io import sha256_file, write_parquet
from curate.runner import LocalExecutor, read_manifest, run_stage
from curate.schema import DROP_COLUMNS, RECORD_COLUMNS, records_table
from curate.stage import Input

ENGLISH = [
    "Adults with stage 1 hypertension should be offered lifestyle advice and a cardiovascular risk review.",
    "Start antibiotics within one hour when sepsis is suspected and the patient has signs of organ failure.",
    "Offer metformin as the first drug for adults with type 2 diabetes unless it is contraindicated.",
    "Measure blood pressure in both arms and repeat the reading if the first is above 140/90 mmHg.",
]
GERMAN = "Bluthochdruck bei Erwachsenen wird zunächst mit einer Änderung des Lebensstils behandelt."


def _write_shards(folder: Path) -> list[Path]:
    rows = [{"id": f"t:{i}", "text": t, "source": "demo-guidelines"} for i, t in enumerate(ENGLISH)]
    rows.append({"id": "t:de", "text": GERMAN, "source": "demo-wiki"})
    rows.append({"id": "t:empty", "text": "   ", "source": "demo-wiki"})
    paths = [folder / "a.parquet", folder / "b.parquet", folder / "c.parquet"]
    write_parquet(records_table(rows[:2]), paths[0])
    write_parquet(records_table(rows[2:4]), paths[1])
    write_parquet(records_table(rows[4:]), paths[2])
    return paths


def _read(folder: Path):
    """The rows of a stage directory's shards (as a user reads them: DIR/*.parquet, not DIR/)."""
    return pq.ParquetDataset(sorted(str(p) for p in folder.glob("*.parquet"))).read()


def _checksums(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*.parquet"))}


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    _write_shards(src)
    return src


def test_stage_writes_kept_rejected_and_manifest(shards: Path, tmp_path: Path):
    out = tmp_path / "filter"
    manifest = run_stage(LanguageFilter(name="filter"), [Input(str(shards))], out, LocalExecutor())

    assert manifest["counts"] == {"in": 6, "kept": 4, "rejected": 2, "errored": 0}
    assert manifest["drop_reasons"] == {"empty": 1, "lang": 1}
    assert manifest["status"] == "complete"
    assert read_manifest(out) == json.loads((out / "manifest.json").read_text())
    kept = _read(out)
    assert kept.column_names[: len(RECORD_COLUMNS)] == RECORD_COLUMNS
    assert set(kept.column("lang").to_pylist()) == {"en"}
    rejected = _read(out / "rejected")
    assert set(DROP_COLUMNS) <= set(rejected.column_names)
    by_id = {r["id"]: r for r in rejected.to_pylist()}
    assert by_id["t:de"]["drop_reason"] == "lang" and by_id["t:de"]["drop_detail"].startswith("de ")
    assert by_id["t:empty"]["drop_reason"] == "empty"
    for entry in manifest["outputs"] + manifest["rejected_outputs"]:
        assert sha256_file(out / entry["path"]) == entry["sha256"]
    assert sum(o["rows"] for o in manifest["outputs"]) == 4
    assert not list(out.rglob("*.tmp-*"))


def test_rerun_skips_finished_tasks_and_keeps_bytes(shards: Path, tmp_path: Path):
    out = tmp_path / "filter"
    run_stage(LanguageFilter(name="filter"), [Input(str(shards))], out, LocalExecutor())
    before = _checksums(out)
    again = run_stage(LanguageFilter(name="filter"), [Input(str(shards))], out, LocalExecutor())
    assert (again["tasks"]["total"], again["tasks"]["run"], again["tasks"]["skipped"]) == (3, 0, 3)
    assert again["counts"] == {"in": 6, "kept": 4, "rejected": 2, "errored": 0}
    assert _checksums(out) == before


def test_interrupted_run_resumes_only_missing_tasks_with_identical_output(shards: Path, tmp_path: Path):
    out = tmp_path / "filter"
    run_stage(LanguageFilter(name="filter"), [Input(str(shards))], out, LocalExecutor())
    complete = _checksums(out)
    # What a kill leaves behind: one task's kept file missing, a half-written temporary, no manifest.
    (out / "b.parquet").unlink()
    (out / ".a.parquet.tmp-deadbeef").write_bytes(b"partial")
    (out / "manifest.json").unlink()
    resumed = run_stage(LanguageFilter(name="filter"), [Input(str(shards))], out, LocalExecutor())
    assert (resumed["tasks"]["total"], resumed["tasks"]["run"], resumed["tasks"]["skipped"]) == (3, 1, 2)
    assert _checksums(out) == complete
    assert not list(out.glob(".*tmp-*"))


def test_changed_parameters_recompute_the_stage(shards: Path, tmp_path: Path):
    out = tmp_path / "filter"
    run_stage(LanguageFilter(name="filter"), [Input(str(shards))], out, LocalExecutor())
    german = run_stage(LanguageFilter(name="filter", keep=["de"]), [Input(str(shards))], out, LocalExecutor())
    assert german["tasks"]["run"] == 3
    assert _read(out).column("id").to_pylist() == ["t:de"]


def test_corrupt_input_shard_is_an_error_record_not_a_crash(shards: Path, tmp_path: Path):
    (shards / "d.parquet").write_bytes(b"PAR1 this is not parquet")
    out = tmp_path / "filter"
    manifest = run_stage(LanguageFilter(name="filter"), [Input(str(shards))], out, LocalExecutor())
    assert manifest["status"] == "incomplete"
    assert [f["task"] for f in manifest["failed_tasks"]] == ["d"]
    assert manifest["counts"]["kept"] == 4 and manifest["counts"]["errored"] == 1
    c = manifest["counts"]
    assert c["in"] == c["kept"] + c["rejected"] + c["errored"]
    errors = pq.read_table(out / "rejected" / "d.parquet").to_pylist()
    assert errors[0]["drop_reason"] == "error" and "d.parquet" in errors[0]["id"]
    # Once the input is repaired, a rerun retries exactly the failed task.
    (shards / "d.parquet").unlink()
    write_parquet(
        records_table([{"id": "t:new", "text": ENGLISH[0] + " Again.", "source": "x"}]), shards / "d.parquet"
    )
    fixed = run_stage(LanguageFilter(name="filter"), [Input(str(shards))], out, LocalExecutor())
    assert fixed["status"] == "complete" and fixed["counts"]["kept"] == 5


def test_dedup_result_does_not_depend_on_sharding(tmp_path: Path):
    texts = [ENGLISH[0], ENGLISH[0].upper(), ENGLISH[1], ENGLISH[1].lower(), ENGLISH[2] + " More text."]
    sources = ["demo-wiki", "demo-guidelines", "demo-wiki", "demo-wiki", "demo-guidelines"]
    rows = [
        {"id": f"d:{i}", "text": t, "source": s} for i, (t, s) in enumerate(zip(texts, sources, strict=True))
    ]
    one, two = tmp_path / "one", tmp_path / "two"
    write_parquet(records_table(rows), one / "all.parquet")
    write_parquet(records_table(rows[:2]), two / "x.parquet")
    write_parquet(records_table(rows[2:]), two / "y.parquet")
    priority = {"demo-guidelines": 10, "demo-wiki": 60}
    results = []
    for src in (one, two):
        out = tmp_path / f"dedup-{src.name}"
        m = run_stage(ExactDedup(name="dedup", priority=priority), [Input(str(src))], out, LocalExecutor())
        assert m["counts"] == {"in": 5, "kept": 3, "rejected": 2, "errored": 0}
        kept = sorted(_read(out).column("id").to_pylist())
        dropped = {r["id"]: r["drop_detail"] for r in _read(out / "rejected").to_pylist()}
        results.append((kept, dropped))
    assert results[0] == results[1]
    kept, dropped = results[0]
    # The guideline wins over the wiki copy (priority); among equals the longer text, then the smaller id.
    assert dropped == {"d:0": "duplicate of d:1", "d:3": "duplicate of d:2"}
    assert kept == ["d:1", "d:2", "d:4"]
