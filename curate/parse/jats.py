"""JATS / PMC NXML articles to clean text: title, abstract, sections and paragraphs, with metadata.

References, tables and figure captions are left out by default (a pretraining text wants the prose); each can
be kept by option. Headings: `#` for the article title, `##` for top-level sections (and "Abstract"), `###`
for nested ones. Malformed XML is a `Rejection("xml_broken")`, an XML file that is not a JATS article
`Rejection("xml_not_jats")`, an article without title, abstract or body text `Rejection("xml_no_text")`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from lxml import etree

from curate.schema import ParsedDoc, Rejection

_SPACES = re.compile(r"\s+")
_URL = re.compile(r"https?://\S+")
# Never part of running text, whatever the options: formulas as markup, graphics, footnote groups, labels
# ("Figure 1", section numbers) are kept out; alternatives hold duplicates of the same content.
_ALWAYS_SKIP = {"disp-formula", "graphic", "media", "alternatives", "fn-group", "object-id", "label"}
_FLOATS = {"table-wrap", "fig", "supplementary-material", "table-wrap-foot", "boxed-text"}
# Inside a paragraph these hold text of their own, read as separate blocks (or dropped), never inline.
_BLOCK_CHILDREN = _FLOATS | {"list", "disp-quote", "ref-list", "table"}
_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    huge_tree=True,
    remove_comments=True,
    recover=False,
)


@dataclass
class JatsOptions:
    """What to keep besides title, abstract and body prose."""

    references: bool = False
    tables: bool = False
    captions: bool = False


@dataclass
class JatsArticle:
    """One article: its blocks of text in order (headings marked with `#`) and its metadata."""

    title: str | None
    blocks: list[str] = field(default_factory=list)
    paragraphs: list[str] = field(default_factory=list)  # the prose paragraphs only (no headings)
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "\n\n".join(self.blocks)


def parse_jats(source: str | os.PathLike | bytes, **options: bool) -> ParsedDoc:
    """A JATS/NXML file (path or bytes) as a ParsedDoc, or Rejection with an xml_* reason."""
    article = read_jats(source, JatsOptions(**options))
    if not article.paragraphs and not article.title:
        raise Rejection("xml_no_text", "no title, abstract or body paragraphs")
    return ParsedDoc(text=article.text, title=article.title, meta=article.meta)


def read_jats(source: str | os.PathLike | bytes, options: JatsOptions | None = None) -> JatsArticle:
    """Read a JATS article into blocks and metadata; raises Rejection for unreadable XML."""
    options = options or JatsOptions()
    try:
        if isinstance(source, bytes):
            root = etree.fromstring(source, _PARSER)
        else:
            root = etree.parse(os.fspath(source), _PARSER).getroot()
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise Rejection("xml_broken", f"malformed XML: {_SPACES.sub(' ', str(exc))[:200]}") from None
    except OSError as exc:
        raise Rejection("xml_broken", f"cannot read: {exc}") from None
    if _local(root) != "article":
        raise Rejection("xml_not_jats", f"root element is <{_local(root)}>, not <article>")
    reader = _Reader(options)
    front = _child(root, "front")
    meta_el = _child(front, "article-meta") if front is not None else None
    title_el = _first(meta_el, "title-group/article-title") if meta_el is not None else None
    title = reader.inline(title_el) if title_el is not None else None
    article = JatsArticle(title=title or None)
    if title:
        article.blocks.append(f"# {title}")
    if meta_el is not None:
        for abstract in meta_el.findall("{*}abstract"):
            if abstract.get("abstract-type") in ("graphical", "teaser", "toc"):
                continue
            reader.section(abstract, article, level=2, heading="Abstract")
    body = _child(root, "body")
    if body is not None:
        reader.section(body, article, level=1, heading=None)
    back = _child(root, "back")
    if options.references and back is not None:
        for ref_list in back.iter("{*}ref-list"):
            reader.references(ref_list, article)
    floats = _child(root, "floats-group")
    if floats is not None and (options.tables or options.captions):
        reader.floats(floats, article)
    article.meta = _metadata(root, meta_el)
    return article


def _local(el) -> str:
    tag = el.tag
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _child(el, name: str):
    if el is None:
        return None
    for child in el:
        if _local(child) == name:
            return child
    return None


def _first(el, path: str):
    for name in path.split("/"):
        el = _child(el, name)
        if el is None:
            return None
    return el


def _clean(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


class _Reader:
    """Walks sections and paragraphs, applying the options."""

    def __init__(self, options: JatsOptions):
        self.options = options

    def inline(self, el, skip: frozenset[str] | set[str] = frozenset()) -> str:
        """The text of an element, without the children that never belong to running text."""
        out: list[str] = []

        def walk(node) -> None:
            name = _local(node)
            if name in _ALWAYS_SKIP or name in skip or name in _BLOCK_CHILDREN:
                pass
            else:
                if node.text:
                    out.append(node.text)
                for child in node:
                    walk(child)
            if node is not el and node.tail:
                out.append(node.tail)

        walk(el)
        return _clean("".join(out))

    def section(self, el, article: JatsArticle, level: int, heading: str | None) -> None:
        """A section (or abstract, or body): its title as a heading, then its content in order."""
        title_el = _child(el, "title")
        title = self.inline(title_el) if title_el is not None else heading
        if title and level >= 2:
            article.blocks.append(f"{'#' * min(level, 3)} {title}")
        for child in el:
            name = _local(child)
            if name == "sec":
                self.section(child, article, level + 1, None)
            elif name == "p":
                self.paragraph(child, article)
            elif name in ("list", "disp-quote", "boxed-text"):
                self.nested(child, article)
            elif name in _FLOATS or name == "table":
                self.float_(child, article)
            elif name == "ref-list" and self.options.references:
                self.references(child, article)

    def paragraph(self, el, article: JatsArticle) -> None:
        text = self.inline(el)
        if text:
            article.blocks.append(text)
            article.paragraphs.append(text)
        # Lists, quotes and floats set inside a paragraph come after its text.
        for child in el:
            name = _local(child)
            if name in ("list", "disp-quote"):
                self.nested(child, article)
            elif name in _FLOATS or name == "table":
                self.float_(child, article)

    def nested(self, el, article: JatsArticle) -> None:
        """Lists become `- ` items; quotes and boxes are read as paragraphs."""
        if _local(el) == "list":
            for item in el:
                if _local(item) != "list-item":
                    continue
                text = self.inline(item)
                if not text:
                    text = " ".join(self.inline(p) for p in item if _local(p) == "p")
                if text:
                    article.blocks.append(f"- {text}")
                    article.paragraphs.append(text)
                for child in item:
                    if _local(child) == "p":
                        for sub in child:
                            if _local(sub) == "list":
                                self.nested(sub, article)
            return
        for child in el:
            name = _local(child)
            if name == "p":
                self.paragraph(child, article)
            elif name == "sec":
                self.section(child, article, 3, None)
            elif name == "list":
                self.nested(child, article)

    def float_(self, el, article: JatsArticle) -> None:
        """A table or figure: caption and table rows only when the options ask for them."""
        name = _local(el)
        if self.options.captions and name in ("table-wrap", "fig", "supplementary-material"):
            caption = _child(el, "caption")
            if caption is not None:
                label = _child(el, "label")
                text = self.inline(caption)
                prefix = f"{_clean(''.join(label.itertext()))}: " if label is not None else ""
                if text:
                    article.blocks.append(prefix + text)
        if self.options.tables:
            for table in el.iter("{*}table"):
                rows = []
                for tr in table.iter("{*}tr"):
                    cells = [self.inline(td) for td in tr if _local(td) in ("td", "th")]
                    rows.append("| " + " | ".join(cells) + " |")
                if rows:
                    article.blocks.append("\n".join(rows))

    def floats(self, el, article: JatsArticle) -> None:
        for child in el:
            self.float_(child, article)

    def references(self, el, article: JatsArticle) -> None:
        title_el = _child(el, "title")
        article.blocks.append(f"## {self.inline(title_el) if title_el is not None else 'References'}")
        for ref in el:
            if _local(ref) == "ref":
                text = self.inline(ref)
                if text:
                    article.blocks.append(f"- {text}")


def _metadata(root, meta_el) -> dict[str, object]:
    """PMCID, PMID, DOI, journal, year and licence, where the article states them."""
    meta: dict[str, object] = {"format": "jats"}
    if meta_el is None:
        return meta
    for aid in meta_el.findall("{*}article-id"):
        kind, value = aid.get("pub-id-type"), _clean(aid.text or "")
        if not value:
            continue
        if kind in ("pmc", "pmcid"):
            meta["pmcid"] = value if value.upper().startswith("PMC") else f"PMC{value}"
        elif kind == "pmid":
            meta["pmid"] = value
        elif kind == "doi":
            meta["doi"] = value
    front = meta_el.getparent()
    journal = front.find(".//{*}journal-title") if front is not None else None
    if journal is not None and _clean("".join(journal.itertext())):
        meta["journal"] = _clean("".join(journal.itertext()))
    years = []
    for date in meta_el.iter("{*}pub-date"):
        year = _child(date, "year")
        if year is not None and (year.text or "").strip().isdigit():
            years.append(int(year.text.strip()))
    if years:
        meta["year"] = min(years)
    for lic in meta_el.iter("{*}license"):
        href = lic.get("{http://www.w3.org/1999/xlink}href")
        if not href:
            for child in lic.iter():
                if _local(child) in ("ext-link", "license_ref", "uri"):
                    href = child.get("{http://www.w3.org/1999/xlink}href") or _clean(child.text or "")
                    if href:
                        break
        text = _clean("".join(lic.itertext()))
        url = _URL.search(text)
        meta["license"] = href or (url.group(0).rstrip(".,;)") if url else text[:300])
        break
    return meta
