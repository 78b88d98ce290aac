"""The stage runner without Ray: atomic outputs, resume, fingerprints, failures, accounting, manifests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.dedup.exact import ExactDedup
from curate.errors import AccountingError, ConfigError
from curate.executors import LocalExecutor, RayExecutor, Resources
from curate.filter.language import LanguageFilter
from curate.io import sha256_file, write_parquet
from curate.pipeline import load_pipeline, run_pipeline
from curate.runner import read_manifest, run_stage
from curate.schema import DROP_COLUMNS, RECORD_COLUMNS, records_table, with_drop
from curate.stage import Input, TableStage, Task
from curate.verify import verify

from .conftest import REPO

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
        path = out / entry["path"]
        assert sha256_file(path) == entry["sha256"]
        assert (pq.ParquetFile(path).metadata.num_rows, path.stat().st_size) == (
            entry["rows"],
            entry["bytes"],
        )
    assert sum(o["rows"] for o in manifest["outputs"]) == 4
    assert sum(o["rows"] for o in manifest["rejected_outputs"]) == 2
    assert not list(out.rglob("*.tmp-*"))


def test_rerun_skips_finished_tasks_and_keeps_bytes(shards: Path, tmp_path: Path):
    out = tmp_path / "filter"
    first = run_stage(LanguageFilter(name="filter"), [Input(str(shards))], out, LocalExecutor())
    before = _checksums(out)
    again = run_stage(LanguageFilter(name="filter"), [Input(str(shards))], out, LocalExecutor())
    assert (again["tasks"]["total"], again["tasks"]["run"], again["tasks"]["skipped"]) == (3, 0, 3)
    assert again["counts"] == {"in": 6, "kept": 4, "rejected": 2, "errored": 0}
    assert _checksums(out) == before
    # The tasks that ran told the manifest what they wrote; the rerun read it from the files: the same.
    for key in ("outputs", "rejected_outputs", "counts", "characters", "drop_reasons"):
        assert again[key] == first[key], key


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


# ---------------------------------------------------------------------------------------------- resources


def _pipeline_yaml(folder: Path, src: Path, resources: str) -> Path:
    path = folder / "p.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"name: r\nsources: {REPO / 'sources.yaml'}\nstages:\n"
        f"  - {{name: language, step: filter, inputs: [{src}]{resources}}}\n"
    )
    return path


def test_stage_resources_are_read_from_yaml_and_do_not_change_the_fingerprint(shards: Path, tmp_path: Path):
    first = _pipeline_yaml(tmp_path / "a", shards, ", num_cpus: 0.5, memory: 256MiB")
    pipeline, _ = load_pipeline(first)
    assert pipeline.stages[0].resources == Resources(num_cpus=0.5, memory=256 * 2**20)
    work = tmp_path / "work"
    [manifest] = run_pipeline(pipeline, work, LocalExecutor())
    assert manifest["resources"] == {"num_cpus": 0.5, "memory": 256 * 2**20}
    # Other resources, same output: nothing is recomputed.
    again, _ = load_pipeline(_pipeline_yaml(tmp_path / "b", shards, ", num_cpus: 2, memory: 1GB"))
    [rerun] = run_pipeline(again, work, LocalExecutor())
    assert (rerun["tasks"]["run"], rerun["tasks"]["skipped"]) == (0, 3)
    assert rerun["fingerprint"] == manifest["fingerprint"]


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        (", num_cpus: 0", "num_cpus must be a positive number"),
        (", num_cpus: two", "num_cpus must be a positive number"),
        (", memory: lots", "memory must be a size such as 2GB"),
        (", memory: -5", "memory must be a size such as 2GB"),
    ],
)
def test_bad_stage_resources_name_the_stage(shards: Path, tmp_path: Path, resources: str, message: str):
    with pytest.raises(ConfigError) as caught:
        load_pipeline(_pipeline_yaml(tmp_path, shards, resources))
    assert message in str(caught.value) and "stage 'language'" in str(caught.value)


@dataclass
class RecordResources(TableStage):
    """Keeps every row, and writes what Ray reserved for the task to a side file (for the test only)."""

    step: ClassVar[str] = "record-resources"
    log: str = ""

    def apply(self, table: pa.Table, task: Task) -> tuple[pa.Table, pa.Table]:
        import ray

        with open(self.log, "a") as f:
            f.write(json.dumps(ray.get_runtime_context().get_assigned_resources()) + "\n")
        return table, with_drop(table.slice(0, 0), self.name, [], [])


def test_ray_tasks_reserve_the_stage_resources(ray_session, shards: Path, tmp_path: Path):
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import the tests package
    log = tmp_path / "assigned.jsonl"
    stage = RecordResources(name="r", log=str(log))
    resources = Resources(num_cpus=2, memory=50 * 2**20)
    manifest = run_stage(stage, [Input(str(shards))], tmp_path / "out", RayExecutor(), resources=resources)
    assert manifest["counts"]["kept"] == 6
    assigned = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(assigned) == 3
    assert all(a["CPU"] == 2 and a["memory"] == 50 * 2**20 for a in assigned), assigned


def test_a_task_larger_than_every_node_is_refused_not_left_waiting(ray_session, shards: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="no node of the cluster can run a task needing num_cpus=64"):
        run_stage(
            LanguageFilter(name="f"),
            [Input(str(shards))],
            tmp_path / "out",
            RayExecutor(),
            resources=Resources(num_cpus=64),
        )


def test_a_failed_task_names_its_node_and_inputs(shards: Path, tmp_path: Path):
    (shards / "d.parquet").write_bytes(b"PAR1 this is not parquet")
    manifest = run_stage(LanguageFilter(name="filter"), [Input(str(shards))], tmp_path / "o", LocalExecutor())
    [failure] = manifest["failed_tasks"]
    assert failure["node"] == "local"
    assert failure["inputs"] == [str(shards / "d.parquet")]


# ---------------------------------------------------------------------------------------------- safety nets
# Each test below fails when the guarantee it names is removed from the runner (issue 13's mutations).


def _flip_in_data_page(path: Path, column: str = "text") -> None:
    """Flip one byte inside a column's compressed data: the footer (and the row count) stays readable."""
    meta = pq.ParquetFile(path).metadata
    chunk = meta.row_group(0).column(meta.schema.to_arrow_schema().get_field_index(column))
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data = bytearray(path.read_bytes())
    data[start + chunk.total_compressed_size - 3] ^= 0x01
    path.write_bytes(bytes(data))
    assert pq.ParquetFile(path).metadata.num_rows == meta.num_rows  # still looks whole


def test_an_input_rewritten_between_runs_is_recomputed(shards: Path, tmp_path: Path):
    out = tmp_path / "filter"
    run_stage(LanguageFilter(name="filter"), [Input(str(shards))], out, LocalExecutor())
    # Same file name and row count, other documents: only the file's size and mtime tell.
    rows = [{"id": f"t:new{i}", "text": GERMAN, "source": "demo-wiki"} for i in range(2)]
    write_parquet(records_table(rows), shards / "b.parquet")
    stat = (shards / "b.parquet").stat()
    os.utime(shards / "b.parquet", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    again = run_stage(LanguageFilter(name="filter"), [Input(str(shards))], out, LocalExecutor())
    assert again["tasks"]["run"] == 3
    assert again["counts"] == {"in": 6, "kept": 2, "rejected": 4, "errored": 0}
    assert "t:new0" in _read(out / "rejected").column("id").to_pylist()


@dataclass
class LoseOne(TableStage):
    """A buggy stage: it drops a shard's last document without a rejected row."""

    step: ClassVar[str] = "lose-one"

    def apply(self, table: pa.Table, task: Task) -> tuple[pa.Table, pa.Table]:
        return table.slice(0, table.num_rows - 1), with_drop(table.slice(0, 0), self.name, [], [])


def test_a_task_that_loses_a_document_fails_and_its_documents_become_error_rows(shards: Path, tmp_path: Path):
    out = tmp_path / "lose"
    manifest = run_stage(LoseOne(name="lose"), [Input(str(shards))], out, LocalExecutor())
    assert manifest["status"] == "incomplete"
    assert {f["task"] for f in manifest["failed_tasks"]} == {"a", "b", "c"}
    assert all("AccountingError" in f["error"] for f in manifest["failed_tasks"])
    assert manifest["counts"] == {"in": 6, "kept": 0, "rejected": 0, "errored": 6}  # none lost
    assert sorted(_read(out / "rejected").column("id").to_pylist()) == sorted(
        pq.ParquetDataset(sorted(str(p) for p in shards.glob("*.parquet"))).read().column("id").to_pylist()
    )


def test_finished_outputs_whose_counts_do_not_add_up_never_get_a_manifest(shards: Path, tmp_path: Path):
    out = tmp_path / "filter"
    run_stage(LanguageFilter(name="filter"), [Input(str(shards))], out, LocalExecutor())
    # A finished task whose recorded counts claim a document more than it wrote (and no manifest to
    # compare checksums with): the stage-wide check is the last line.
    kept = pq.read_table(out / "a.parquet")
    counts = json.loads(kept.schema.metadata[b"curate.task"])
    counts["in"] += 1
    write_parquet(
        kept.replace_schema_metadata({b"curate.task": json.dumps(counts).encode()}), out / "a.parquet"
    )
    (out / "manifest.json").unlink()
    with pytest.raises(AccountingError, match="counts do not add up"):
        run_stage(LanguageFilter(name="filter"), [Input(str(shards))], out, LocalExecutor())
    assert not (out / "manifest.json").exists()


def test_a_bit_flipped_in_a_data_page_is_found_by_the_checksum_and_recomputed(shards: Path, tmp_path: Path):
    out = tmp_path / "filter"
    run_stage(LanguageFilter(name="filter"), [Input(str(shards))], out, LocalExecutor())
    intact = _checksums(out)
    _flip_in_data_page(out / "a.parquet")
    repaired = run_stage(LanguageFilter(name="filter"), [Input(str(shards))], out, LocalExecutor())
    assert (repaired["tasks"]["run"], repaired["tasks"]["skipped"]) == (1, 2)
    assert _checksums(out) == intact
    assert verify(out)[1] == []  # the manifest vouches for the recomputed file, not the damaged one


def test_a_damaged_output_whose_task_then_fails_gets_the_error_files_checksum(
    shards: Path, tmp_path: Path, monkeypatch
):
    out = tmp_path / "filter"
    run_stage(LanguageFilter(name="filter"), [Input(str(shards))], out, LocalExecutor())
    _flip_in_data_page(out / "rejected" / "c.parquet")  # c's dropped rows: its outputs are recomputed
    original = LanguageFilter.apply

    def fail_on_c(self, table, task):
        if task.name == "c":
            raise RuntimeError("c fails this time")
        return original(self, table, task)

    monkeypatch.setattr(LanguageFilter, "apply", fail_on_c)
    manifest = run_stage(LanguageFilter(name="filter"), [Input(str(shards))], out, LocalExecutor())
    assert [f["task"] for f in manifest["failed_tasks"]] == ["c"]
    entries = {e["path"]: e for e in manifest["rejected_outputs"]}
    # The error rows now in rejected/c.parquet, not the damaged file the first check hashed.
    assert entries["rejected/c.parquet"]["sha256"] == sha256_file(out / "rejected" / "c.parquet")
    assert entries["rejected/c.parquet"]["rows"] == manifest["counts"]["errored"]


KILLABLE = """
import os, sys
import pyarrow as pa
from curate.io import write_parquet
blob = os.urandom(20_000_000).hex()
table = pa.table({"text": [blob[i : i + 20_000] for i in range(0, len(blob), 20_000)]})
print(table.num_rows, flush=True)
for n in range(1000):
    write_parquet(table, f"{sys.argv[1]}/{n:04d}.parquet", row_group_size=20)
"""


def test_a_write_killed_midway_never_leaves_a_file_under_its_final_name(tmp_path: Path):
    for attempt in range(5):
        folder = tmp_path / f"try-{attempt}"
        folder.mkdir()
        writer = subprocess.Popen(
            [sys.executable, "-c", KILLABLE, str(folder)], stdout=subprocess.PIPE, text=True
        )
        rows = int(writer.stdout.readline())
        time.sleep(0.2 + 0.1 * attempt)  # a few files written, one being written
        assert writer.poll() is None, "the writer finished before it could be killed"
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        for f in folder.glob("*.parquet"):  # every file under a final name is whole
            assert pq.ParquetFile(f).metadata.num_rows == rows, f"{f.name} is a partial write"
        if any(folder.glob(".*.tmp-*")):
            return  # the kill hit a write: its partial file has a temporary name, which a rerun removes
    pytest.fail("no kill landed inside a write in 5 attempts")


DIES_ON = """
import os, sys
from dataclasses import dataclass
from pathlib import Path
from curate.executors import LocalExecutor
from curate.filter.language import LanguageFilter
from curate.runner import run_stage
from curate.stage import Input

@dataclass
class DiesOn(LanguageFilter):
    def apply(self, table, task):
        if task.name == os.environ.get("DIE_ON"):
            os._exit(9)  # the process dies in the middle of the stage, like a SIGKILL
        return super().apply(table, task)

run_stage(DiesOn(name="filter"), [Input(sys.argv[1])], Path(sys.argv[2]), LocalExecutor())
"""


def test_damage_done_while_a_run_was_killed_is_found_on_resume(shards: Path, tmp_path: Path):
    out = tmp_path / "filter"

    def run(die_on: str = "") -> int:
        command = [sys.executable, "-c", DIES_ON, str(shards), str(out)]
        env = {**os.environ, "DIE_ON": die_on}
        return subprocess.run(command, cwd=REPO, env=env, capture_output=True, timeout=120).returncode

    assert run() == 0
    intact = _checksums(out)
    (out / "b.parquet").unlink()  # so the next run has a task to do, and dies doing it
    assert run(die_on="b") == 9
    _flip_in_data_page(out / "a.parquet")  # damage while nothing runs: the manifest must still know a
    assert run() == 0
    assert _checksums(out) == intact
    from curate.verify import verify

    assert verify(out)[1] == []
