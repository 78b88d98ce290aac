"""The command line a user meets: help everywhere, and errors that say what to do (no Ray needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from curate.cli import app

from .conftest import GAP_SOURCES, REPO

runner = CliRunner()
COMMANDS = [
    [],
    ["run"],
    ["pdf"],
    ["html"],
    ["filter"],
    ["dedup"],
    ["shard"],
    ["stats"],
    ["sources"],
    ["sources", "list"],
    ["sources", "show"],
    ["sources", "check"],
    ["scrape"],
    ["mix"],
    ["inspect"],
    ["verify"],
    ["pmc"],
    ["pubmed"],
    ["clean"],
    ["quality"],
    ["decontaminate"],
    ["tokenize"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "curate")
def test_every_command_has_help(command: list[str]):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_sources_list_shows_every_source_as_json():
    result = runner.invoke(app, ["sources", "list", "--json", "--sources", str(REPO / "sources.yaml")])
    assert result.exit_code == 0
    rows = json.loads(result.output)
    assert {"nice", "who", "cdc", "wikidoc", "pubmed", "pmc"} <= {s["name"] for s in rows}
    # Meditron's 16 guideline sites and PubMed guidelines, each with a scraper; nothing else has one.
    assert sorted(s["name"] for s in rows if s["discovery"]) == sorted(GAP_SOURCES)


def test_sources_list_table_counts_the_scrapers():
    result = runner.invoke(
        app, ["sources", "list", "--sources", str(REPO / "sources.yaml")], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0
    assert "17 with a scraper" in result.output


def test_sources_show_unknown_source_is_a_clear_error():
    result = runner.invoke(app, ["sources", "show", "nicee", "--sources", str(REPO / "sources.yaml")])
    assert result.exit_code == 2
    assert "unknown source 'nicee'" in result.output


def test_run_missing_pipeline_file(tmp_path: Path):
    result = runner.invoke(app, ["run", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "pipeline file not found" in result.output


def test_run_malformed_pipeline_yaml_names_the_line(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages:\n  - step: html\n    inputs: [unclosed\n")
    result = runner.invoke(app, ["run", str(bad), "--sources", str(REPO / "sources.yaml")])
    assert result.exit_code == 2
    assert "bad.yaml:" in result.output and "invalid YAML" in result.output


def test_single_stage_with_unknown_source_fails_before_starting_ray(tmp_path: Path):
    result = runner.invoke(
        app,
        [
            "html",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            "--source",
            "nowhere",
            "--sources",
            str(REPO / "sources.yaml"),
        ],
    )
    assert result.exit_code == 2
    assert "unknown source 'nowhere'" in result.output


def test_stats_on_a_folder_that_is_not_a_stage(tmp_path: Path):
    result = runner.invoke(app, ["stats", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a curate stage or work directory" in result.output
