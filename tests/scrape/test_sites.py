"""Every source end to end against its fixture site (tests/fixtures/sites/<source>/), via `sources check`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from curate.cli import app
from curate.scrape.check import check_source
from curate.sources.registry import load_sources

REPO = Path(__file__).resolve().parents[2]
SOURCES = REPO / "sources.yaml"
EXPECTED = sorted((REPO / "tests" / "fixtures" / "sites").glob("*/expected.yaml"))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("expected", EXPECTED, ids=[p.parent.name for p in EXPECTED])
def test_source_scrapes_its_fixture_site(expected: Path) -> None:
    name = expected.parent.name
    source = load_sources(SOURCES)[name]
    report = check_source(source, sources_file=SOURCES)
    assert report.result.kept, report.summary()
    assert report.problems == [], report.summary()


def test_sources_check_cli_passes_on_a_fixture_and_fails_on_a_broken_one(tmp_path: Path, site: Path) -> None:
    """`curate sources check NAME` serves tests/fixtures/sites/NAME itself; a broken selector exits 1."""
    fixtures = tmp_path / "tests" / "fixtures" / "sites" / "testsite"
    fixtures.mkdir(parents=True)
    (fixtures / "site").symlink_to(site)
    others = ["asthma.html", "diabetes.html", "hypertension.html", "copd.html", "anaemia.html"]
    others = [f"articles/{name}" for name in others] + ["docs/guide.pdf"]
    expected = """
absent: [Cookie]
rejected: 0
documents:
  - url: https://example.test/articles/gout.html
    title: Gout
    first: "# Gout"
    last: review the treatment plan with the patient and their family.
""" + "".join(f"  - url: https://example.test/{path}\n" for path in others)
    (fixtures / "expected.yaml").write_text(expected)
    good = """
sources:
  testsite:
    title: t
    homepage: https://example.test/
    allowed_domains: [example.test]
    content: html
    license: x
    redistributable: false
    scrape:
      discovery: {type: listing, start: ["https://example.test/index.html"], links: "LINKS",
                  next: "a[data-kind=listing]"}
      extract: {main: main}
"""
    runner = CliRunner()
    (tmp_path / "sources.yaml").write_text(good.replace("LINKS", "ul a"))
    ok = runner.invoke(app, ["sources", "check", "testsite", "--sources", str(tmp_path / "sources.yaml")])
    assert ok.exit_code == 0, ok.output
    assert "ok: testsite discovers and extracts as expected" in ok.output

    # A document the fixture does not expect (a filter that let too much through) is a problem too.
    (fixtures / "expected.yaml").write_text(
        expected.replace("  - url: https://example.test/articles/copd.html\n", "")
    )
    extra = runner.invoke(app, ["sources", "check", "testsite", "--sources", str(tmp_path / "sources.yaml")])
    assert extra.exit_code == 1, extra.output
    assert "unexpected document https://example.test/articles/copd.html" in extra.output

    (fixtures / "expected.yaml").write_text(expected)
    (tmp_path / "sources.yaml").write_text(good.replace("LINKS", "ul.renamed a"))  # the site changed
    broken = runner.invoke(app, ["sources", "check", "testsite", "--sources", str(tmp_path / "sources.yaml")])
    assert broken.exit_code == 1, broken.output
    assert "missing document https://example.test/articles/gout.html" in broken.output


def _crawl_copy(tmp_path: Path, name: str, lost: str):
    """Crawl a copy of a source's fixture site from which one file is gone."""
    from curate.fetch.fetcher import FetchSettings
    from curate.scrape.crawl import crawl
    from curate.scrape.mirror import SiteServer
    from curate.scrape.spiders import spider_for
    from tests.sources.sitedriver import fixture_file

    site = tmp_path / name
    shutil.copytree(REPO / "tests" / "fixtures" / "sites" / name / "site", site)
    fixture_file(site, lost).unlink()
    source = load_sources(SOURCES)[name]
    with SiteServer(site) as server:
        return crawl(
            source, spider_for(source), tmp_path / "state", mirror=server.url, settings=FetchSettings(1000.0)
        )


def test_a_lost_chapter_leaves_its_guidance_accounted_for(tmp_path: Path) -> None:
    """NICE merges a guidance's chapters: one that cannot be fetched is left out, the guidance still kept."""
    chapter = "https://www.nice.org.uk/guidance/ng901/chapter/Recommendations"
    result = _crawl_copy(tmp_path, "nice", chapter)
    assert [(r["url"], r["drop_reason"]) for r in result.rejected] == [(chapter, "fetch_http_error")]
    kept = {r["url"]: r for r in result.kept}
    assert sorted(kept) == [
        "https://www.nice.org.uk/guidance/ng901/",
        "https://www.nice.org.uk/guidance/ng902/",
    ]
    guidance = kept["https://www.nice.org.uk/guidance/ng901/"]
    assert "# Recommendations for research" in guidance["text"]  # the chapter after the lost one
    assert "Take a structured clinical history" not in guidance["text"]
    assert json.loads(guidance["meta"])["missing_chapters"] == [chapter]


def test_a_lost_subpage_leaves_its_wiki_topic_accounted_for(tmp_path: Path) -> None:
    """WikiDoc merges a topic's sub-pages: one that cannot be fetched is left out, the topic still kept."""
    lost = (
        "https://www.wikidoc.org/api.php?action=parse&pageid=12&prop=text&disableeditsection=1&disabletoc=1"
        "&format=json&formatversion=2"
    )
    result = _crawl_copy(tmp_path, "wikidoc", lost)
    assert [(r["url"], r["drop_reason"]) for r in result.rejected] == [(lost, "fetch_http_error")]
    kept = {r["url"]: r for r in result.kept}
    gout = kept["https://www.wikidoc.org/index.php/Gout"]
    assert "# Medical therapy" in gout["text"] and "# Causes" not in gout["text"]
    assert json.loads(gout["meta"])["missing_pages"] == ["Gout causes"]
    assert "https://www.wikidoc.org/index.php/Pneumothorax" in kept
