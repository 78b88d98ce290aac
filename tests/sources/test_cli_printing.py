"""`curate sources show/list` print what sources.yaml says, verbatim: `[...]` in a selector or a regex is
configuration, not terminal markup."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from curate.cli import app

REPO = Path(__file__).resolve().parents[2]

ODD = r"""
sources:
  odd:
    title: "Guidelines [beta] [bold]not bold[/bold]"
    homepage: https://odd.example.org/
    allowed_domains: [odd.example.org]
    content: html
    license: "[CC BY] 4.0"
    redistributable: true
    notes: "links are a[href*='/guideline/'], ids [0-9]+"
    scrape:
      discovery:
        type: listing
        links: 'h5 > a[title="View fulltext guideline"]'
        pattern: '/g/[0-9]{3}[a-z]?$'
      extract: {main: ['main[property=mainContentOfPage]'], drop_lines: ['\[\d+\]']}
"""


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result.output


def test_sources_show_prints_the_bundled_cma_selector_verbatim() -> None:
    output = _invoke("sources", "show", "cma", "--sources", str(REPO / "sources.yaml"))
    assert 'links: h5 > a[title="View fulltext guideline"]' in output
    assert "main[property=mainContentOfPage]" in output


def test_sources_show_and_list_print_every_configured_value_verbatim(tmp_path: Path) -> None:
    (tmp_path / "sources.yaml").write_text(ODD)
    shown = _invoke("sources", "show", "odd", "--sources", str(tmp_path / "sources.yaml"))
    for text in (
        "Guidelines [beta] [bold]not bold[/bold]",
        "[CC BY] 4.0",
        "links are a[href*='/guideline/'], ids [0-9]+",
        """h5 > a[title="View fulltext guideline"]""",
        "/g/[0-9]{3}[a-z]?$",
        "main[property=mainContentOfPage]",
        r"\[\d+\]",
    ):
        assert text in shown, text
    sources = str(tmp_path / "sources.yaml")
    listed = CliRunner().invoke(app, ["sources", "list", "--sources", sources], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "Guidelines [beta] [bold]not bold[/bold]" in listed.output
