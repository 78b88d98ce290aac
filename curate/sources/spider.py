"""Spiders: where a source's crawl starts and how each response becomes more requests or documents.

A spider never fetches (the crawler in curate/scrape does, politely); it turns a `Response` into `Request`s
and `Item`s. `GenericSpider` is driven by the source's `scrape:` block alone (sitemap, listing pages with
link and next-page selectors, an index of letters); a source YAML cannot express gets a small class
registered with `@register("name")` (see curate/sources/sites.py). State a spider needs across pages (a
NICE guidance's chapters, a WikiDoc topic's sub-pages) travels in `Request.meta`, so a resumed crawl needs
nothing but its frontier.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

from lxml import etree

from curate.fetch.http import Request, Response
from curate.fetch.urls import check_url
from curate.schema import ParsedDoc, Rejection
from curate.sources.config import GENERIC_DISCOVERY, ScrapeConfig
from curate.sources.extract import (
    ExtractRules,
    css,
    decode_page,
    extract_page,
    finish_text,
    parse_page,
    text_of,
)
from curate.sources.registry import ConfigError, Source

log = logging.getLogger("curate.scrape")

_PDF_PATH = re.compile(r"\.pdf$", re.I)


@dataclass
class Item:
    """One document a spider produced, or the reason a page produced none."""

    url: str
    doc: ParsedDoc | None = None
    rejection: Rejection | None = None


_SPIDERS: dict[str, type[Spider]] = {}


def register(name: str):
    """Class decorator: the spider for the source (or `spider:` setting, or discovery type) of this name."""

    def wrap(cls: type[Spider]) -> type[Spider]:
        _SPIDERS[name] = cls
        return cls

    return wrap


def spider_for(source: Source) -> Spider:
    """The registered class for this source name, else the YAML-driven generic spider; ConfigError when the
    source has no `scrape:` block (local-only sources)."""
    import curate.sources.sites  # noqa: F401 - registers the per-site classes

    config: ScrapeConfig | None = source.scrape
    if config is None:
        raise ConfigError(f"source {source.name!r} has no 'scrape:' block in sources.yaml: nothing to crawl")
    if config.spider:
        if config.spider not in _SPIDERS:
            known = ", ".join(sorted(_SPIDERS))
            raise ConfigError(
                f"source {source.name!r}: scrape.spider {config.spider!r} is not registered ({known})"
            )
        return _SPIDERS[config.spider](source)
    cls = _SPIDERS.get(source.name) or _SPIDERS.get(config.discovery.type)
    if cls is not None:
        return cls(source)
    if config.discovery.type in GENERIC_DISCOVERY:
        return GenericSpider(source)
    raise ConfigError(
        f"source {source.name!r}: discovery type {config.discovery.type!r} needs a spider class; register "
        f"with @register({source.name!r}) in curate/sources/ or name one with scrape.spider"
    )


class Spider:
    """Scrapy-like: where to start and how to parse; no I/O of its own."""

    name: str

    def __init__(self, source: Source):
        if source.scrape is None:
            raise ConfigError(f"source {source.name!r} has no 'scrape:' block in sources.yaml")
        self.source = source
        self.name = source.name
        self.config: ScrapeConfig = source.scrape
        self.rules: ExtractRules = self.config.extract
        self.skipped: Counter = Counter()  # links passed over, by reason (the crawler reports them)

    def start_requests(self) -> list[Request]:
        """The first requests of a crawl."""
        return [Request(url, kind="start") for url in self.config.discovery.start]

    def parse(self, response: Response) -> Iterable[Request | Item]:
        """Requests and Items from one response."""
        raise NotImplementedError

    def on_error(self, request: Request, rejection: Rejection) -> Iterable[Request | Item]:
        """Requests and Items after a request came to nothing (the crawler has recorded why): a spider
        whose document spans requests (state in Request.meta) goes on without this one. Default: nothing."""
        return ()

    # --- helpers for subclasses ----------------------------------------------------------------------

    def allowed(self, url: str) -> bool:
        """An http(s) URL on one of the source's allowed domains (or their subdomains): the fetcher's rule."""
        try:
            check_url(url, self.source.allowed_domains)
        except Rejection:
            return False
        return True

    def links(
        self,
        response: Response,
        selector: str,
        pattern: str | None = None,
        exclude: str | None = None,
        tree: Any = None,
    ) -> list[str]:
        """Absolute, de-fragmented, allowed URLs of the hrefs under selector, in page order, once each."""
        tree = tree if tree is not None else self.tree(response)
        found: dict[str, None] = {}  # ordered and de-duplicated in linear time (a list test is quadratic)
        for element in css(tree, selector):
            anchors = [element] if element.tag == "a" else element.iter("a")
            for anchor in anchors:
                href = (anchor.get("href") or "").strip()
                if not href or href.startswith(("javascript:", "mailto:", "tel:", "#")):
                    continue
                try:
                    url = absolute_url(response.url, href)
                except ValueError as exc:  # "http://[oops/": one bad link, not a lost page
                    self.skipped["fetch_bad_url"] += 1
                    log.info("%s: %s: skipping link %r: %s", self.name, response.url, href[:200], exc)
                    continue
                if pattern and not re.search(pattern, url):
                    continue
                if exclude and re.search(exclude, url):
                    continue
                if url in found:
                    continue
                try:
                    check_url(url, self.source.allowed_domains)
                except Rejection as exc:  # another site, port or scheme: counted, and the crawler reports it
                    self.skipped[exc.reason] += 1
                    continue
                found[url] = None
        return list(found)

    def tree(self, response: Response) -> Any:
        """The response parsed as HTML (cached on the response object)."""
        cached = getattr(response, "_tree", None)
        if cached is None:
            cached = parse_page(decode_page(response.body, response.charset))
            response._tree = cached  # type: ignore[attr-defined]
        return cached

    def html_item(self, response: Response, meta: Mapping[str, Any] | None = None) -> Item:
        """An Item from an HTML page by the source's extraction rules (a Rejection item when it fails)."""
        if response.is_pdf:
            return self.pdf_item(response, meta=meta)
        try:
            doc = extract_page(response.body, response.url, self.rules, charset=response.charset)
        except Rejection as exc:
            return Item(response.url, rejection=exc)
        doc.meta.update(meta or {})
        return Item(response.url, doc=doc)

    def pdf_item(
        self, response: Response, title: str | None = None, meta: Mapping[str, Any] | None = None
    ) -> Item:
        """An Item from a PDF body (parsed in a killable child process), or a Rejection item."""
        if not response.is_pdf:
            kind = response.content_type or "no content type"
            detail = f"expected a PDF, got {kind} starting {response.body[:40]!r}"
            return Item(response.url, rejection=Rejection("pdf_not_pdf", detail))
        try:
            doc = parse_pdf_bytes(response.body)
        except Rejection as exc:
            return Item(response.url, rejection=exc)
        doc.text = finish_text(doc.text, self.rules)
        if title:
            doc.title = title
        doc.meta.update(meta or {})
        return Item(response.url, doc=doc)


# A link whose resolution is plain concatenation: a path from the root, or an absolute http(s) URL, with no
# dot segments, backslashes, fragments or spaces for urljoin to resolve (urljoin costs ~10 us a link).
_PLAIN_PATH = re.compile(r"/(?!/)[^#\\\s]*")
_PLAIN_ABSOLUTE = re.compile(r"https?://[^/?#\\\s]+(?:/[^#\\\s]*)?")
_ORIGIN = re.compile(r"https?://[^/?#\\\s]+")


def absolute_url(base: str, href: str) -> str:
    """href resolved against the page's URL, its fragment dropped (as urljoin and urldefrag do)."""
    if "/." not in href:
        if _PLAIN_ABSOLUTE.fullmatch(href):
            return href
        origin = _ORIGIN.match(base)
        if origin and _PLAIN_PATH.fullmatch(href):
            return origin.group() + href
    url = urljoin(base, href)
    return urldefrag(url).url if "#" in url else url


def rejections_as_items(
    parse: Callable[..., Iterator[Request | Item]],
) -> Callable[..., Iterator[Request | Item]]:
    """Decorate a parse method: a Rejection it raises (a broken body) becomes the response's Item."""

    @functools.wraps(parse)
    def wrapper(self: Spider, response: Response, *args: Any) -> Iterator[Request | Item]:
        try:
            yield from parse(self, response, *args)
        except Rejection as exc:
            yield Item(response.url, rejection=exc)

    return wrapper


def xml_root(response: Response, reason: str = "xml_broken") -> Any:
    """The response body parsed as XML (no entities, no network), or raise Rejection(reason)."""
    try:
        return etree.fromstring(
            response.body, parser=etree.XMLParser(resolve_entities=False, no_network=True)
        )
    except etree.XMLSyntaxError as exc:
        raise Rejection(reason, str(exc)[:200]) from None


def parse_pdf_bytes(body: bytes) -> ParsedDoc:
    """PDF bytes to a ParsedDoc with curate's PDF parser in a child process (via a temporary file)."""
    from curate.parse.pdf import parse_pdf_isolated

    handle, path = tempfile.mkstemp(suffix=".pdf", prefix="curate-scrape-")
    try:
        with os.fdopen(handle, "wb") as fh:
            fh.write(body)
        doc = parse_pdf_isolated(path)
    finally:
        os.unlink(path)
    doc.meta.pop("file", None)  # the temporary name means nothing
    return doc


class GenericSpider(Spider):
    """Sitemap, listing pages (optionally behind index levels such as letters), then articles or PDFs.

    Request kinds: "start" (the discovery's entry point), "sitemap", "index" (meta level), "listing",
    "article" (an HTML page, or a PDF landing page when `pdf_link` is set), "pdf".
    """

    def start_requests(self) -> list[Request]:
        """Sitemaps, the first index level, or the first listing pages."""
        d = self.config.discovery
        if d.type == "sitemap":
            return [Request(url, kind="sitemap") for url in d.start]
        if d.follow:
            return [Request(url, kind="index", meta={"level": 0}) for url in d.start]
        return [Request(url, kind="listing") for url in d.start]

    def parse(self, response: Response) -> Iterator[Request | Item]:
        """Dispatch on the request's kind."""
        kind = response.request.kind
        if kind == "sitemap":
            yield from self.parse_sitemap(response)
        elif kind == "index":
            yield from self.parse_index(response)
        elif kind in ("listing", "start"):
            yield from self.parse_listing(response)
        elif kind == "pdf":
            yield self.pdf_item(
                response, title=response.request.meta.get("title"), meta=self._pdf_meta(response)
            )
        else:
            yield from self.parse_article(response)

    @rejections_as_items
    def parse_sitemap(self, response: Response) -> Iterator[Request | Item]:
        """A sitemap index (more sitemaps) or a urlset (article URLs filtered by pattern/exclude)."""
        d = self.config.discovery
        root = xml_root(response, "sitemap_broken")
        name = etree.QName(root).localname
        locs = [text.strip() for text in root.xpath("//*[local-name()='loc']/text()")]
        count = 0
        for loc in locs:
            if not self.allowed(loc):
                continue
            if name == "sitemapindex":
                yield Request(loc, kind="sitemap")
                count += 1
            elif (not d.pattern or re.search(d.pattern, loc)) and not (
                d.exclude and re.search(d.exclude, loc)
            ):
                yield self._document_request(loc)
                count += 1
        if not count:
            yield Item(response.url, rejection=Rejection("listing_empty", "no matching URL in the sitemap"))

    def parse_index(self, response: Response) -> Iterator[Request | Item]:
        """An index page (e.g. the letters A-Z): links to the next level; its own next page, if any."""
        level_no = int(response.request.meta.get("level", 0))
        level = self.config.discovery.follow[level_no]
        tree = self.tree(response)
        found = self.links(response, level.links, level.pattern, tree=tree)
        last = level_no + 1 >= len(self.config.discovery.follow)
        for url in found:
            if url == response.url:
                # The entry page is also the first page of the next level (Mayo's index?letter=A): read it
                # now, since the crawler would not fetch the same URL twice.
                if last:
                    yield from self.parse_listing(response)
                continue
            if last:
                yield Request(url, kind="listing")
            else:
                yield Request(url, kind="index", meta={"level": level_no + 1})
        if level.next:
            for url in self.links(response, level.next, tree=tree)[:1]:
                yield Request(url, kind="index", meta={"level": level_no})
        if not css(tree, level.links):
            yield Item(
                response.url, rejection=Rejection("listing_empty", f"no element matches {level.links!r}")
            )

    def parse_listing(self, response: Response) -> Iterator[Request | Item]:
        """A listing page: its article (or PDF) links, and its next page."""
        d = self.config.discovery
        tree = self.tree(response)
        found = self.links(response, d.links, d.pattern, d.exclude, tree=tree)
        for url in found:
            yield self._document_request(url)
        if d.next:
            for url in self.links(response, d.next, tree=tree):
                if url != response.url:
                    yield Request(url, kind="listing")
        if not css(tree, d.links):
            # Only a selector that matches nothing is a sign of breakage: a page whose links are all filtered
            # out by pattern/exclude is normal (CMA's Choosing Wisely items).
            yield Item(response.url, rejection=Rejection("listing_empty", f"no element matches {d.links!r}"))

    def parse_article(self, response: Response) -> Iterator[Request | Item]:
        """An article page: its text (HTML) or its PDF link (landing page); `also` links to more articles."""
        d = self.config.discovery
        if response.is_pdf:
            yield self.pdf_item(response, meta=self._pdf_meta(response))
            return
        tree = self.tree(response)
        if d.also:
            for url in self.links(response, d.also, d.pattern, d.exclude, tree=tree):
                if url != response.url:
                    yield Request(url, kind="article")
        if self.source.content == "pdf" and d.pdf_link:
            pdfs = self.links(response, d.pdf_link, tree=tree)
            if not pdfs:
                yield Item(
                    response.url, rejection=Rejection("pdf_link_missing", f"no link matches {d.pdf_link!r}")
                )
                return
            title = self._landing_title(tree)
            meta = {"landing_page": response.url, **({"title": title} if title else {})}
            yield Request(pdfs[0], kind="pdf", meta=meta)
            return
        yield self.html_item(response)

    def _document_request(self, url: str) -> Request:
        d = self.config.discovery
        if self.source.content == "pdf" and not d.pdf_link and _PDF_PATH.search(urlsplit(url).path):
            return Request(url, kind="pdf")
        return Request(url, kind="article")

    def _landing_title(self, tree: Any) -> str | None:
        from curate.sources.extract import page_title

        return page_title(tree, self.rules)

    @staticmethod
    def _pdf_meta(response: Response) -> dict[str, Any]:
        landing = response.request.meta.get("landing_page")
        return {"landing_page": landing} if landing else {}


__all__ = [
    "GenericSpider",
    "Item",
    "Request",
    "Response",
    "Spider",
    "parse_pdf_bytes",
    "register",
    "rejections_as_items",
    "spider_for",
    "text_of",
    "xml_root",
]
