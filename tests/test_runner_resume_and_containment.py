"""A rerun after damage or a killed run recomputes exactly what is missing or wrong, and the runner never
writes or deletes outside what it wrote (the guarantees behind `make mutants`' runner mutations)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pyarrow.parquet as pq

from curate.executors import LocalExecutor
from curate.filter.language import LanguageFilter
from curate.io import sha256_file, write_parquet
from curate.runner import run_stage
from curate.schema import records_table
from curate.stage import Input, StageResult, Task
from curate.verify import verify

ENGLISH = [
    "Adults with stage 1 hypertension should be offered lifestyle advice and a cardiovascular risk review.",
    "Start antibiotics within one hour when sepsis is suspected and the patient has signs of organ failure.",
    "Offer metformin as the first drug for adults with type 2 diabetes unless it is contraindicated.",
]
GERMAN = "Bluthochdruck bei Erwachsenen wird zunächst mit einer Änderung des Lebensstils behandelt."


def _shards(folder: Path, names: tuple[str, ...] = ("a", "b", "c")) -> Path:
    for n, name in enumerate(names):
        rows = [
            {"id": f"{name}:en", "text": f"{ENGLISH[n % 3]} Case {name}.", "source": "x"},
            {"id": f"{name}:de", "text": GERMAN, "source": "x"},
        ]
        write_parquet(records_table(rows), folder / f"{name}.parquet")
    return folder


def _run(src: Path, out: Path, **params) -> dict:
    return run_stage(LanguageFilter(name="language", **params), [Input(str(src))], out, LocalExecutor())


def _checksums(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*.parquet"))}


def test_a_kept_file_with_fewer_rows_than_its_footer_counts_is_recomputed(tmp_path: Path):
    src, out = _shards(tmp_path / "src"), tmp_path / "out"
    _run(src, out)
    intact = _checksums(out)
    # After a killed run (no manifest, so no checksums to compare with): a kept file whose footer still
    # carries its task's counts, but one row is gone.
    table = pq.read_table(out / "a.parquet")
    write_parquet(table.slice(0, table.num_rows - 1), out / "a.parquet")
    assert b"curate.task" in pq.read_schema(out / "a.parquet").metadata
    (out / "manifest.json").unlink()
    again = _run(src, out)
    assert (again["tasks"]["run"], again["tasks"]["skipped"]) == (1, 2)
    assert _checksums(out) == intact and verify(out)[1] == []


def test_a_lost_rejected_file_is_recomputed_after_a_killed_run(tmp_path: Path):
    src, out = _shards(tmp_path / "src"), tmp_path / "out"
    _run(src, out)
    intact = _checksums(out)
    (out / "rejected" / "b.parquet").unlink()
    (out / "manifest.json").unlink()
    again = _run(src, out)
    assert (again["tasks"]["run"], again["tasks"]["skipped"]) == (1, 2)
    assert _checksums(out) == intact  # b's German document is a rejected row again, not lost
    assert verify(out)[1] == []


def test_an_operators_files_in_a_stage_folder_survive_every_kind_of_rerun(tmp_path: Path):
    src, out = _shards(tmp_path / "src"), tmp_path / "out"
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "data").mkdir(parents=True)
    (elsewhere / "data" / "keep.txt").write_text("linked data")
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "todo.txt").write_text("the operator's notes")
    (out / "README.md").write_text("what this folder is")
    (out / "archive.parquet").mkdir()  # a folder named like a shard: not curate's, not a shard
    (out / "archive.parquet" / "old.txt").write_text("archived")
    (out / "linked.parquet").symlink_to(elsewhere / "data")
    (out / "rejected").mkdir()
    (out / "rejected" / "why.txt").write_text("kept too")
    theirs = {p: p.read_text() for p in (out / "README.md", out / "notes" / "todo.txt")}

    _run(src, out, threshold=0.5)
    _run(src, out, threshold=0.9)  # new parameters: what curate wrote is removed and recomputed
    (src / "c.parquet").unlink()
    fewer = _run(src, out, threshold=0.9)  # a task fewer: its outputs are stale and go

    assert fewer["tasks"]["total"] == 2
    assert not (out / "c.parquet").exists() and not (out / "rejected" / "c.parquet").exists()
    assert {p: p.read_text() for p in theirs} == theirs
    assert (out / "archive.parquet" / "old.txt").read_text() == "archived"
    assert (out / "linked.parquet").is_symlink() and (elsewhere / "data" / "keep.txt").exists()
    assert (out / "rejected" / "why.txt").read_text() == "kept too"


@dataclass
class Escaping(LanguageFilter):
    """A stage (a bug, or a hostile plugin) whose task names a side file outside its stage folder."""

    step: ClassVar[str] = "escaping"
    escape_to: str = "../escaped.txt"

    def process(self, task: Task) -> StageResult:
        result = super().process(task)
        result.sidecars[self.escape_to] = b"written outside the stage folder"
        return result


def test_a_side_file_named_outside_the_stage_folder_is_refused(tmp_path: Path):
    src, out = _shards(tmp_path / "src", ("a",)), tmp_path / "out"
    manifest = run_stage(Escaping(name="escaping"), [Input(str(src))], out, LocalExecutor())
    assert not (tmp_path / "escaped.txt").exists()
    [failed] = manifest["failed_tasks"]
    assert "outside the stage folder" in failed["error"]
    assert manifest["counts"]["errored"] == 2  # its documents are error rows, not lost
    assert json.loads((out / "manifest.json").read_text())["status"] == "incomplete"
