"""What every spider shares: the Spider base class, the Item it yields, the registry of spider classes, and
helpers for parsing responses (links, HTML and PDF items, XML and JSON bodies, heading levels).

A spider never fetches (the crawler in curate/scrape/crawl.py does, politely); it turns a `Response` into
`Request`s and `Item`s. State a spider needs across pages (a NICE guidance's chapters, a WikiDoc topic's
sub-pages) travels in `Request.meta`, so a resumed crawl needs nothing but its frontier.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urldefrag, urljoin

from lxml import etree

from curate.errors import ConfigError
from curate.fetch.http import Request, Response
from curate.fetch.urls import check_url
from curate.schema import ParsedDoc, Rejection
from curate.scrape.extract import css, decode_page, extract_page, finish_text, parse_page
from curate.sources.config import ExtractRules, ScrapeConfig
from curate.sources.registry import Source

log = logging.getLogger("curate.scrape")


@dataclass
class Item:
    """One document a spider produced, or the reason a page produced none."""

    url: str
    doc: ParsedDoc | None = None
    rejection: Rejection | None = None


SPIDERS: dict[str, type[Spider]] = {}  # filled by @register in the modules of curate/scrape/spiders/


def register(name: str):
    """Class decorator: the spider for the source (or `spider:` setting, or discovery type) of this name."""

    def wrap(cls: type[Spider]) -> type[Spider]:
        SPIDERS[name] = cls
        return cls

    return wrap


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


_HEADING_LINE = re.compile(r"^(#{1,6}) ")


def shift_headings(text: str, top: int) -> str:
    """Re-level the markdown headings of text so that its highest heading becomes level `top` (max 3)."""
    levels = [len(m.group(1)) for m in map(_HEADING_LINE.match, text.splitlines()) if m]
    if not levels:
        return text
    delta = top - min(levels)

    def fix(line: str) -> str:
        match = _HEADING_LINE.match(line)
        if not match:
            return line
        level = max(1, min(3, len(match.group(1)) + delta))
        return "#" * level + line[len(match.group(1)) :]

    return "\n".join(fix(line) for line in text.splitlines())


def json_body(response: Response) -> Any:
    """The response body parsed as JSON, or raise Rejection `api_broken`."""
    try:
        return json.loads(response.body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Rejection("api_broken", f"not JSON: {exc}"[:200]) from None
