"""JATS / NLM articles (PMC NXML, publisher JATS 1.0-1.3, NLM 2.x) to clean text, with metadata.

The reading text, in order: title, abstracts, body (sections, paragraphs, lists at every depth, boxes and
statements where they stand, quotes, speeches, verse, formulas), floating boxes, then appendices
(`back/app-group`, `back/app`). Every block element ends a paragraph, so no two blocks are glued. Formulas
keep a linear form: the TeX of `tex-math` (preferred inside `alternatives`) as `$...$`, else MathML as text.

Left out by design, and counted in `meta["dropped"]` (characters of text): references, figures and tables
(each can be kept by option), footnotes, acknowledgements and other back matter (notes, glossary, bios,
declarations), author notes, translated abstracts and sub-articles (peer review, replies, translations).

Headings: `#` for the article title, `##` for top-level sections (and abstracts, appendices), `###` below.
Malformed XML is `Rejection("xml_broken")`, an XML file that is not a JATS article `Rejection("xml_not_jats")`
(its detail says what it is), an article without title, abstract or body text `Rejection("xml_no_text")`.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field

from lxml import etree

from curate.parse.xmltext import MATHML_NS, XLINK_HREF, collapse, local, math_text, parse_xml, tex_text
from curate.schema import ParsedDoc, Rejection

_URL = re.compile(r"https?://[^\s<>\"]+")
_OPEN_LICENSE = re.compile(r"creativecommons\.org|creative commons|\bcc[ -]?(by|0)\b|public domain", re.I)
_MATH = f"{{{MATHML_NS}}}math"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_SCAN_FIRST_BYTES = 4_000_000
_ARTICLE_TAG = re.compile(rb"<(?:[\w.-]+:)?article[\s>]")
_ROOT_TAG = re.compile(rb"<([A-Za-z_][\w.:-]*)")  # the first start tag (<? and <! never match)

# Elements that end the paragraph they stand in and are read as blocks of their own.
_BLOCKS = frozenset(
    {
        "p", "sec", "list", "def-list", "boxed-text", "statement", "disp-quote", "speech", "verse-group",
        "table-wrap", "table-wrap-group", "fig", "fig-group", "supplementary-material", "table", "array",
        "chem-struct-wrap", "disp-formula-group", "preformat", "code", "graphic", "media", "ref-list",
        "fn-group", "glossary", "question-wrap", "question-wrap-group", "question", "answer", "answer-set",
        "explanation", "block-alternatives", "ack", "app", "app-group", "notes", "sig-block", "bio",
        "address", "table-wrap-foot", "element-citation", "mixed-citation", "nlm-citation",
    }
)  # fmt: skip
# Inline elements that need more than their text: formulas, line breaks, and what running text never holds
# (index terms mark a word for a back-of-book index and are never printed).
_INLINE_SPECIAL = frozenset(
    {"inline-formula", "disp-formula", "tex-math", _MATH, "math", "alternatives", "break", "fn", "glyph-data",
     "object-id", "label", "inline-supplementary-material", "index-term"}
)  # fmt: skip
_SPECIAL = tuple(_BLOCKS | _INLINE_SPECIAL)
# In a table cell, a caption or a reference every element is read inline; these still need a space around.
_SPACED = _BLOCKS | {
    "list-item", "def-item", "term", "def", "verse-line", "tr", "td", "th", "title", "attrib", "speaker",
    "caption",
}  # fmt: skip
_FLAT_SPECIAL = tuple(_SPACED | _INLINE_SPECIAL)
_NONE: frozenset[str] = frozenset()
_HEAD = frozenset({"title", "label", "sec-meta", "object-id", "caption", "kwd-group", "permissions"})
_SKIP_ABSTRACTS = {"graphical", "teaser", "toc"}
_TABLES = {"table-wrap", "table-wrap-group", "table", "array"}
_BACK_MATTER = {"ack", "notes", "glossary", "bio", "sig-block", "fn-group", "sec"}


@dataclass
class JatsOptions:
    """What to keep besides the reading text."""

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
    """The one article of a JATS/NXML file (path or bytes) as a ParsedDoc, or Rejection (xml_*)."""
    result = read_jats_file(source, JatsOptions(**options))[0]
    if isinstance(result, Rejection):
        raise result
    return result


def read_jats_file(
    source: str | os.PathLike | bytes, options: JatsOptions | None = None
) -> list[ParsedDoc | Rejection]:
    """Every article of a file (one `<article>`, or an article set such as E-utilities' `pmc-articleset`),
    each a ParsedDoc or the Rejection that says why it has no text; Rejection raised for unreadable files."""
    options = options or JatsOptions()
    out: list[ParsedDoc | Rejection] = []
    for article in read_articles(source, options):
        if isinstance(article, Rejection):
            out.append(article)
        elif not article.paragraphs and not article.title:
            out.append(Rejection("xml_no_text", "no title, abstract or body paragraphs"))
        else:
            out.append(ParsedDoc(text=article.text, title=article.title, meta=article.meta))
    return out


def read_jats(source: str | os.PathLike | bytes, options: JatsOptions | None = None) -> JatsArticle:
    """The first article of a JATS file as blocks and metadata; raises Rejection for unreadable XML."""
    first = read_articles(source, options or JatsOptions())[0]
    if isinstance(first, Rejection):
        raise first
    return first


def read_articles(source: str | os.PathLike | bytes, options: JatsOptions) -> list[JatsArticle | Rejection]:
    """The articles of a file, in order; Rejection raised when the file is not XML or holds no article."""
    if isinstance(source, bytes):
        data = source
    else:
        try:
            with open(os.fspath(source), "rb") as f:
                data = f.read()
        except OSError as exc:
            raise Rejection("xml_broken", f"cannot read: {exc}") from None
    ascii_compatible = b"\x00" not in data[:64]  # not UTF-16 or UTF-32, where a byte scan means nothing
    if len(data) > _SCAN_FIRST_BYTES and ascii_compatible and not _ARTICLE_TAG.search(data):
        # A large XML file without a single <article> tag (a data supplement) is not worth a parse.
        root_tag = _ROOT_TAG.search(data)
        if root_tag:
            raise Rejection(
                "xml_not_jats",
                f"root element is <{root_tag.group(1).decode(errors='replace')}>, "
                f"not <article>, and the file ({len(data)} bytes) holds no <article> at all",
            )
    root, unresolved = parse_xml(data)
    articles = find_articles(root)
    out: list[JatsArticle | Rejection] = []
    for element in articles:
        try:
            article = _read_article(element, options)
        except RecursionError:
            out.append(Rejection("xml_broken", "elements nested too deeply to read"))
            continue
        if unresolved:
            article.meta["unresolved_entities"] = dict(sorted(unresolved.items()))
        out.append(article)
    return out


def find_articles(root: etree._Element) -> list[etree._Element]:
    """The `<article>` elements of a document: the root itself, or those an article set holds."""
    if local(root.tag) == "article":
        return [root]
    articles = list(root.iter("{*}article"))
    if articles:
        return articles
    raise Rejection("xml_not_jats", _what_it_is(root))


def _what_it_is(root: etree._Element) -> str:
    """A short description of an XML document that holds no JATS article."""
    name = local(root.tag)
    kinds = {
        "PubmedArticleSet": "a PubMed citation file (read it with `curate pubmed`)",
        "MedlineCitationSet": "a MEDLINE citation file (read it with `curate pubmed`)",
        "PubmedBookArticleSet": "a PubMed book citation file (read it with `curate pubmed`)",
        "html": "an HTML page (read it with `curate html`)",
        "book": "a BITS book, not a JATS article",
        "book-part-wrapper": "a BITS book part, not a JATS article",
        "TEI": "a TEI document, not a JATS article",
    }
    detail = f"root element is <{name}>"
    if name in kinds:
        return f"{detail}: {kinds[name]}"
    children = sorted({local(c.tag) for c in root if isinstance(c.tag, str)})
    message = collapse("".join(root.itertext()))[:120]
    holds = f"; it holds <{'>, <'.join(children[:5])}>" if children else ""
    return f"{detail}, not <article>{holds}{': ' + message if message and len(children) <= 1 else ''}"


def _strip_namespaces(article: etree._Element) -> None:
    """JATS in a namespace (rare) as plain names, the way the rest of the reader expects; MathML keeps its."""
    for el in article.iter():
        tag = el.tag
        if isinstance(tag, str) and tag[:1] == "{" and not tag.startswith(f"{{{MATHML_NS}}}"):
            el.tag = tag.rpartition("}")[2]


def _read_article(root: etree._Element, options: JatsOptions) -> JatsArticle:
    if root.tag[:1] == "{":
        _strip_namespaces(root)
    reader = _Reader(options)
    front = _child(root, "front")
    meta_el = _child(front, "article-meta") if front is not None else None
    title = reader.title(meta_el) if meta_el is not None else None
    if title:
        reader.blocks.append(f"# {title}")
    if meta_el is not None:
        for abstract in meta_el:
            name = abstract.tag
            if name == "abstract" and abstract.get("abstract-type") not in _SKIP_ABSTRACTS:
                reader.section(abstract, 2, "Abstract")
            elif name in ("abstract", "trans-abstract"):
                reader.drop("other_abstracts", abstract)
            elif name == "author-notes":
                reader.drop("author_notes", abstract)
    for part in root:
        name = part.tag
        if name == "body":
            reader.section(part, 1, None)
        elif name in ("sub-article", "response"):
            reader.drop("sub_articles", part)
    floats = _child(root, "floats-group")
    if floats is not None:
        reader.flow(floats, 1)
    back = _child(root, "back")
    if back is not None:
        reader.back(back)
    meta = _metadata(root, meta_el)
    dropped = {k: v for k, v in sorted(reader.dropped.items()) if v}
    if dropped:
        meta["dropped"] = dropped
    if reader.formulas_without_text:
        meta["formulas_without_text"] = reader.formulas_without_text
    return JatsArticle(title=title or None, blocks=reader.blocks, paragraphs=reader.paragraphs, meta=meta)


def _child(el, name: str):
    if el is None:
        return None
    for child in el:
        if child.tag == name:
            return child
    return None


def _text_length(el: etree._Element) -> int:
    return len(etree.tostring(el, method="text", encoding=str, with_tail=False))


class _Para:
    """The inline text of the paragraph being read, and the prefix its first block gets (`- ` in lists)."""

    __slots__ = ("parts", "prefix", "then")

    def __init__(self, prefix: str = "", then: str = ""):
        self.parts: list[str] = []
        self.prefix = prefix
        self.then = then  # the prefix of what follows a block that interrupted this paragraph


class _Reader:
    """Walks an article's elements in document order and collects its blocks of text."""

    def __init__(self, options: JatsOptions):
        self.options = options
        self.blocks: list[str] = []
        self.paragraphs: list[str] = []
        self.dropped: Counter = Counter()  # what was left out: kind -> characters of text
        self.formulas_without_text = 0
        self.handlers = {
            "sec": lambda el, level, depth: self.section(el, level + 1, None),
            "app": lambda el, level, depth: self.section(el, level + 1, None, labelled=True),
            "app-group": self.app_group,
            "p": self.paragraph,
            "address": self.paragraph,
            "list": self.list_,
            "def-list": self.def_list,
            "boxed-text": self.box,
            "statement": self.box,
            "question-wrap": self.box,
            "question-wrap-group": self.box,
            "question": self.box,
            "answer": self.box,
            "answer-set": self.box,
            "explanation": self.box,
            "disp-quote": self.quote,
            "speech": self.speech,
            "verse-group": self.verse,
            "disp-formula": self.display_formula,
            "disp-formula-group": self.formula_group,
            "preformat": self.preformat,
            "code": self.preformat,
            "block-alternatives": self.alternatives,
            "alternatives": self.alternatives,
            "ref-list": self.ref_list,
        }

    # ------------------------------------------------------------------------------------------ output

    def emit(self, text: str, prefix: str = "", prose: bool = True) -> None:
        if text:
            self.blocks.append(prefix + text)
            if prose:
                self.paragraphs.append(text)

    def heading(self, level: int, text: str) -> None:
        if text:
            self.blocks.append(f"{'#' * min(max(level, 2), 3)} {text}")

    def drop(self, kind: str, el: etree._Element) -> None:
        self.dropped[kind] += _text_length(el)

    def flush(self, para: _Para) -> None:
        text = collapse("".join(para.parts))
        para.parts.clear()
        if text:
            self.emit(text, para.prefix)
            para.prefix = para.then

    # ------------------------------------------------------------------------------------------ blocks

    def block(self, el: etree._Element, level: int, depth: int = 0) -> None:
        """One block element, by kind; `level` is the heading level of the section it stands in."""
        name = el.tag
        handler = self.handlers.get(name)
        if handler is not None:
            handler(el, level, depth)
        elif name in _TABLES or name in ("fig", "fig-group", "supplementary-material", "chem-struct-wrap",
                                         "graphic", "media"):  # fmt: skip
            self.float_(el)
        elif name == "table-wrap-foot":
            self.drop("tables", el)
        elif name in ("fn-group", "fn"):
            self.drop("footnotes", el)
        elif name in ("ack", "notes", "glossary", "bio", "sig-block"):
            self.drop("back_matter", el)
        elif name in ("element-citation", "mixed-citation", "nlm-citation"):
            self.drop("references", el)
        elif name in _HEAD or not isinstance(name, str):
            pass
        else:  # an element this reader does not know: read what it holds, in order
            self.flow(el, level, depth=depth)

    def section(self, el: etree._Element, level: int, heading: str | None, labelled: bool = False) -> None:
        """A section, abstract, appendix or body: its title as a heading, then its content in order.

        Section numbers (labels) are left out, except an appendix's ("Appendix 1"), which names it.
        """
        title_el = _child(el, "title")
        title = self.inline(title_el) if title_el is not None else heading
        label_el = _child(el, "label") if labelled else None
        label = self.inline(label_el) if label_el is not None else ""
        if label:
            title = f"{label}: {title}" if title else label
        if title and level >= 2:
            self.heading(level, title)
        self.flow(el, level, skip=_HEAD)

    def app_group(self, el: etree._Element, level: int, depth: int = 0) -> None:
        title_el = _child(el, "title")
        if title_el is not None:
            self.heading(level + 1, self.inline(title_el))
            level += 1
        self.flow(el, level, skip=_HEAD)

    def back(self, back: etree._Element) -> None:
        """Appendices are read; references only by option; the rest of the back matter is counted."""
        for child in back:
            name = child.tag
            if name in ("app-group", "app"):
                self.block(child, 1)
            elif name == "ref-list":
                self.ref_list(child, 1)
            elif name == "sec" and _is_appendix(child):
                self.section(child, 2, None, labelled=True)
            elif name in _BACK_MATTER:
                self.drop("footnotes" if name == "fn-group" else "back_matter", child)

    def paragraph(self, el: etree._Element, level: int = 1, depth: int = 0) -> None:
        """A paragraph: its text, split where a block (list, box, table...) stands inside it."""
        if not len(el) or next(el.iterdescendants(*_SPECIAL), None) is None:
            self.emit(collapse(etree.tostring(el, method="text", encoding=str, with_tail=False)))
            return
        self.flow(el, level, depth=depth)

    def flow(
        self,
        el: etree._Element,
        level: int,
        para: _Para | None = None,
        depth: int = 0,
        skip: frozenset[str] = frozenset(),
        items: bool = False,
    ) -> None:
        """Read an element's mixed content: inline text into paragraphs, block children as blocks.

        In a list item (`items`) its paragraphs join into the item's text, and a nested list goes one
        level deeper.
        """
        own = para is None
        if para is None:
            para = _Para()
        self.walk(el, para, level, depth, skip, items)
        if own:
            self.flush(para)

    def walk(
        self, el: etree._Element, para: _Para, level: int, depth: int, skip: frozenset[str], items: bool
    ) -> None:
        if el.text:
            para.parts.append(el.text)
        for child in el:
            name = child.tag
            if name in skip:
                pass
            elif name in _INLINE_SPECIAL:
                self.inline_special(child, para)
            elif name == "p" and items:
                para.parts.append(" ")
                self.walk(child, para, level, depth, _NONE, items)
                para.parts.append(" ")
            elif name == "def":
                # Outside a def-item (whose definitions def_list reads) a <def> is an <abbrev>'s expansion,
                # kept for tooltips and indexes: not printed, and its <p> must not split the sentence.
                pass
            elif name in _BLOCKS:
                self.flush(para)
                self.block(child, level, depth)
            elif not isinstance(name, str):
                pass
            else:
                self.walk(child, para, level, depth, _NONE, items)
            if child.tail:
                para.parts.append(child.tail)

    def inline_special(self, el: etree._Element, para: _Para) -> None:
        name = el.tag
        if name == "break":
            para.parts.append(" ")
        elif name in ("fn",):
            self.drop("footnotes", el)
        elif name in ("glyph-data", "object-id", "label", "index-term"):
            pass
        elif name == "inline-supplementary-material":
            para.parts.append(self.flat(el))
        elif name == "disp-formula":  # a display formula inside a sentence: set apart by spaces
            para.parts.append(f" {self.formula(el, display=True)} ")
        else:
            para.parts.append(self.formula(el))

    def inline(self, el: etree._Element) -> str:
        """The text of a title-like element, on one line."""
        if not len(el) or next(el.iterdescendants(*_FLAT_SPECIAL), None) is None:
            return collapse(etree.tostring(el, method="text", encoding=str, with_tail=False))
        return self.flat(el)

    def flat(self, el: etree._Element) -> str:
        """Everything an element holds as one line: a space wherever a block, cell or item ends."""
        parts: list[str] = []
        self._flat(el, parts)
        return collapse("".join(parts))

    def _flat(self, el: etree._Element, parts: list[str]) -> None:
        if el.text:
            parts.append(el.text)
        for child in el:
            name = child.tag
            if name in _INLINE_SPECIAL:
                para = _Para()
                self.inline_special(child, para)
                parts.extend(para.parts)
            elif name == "def" and el.tag == "abbrev":
                pass  # an abbreviation's expansion, for tooltips and indexes: not printed (as in walk)
            elif name in _SPACED:
                parts.append(" ")
                self._flat(child, parts)
                parts.append(" ")
            elif isinstance(name, str):
                self._flat(child, parts)
            if child.tail:
                parts.append(child.tail)

    # -------------------------------------------------------------------------------------- kinds

    def list_(self, el: etree._Element, level: int, depth: int = 0) -> None:
        """`- ` items, indented two spaces per level of nesting."""
        for child in el:
            name = child.tag
            if name == "list-item":
                indent = "  " * depth
                para = _Para(prefix=f"{indent}- ", then=f"{indent}  ")
                self.walk(child, para, level, depth + 1, frozenset({"label"}), items=True)
                self.flush(para)
            elif name == "title":
                self.emit(self.inline(child))
            elif name in ("list", "def-list"):
                self.block(child, level, depth + 1)
            elif name != "label" and isinstance(name, str):
                self.block(child, level, depth)

    def def_list(self, el: etree._Element, level: int, depth: int = 0) -> None:
        """Terms and definitions as `- term: definition` items."""
        indent = "  " * depth
        for child in el:
            name = child.tag
            if name == "def-item":
                term = "; ".join(t for t in (self.inline(t) for t in child.iterchildren("term")) if t)
                para = _Para(prefix=f"{indent}- ", then=f"{indent}  ")
                para.parts.append(term)
                for definition in child.iterchildren("def"):
                    para.parts.append(": " if term and len(para.parts) == 1 else " ")
                    self.walk(definition, para, level, depth + 1, _NONE, items=True)
                self.flush(para)
            elif name == "title":
                self.emit(self.inline(child))
            elif name == "def-list":
                self.def_list(child, level, depth + 1)

    def box(self, el: etree._Element, level: int, depth: int = 0) -> None:
        """A box, statement or question: label and title as a heading, caption, then its content."""
        caption = _child(el, "caption")
        self.labelled_heading(el, level, caption)
        if caption is not None:
            self.flow(caption, level + 1, skip=frozenset({"title"}))
        self.flow(el, level + 1, skip=_HEAD | {"attrib"})
        for attrib in el.iterchildren("attrib"):
            self.emit(self.inline(attrib))

    def labelled_heading(self, el: etree._Element, level: int, caption: etree._Element | None = None) -> None:
        """The heading of a box, quote or verse: `label: title` (the caption's title where it has none)."""
        title_el = _child(el, "title")
        if title_el is None and caption is not None:
            title_el = _child(caption, "title")
        parts = [self.inline(x) for x in (_child(el, "label"), title_el) if x is not None]
        heading = ": ".join(p for p in parts if p)
        if heading:
            self.heading(level + 1, heading)

    def quote(self, el: etree._Element, level: int, depth: int = 0) -> None:
        """A quotation: its label and title (JATS 1.2+), its paragraphs, then its attribution."""
        self.labelled_heading(el, level)
        self.flow(el, level, skip=frozenset({"attrib", "label", "title"}))
        for attrib in el.iterchildren("attrib"):
            self.emit(self.inline(attrib))

    def speech(self, el: etree._Element, level: int, depth: int = 0) -> None:
        """Who speaks, then what they say."""
        speaker = _child(el, "speaker")
        name = self.inline(speaker) if speaker is not None else ""
        para = _Para(prefix=f"{name}: " if name else "")
        self.walk(el, para, level, depth, frozenset({"speaker"}), items=True)
        self.flush(para)

    def verse(self, el: etree._Element, level: int, depth: int = 0) -> None:
        """Verse: label and title, its lines one a line (a nested group where it stands), its attribution."""
        self.labelled_heading(el, level)
        lines: list[str] = []
        for child in el:
            if child.tag == "verse-line":
                lines.append(self.inline(child))
            elif child.tag == "verse-group":
                self.emit("\n".join(line for line in lines if line))
                lines = []
                self.verse(child, level + 1, depth)
        self.emit("\n".join(line for line in lines if line))
        for attrib in el.iterchildren("attrib"):
            self.emit(self.inline(attrib))

    def formula(self, el: etree._Element, display: bool = False) -> str:
        """A formula as linear text: its TeX (`$...$`, `$$...$$` on display) where it has one, else its
        MathML as text, else its plain text; counted when it has none (an image only)."""
        tex = next(el.iter("tex-math"), None)
        if tex is not None:
            body = tex_text("".join(tex.itertext()))
            if body:
                return f"$${body}$$" if display else f"${body}$"
        math = next(el.iter(_MATH, "math"), None)
        if math is not None:
            text = math_text(math)
        else:
            text = self.flat_without(el, ("label", "graphic", "inline-graphic", "alternatives"))
        if not text:
            self.formulas_without_text += 1
        return text

    def flat_without(self, el: etree._Element, names: tuple[str, ...]) -> str:
        """An element's text on one line, without the children named (a formula's label and images)."""
        parts = [el.text or ""]
        for child in el:
            if child.tag not in names and isinstance(child.tag, str):
                parts.append(self.flat(child))
            parts.append(child.tail or "")
        return collapse("".join(parts))

    def display_formula(self, el: etree._Element, level: int, depth: int = 0) -> None:
        self.emit(self.formula(el, display=True), prose=False)

    def formula_group(self, el: etree._Element, level: int, depth: int = 0) -> None:
        for child in el:
            if child.tag in ("disp-formula", "disp-formula-group"):
                self.block(child, level, depth)

    def preformat(self, el: etree._Element, level: int, depth: int = 0) -> None:
        text = "".join(el.itertext()).strip("\n")
        lines = [line.rstrip() for line in text.splitlines()]
        self.emit("\n".join(lines).strip(), prose=False)

    def alternatives(self, el: etree._Element, level: int, depth: int = 0) -> None:
        """Versions of one thing: a formula, else the first version that holds text."""
        if next(el.iter("tex-math", _MATH, "math"), None) is not None:
            self.emit(self.formula(el, display=True), prose=False)
            return
        for child in el:
            if isinstance(child.tag, str) and _text_length(child):
                if child.tag in _BLOCKS:
                    self.block(child, level, depth)
                else:
                    self.emit(self.flat(child))
                return

    def float_(self, el: etree._Element) -> None:
        """A figure, table or supplement: its caption and table rows only when the options ask for them."""
        name = el.tag
        kind = "tables" if name in _TABLES else "figures"
        kept = False
        if self.options.captions:
            kept = self.caption(el) or kept
        if name in ("fig-group", "table-wrap-group"):
            for child in el:
                if child.tag in ("fig", "table-wrap", "table", "supplementary-material", "media", "graphic"):
                    self.float_(child)
            return
        if self.options.tables and kind == "tables":
            kept = self.table_rows(el) or kept
        if not kept:
            self.drop(kind, el)

    def caption(self, el: etree._Element) -> bool:
        caption = _child(el, "caption")
        if caption is None:
            return False
        label = _child(el, "label")
        text = self.flat(caption)
        prefix = f"{self.inline(label)}: " if label is not None and self.inline(label) else ""
        if text:
            self.emit(prefix + text, prose=False)
        return bool(text)

    def table_rows(self, el: etree._Element) -> bool:
        tables = [el] if el.tag in ("table", "array") else list(el.iter("table", "array"))
        kept = False
        for table in tables:
            rows = []
            for tr in table.iter("tr"):
                cells = [self.flat(cell) for cell in tr if cell.tag in ("td", "th")]
                rows.append("| " + " | ".join(cells) + " |")
            if rows:
                self.emit("\n".join(rows), prose=False)
                kept = True
        for foot in el.iter("table-wrap-foot"):  # the table's notes (abbreviations, footnotes) go with it
            for note in foot.iter("p"):
                self.emit(self.flat(note), prose=False)
        return kept

    def ref_list(self, el: etree._Element, level: int = 1, depth: int = 0) -> None:
        if not self.options.references:
            self.drop("references", el)
            return
        title_el = _child(el, "title")
        self.heading(2, self.inline(title_el) if title_el is not None else "References")
        for ref in el.iter("ref"):
            # element-citation has no punctuation between its parts: a space at least.
            text = self.flat(ref)
            if text:
                self.emit(text, "- ", prose=False)

    def title(self, meta_el: etree._Element) -> str | None:
        group = _child(meta_el, "title-group")
        if group is None:
            return None
        title_el, subtitle = _child(group, "article-title"), _child(group, "subtitle")
        title = self.inline(title_el) if title_el is not None else ""
        if subtitle is not None and self.inline(subtitle):
            title = f"{title}: {self.inline(subtitle)}" if title else self.inline(subtitle)
        return title or None


def _is_appendix(sec: etree._Element) -> bool:
    """A back-matter section that is an appendix in all but name (JATS wants `app`, not every file has it)."""
    if "appendi" in (sec.get("sec-type") or "").lower():
        return True
    title = _child(sec, "title")
    return title is not None and collapse("".join(title.itertext())).lower().startswith("appendix")


def _metadata(root: etree._Element, meta_el) -> dict[str, object]:
    """PMCID, PMID, DOI, journal, year, language, type and licence, where the article states them."""
    meta: dict[str, object] = {"format": "jats"}
    for key, attr in (("article_type", "article-type"), ("language", _XML_LANG)):
        if root.get(attr):
            meta[key] = root.get(attr)
    if meta_el is None:
        meta.update(license=None, redistributable=False)
        return meta
    for aid in meta_el.iterchildren("article-id"):
        kind, value = aid.get("pub-id-type"), collapse(aid.text or "")
        if not value:
            continue
        if kind in ("pmc", "pmcid") and "pmcid" not in meta:
            meta["pmcid"] = value if value.upper().startswith("PMC") else f"PMC{value}"
        elif kind == "pmid" and "pmid" not in meta:
            meta["pmid"] = value
        elif kind == "doi" and "doi" not in meta:
            meta["doi"] = value
    front = meta_el.getparent()
    journal = next(front.iter("journal-title"), None) if front is not None else None
    if journal is not None and collapse("".join(journal.itertext())):
        meta["journal"] = collapse("".join(journal.itertext()))
    years = []
    for date in meta_el.iterchildren("pub-date"):
        year = _child(date, "year")
        if year is not None and (year.text or "").strip().isdigit():
            years.append(int(year.text.strip()))
    if years:
        meta["year"] = min(years)
    meta.update(article_license(meta_el))
    return meta


def article_license(meta_el: etree._Element) -> dict[str, object]:
    """The article's own licence: its `<license>` (link, else text), else its copyright statement, else none.

    `redistributable` is true only for an open licence (Creative Commons, CC0, public domain) stated by the
    article itself; a copyright line alone grants nothing.
    """
    # NLM 2.x puts the licence and copyright statement in article-meta itself; JATS in its <permissions>.
    permissions = _child(meta_el, "permissions")
    if permissions is None:
        permissions = meta_el
    lic = next(permissions.iterchildren("license"), None)
    if lic is not None:
        href = lic.get(XLINK_HREF) or lic.get("href")
        text = collapse("".join(lic.itertext()))
        if not href:
            for child in lic.iter():
                if local(child.tag) in ("license_ref", "ext-link", "uri"):
                    href = child.get(XLINK_HREF) or collapse(child.text or "")
                    if href:
                        break
        url = _URL.search(text)
        value = href or (url.group(0).rstrip(".,;)") if url else text[:300])
        if value:
            return {
                "license": value,
                "license_source": "license",
                "redistributable": bool(_OPEN_LICENSE.search(f"{value} {text}")),
            }
    statement = next(permissions.iterchildren("copyright-statement"), None)
    text = collapse("".join(statement.itertext())) if statement is not None else ""
    if text:
        url = _URL.search(text)
        return {
            "license": url.group(0).rstrip(".,;)") if url and _OPEN_LICENSE.search(text) else text[:300],
            "license_source": "copyright-statement",
            "redistributable": bool(_OPEN_LICENSE.search(text)),
        }
    return {"license": None, "redistributable": False}
