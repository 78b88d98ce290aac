"""NICE guidance (www.nice.org.uk): one document per guidance, its overview and chapters merged."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from lxml import etree
from lxml.html import fragment_fromstring

from curate.fetch.http import Request, Response
from curate.schema import ParsedDoc, Rejection
from curate.scrape.extract import page_title, text_of
from curate.scrape.spiders.base import Item, register, shift_headings
from curate.scrape.spiders.generic import GenericSpider


@register("nice")
class NiceSpider(GenericSpider):
    """Listing -> guidance overview -> its chapters, fetched one after another and merged into one document.

    The chapter list is `discovery.also` on the overview page; chapters whose link text matches
    `extract.drop_chapters` (committee, implementation, update information) are not fetched. Each chapter is
    a `#` section, its sub-chapters `##`. The partial text travels in Request.meta, so nothing is held here;
    a chapter that cannot be fetched is left out and named in the document's meta (`missing_chapters`).
    """

    def parse_article(self, response: Response) -> Iterator[Request | Item]:
        """A guidance overview page: its own text, then a chain of chapter requests."""
        if response.request.kind == "chapter":
            yield from self._chapter(response)
            return
        tree = self.tree(response)
        title = page_title(tree, self.rules)
        parts: list[str] = []
        overview = self.html_item(response)
        if overview.doc is not None:
            parts.append(shift_headings(overview.doc.text, 1))
        chapters: list[list[str]] = []
        drop = re.compile(self.config.drop_chapters, re.I) if self.config.drop_chapters else None
        if self.config.discovery.also:
            for element in tree.cssselect(self.config.discovery.also):
                for anchor in [element] if element.tag == "a" else element.iter("a"):
                    name = text_of(anchor)
                    urls = self.links(response, "a", tree=_wrap(anchor))
                    if not urls or urls[0] == response.url or (drop and drop.search(name)):
                        continue
                    if urls[0] not in [c[0] for c in chapters]:
                        chapters.append([urls[0], name])
        meta = {"guidance": response.url, "title": title, "parts": parts, "chapters": chapters}
        yield from self._next(meta)

    def _chapter(self, response: Response) -> Iterator[Request | Item]:
        meta = dict(response.request.meta)
        item = self.html_item(response)
        if item.doc is not None:
            meta["parts"] = [*meta["parts"], shift_headings(item.doc.text, 1)]
        yield from self._next(meta)

    def on_error(self, request: Request, rejection: Rejection) -> Iterator[Request | Item]:
        """A chapter that failed: the guidance goes on with the next one."""
        if request.kind == "chapter":
            meta = dict(request.meta)
            meta["missing"] = [*meta.get("missing", []), request.url]
            yield from self._next(meta)

    def _next(self, meta: dict[str, Any]) -> Iterator[Request | Item]:
        chapters = meta["chapters"]
        if chapters:
            url, _ = chapters[0]
            yield Request(url, kind="chapter", meta={**meta, "chapters": chapters[1:]})
            return
        url = meta["guidance"]
        if not meta["parts"]:
            yield Item(url, rejection=Rejection("html_no_text", "no text in the overview or any chapter"))
            return
        info: dict[str, Any] = {"chapters": len(meta["parts"])}
        if meta.get("missing"):
            info["missing_chapters"] = meta["missing"]
        yield Item(url, doc=ParsedDoc(text="\n\n".join(meta["parts"]), title=meta["title"], meta=info))


def _wrap(anchor: Any) -> Any:
    """A tiny tree holding a copy of one anchor, so Spider.links can resolve it."""
    holder = fragment_fromstring("<div></div>")
    copy = fragment_fromstring(etree.tostring(anchor, encoding="unicode", with_tail=False))
    holder.append(copy)
    return holder
