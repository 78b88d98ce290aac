"""A network-free driver for spider tests: each Request is answered from a fixture site's files.

The URL -> file rule and the content-type rule are the test HTTP server's own (curate.scrape.mirror),
so a spider that passes here sees the same bytes there (tests/fixtures/sites/<source>/site/<HOST>/<PATH>).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from curate.fetch.http import Request, Response
from curate.schema import Rejection
from curate.scrape.mirror import content_type, site_file
from curate.scrape.spiders.base import Item, Spider

SITES = Path(__file__).resolve().parents[1] / "fixtures" / "sites"


def fixture_file(site: Path, url: str) -> Path:
    """The file that serves url (the test server's rule, curate.scrape.mirror.site_file)."""
    parts = urlsplit(url)
    path = site_file(site, f"/{parts.netloc}{parts.path or '/'}" + (f"?{parts.query}" if parts.query else ""))
    assert path is not None, f"{url} maps outside {site}"
    return path


@dataclass
class Crawl:
    """What a crawl produced: kept items, rejected items, fetched URLs in order, skipped and missing URLs."""

    items: list[Item] = field(default_factory=list)
    rejected: list[Item] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)
    off_domain: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def crawl(spider: Spider, site: Path, limit: int = 500) -> Crawl:
    """Breadth-first crawl of a fixture site (each URL once, off-domain requests skipped like the fetcher)."""
    result = Crawl()
    queue: deque[Request] = deque(spider.start_requests())
    seen: set[str] = set()
    while queue and len(result.fetched) < limit:
        request = queue.popleft()
        if request.url in seen:
            continue
        seen.add(request.url)
        if not spider.allowed(request.url):
            result.off_domain.append(request.url)
            continue
        path = fixture_file(site, request.url)
        if not path.is_file():
            result.missing.append(request.url)
            outputs = spider.on_error(request, Rejection("fetch_http_error", "HTTP 404"))
        else:
            body = path.read_bytes()
            result.fetched.append(request.url)
            response = Response(request.url, request, 200, {"content-type": content_type(path, body)}, body)
            outputs = spider.parse(response)
        for out in outputs:
            if isinstance(out, Request):
                queue.append(out)
            elif out.doc is not None:
                result.items.append(out)
            else:
                result.rejected.append(out)
    return result
