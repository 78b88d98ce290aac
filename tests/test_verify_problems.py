"""`verify` on a finished stage: each kind of disagreement with the manifest is reported, one at a time."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.executors import LocalExecutor
from curate.filter.language import LanguageFilter
from curate.io import sha256_file, write_parquet
from curate.runner import run_stage
from curate.schema import records_table
from curate.stage import Input
from curate.verify import verify

TEXT = "Offer a statin to adults with a ten-year cardiovascular risk of ten percent or more."


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A language stage over two shards, finished and clean."""
    root = tmp_path_factory.mktemp("verify")
    for s in range(2):
        rows = [{"id": f"v:{s}-{i}", "text": f"{TEXT} Case {s}-{i}.", "source": "x"} for i in range(3)]
        write_parquet(records_table(rows), root / "src" / f"part-{s}.parquet")
    run_stage(LanguageFilter(name="language"), [Input(str(root / "src"))], root / "out", LocalExecutor())
    assert verify(root / "out")[1] == []
    return root / "out"


def _problems(finished: Path, tmp_path: Path, damage) -> list[str]:
    stage = tmp_path / "language"
    shutil.copytree(finished, stage)
    damage(stage)
    return verify(stage)[1]


def _edit_manifest(stage: Path, change) -> None:
    manifest = json.loads((stage / "manifest.json").read_text())
    change(manifest)
    (stage / "manifest.json").write_text(json.dumps(manifest))


def test_counts_that_do_not_add_up(finished: Path, tmp_path: Path):
    problems = _problems(
        finished, tmp_path, lambda s: _edit_manifest(s, lambda m: m["counts"].update(rejected=1))
    )
    assert len(problems) == 1 and problems[0].startswith("language: counts do not add up: ")


def test_kept_count_other_than_the_outputs_rows(finished: Path, tmp_path: Path):
    def change(manifest: dict) -> None:
        manifest["counts"].update(kept=5, rejected=1)

    problems = _problems(finished, tmp_path, lambda s: _edit_manifest(s, change))
    assert problems == ["language: outputs hold 6 rows but the manifest counts 5 kept"]


def test_a_file_the_manifest_does_not_list(finished: Path, tmp_path: Path):
    problems = _problems(
        finished, tmp_path, lambda s: shutil.copy(s / "part-0.parquet", s / "part-7.parquet")
    )
    assert problems == ["language: part-7.parquet is not in the manifest (left over from another run?)"]


def test_a_missing_output(finished: Path, tmp_path: Path):
    problems = _problems(finished, tmp_path, lambda s: (s / "part-1.parquet").unlink())
    assert problems == ["language: missing part-1.parquet"]


def _edit_entry(stage: Path, name: str, **values) -> None:
    _edit_manifest(stage, lambda m: next(e for e in m["outputs"] if e["path"] == name).update(values))


def test_a_stage_with_a_failed_task(tmp_path: Path):
    src = tmp_path / "src"
    write_parquet(records_table([{"id": "v:1", "text": TEXT, "source": "x"}]), src / "part-0.parquet")
    (src / "part-1.parquet").write_bytes(b"PAR1 this shard was truncated")
    out = tmp_path / "language"
    run_stage(LanguageFilter(name="language"), [Input(str(src))], out, LocalExecutor())
    assert verify(out)[1] == ["language: status 'incomplete': 1 failed task(s)"]


def test_an_output_whose_rows_differ_from_its_entry(finished: Path, tmp_path: Path):
    def damage(stage: Path) -> None:
        _edit_entry(stage, "part-0.parquet", rows=2)
        # The totals agree with the lie, so only the file tells.
        _edit_manifest(stage, lambda m: m["counts"].update(kept=5, rejected=1))

    problems = _problems(finished, tmp_path, damage)
    assert problems == ["language: part-0.parquet has 3 rows, manifest says 2"]


def test_an_output_whose_text_is_not_utf8(finished: Path, tmp_path: Path):
    """A file the manifest vouches for (size and checksum match) that `datasets` could not read."""

    def damage(stage: Path) -> None:
        path = stage / "part-0.parquet"
        table = pq.read_table(path)
        raw = pa.array([b"caf\xe9 au lait"] * table.num_rows, pa.binary())
        bad = pa.Array.from_buffers(pa.string(), table.num_rows, raw.buffers())
        pq.write_table(table.set_column(table.schema.get_field_index("text"), "text", bad), path)
        _edit_entry(stage, "part-0.parquet", bytes=path.stat().st_size, sha256=sha256_file(path))

    [problem] = _problems(finished, tmp_path, damage)
    assert problem.startswith("language: part-0.parquet is not readable Parquet") and "UTF8" in problem
