"""A new filter step is one file and one registry line: a toy step defined here runs in a pipeline.

The toy keeps documents of at least `min_chars` characters. It is what a contributor writes: a FilterStage
subclass with its parameters as fields and a `filter` per text; the pipeline, the runner and the command line
are not touched. The registry line is the one STEP_CLASSES would get in curate/steps.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.errors import ConfigError
from curate.executors import LocalExecutor
from curate.io import write_parquet
from curate.pipeline import check_inputs, load_pipeline, run_pipeline
from curate.schema import Verdict, records_table
from curate.stage import FilterStage, Task
from curate.steps import STEP_CLASSES, STEPS, step_options

from .conftest import REPO


@dataclass
class ShortTextFilter(FilterStage):
    """Drop documents shorter than min_chars characters."""

    step: ClassVar[str] = "short_text"
    min_chars: int = 50

    def filter(self, text: str) -> Verdict:
        if len(text) >= self.min_chars:
            return True
        return False, "too_short", f"{len(text)} characters < {self.min_chars}"


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry line, as curate/steps.py would hold it (imported by name on first use)."""
    monkeypatch.setitem(STEP_CLASSES, "short_text", f"{__name__}:ShortTextFilter")


def _pipeline(tmp_path: Path, options: str) -> Path:
    rows = [{"id": f"t:{n}", "text": "word " * n, "source": "demo-wiki"} for n in (2, 8, 30)]
    write_parquet(records_table(rows), tmp_path / "in" / "part-0.parquet")
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        f"sources: {REPO / 'sources.yaml'}\n"
        "stages:\n"
        "  - name: short\n"
        "    step: short_text\n"
        "    inputs: [in]\n"
        f"{options}"
        "  - name: dedup\n"
        "    step: dedup\n"
    )
    return path


def test_a_registered_filter_runs_in_a_pipeline(registered, tmp_path: Path):
    assert STEPS["short_text"] is ShortTextFilter and step_options("short_text") == ["min_chars"]
    pipeline, _ = load_pipeline(_pipeline(tmp_path, "    min_chars: 30\n"))
    check_inputs(pipeline)
    manifests = run_pipeline(pipeline, tmp_path / "work", LocalExecutor())

    short = manifests[0]
    assert short["step"] == "short_text" and short["params"] == {"min_chars": 30}
    assert short["counts"] == {"in": 3, "kept": 2, "rejected": 1, "errored": 0}
    assert short["drop_reasons"] == {"too_short": 1}
    rejected = pq.read_table(tmp_path / "work" / "short" / "rejected" / "part-0.parquet").to_pylist()
    assert [(r["id"], r["drop_stage"], r["drop_reason"], r["drop_detail"]) for r in rejected] == [
        ("t:2", "short", "too_short", "10 characters < 30")
    ]
    # The next stage reads what it kept, and the accounting holds across them.
    assert manifests[1]["counts"]["in"] == 2
    written = json.loads((tmp_path / "work" / "pipeline.json").read_text())
    assert written["stages"] == ["short", "dedup"]


def test_its_options_are_checked_like_any_steps(registered, tmp_path: Path):
    with pytest.raises(ConfigError, match="option 'min_chars' must be a whole number"):
        load_pipeline(_pipeline(tmp_path, "    min_chars: many\n"))
    with pytest.raises(ConfigError, match="unknown option.*colour.*it takes: min_chars"):
        load_pipeline(_pipeline(tmp_path, "    colour: red\n"))


def test_an_unregistered_step_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="unknown step 'short_text'; steps are: .*near_dedup"):
        load_pipeline(_pipeline(tmp_path, ""))


def test_curate_run_runs_it_on_ray(registered, ray_session, tmp_path: Path):
    """Through the command a user runs: `curate run` on the test session's Ray, whose workers import the
    step's module by name like any other."""
    from typer.testing import CliRunner

    from curate.cli import app

    path = _pipeline(tmp_path, "    min_chars: 30\n")
    result = CliRunner().invoke(app, ["run", str(path), "--workdir", str(tmp_path / "work")])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "work" / "short" / "manifest.json").read_text())
    assert manifest["counts"] == {"in": 3, "kept": 2, "rejected": 1, "errored": 0}


@dataclass
class ShoutFilter(FilterStage):
    """Upper-case documents with a '!' and add their length; drop the others with a plain False."""

    step: ClassVar[str] = "shout"

    def filter_table(self, table: pa.Table) -> tuple[pa.Table, list[Verdict]]:
        texts = table.column("text").to_pylist()
        table = table.set_column(1, "text", pa.array([t.upper() for t in texts], pa.string()))
        table = table.append_column("chars", pa.array([len(t) for t in texts], pa.int64()))
        return table, ["!" in t for t in texts]


def test_a_filter_that_rewrites_documents_writes_those_it_drops_as_they_came():
    rows = [{"id": "t:1", "text": "hello!", "source": "s"}, {"id": "t:2", "text": "quiet", "source": "s"}]
    kept, rejected = ShoutFilter(name="loud").apply(records_table(rows), Task("part-0", ()))
    assert kept.select(["id", "text", "chars"]).to_pylist() == [{"id": "t:1", "text": "HELLO!", "chars": 6}]
    # The text as read, the column the filter added, and the step's name as the reason of a plain False.
    assert rejected.select(
        ["id", "text", "chars", "drop_stage", "drop_reason", "drop_detail"]
    ).to_pylist() == [
        {
            "id": "t:2",
            "text": "quiet",
            "chars": 5,
            "drop_stage": "loud",
            "drop_reason": "shout",
            "drop_detail": None,
        }
    ]
