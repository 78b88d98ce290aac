"""`verify` reports each kind of damage, each pinned by a test that fails when its check is removed (the
mutations of `make mutants`, tests/mutation/mutations.py, module verify)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.filter.language import LanguageFilter
from curate.io import sha256_file, write_parquet
from curate.runner import LocalExecutor, run_stage
from curate.schema import records_table
from curate.stage import Input
from curate.verify import verify

TEXT = "Offer a statin to adults with a ten-year cardiovascular risk of ten percent or more."


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A language stage over two shards, finished and clean."""
    root = tmp_path_factory.mktemp("verify-kills")
    for s in range(2):
        rows = [{"id": f"v:{s}-{i}", "text": f"{TEXT} Case {s}-{i}.", "source": "x"} for i in range(3)]
        write_parquet(records_table(rows), root / "src" / f"part-{s}.parquet")
    run_stage(LanguageFilter(name="language"), [Input(str(root / "src"))], root / "out", LocalExecutor())
    assert verify(root / "out")[1] == []
    return root / "out"


def _copy(finished: Path, tmp_path: Path) -> Path:
    stage = tmp_path / "language"
    shutil.copytree(finished, stage)
    return stage


def _edit_entry(stage: Path, name: str, **values) -> None:
    manifest = json.loads((stage / "manifest.json").read_text())
    next(e for e in manifest["outputs"] if e["path"] == name).update(values)
    (stage / "manifest.json").write_text(json.dumps(manifest))


def test_a_stage_with_a_failed_task_is_reported(tmp_path: Path):
    src = tmp_path / "src"
    write_parquet(records_table([{"id": "v:1", "text": TEXT, "source": "x"}]), src / "part-0.parquet")
    (src / "part-1.parquet").write_bytes(b"PAR1 this shard was truncated")
    out = tmp_path / "language"
    run_stage(LanguageFilter(name="language"), [Input(str(src))], out, LocalExecutor())
    assert verify(out)[1] == ["language: status 'incomplete': 1 failed task(s)"]


def test_an_output_whose_rows_differ_from_its_entry_is_reported(finished: Path, tmp_path: Path):
    stage = _copy(finished, tmp_path)
    _edit_entry(stage, "part-0.parquet", rows=2)
    manifest = json.loads((stage / "manifest.json").read_text())
    manifest["counts"].update(kept=5, rejected=1)  # the totals agree with the lie, so only the file tells
    (stage / "manifest.json").write_text(json.dumps(manifest))
    assert verify(stage)[1] == ["language: part-0.parquet has 3 rows, manifest says 2"]


def test_an_output_whose_text_is_not_utf8_is_reported(finished: Path, tmp_path: Path):
    """A file the manifest vouches for (size and checksum match) that `datasets` could not read."""
    stage = _copy(finished, tmp_path)
    path = stage / "part-0.parquet"
    table = pq.read_table(path)
    raw = pa.array([b"caf\xe9 au lait"] * table.num_rows, pa.binary())
    bad = pa.Array.from_buffers(pa.string(), table.num_rows, raw.buffers())
    pq.write_table(table.set_column(table.schema.get_field_index("text"), "text", bad), path)
    _edit_entry(stage, "part-0.parquet", bytes=path.stat().st_size, sha256=sha256_file(path))
    [problem] = verify(stage)[1]
    assert problem.startswith("language: part-0.parquet is not readable Parquet") and "UTF8" in problem
