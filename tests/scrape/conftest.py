"""A small fixture site (tests/scrape/site) on a real loopback server, fault routes, and a tiny spider."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from urllib.parse import urljoin

import pymupdf
import pytest

from curate.fetch.fetcher import FetchSettings
from curate.fetch.http import Request
from curate.scrape.mirror import SiteServer
from curate.scrape.spiders.base import Spider, register
from curate.sources.registry import load_sources

HERE = Path(__file__).parent
HOST = "example.test"
ARTICLE = (HERE / "site" / HOST / "articles" / "asthma.html").read_bytes()
# Small waits so that the fault cases run in a second or two; the logic is the same as the defaults'.
FAST = FetchSettings(
    rate_limit=1000.0,
    retries=2,
    backoff=0.01,
    max_retry_wait=0.05,
    timeout=0.5,
    connect_timeout=0.5,
    max_bytes=1_000_000,
)

SOURCES_YAML = """
sources:
  {name}:
    title: Example guidelines (test fixture)
    homepage: https://example.test/
    allowed_domains: [example.test]
    content: html
    license: test licence
    redistributable: false
    scrape:
      spider: crawltest
      rate_limit: 1000
      discovery: {{type: listing, start: ["https://example.test/{start}"], links: a}}
      extract: {{main: main}}
"""


@register("crawltest")
class CrawlTestSpider(Spider):
    """Follows every link of a listing page as the kind its data-kind attribute names (no domain filter:
    refusing off-domain and non-http links is the crawler's job); articles and PDFs become Items."""

    def start_requests(self) -> list[Request]:
        return [Request(url, kind="listing") for url in self.config.discovery.start]

    def parse(self, response):
        kind = response.request.kind
        if kind == "listing":
            for anchor in self.tree(response).iter("a"):
                href = anchor.get("href")
                yield Request(urljoin(response.url, href), kind=anchor.get("data-kind", "article"))
        elif kind == "pdf":
            yield self.pdf_item(response)
        else:
            yield self.html_item(response)


def make_pdf(path: Path) -> None:
    """A one-page text PDF, written deterministically."""
    doc = pymupdf.open()
    page = doc.new_page()
    text = (
        "Clinical guide to inhaler technique\n\n"
        + "Patients should be shown how to use their inhaler and checked at every review visit. " * 4
    )
    page.insert_textbox(pymupdf.Rect(72, 72, 520, 760), text, fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc.save(path, no_new_id=True)
    doc.close()


def sources_file(folder: Path, name: str = "testsite", start: str = "") -> Path:
    path = folder / "sources.yaml"
    path.write_text(SOURCES_YAML.format(name=name, start=start))
    return path


def source_for(folder: Path, name: str = "testsite", start: str = ""):
    return load_sources(sources_file(folder, name, start))[name]


# ------------------------------------------------------------------------------------------ fault routes


def _article(handler) -> None:
    handler.send(200, ARTICLE, {"Content-Type": "text/html; charset=utf-8"})


def _always(status: int, **headers: str):
    return lambda handler: handler.send(status, b"busy", {"Content-Type": "text/plain", **headers})


def _once_then_article(status: int, retry_after: str):
    calls = []

    def route(handler) -> None:
        calls.append(1)
        if len(calls) == 1:
            handler.send(status, b"busy", {"Content-Type": "text/plain", "Retry-After": retry_after})
        else:
            _article(handler)

    return route


def _slow(handler) -> None:
    time.sleep(2.0)
    _article(handler)


def _redirect(location: str):
    return lambda handler: handler.send(302, b"", {"Location": location})


def _big(handler) -> None:
    """50 MB of text/html streamed without Content-Length: only a streaming cap stops it."""
    handler.send_response(200)
    handler.send_header("Content-Type", "text/html; charset=utf-8")
    handler.send_header("Connection", "close")
    handler.end_headers()
    chunk = b"<p>" + b"x" * 65_530 + b"</p>"
    for _ in range(50 * 1024 * 1024 // len(chunk)):
        handler.wfile.write(chunk)
    handler.record(200)


def _utf16(handler) -> None:
    """A page in UTF-16 with its BOM and no charset: NUL bytes everywhere, and still text."""
    handler.send(200, ARTICLE.decode("utf-8").encode("utf-16"), {"Content-Type": "text/html"})


def _bad_gzip(handler) -> None:
    """A body that claims gzip but is not: it cannot be decoded, now or on a retry."""
    headers = {"Content-Type": "text/html", "Content-Encoding": "gzip"}
    handler.send(200, b"\x1f\x8b\x08\x00 not gzip at all", headers)


FAULT_ROUTES = {
    f"/{HOST}/faults/500": _always(500),
    f"/{HOST}/faults/503-once": _once_then_article(503, "1"),
    f"/{HOST}/faults/429": _always(429, **{"Retry-After": "1"}),
    f"/{HOST}/faults/slow": _slow,
    f"/{HOST}/faults/loop-a": _redirect(f"/{HOST}/faults/loop-b"),
    f"/{HOST}/faults/loop-b": _redirect(f"https://{HOST}/faults/loop-a"),
    f"/{HOST}/faults/offsite": _redirect("https://evil.test/x"),
    f"/{HOST}/faults/big.html": _big,
    f"/{HOST}/faults/fake.pdf": _article,
    f"/{HOST}/faults/utf16.html": _utf16,
    f"/{HOST}/faults/bad-gzip.html": _bad_gzip,
}


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A copy of the fixture site with its PDF, and a secret file beside it that must never be served."""
    root = tmp_path / "www" / "site"
    shutil.copytree(HERE / "site", root)
    make_pdf(root / HOST / "docs" / "guide.pdf")
    (tmp_path / "www" / "secret.txt").write_text("TOP SECRET")
    return root


@pytest.fixture
def server(site: Path):
    with SiteServer(site, routes=FAULT_ROUTES) as srv:
        yield srv
