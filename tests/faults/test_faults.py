"""Faults on a real local Ray: killed driver, killed worker, poisonous input, damaged outputs, full disk."""

from __future__ import annotations

import json
import os
import random
import shutil
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

from curate.dedup.near import NearDedup
from curate.errors import DiskFullError, PreparationError
from curate.executors import LocalExecutor, RayExecutor
from curate.filter.language import LanguageFilter
from curate.io import sha256_file, write_parquet
from curate.pipeline import load_pipeline, run_pipeline
from curate.runner import run_stage
from curate.schema import records_table
from curate.stage import Input, TableStage, Task
from curate.verify import flow_problems, verify

from ..conftest import REPO, small_disk

DEMO = REPO / "pipelines" / "demo.yaml"
SENTENCES = [
    "Offer a statin to adults with a ten-year cardiovascular risk of ten percent or more.",
    "Start antibiotics within one hour when sepsis is suspected in a patient with organ failure.",
    "Measure blood pressure in both arms and repeat the reading if the first is high.",
]


def _shards(folder: Path, shards: int = 4, rows: int = 5) -> Path:
    for s in range(shards):
        docs = [
            {
                "id": f"f:{s}-{i}",
                "text": f"{SENTENCES[(s + i) % 3]} Case {s}-{i}.",
                "source": "demo-guidelines",
            }
            for i in range(rows)
        ]
        write_parquet(records_table(docs), folder / f"part-{s}.parquet")
    return folder


def _checksums(workdir: Path) -> dict[str, str]:
    return {str(p.relative_to(workdir)): sha256_file(p) for p in sorted(workdir.rglob("*.parquet"))}


@pytest.fixture(scope="module")
def reference(ray_session, tmp_path_factory) -> Path:
    """An uninterrupted demo run to compare against."""
    sys.path.insert(0, str(REPO / "pipelines" / "demo"))
    from make_pdfs import make_demo_pdfs

    make_demo_pdfs(REPO / "pipelines" / "demo" / "pdf")
    workdir = tmp_path_factory.mktemp("reference")
    pipeline, _ = load_pipeline(DEMO)
    run_pipeline(pipeline, workdir, RayExecutor())
    return workdir


@pytest.mark.parametrize("seed", [1, 2])
def test_driver_killed_at_a_random_point_then_rerun_is_identical(reference: Path, tmp_path: Path, seed: int):
    workdir = tmp_path / "killed"
    command = [sys.executable, "-m", "curate", "run", str(DEMO), "--workdir", str(workdir), "--num-cpus", "2"]
    # Wait until the run is inside a stage, then SIGKILL the driver after a random delay.
    driver = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    stage_started = workdir / ["guidelines", "scraped", "language"][seed % 3] / ".curate-stage.json"
    while not stage_started.exists() and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(random.Random(seed).uniform(0.0, 0.5))
    assert stage_started.exists() and driver.poll() is None, "the run ended before it could be killed"
    os.kill(driver.pid, signal.SIGKILL)
    assert driver.wait(timeout=60) == -signal.SIGKILL
    # The kill landed mid-run: the last stage had not finished.
    last = load_pipeline(DEMO)[0].stages[-1].stage.name
    assert not (workdir / last / "manifest.json").exists()
    rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    for stage in [planned.stage.name for planned in load_pipeline(DEMO)[0].stages]:
        ours = json.loads((workdir / stage / "manifest.json").read_text())
        theirs = json.loads((reference / stage / "manifest.json").read_text())
        assert ours["counts"] == theirs["counts"]
        assert [(o["path"], o["sha256"]) for o in ours["outputs"]] == [
            (o["path"], o["sha256"]) for o in theirs["outputs"]
        ]
    assert verify(workdir)[1] == []


@dataclass
class DieOnceStage(TableStage):
    """Kills its own worker process the first time it sees the marked shard: a real worker crash."""

    step: ClassVar[str] = "die-once"
    marker: str = ""

    def apply(self, table: pa.Table, task: Task) -> tuple[pa.Table, pa.Table]:
        if task.name == "part-1" and not Path(self.marker).exists():
            Path(self.marker).write_text(str(os.getpid()))
            os._exit(1)
        return LanguageFilter(name=self.name).apply(table, task)


def test_killed_worker_is_retried_and_nothing_is_duplicated(ray_session, tmp_path: Path):
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import the tests package
    src = _shards(tmp_path / "src")
    out = tmp_path / "out"
    marker = tmp_path / "died"
    manifest = run_stage(DieOnceStage(name="die", marker=str(marker)), [Input(str(src))], out, RayExecutor())
    assert marker.exists()  # a worker really died
    assert manifest["status"] == "complete"
    assert manifest["counts"] == {"in": 20, "kept": 20, "rejected": 0, "errored": 0}
    assert sorted(p.name for p in out.glob("*.parquet")) == [f"part-{s}.parquet" for s in range(4)]


@dataclass
class PoisonStage(TableStage):
    """Raises on one shard, every time: it must be quarantined, not retried forever."""

    step: ClassVar[str] = "poison"
    attempts: str = ""

    def apply(self, table: pa.Table, task: Task) -> tuple[pa.Table, pa.Table]:
        if task.name == "part-2":
            with open(self.attempts, "a") as f:
                f.write("x")
            raise RecursionError("parser looped on this input")
        return LanguageFilter(name=self.name).apply(table, task)


def test_poisonous_input_is_quarantined_and_the_stage_finishes(ray_session, tmp_path: Path):
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    src = _shards(tmp_path / "src")
    out = tmp_path / "out"
    attempts = tmp_path / "attempts"
    manifest = run_stage(PoisonStage(name="p", attempts=str(attempts)), [Input(str(src))], out, RayExecutor())
    assert attempts.read_text() == "x"  # tried once, not retried
    assert manifest["status"] == "incomplete"
    assert manifest["counts"] == {"in": 20, "kept": 15, "rejected": 0, "errored": 5}
    [failure] = manifest["failed_tasks"]
    assert failure["task"] == "part-2" and "RecursionError: parser looped" in failure["error"]
    assert "part-2.parquet" in failure["inputs"][0]
    # Quarantined, not lost: each of the shard's documents is an error row with its text.
    errors = pq.read_table(out / "rejected" / "part-2.parquet")
    source = pq.read_table(src / "part-2.parquet")
    assert errors.column("id").to_pylist() == source.column("id").to_pylist()
    assert errors.column("text").to_pylist() == source.column("text").to_pylist()
    assert set(errors.column("drop_reason").to_pylist()) == {"error"}
    assert verify(out)[1] == [f"{out.name}: status 'incomplete': 1 failed task(s)"]


def test_a_failed_global_pass_names_the_stage_and_input_and_the_cli_says_so(tmp_path: Path):
    src = _shards(tmp_path / "src")
    (src / "part-1.parquet").write_bytes(b"PAR1 this shard was truncated")
    with pytest.raises(PreparationError, match=r"stage 'near'.*part-1\.parquet.*rerun the same command"):
        run_stage(NearDedup(name="near"), [Input(str(src))], tmp_path / "near", LocalExecutor())
    assert not (tmp_path / "near" / "manifest.json").exists()  # unfinished: the next run recomputes it
    run = subprocess.run(
        [sys.executable, "-m", "curate", "dedup", str(src), "--near", "--out", str(tmp_path / "cli")]
        + ["--num-cpus", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1
    assert "error: stage 'near_dedup'" in run.stderr and "part-1.parquet" in run.stderr
    assert "Traceback" not in run.stderr


def test_pipeline_accounting_across_stages_is_checked():
    def manifest(step: str, counts: tuple[int, int, int], inputs: list[str]) -> dict:
        n_in, kept, rejected = counts
        return {
            "step": step,
            "counts": {"in": n_in, "kept": kept, "rejected": rejected, "errored": 0},
            "inputs": [{"path": p} for p in inputs],
        }

    manifests = {
        "html": manifest("html", (9, 7, 2), ["/data/pages"]),
        "pdf": manifest("pdf", (6, 3, 3), ["/data/pdf"]),
        "language": manifest("filter", (10, 9, 1), ["/w/html", "/w/pdf"]),
        "dedup": manifest("dedup", (9, 8, 1), ["/w/language"]),
    }
    assert flow_problems(manifests) == []
    manifests["dedup"]["counts"].update({"in": 8, "kept": 7})  # a document lost between two stages
    assert flow_problems(manifests) == ["dedup: read 8 documents but language kept 9"]


def test_damaged_outputs_are_found_and_recomputed(tmp_path: Path):
    src = _shards(tmp_path / "src")
    rows = [{"id": "f:de", "text": "Bluthochdruck wird mit Medikamenten behandelt.", "source": "x"}]
    write_parquet(records_table(rows), src / "part-9.parquet")
    out = tmp_path / "out"
    run_stage(LanguageFilter(name="language"), [Input(str(src))], out, LocalExecutor())
    intact = _checksums(out)
    # A truncated shard, a bit flipped in another, a lost rejected/ folder, a stray temporary file.
    truncated = out / "part-0.parquet"
    truncated.write_bytes(truncated.read_bytes()[:200])
    flipped = out / "part-1.parquet"
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    shutil.rmtree(out / "rejected")
    (out / ".part-3.parquet.tmp-12345678").write_bytes(b"half")
    problems = "\n".join(verify(out)[1])
    assert "part-0.parquet has 200 bytes" in problems
    assert "part-1.parquet checksum differs" in problems
    assert "missing rejected/part-9.parquet" in problems
    assert "temporary file .part-3.parquet.tmp-12345678" in problems
    repaired = run_stage(LanguageFilter(name="language"), [Input(str(src))], out, LocalExecutor())
    assert repaired["tasks"]["run"] == 3 and repaired["tasks"]["skipped"] == 2
    assert _checksums(out) == intact
    assert verify(out)[1] == []


@pytest.mark.requires("tmpfs")
def test_full_disk_is_a_clear_error_and_a_rerun_resumes(tmp_path: Path):
    with small_disk(tmp_path / "small", "1m", "the full-disk case") as small:
        rng = random.Random(0)
        src = tmp_path / "src"
        for s in range(6):  # about 150 KB of barely compressible text per shard
            words = [
                "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))
                for _ in range(20000)
            ]
            docs = [{"id": f"big:{s}", "text": "The patient " + " ".join(words), "source": "x"}]
            write_parquet(records_table(docs), src / f"part-{s}.parquet")
        filler = small / "filler"
        filler.write_bytes(b"\0" * 600_000)
        out = small / "out"
        # The message names the folder that is full (the stage folder here, not the inputs or the scratch).
        with pytest.raises(DiskFullError, match=f"no space left while writing {out}: free some space there"):
            run_stage(
                LanguageFilter(name="language", keep=["en"], threshold=0.0),
                [Input(str(src))],
                out,
                LocalExecutor(),
            )
        done_before = sorted(p.name for p in out.glob("*.parquet"))
        assert not list(out.rglob("*.tmp-*"))
        filler.unlink()
        manifest = run_stage(
            LanguageFilter(name="language", keep=["en"], threshold=0.0),
            [Input(str(src))],
            out,
            LocalExecutor(),
        )
        assert manifest["counts"]["kept"] + manifest["counts"]["rejected"] == 6
        assert manifest["tasks"]["skipped"] == len(done_before)
        assert verify(out)[1] == []
