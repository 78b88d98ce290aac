"""Pages that break a spider's assumptions become rejection items with a reason, never a crash."""

from __future__ import annotations

import shutil

import pytest

from curate.fetch.http import Request, Response
from curate.scrape.spiders import spider_for
from curate.sources.registry import find_sources_file, load_sources
from tests.sources.sitedriver import SITES, crawl, fixture_file


@pytest.fixture(scope="module")
def sources():
    return load_sources(find_sources_file(SITES.parents[2]))


def _copy(tmp_path, name):
    shutil.copytree(SITES / name / "site", tmp_path / "site")
    return tmp_path / "site"


def test_pdf_link_that_returns_html_is_rejected_and_the_rest_kept(sources, tmp_path):
    site = _copy(tmp_path, "cdc")
    pdf = fixture_file(site, "https://stacks.cdc.gov/view/cdc/45123/cdc_45123_DS1.pdf")
    pdf.write_bytes(b"<html><body><h1>Session expired</h1><p>Please log in.</p></body></html>")
    # A .pdf name with an HTML body: the server's type says PDF; the bytes decide.
    result = crawl(spider_for(sources["cdc"]), site)
    assert [i.url for i in result.items] == ["https://stacks.cdc.gov/view/cdc/61002/cdc_61002_DS1.pdf"]
    [bad] = result.rejected
    assert bad.url.endswith("cdc_45123_DS1.pdf") and bad.rejection.reason == "pdf_not_pdf"


def test_landing_page_without_pdf_link_and_selector_miss(sources, tmp_path):
    site = _copy(tmp_path, "cco")
    landing = fixture_file(site, "https://www.cancercareontario.ca/en/guidelines-advice/types-of-cancer/2156")
    landing.write_text(landing.read_text().replace("pdfBTN", "button"), encoding="utf-8")
    result = crawl(spider_for(sources["cco"]), site)
    assert len(result.items) == 1
    assert [r.rejection.reason for r in result.rejected] == ["pdf_link_missing"]

    site = _copy(tmp_path / "idsa", "idsa")
    article = fixture_file(site, "https://www.idsociety.org/practice-guideline/clostridioides-difficile/")
    article.write_text(article.read_text().replace("<article>", "<div>").replace("</article>", "</div>"))
    result = crawl(spider_for(sources["idsa"]), site)
    assert len(result.items) == 1
    [miss] = result.rejected
    assert miss.rejection.reason == "extract_selector_miss" and "article" in miss.rejection.detail


def test_empty_listing_and_binary_article(sources, tmp_path):
    site = _copy(tmp_path, "rch")
    index = fixture_file(
        site,
        "https://www.rch.org.au/clinicalguide/about_rch_cpgs/welcome_to_the_clinical_practice_guidelines/",
    )
    index.write_text("<html><body><p>Site maintenance: back soon.</p></body></html>", encoding="utf-8")
    result = crawl(spider_for(sources["rch"]), site)
    assert result.items == []
    assert [r.rejection.reason for r in result.rejected] == ["listing_empty"]

    spider = spider_for(sources["idsa"])
    request = Request("https://www.idsociety.org/practice-guideline/x/", kind="article")
    binary = Response(request.url, request, 200, {"content-type": "text/html"}, bytes(range(256)) * 64)
    [item] = list(spider.parse(binary))
    assert item.doc is None and item.rejection.reason == "html_not_text"


def test_broken_json_and_xml_are_rejections(sources):
    for name, kind in (("magic", "list"), ("wikidoc", "allpages"), ("pubmed", "esearch")):
        spider = spider_for(sources[name])
        request = Request(spider.start_requests()[0].url, kind=kind)
        response = Response(
            request.url, request, 200, {"content-type": "text/html"}, b"<html>Rate limited</html"
        )
        [item] = list(spider.parse(response))
        assert item.doc is None and item.rejection.reason in ("api_broken", "xml_broken"), name


def test_esearch_paging_stops_at_pubmeds_cap_with_a_reason(sources):
    spider = spider_for(sources["pubmed"])
    ids = "".join(f"<Id>{n}</Id>" for n in range(1, 501))
    body = f"<eSearchResult><Count>25000</Count><IdList>{ids}</IdList></eSearchResult>".encode()
    for start, more in ((9000, True), (9500, False)):
        request = Request(spider.esearch_url(start), kind="esearch", meta={"start": start})
        out = list(spider.parse(Response(request.url, request, 200, {"content-type": "text/xml"}, body)))
        efetch = [r for r in out if isinstance(r, Request) and r.kind == "efetch"]
        assert len(efetch) == 3  # 500 PMIDs in batches of 200
        nxt = [r for r in out if isinstance(r, Request) and r.kind == "esearch"]
        capped = [r for r in out if not isinstance(r, Request)]
        assert bool(nxt) == more and bool(capped) != more
    assert capped[0].rejection.reason == "eutils_capped" and "25000" in capped[0].rejection.detail


def _citation(pmid: int, abstract: str) -> str:
    return (
        f'<PubmedArticle><MedlineCitation Status="MEDLINE"><PMID Version="1">{pmid}</PMID><Article>'
        f"<ArticleTitle>Trial {pmid}</ArticleTitle><Abstract><AbstractText>{abstract}</AbstractText>"
        "</Abstract></Article></MedlineCitation></PubmedArticle>"
    )


def test_a_damaged_citation_in_an_efetch_answer_is_one_rejection_and_the_rest_are_kept(sources):
    spider = spider_for(sources["pubmed"])
    words = "Adults with sepsis received early antibiotics and fluids in the emergency department. " * 3
    damaged = _citation(2, words).replace("</AbstractText>", "</AbstractText \x01>")
    body = f"<PubmedArticleSet>{_citation(1, words)}{damaged}{_citation(3, words)}</PubmedArticleSet>"
    request = Request("https://eutils.example/efetch.fcgi?id=1,2,3", kind="efetch")
    out = list(spider.parse(Response(request.url, request, 200, {"content-type": "text/xml"}, body.encode())))
    kept = [i.url for i in out if i.doc is not None]
    assert kept == ["https://pubmed.ncbi.nlm.nih.gov/1/", "https://pubmed.ncbi.nlm.nih.gov/3/"]
    [bad] = [i for i in out if i.doc is None]
    assert bad.url == "https://pubmed.ncbi.nlm.nih.gov/2/" and bad.rejection.reason == "xml_broken"
