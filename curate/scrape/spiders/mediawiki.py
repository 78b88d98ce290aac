"""MediaWiki sites such as WikiDoc: allpages through the API, a topic's sub-pages merged into one article."""

from __future__ import annotations

import html as htmlmod
import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

from curate.fetch.http import Request, Response
from curate.schema import ParsedDoc, Rejection
from curate.scrape.extract import extract_page
from curate.scrape.spiders.base import Item, Spider, json_body, register, rejections_as_items, shift_headings


@register("mediawiki")
class MediaWikiSpider(Spider):
    """list=allpages (paginated by apcontinue) -> action=parse per page -> one document per topic.

    A page titled "<Topic> <suffix>" with a suffix from `merge_suffixes` (overview, causes, ...) is merged
    into "<Topic>" when that page exists: the topic's own text first, then each sub-page as a `#` section in
    the order of merge_suffixes. Groups that may continue past a batch boundary are carried to the next
    batch in Request.meta. discovery options: `api` (api.php URL), `namespace` (0), `limit` (500),
    `merge_suffixes`, `drop_titles` (regex of titles to skip).
    """

    def __init__(self, source):
        super().__init__(source)
        o = self.config.discovery.options
        self.api: str = o["api"]
        self.namespace = int(o.get("namespace") or 0)
        self.limit = int(o.get("limit") or 500)
        self.suffixes: list[str] = [s.lower() for s in (o.get("merge_suffixes") or [])]
        self.drop_titles = re.compile(o["drop_titles"], re.I) if o.get("drop_titles") else None
        self.wiki = re.sub(r"api\.php$", "index.php/", self.api)

    def allpages_url(self, cont: str | None = None) -> str:
        """The allpages URL for one batch of titles."""
        url = (
            f"{self.api}?action=query&list=allpages&apnamespace={self.namespace}&apfilterredir=nonredirects"
            f"&aplimit={self.limit}&format=json&formatversion=2"
        )
        return url + (f"&apcontinue={quote(cont)}" if cont else "")

    def parse_url(self, pageid: int) -> str:
        """The action=parse URL of one page (rendered HTML, no edit links or table of contents)."""
        return (
            f"{self.api}?action=parse&pageid={pageid}&prop=text&disableeditsection=1&disabletoc=1"
            f"&format=json&formatversion=2"
        )

    def start_requests(self) -> list[Request]:
        """The first allpages batch."""
        return [Request(self.allpages_url(), kind="allpages", meta={"carry": []})]

    @rejections_as_items
    def parse(self, response: Response) -> Iterator[Request | Item]:
        """allpages: topic chains (and the next batch); page: one part of a topic."""
        data = json_body(response)
        if response.request.kind == "allpages":
            yield from self._allpages(response, data)
        else:
            yield from self._page(response, data)

    def _allpages(self, response: Response, data: dict[str, Any]) -> Iterator[Request | Item]:
        pages = [[p["pageid"], p["title"]] for p in (data.get("query") or {}).get("allpages") or []]
        pages = [p for p in pages if not (self.drop_titles and self.drop_titles.search(p[1]))]
        pages = [*response.request.meta.get("carry", []), *pages]
        groups = self.group(pages)
        cont = (data.get("continue") or {}).get("apcontinue")
        carry: list[list[Any]] = []
        if cont and pages:
            last = pages[-1][1]
            keep = {t for t in groups if last == t or last.startswith(t + " ")}
            carry = [p for t in keep for p in groups.pop(t)]
        for topic, members in groups.items():
            yield self._chain(topic, members, [], [])
        if cont:
            yield Request(self.allpages_url(cont), kind="allpages", meta={"carry": carry})
        if not pages and not response.request.meta.get("carry"):
            yield Item(response.url, rejection=Rejection("listing_empty", "allpages returned no titles"))

    def group(self, pages: list[list[Any]]) -> dict[str, list[list[Any]]]:
        """{topic: [[pageid, title], ...]} with sub-pages after their topic page, in merge_suffixes order."""
        titles = {title for _, title in pages}
        groups: dict[str, list[list[Any]]] = {}
        for pageid, title in pages:
            topic = title
            for suffix in self.suffixes:
                if title.lower().endswith(" " + suffix) and title[: -len(suffix) - 1] in titles:
                    topic = title[: -len(suffix) - 1]
                    break
            groups.setdefault(topic, []).append([pageid, title])

        def order(entry: list[Any], topic: str) -> int:
            rest = entry[1][len(topic) :].strip().lower()
            return (
                -1 if not rest else self.suffixes.index(rest) if rest in self.suffixes else len(self.suffixes)
            )

        return {t: sorted(m, key=lambda e, t=t: order(e, t)) for t, m in groups.items()}

    def _chain(self, topic: str, members: list[list[Any]], parts: list[str], missing: list[str]) -> Request:
        pageid, title = members[0]
        meta = {"topic": topic, "title": title, "rest": members[1:], "parts": parts, "missing": missing}
        return Request(self.parse_url(pageid), kind="page", meta=meta)

    def on_error(self, request: Request, rejection: Rejection) -> Iterator[Request | Item]:
        """A page of a topic that failed: the topic goes on with its next page."""
        if request.kind == "page":
            meta = request.meta
            yield from self._next(meta, list(meta["parts"]), [*meta.get("missing", []), meta["title"]])

    def _page(self, response: Response, data: dict[str, Any]) -> Iterator[Request | Item]:
        meta = response.request.meta
        topic, title = meta["topic"], meta["title"]
        parts = list(meta["parts"])
        html = ((data.get("parse") or {}).get("text")) if isinstance(data, dict) else None
        if isinstance(html, dict):  # formatversion=1 wraps it as {"*": ...}
            html = html.get("*")
        if isinstance(html, str) and html.strip():
            page = f"<html><head><title>{htmlmod.escape(title)}</title></head><body>{html}</body></html>"
            try:
                doc = extract_page(page.encode("utf-8"), self.page_url(title), self.rules)
                text = doc.text
                if title != topic:
                    section = title[len(topic) :].strip()
                    section = section[:1].upper() + section[1:]
                    text = shift_headings(text, 2)
                    # A sub-page often repeats its name as its first heading ("Overview" under "Overview").
                    first, _, rest = text.partition("\n\n")
                    if first.lstrip("#").strip().lower() == section.lower():
                        text = rest
                    text = f"# {section}\n\n{text}"
                else:
                    text = shift_headings(text, 2)
                parts.append(text)
            except Rejection:
                pass  # a topic page that is only navigation: its sub-pages carry the text
        yield from self._next(meta, parts, list(meta.get("missing", [])))

    def _next(
        self, meta: Mapping[str, Any], parts: list[str], missing: list[str]
    ) -> Iterator[Request | Item]:
        """The topic's next page, or the topic's document when none is left."""
        topic = meta["topic"]
        if meta["rest"]:
            yield self._chain(topic, meta["rest"], parts, missing)
            return
        url = self.page_url(topic)
        if not parts:
            yield Item(url, rejection=Rejection("html_no_text", f"no text in {topic!r} or its sub-pages"))
            return
        info: dict[str, Any] = {"pages": len(parts)}
        if missing:
            info["missing_pages"] = missing
        yield Item(url, doc=ParsedDoc(text="\n\n".join(parts), title=topic, meta=info))

    def page_url(self, title: str) -> str:
        """The wiki URL of a page title."""
        return self.wiki + quote(title.replace(" ", "_"), safe="_(),'-")
