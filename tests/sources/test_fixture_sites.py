"""Every GAP source's spider over its fixture site, without a network: expected documents, clean text."""

from __future__ import annotations

import pytest
import yaml

from curate.scrape.spiders import spider_for
from curate.sources.registry import find_sources_file, load_sources
from tests.conftest import GAP_SOURCES as GAP
from tests.sources.sitedriver import SITES, crawl


@pytest.fixture(scope="module")
def sources():
    return load_sources(find_sources_file(SITES.parents[2]))


def test_every_gap_source_has_a_scrape_block_and_a_fixture(sources):
    scraped = sorted(n for n, s in sources.items() if s.scrape is not None)
    assert scraped == sorted(GAP)
    assert all((SITES / name / "expected.yaml").is_file() for name in GAP)


@pytest.mark.parametrize("name", GAP)
def test_spider_yields_expected_documents(sources, name):
    site = SITES / name
    expected = yaml.safe_load((site / "expected.yaml").read_text(encoding="utf-8"))
    result = crawl(spider_for(sources[name]), site / "site")
    assert not result.missing, f"requests with no fixture file: {result.missing}"
    got = {item.url: item.doc for item in result.items}
    wanted = [d["url"] for d in expected["documents"]]
    assert sorted(got) == sorted(wanted), f"rejected: {[(r.url, r.rejection) for r in result.rejected]}"
    for entry in expected["documents"]:
        doc = got[entry["url"]]
        text = doc.text.strip()
        assert doc.title == entry["title"]
        assert text.startswith(entry["first"]), f"{entry['url']} starts: {text[:200]!r}"
        assert text.endswith(entry["last"]), f"{entry['url']} ends: {text[-200:]!r}"
        for piece in entry.get("contains", []):
            assert piece in text, f"{entry['url']} lacks {piece!r}:\n{text}"
        for bad in expected.get("absent", []):
            assert bad not in text, f"{entry['url']} keeps boilerplate {bad!r}:\n{text}"
        assert "\n\n\n" not in text
    assert len(result.rejected) == expected.get("rejected", 0), [
        (r.url, r.rejection) for r in result.rejected
    ]
