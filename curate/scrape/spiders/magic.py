"""MAGICapp guidelines: the JSON API behind the single-page app, one document per guideline."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from lxml.html import fragment_fromstring

from curate.errors import ConfigError
from curate.fetch.http import Request, Response
from curate.schema import ParsedDoc, Rejection
from curate.scrape.extract import finish_text
from curate.scrape.spiders.base import Item, Spider, json_body, register, rejections_as_items


@register("magic")
class MagicSpider(Spider):
    """Guideline list pages (JSON, `next` link) -> each guideline's content JSON -> one document.

    discovery options: `start` (first list page), `guideline` (URL template with {id} for a guideline's
    content), `web` (URL template of the guideline in the app, kept in meta), `languages` (keep only these;
    default all).
    """

    def __init__(self, source):
        super().__init__(source)
        options = self.config.discovery.options
        if not isinstance(options.get("guideline"), str) or "{id}" not in options["guideline"]:
            raise ConfigError(
                f"source {source.name!r}: scrape.discovery.guideline must be a URL template with {{id}}"
            )
        self.template: str = options["guideline"]
        self.web: str | None = options.get("web")
        self.languages = set(options.get("languages") or [])

    def start_requests(self) -> list[Request]:
        """The first page of the guideline list."""
        return [Request(url, kind="list") for url in self.config.discovery.start]

    @rejections_as_items
    def parse(self, response: Response) -> Iterator[Request | Item]:
        """A list page or a guideline's content."""
        data = json_body(response)
        if response.request.kind == "list":
            guidelines = data.get("guidelines") or []
            for entry in guidelines:
                if self.languages and entry.get("language") not in self.languages:
                    continue
                gid = str(entry.get("guidelineId") or "")
                if gid and (entry.get("status") in (None, "published")):
                    yield Request(self.template.format(id=quote(gid)), kind="guideline", meta={"id": gid})
            if isinstance(data.get("next"), str) and self.allowed(data["next"]):
                yield Request(data["next"], kind="list")
            if not guidelines:
                yield Item(response.url, rejection=Rejection("listing_empty", "no guidelines in the list"))
            return
        yield self._guideline(response, data)

    def _guideline(self, response: Response, data: dict[str, Any]) -> Item:
        title = (data.get("name") or "").strip() or None
        blocks: list[str] = []
        for section in data.get("sections") or []:
            _magic_section(section, 1, blocks)
        text = finish_text("\n\n".join(b for b in blocks if b), self.rules)
        if not re.search(r"[^\W\d_]", text):
            return Item(response.url, rejection=Rejection("api_no_text", "the guideline has no section text"))
        meta: dict[str, Any] = {"guideline_id": response.request.meta.get("id")}
        if self.web:
            meta["web_url"] = self.web.format(id=response.request.meta.get("id"))
        return Item(response.url, doc=ParsedDoc(text=text, title=title, meta=meta))


def _magic_section(section: dict[str, Any], level: int, blocks: list[str]) -> None:
    heading = (section.get("heading") or "").strip()
    if heading:
        blocks.append(f"{'#' * min(level, 3)} {heading}")
    blocks.append(html_fragment_text(section.get("text") or ""))
    for rec in section.get("recommendations") or []:
        strength = (rec.get("strength") or "").strip()
        if strength:
            blocks.append(f"{'#' * min(level + 1, 3)} {strength}")
        blocks.append(html_fragment_text(rec.get("text") or ""))
        blocks.append(html_fragment_text(rec.get("rationale") or ""))
    for child in section.get("sections") or []:
        _magic_section(child, level + 1, blocks)


def html_fragment_text(fragment: str) -> str:
    """A small HTML fragment (API text fields) as paragraphs and `- ` items."""
    if not fragment.strip():
        return ""
    root = fragment_fromstring(f"<div>{fragment}</div>")
    out: list[str] = []
    loose = " ".join((root.text or "").split())
    if loose:
        out.append(loose)
    for element in root:
        tag = element.tag if isinstance(element.tag, str) else ""
        if tag in ("ul", "ol"):
            items = [" ".join(li.text_content().split()) for li in element.iter("li")]
            out.append("\n".join(f"- {i}" for i in items if i))
        elif tag:
            text = " ".join(element.text_content().split())
            if text:
                out.append(text)
        tail = " ".join((element.tail or "").split())
        if tail:
            out.append(tail)
    return "\n\n".join(out)
