"""sources.yaml `scrape:` validation, extraction rules alone, and a YAML-only source scraped end to end."""

from __future__ import annotations

import textwrap

import pytest

from curate.errors import ConfigError
from curate.fetch.fetcher import FetchSettings
from curate.schema import Rejection
from curate.scrape.crawl import fetch_settings
from curate.scrape.extract import extract_page, finish_text
from curate.scrape.spiders import spider_for
from curate.sources.config import ExtractRules
from curate.sources.registry import load_sources
from tests.sources.sitedriver import crawl

BASE = """
sources:
  clinic:
    title: A small clinic site
    homepage: https://clinic.example.org/
    allowed_domains: [clinic.example.org]
    content: html
    license: CC0-1.0
    redistributable: true
"""


def _load(tmp_path, scrape: str):
    path = tmp_path / "sources.yaml"
    path.write_text(BASE + textwrap.indent(textwrap.dedent(scrape), "    "), encoding="utf-8")
    return load_sources(path)


def test_unknown_discovery_type_names_the_allowed_ones(tmp_path):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, "scrape:\n  discovery: {type: crawl-everything}\n")
    assert "source 'clinic'" in str(err.value)
    assert "unknown discovery type 'crawl-everything'" in str(err.value)
    assert "sitemap, listing, letters" in str(err.value)


def test_listing_without_link_selector_says_which_key(tmp_path):
    with pytest.raises(
        ConfigError, match=r"scrape\.discovery\.links: required: a CSS selector for the article links"
    ):
        _load(tmp_path, "scrape:\n  discovery: {type: listing, next: a.next}\n")


def test_letters_without_letters_selector(tmp_path):
    with pytest.raises(ConfigError, match=r"scrape\.discovery\.letters: required"):
        _load(tmp_path, "scrape:\n  discovery: {type: letters, links: a}\n")


def test_invalid_css_selector_and_regex_and_typo(tmp_path):
    with pytest.raises(ConfigError, match=r"scrape\.extract\.main: invalid CSS selector 'div\[\['"):
        _load(tmp_path, "scrape:\n  discovery: {type: listing, links: a}\n  extract: {main: 'div[['}\n")
    with pytest.raises(ConfigError, match=r"scrape\.discovery\.pattern: invalid regular expression"):
        _load(tmp_path, "scrape:\n  discovery: {type: listing, links: a, pattern: '(['}\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) mian; allowed: .*main"):
        _load(tmp_path, "scrape:\n  discovery: {type: listing, links: a}\n  extract: {mian: article}\n")
    with pytest.raises(ConfigError, match=r"scrape\.rate_limit: must be a number > 0, got 0"):
        _load(tmp_path, "scrape:\n  discovery: {type: listing, links: a}\n  rate_limit: 0\n")


def test_api_discovery_without_a_class_and_local_source(tmp_path):
    sources = _load(
        tmp_path, "scrape:\n  discovery: {type: api, start: ['https://clinic.example.org/api']}\n"
    )
    with pytest.raises(ConfigError, match="needs a spider class"):
        spider_for(sources["clinic"])
    assert fetch_settings(sources["clinic"]).rate_limit == 1.0


def test_source_without_scrape_block_has_no_spider(tmp_path):
    path = tmp_path / "sources.yaml"
    path.write_text(BASE, encoding="utf-8")
    with pytest.raises(ConfigError, match="has no 'scrape:' block"):
        spider_for(load_sources(path)["clinic"])


def test_fetch_settings_come_from_the_scrape_block(tmp_path):
    source = _load(tmp_path, "scrape:\n  discovery: {type: sitemap}\n")["clinic"]
    assert fetch_settings(source) == FetchSettings()  # the defaults: rate_limit 1, 20 MB, 30 s
    assert source.scrape.discovery.start == ("https://clinic.example.org/",)
    block = """
    scrape:
      discovery: {type: sitemap}
      retries: 0
      concurrency: 2
      connect_timeout: 2.5
      allow_private: true
      robots: false
    """
    settings = fetch_settings(_load(tmp_path, block)["clinic"])
    assert (settings.retries, settings.concurrency, settings.connect_timeout) == (0, 2, 2.5)
    assert settings.allow_private is True and settings.robots is False
    for key, value, message in (
        ("concurrency", "0", "a whole number >= 1"),
        ("retries", "1.5", "a whole number >= 0"),
        ("allow_private", "1", "true or false"),
        ("max_bytes", "true", "a whole number >= 1"),
    ):
        with pytest.raises(ConfigError, match=rf"scrape\.{key}: must be {message}"):
            _load(tmp_path, f"scrape:\n  discovery: {{type: sitemap}}\n  {key}: {value}\n")


def test_lines_starting_with_o_are_not_bullets():
    text = (
        "# Causes\n\nother infections can mimic it.\n\n- Oral steroids\n- other measures\n\nOedema may occur."
    )
    assert finish_text(text, ExtractRules()) == text


def test_finish_text_cuts_at_stop_headings_and_drops_markers_and_furniture():
    text = (
        "# Advice\n\nGive fluids [1, 2] early [2019].\n\nLast updated: May 2024\n\n## References\n\nSmith A."
    )
    assert finish_text(text, ExtractRules()) == "# Advice\n\nGive fluids early."


PAGE = b"""<html><head><title>Croup | Site</title></head><body>
<div class="cookie-banner">We use cookies. Accept all cookies</div>
<div class="main"><h1>Croup</h1><div class="ad">Advertisement</div>
<p>Croup causes a barking cough and stridor in young children, usually after a cold.</p>
<table><tr><td>Dexamethasone 0.15 mg/kg</td></tr></table>
<h2>Management</h2><ul><li>Give oral dexamethasone.</li><li>other children need adrenaline.</li></ul>
<h2>Acknowledgements</h2><p>Thanks to the committee.</p></div><footer>Contact us</footer></body></html>"""


def test_extract_page_applies_selectors_drops_and_stop_headings():
    rules = ExtractRules(main=("div.main",), drop=(".ad",))
    doc = extract_page(PAGE, "https://clinic.example.org/croup", rules)
    assert doc.title == "Croup"
    assert doc.text == (
        "# Croup\n\nCroup causes a barking cough and stridor in young children, usually after a cold.\n\n"
        "## Management\n\n- Give oral dexamethasone.\n- other children need adrenaline."
    )
    with_tables = extract_page(
        PAGE, "https://clinic.example.org/croup", ExtractRules(main=("div.main",), tables=True)
    )
    assert "Dexamethasone 0.15 mg/kg" in with_tables.text


def test_main_selector_miss_is_a_rejection_that_names_the_selector():
    with pytest.raises(Rejection) as err:
        extract_page(PAGE, "https://clinic.example.org/croup", ExtractRules(main=("article.guideline",)))
    assert err.value.reason == "extract_selector_miss"
    assert "article.guideline" in err.value.detail


def test_yaml_only_source_scrapes_a_new_site_with_no_code_change(tmp_path):
    """A new source in a temporary sources.yaml: sitemap discovery, its own selectors, nothing else."""
    sources = _load(
        tmp_path,
        """
        scrape:
          discovery:
            type: sitemap
            start: ['https://clinic.example.org/sitemap.xml']
            pattern: /leaflets/
          extract:
            main: [section.leaflet]
            drop: [.print-button]
            stop_headings: [Sources]
          rate_limit: 2.0
        """,
    )
    site = tmp_path / "site" / "clinic.example.org"
    (site / "leaflets").mkdir(parents=True)
    (site / "sitemap.xml").write_text(
        '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        "<url><loc>https://clinic.example.org/leaflets/gout.html</loc></url>"
        "<url><loc>https://clinic.example.org/about.html</loc></url>"
        "<url><loc>https://other.example.com/leaflets/x.html</loc></url></urlset>",
        encoding="utf-8",
    )
    (site / "leaflets" / "gout.html").write_text(
        "<html><head><title>Gout leaflet</title></head><body><nav>Home | Leaflets</nav>"
        '<section class="leaflet"><h1>Gout</h1><button class="print-button">Print</button>'
        "<p>Gout is a painful arthritis caused by urate crystals forming in a joint.</p>"
        "<p>Drink plenty of water and take your medicine as your doctor advised.</p>"
        "<h2>Sources</h2><p>Clinic leaflet team.</p></section>"
        "<footer>Last updated 2024</footer></body></html>",
        encoding="utf-8",
    )
    result = crawl(spider_for(sources["clinic"]), tmp_path / "site")
    assert result.missing == [] and result.rejected == []
    assert result.fetched == [
        "https://clinic.example.org/sitemap.xml",
        "https://clinic.example.org/leaflets/gout.html",
    ]
    [item] = result.items
    assert item.url == "https://clinic.example.org/leaflets/gout.html"
    assert item.doc.title == "Gout"
    assert item.doc.text == (
        "# Gout\n\nGout is a painful arthritis caused by urate crystals forming in a joint.\n\n"
        "Drink plenty of water and take your medicine as your doctor advised."
    )
    assert sources["clinic"].extra["scrape"]["rate_limit"] == 2.0
