"""`verify` on a finished stage: each kind of disagreement with the manifest is reported, one at a time."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from curate.executors import LocalExecutor
from curate.filter.language import LanguageFilter
from curate.io import write_parquet
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
