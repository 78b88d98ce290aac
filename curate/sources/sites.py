"""Spiders for sources YAML alone cannot express: NICE (chapters), MAGICapp (JSON API), PubMed
(E-utilities), MediaWiki sites such as WikiDoc (API, sub-pages merged into one article).

Each still takes its URLs, selectors and limits from its `scrape:` block; the class only adds the part
that is not a link to follow (merging pages, reading JSON or XML).
"""

from __future__ import annotations

import html as htmlmod
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

from lxml import etree
from lxml.html import fragment_fromstring

from curate.schema import ParsedDoc, Rejection
from curate.sources.extract import extract_page, finish_text, page_title, text_of
from curate.sources.registry import ConfigError
from curate.sources.spider import (
    GenericSpider,
    Item,
    Request,
    Response,
    Spider,
    register,
    rejections_as_items,
    xml_root,
)

_HEADING_LINE = re.compile(r"^(#{1,6}) ")
ESEARCH_CAP = 9_999  # PubMed's esearch returns at most this many PMIDs for one query


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


# --- NICE: one document per guidance, its chapters merged ---------------------------------------------


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


# --- MAGICapp: the JSON API behind the single-page app ------------------------------------------------


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


# --- PubMed E-utilities -----------------------------------------------------------------------------------


@register("eutils")
class EutilsSpider(Spider):
    """esearch (pages of PMIDs for `term`) -> efetch (batches of PubMed XML) -> one document per citation.

    discovery options: `term` (required), `retmax` (PMIDs per esearch page, default 500), `batch` (PMIDs per
    efetch, default 200), `max_results` (stop after this many PMIDs; esearch itself stops at 9,999),
    `tool`/`email` (NCBI asks clients to name themselves), `base` (the E-utilities URL).
    """

    def __init__(self, source):
        super().__init__(source)
        o = self.config.discovery.options
        self.base = o.get("base") or "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/"
        self.term: str = o["term"]
        self.retmax = int(o.get("retmax") or 500)
        self.batch = int(o.get("batch") or 200)
        self.max_results = int(o["max_results"]) if o.get("max_results") else None
        self.identity = f"&tool={quote_plus(o.get('tool') or 'curate')}"
        if o.get("email"):
            self.identity += f"&email={quote_plus(o['email'])}"

    def esearch_url(self, start: int) -> str:
        """The esearch URL for one page of PMIDs."""
        return (
            f"{self.base}esearch.fcgi?db=pubmed&term={quote_plus(self.term)}&retstart={start}"
            f"&retmax={self.retmax}&retmode=xml{self.identity}"
        )

    def start_requests(self) -> list[Request]:
        """The first esearch page."""
        return [Request(self.esearch_url(0), kind="esearch", meta={"start": 0})]

    @rejections_as_items
    def parse(self, response: Response) -> Iterator[Request | Item]:
        """esearch: efetch batches and the next page; efetch: citations."""
        if response.request.kind == "esearch":
            yield from self._esearch(response, xml_root(response))
        else:  # read citation by citation: one damaged citation must not cost the others
            yield from self._efetch(response)

    def _esearch(self, response: Response, root: Any) -> Iterator[Request | Item]:
        start = int(response.request.meta.get("start", 0))
        count = int(root.findtext("Count") or 0)
        ids = [i.strip() for i in root.xpath("//IdList/Id/text()")]
        if self.max_results is not None:
            ids = ids[: max(0, self.max_results - start)]
        for i in range(0, len(ids), self.batch):
            chunk = ids[i : i + self.batch]
            url = f"{self.base}efetch.fcgi?db=pubmed&id={','.join(chunk)}&retmode=xml{self.identity}"
            yield Request(url, kind="efetch")
        end = start + self.retmax
        if ids and end < count and (self.max_results is None or end < self.max_results):
            if end >= ESEARCH_CAP:
                # esearch refuses retstart past 9,998: say so instead of stopping silently.
                detail = f"{count} PMIDs match; esearch pages only {ESEARCH_CAP}: split the term by date"
                yield Item(response.url, rejection=Rejection("eutils_capped", detail))
            else:
                yield Request(self.esearch_url(end), kind="esearch", meta={"start": end})
        if not ids and start == 0:
            yield Item(
                response.url, rejection=Rejection("listing_empty", f"esearch found nothing for {self.term!r}")
            )

    def _efetch(self, response: Response) -> Iterator[Item]:
        from curate.parse.pubmed import Broken, NoPmid, PubmedRecord, iter_pubmed

        handle, path = tempfile.mkstemp(suffix=".xml", prefix="curate-efetch-")
        records: list = []
        try:
            with os.fdopen(handle, "wb") as fh:
                fh.write(response.body)
            records.extend(iter_pubmed(path))  # what was read before a cut is kept
        except Rejection as exc:
            records.append(exc)
        finally:
            os.unlink(path)
        for record in records:
            if isinstance(record, Rejection):
                yield Item(response.url, rejection=record)
            elif isinstance(record, Broken):  # one damaged citation: a row of its own, the rest go on
                where = f"{response.url}#element-{record.position}"
                if record.pmid:
                    where = f"https://pubmed.ncbi.nlm.nih.gov/{record.pmid}/"
                yield Item(where, rejection=Rejection(record.reason, record.detail))
            elif isinstance(record, NoPmid):
                detail = f"element {record.position} of the efetch answer has no PMID"
                where = f"{response.url}#element-{record.position}"
                yield Item(where, rejection=Rejection("pubmed_no_pmid", detail))
            elif isinstance(record, PubmedRecord):
                url = f"https://pubmed.ncbi.nlm.nih.gov/{record.pmid}/"
                if not record.abstract:
                    yield Item(url, rejection=Rejection("pubmed_no_abstract", f"PMID {record.pmid}"))
                    continue
                text = finish_text(record.text, self.rules)
                yield Item(url, doc=ParsedDoc(text=text, title=record.title or None, meta=record.meta))


# --- MediaWiki (WikiDoc): allpages through the API, a topic's sub-pages merged --------------------------


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
