"""The spider that sources.yaml alone drives: sitemaps, listing pages with link and next-page selectors
(optionally behind index levels such as the letters A-Z), then articles or PDFs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from lxml import etree

from curate.fetch.http import Request, Response
from curate.schema import Rejection
from curate.scrape.extract import css, page_title
from curate.scrape.spiders.base import Item, Spider, rejections_as_items, xml_root

_PDF_PATH = re.compile(r"\.pdf$", re.I)


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
        return page_title(tree, self.rules)

    @staticmethod
    def _pdf_meta(response: Response) -> dict[str, Any]:
        landing = response.request.meta.get("landing_page")
        return {"landing_page": landing} if landing else {}
