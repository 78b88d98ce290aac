"""`curate inspect`: documents from shards or rejected/, chosen by source, reason, id or at random."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from curate.cli import app
from tests.stats.test_stats import DOCS, kept_table, rejected_table, write_stage

runner = CliRunner()


def _lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A two-stage work directory: filter drops three for lang, dedup one duplicate; dedup is final."""
    root = tmp_path / "work"
    write_stage(
        root / "filter",
        [kept_table(DOCS)],
        [rejected_table("filter", [("nice:x", "lang", "de 0.98"), ("who:y", "lang", "es 0.91")])],
    )
    pq.write_table(
        rejected_table("filter", [("pmc:q", "lang", "fr 0.99")]),
        root / "filter" / "rejected" / "part-00001.parquet",
    )
    # many kept rows, in small row groups, so that a draw must pick across files and row groups
    many = [(f"bulk:{n}", "bulk", "en", None, f"bulk document {n}") for n in range(250)]
    dedup = root / "dedup"
    write_stage(
        dedup, [kept_table(DOCS[:4])], [rejected_table("dedup", [("pmc:e", "exact_duplicate", "of pmc:d")])]
    )
    pq.write_table(kept_table(many), dedup / "part-00001.parquet", row_group_size=30)
    (root / "pipeline.json").write_text(json.dumps({"pipeline": "t", "stages": ["filter", "dedup"]}))
    return root


def test_reason_reads_rejected_across_stages(work: Path) -> None:
    result = runner.invoke(app, ["inspect", str(work), "--reason", "lang", "--json"])
    assert result.exit_code == 0, result.output
    docs = _lines(result.output)
    assert sorted(d["id"] for d in docs) == ["nice:x", "pmc:q", "who:y"]
    assert {(d["drop_stage"], d["drop_reason"]) for d in docs} == {("filter", "lang")}
    assert {d["id"]: d["drop_detail"] for d in docs}["who:y"] == "es 0.91"


def test_reason_on_a_stage_dir_and_on_its_rejected_folder(work: Path) -> None:
    for target in (work / "dedup", work / "dedup" / "rejected"):
        result = runner.invoke(app, ["inspect", str(target), "--reason", "exact_duplicate", "--json"])
        assert result.exit_code == 0, result.output
        assert [d["id"] for d in _lines(result.output)] == ["pmc:e"]


def test_id_finds_kept_and_rejected_documents_with_metadata(work: Path) -> None:
    result = runner.invoke(app, ["inspect", str(work), "--id", "nice:b"])
    assert result.exit_code == 0, result.output
    assert "1 of 1 matching" in result.output
    for expected in ("nice:b", "Title nice:b", "OGL", "Chest pain", "and  fever", "lang_score"):
        assert expected in result.output, expected
    rejected = runner.invoke(app, ["inspect", str(work), "--id", "pmc:e"])
    assert rejected.exit_code == 0, rejected.output
    assert "exact_duplicate" in rejected.output and "of pmc:d" in rejected.output
    assert "dedup" in rejected.output  # drop_stage


def test_source_filter_and_seeded_sample(work: Path) -> None:
    result = runner.invoke(app, ["inspect", str(work), "--source", "nice", "--json"])
    assert sorted(d["id"] for d in _lines(result.output)) == ["nice:a", "nice:b"]

    args = ["inspect", str(work), "--source", "bulk", "--sample", "7", "--seed", "3", "--json"]
    first = [d["id"] for d in _lines(runner.invoke(app, args).output)]
    again = [d["id"] for d in _lines(runner.invoke(app, args).output)]
    assert first == again  # same seed, same documents
    assert len(first) == len(set(first)) == 7
    assert all(i.startswith("bulk:") for i in first)
    # the rows shown are the rows of the files: text matches id
    for d in _lines(runner.invoke(app, args).output):
        assert d["text"] == f"bulk document {d['id'].split(':')[1]}"
    # a draw over every document reaches beyond the first row group
    everything = _lines(runner.invoke(app, ["inspect", str(work), "--sample", "1000", "--json"]).output)
    assert len(everything) == 4 + 250


def test_text_is_printed_as_is_and_can_be_cut(tmp_path: Path) -> None:
    text = "[bold]not markup[/bold] " + "x" * 500
    write_stage(tmp_path / "s", [kept_table([("a:1", "a", "en", None, text)])])
    full = runner.invoke(app, ["inspect", str(tmp_path / "s")])
    assert full.exit_code == 0, full.output
    assert "[bold]not markup[/bold]" in full.output
    cut = runner.invoke(app, ["inspect", str(tmp_path / "s"), "--max-chars", "30"])
    assert "x" * 100 not in cut.output.replace("\n", "").replace("│", "").replace(" ", "")
    assert "494 more characters" in cut.output


def test_meta_is_shown_as_json(tmp_path: Path) -> None:
    table = kept_table([("a:1", "a", "en", None, "hello")])
    meta = pa.array([json.dumps({"doi": "10.1/xyz", "pages": 3})], pa.string())
    table = table.set_column(table.schema.get_field_index("meta"), "meta", meta)
    write_stage(tmp_path / "s", [table])
    result = runner.invoke(app, ["inspect", str(tmp_path / "s")])
    assert '"doi": "10.1/xyz"' in result.output and '"pages": 3' in result.output


def test_no_match_says_what_is_there(work: Path) -> None:
    result = runner.invoke(app, ["inspect", str(work), "--reason", "gopher"])
    assert result.exit_code == 1
    assert "no document matches reason 'gopher'" in result.output
    assert "lang (3)" in result.output and "exact_duplicate (1)" in result.output
    missing = runner.invoke(app, ["inspect", str(work), "--id", "nope:1"])
    assert missing.exit_code == 1 and "id 'nope:1'" in missing.output


def test_bad_paths_and_options(tmp_path: Path) -> None:
    result = runner.invoke(app, ["inspect", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "does not exist" in result.output
    (tmp_path / "notes.txt").write_text("x")
    result = runner.invoke(app, ["inspect", str(tmp_path)])
    assert result.exit_code == 2 and "not a curate stage" in result.output
    write_stage(tmp_path / "s", [kept_table(DOCS)])
    result = runner.invoke(app, ["inspect", str(tmp_path / "s"), "--sample", "0"])
    assert result.exit_code == 2 and "--sample" in result.output


@pytest.mark.parametrize("columns", [80, 100])
def test_long_lines_are_wrapped_to_the_terminal_never_cut(tmp_path: Path, columns: int) -> None:
    words = [f"word{n:04d}" for n in range(400)]
    url = "https://example.org/" + "a" * 150  # one word longer than a line: folded onto the next ones
    text = " ".join(words[:200]) + "\n\n" + url + "\n\n" + " ".join(words[200:])
    title = "A long title of a guideline " * 6
    write_stage(tmp_path / "s", [kept_table([("a:1", "a", "en", None, text)], titles={"a:1": title})])
    result = runner.invoke(app, ["inspect", str(tmp_path / "s")], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= columns
    flat = re.sub(r"[\s│╭╮╰╯─]", "", result.output)  # the panel's frame and the wrapping taken away
    for part in ("".join(words[:200]), url, "".join(words[200:]), title.replace(" ", "")):
        assert part in flat
