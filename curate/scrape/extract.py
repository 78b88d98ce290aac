"""Selector-driven extraction of one page: decode, cut to the main content, render, tidy the text.

Pure functions over bytes and strings (no I/O), so each rule can be tested alone:

1. `decode_page` turns the body into text (BOM, the response's charset, UTF-8, the page's own
   declaration, then windows-1252);
2. `select_main` keeps the source's main-content element(s), removes its drop selectors and the usual
   furniture, starts at `start_at` and cuts at the first stop heading (References, Acknowledgements, ...);
3. the cut-down page goes through `curate.parse.html.extract_html` (trafilatura), which renders `#`/`##`
   headings and `- ` list items;
4. `finish_text` drops furniture lines (last-updated, cookie notices, the source's own patterns), bracketed
   citation markers and letterless lines, and cuts at stop headings that survived as text.

List items only ever come from `<li>` elements: a line that starts with "o" stays a line (Meditron's list
normaliser turned "other" into "- ther").
"""

from __future__ import annotations

import codecs
import copy
import html
import re
from collections.abc import Iterable

from lxml import etree
from lxml.html import HtmlElement, document_fromstring

from curate.schema import ParsedDoc, Rejection
from curate.sources.config import ExtractRules

# Furniture that no source's text should keep, dropped before any source selector is applied.
DEFAULT_DROP = (
    "script",
    "style",
    "noscript",
    "template",
    "iframe",
    "svg",
    "nav",
    "button",
    "[role=navigation]",
    "[id*=cookie]",
    "[class*=cookie]",
    "[class*=breadcrumb]",
    "[class*=social-share]",
    "[class*=share-tools]",
)  # not <form> (ASP.NET pages wrap everything in one) nor aria-hidden (closed accordions hold text)

# Lines that are furniture wherever they appear (case-insensitive, matched at the start of a line,
# after any heading or list marker).
DEFAULT_DROP_LINES = (
    r"(page )?last (updated|reviewed|modified|revised)\b",
    r"(date|content) (modified|last updated)\b",
    r"(this page was )?(updated|reviewed) on \w+ \d",
    r"skip to (main )?content\b",
    r"(we|this (site|website)) uses? cookies\b",
    r"accept (all )?cookies\b",
    r"(print|share|email) this page\b",
    r"back to top\b",
)

_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_SPACES = re.compile(r"\s+")
_LEADING_MARKUP = re.compile(r"^(#{1,6}\s+|-\s+)")
# Bracketed citation or footnote markers: [1], [2, 3], [4-6], [12]; NICE's year stamps [2019],
# [2016, amended 2021]. Bracketed words ([see box 1]) are text and stay.
_MARKERS = re.compile(
    r"\s?\[(?:\d{1,3}(?:\s*[,–-]\s*\d{1,3})*|(?:19|20)\d\d(?:,? [a-z ]{1,30}(?:19|20)\d\d)?)\]"
)
_LETTER = re.compile(r"[^\W\d_]")
_BARE_URL = re.compile(r"^(?:-\s+)?(?:https?://|www\.)\S+$")
# Control bytes that text pages never contain (tab, newline, CR, form feed and ESC aside).
_BINARY_BYTES = [b for b in range(32) if b not in (9, 10, 12, 13, 27)]
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.I)


def decode_page(raw: bytes, charset: str | None = None) -> str:
    """Page bytes to text: BOM, the response's charset, UTF-8, the page's <meta> charset; when none decodes
    cleanly, UTF-8 with replacement characters if most of its sequences are valid, else the declared
    codec or windows-1252. Labels that name no web encoding (`undefined`, `rot13`) are ignored."""
    for bom, name in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if raw.startswith(bom):
            return raw[len(bom) :].decode(name, errors="replace")
    meta = _META_CHARSET.search(raw[:4096])
    header = web_codec(charset)
    own = web_codec(meta.group(1).decode("ascii", "ignore")) if meta else None
    for name in dict.fromkeys(c for c in (header, "utf-8", own) if c):
        try:
            return raw.decode(name)
        except UnicodeDecodeError:
            continue
    # A UTF-8 page with one stray byte stays UTF-8: one U+FFFD, not mojibake in every accented word.
    text = raw.decode("utf-8", errors="replace")
    broken = text.count("\ufffd")
    if broken <= len(text) - len(text.encode("ascii", "ignore")) - broken:
        return text
    fallback = next((c for c in (header, own) if c and c != "utf-8"), "cp1252")
    return raw.decode(fallback, errors="replace")


# The encodings of the WHATWG Encoding Standard, by Python codec name; the aliases browsers decode as a
# superset (latin-1 as windows-1252, ...). Any other codec Python knows (`undefined`, `unicode_escape`,
# `rot13`, `utf-7`) is not a web page encoding: a page labelled so is decoded as if unlabelled.
_WEB_ALIASES = {
    "ascii": "cp1252",
    "iso8859-1": "cp1252",
    "latin-1": "cp1252",
    "iso8859-9": "cp1254",
    "iso8859-11": "cp874",
    "gb2312": "gbk",
    "euc_kr": "cp949",
    "shift_jis": "cp932",
    "big5": "big5hkscs",
}
_WEB_CODECS = {
    "utf-8",
    "utf-16",
    "utf-16-le",
    "utf-16-be",
    "cp866",
    *(f"iso8859-{n}" for n in (2, 3, 4, 5, 6, 7, 8, 10, 13, 14, 15, 16)),
    "koi8-r",
    "koi8-u",
    "mac-roman",
    "mac-cyrillic",
    "cp874",
    *(f"cp{n}" for n in range(1250, 1259)),
    "gbk",
    "gb18030",
    "big5hkscs",
    "euc_jp",
    "iso2022_jp",
    "cp932",
    "cp949",
}


def web_codec(label: str | None) -> str | None:
    """The Python codec for a charset label of a web page, or None when it names no web encoding."""
    if not label:
        return None
    try:
        name = codecs.lookup(label.strip()).name
    except LookupError:
        return None
    name = _WEB_ALIASES.get(name, name)
    return name if name in _WEB_CODECS else None


def parse_page(text: str) -> HtmlElement:
    """An lxml tree of a page's text (an XML declaration, which lxml refuses in str input, removed)."""
    text = re.sub(r"^\s*<\?xml[^>]*>", "", text, count=1)
    if not text.strip():
        raise Rejection("html_no_text", "empty page")
    from curate.parse.html import check_markup  # here: loading sources.yaml needs no trafilatura

    check_markup(text)  # libxml2 cannot be interrupted: refuse what it would take minutes over
    try:
        return document_fromstring(text)
    except (etree.ParserError, ValueError) as exc:
        raise Rejection("html_broken", f"lxml could not parse the page: {exc}") from exc


def text_of(element: HtmlElement | None) -> str:
    """An element's text with spaces collapsed ('' for None)."""
    if element is None:
        return ""
    return _SPACES.sub(" ", element.text_content()).strip()


def css(tree: HtmlElement, selector: str) -> list[HtmlElement]:
    """Elements matching a CSS selector (a bad selector is a configuration error found at load time)."""
    return tree.cssselect(selector)


def page_title(tree: HtmlElement, rules: ExtractRules) -> str | None:
    """The title by the source's title selectors, else the single <h1>, else <title>; title_strip applied."""
    title = ""
    for selector in rules.title:
        title = next((t for t in (text_of(e) for e in css(tree, selector)) if t), "")
        if title:
            break
    if not title:
        h1 = [t for t in (text_of(e) for e in tree.iter("h1")) if t]
        title = h1[0] if len(h1) == 1 else text_of(tree.find(".//title")) or (h1[0] if h1 else "")
    if title and rules.title_strip:
        title = re.sub(rules.title_strip, "", title).strip()
    return title or None


def select_main(tree: HtmlElement, rules: ExtractRules) -> HtmlElement:
    """A <div> with copies of the main-content element(s), cleaned and cut; Rejection on a selector miss."""
    for element in _matches(tree, DEFAULT_DROP):
        _remove(element)
    container = document_fromstring("<html><body><div></div></body></html>").find(".//div")
    if rules.main:
        found: list[HtmlElement] = []
        for selector in rules.main:
            found = _outermost(css(tree, selector))
            if found:
                break
        if not found:
            raise Rejection(
                "extract_selector_miss", f"no element matches main selector(s) {list(rules.main)}"
            )
    else:
        body = tree.find(".//body")
        found = [body if body is not None else tree]
    for element in found:
        clone = copy.deepcopy(element)
        clone.tail = None
        container.append(clone)
    for element in _matches(container, rules.drop):
        _remove(element)
    if rules.start_at:
        start = css(container, rules.start_at)
        if start:
            _remove_before(container, start[0])
    stop = _first_stop_heading(container, rules.stop_headings)
    if stop is not None:
        _remove_from(container, stop)
    if rules.tables:
        for table in list(container.iter("table")):
            _flatten_table(table)
    else:
        for table in list(container.iter("table")):
            _remove(table)
    return container


def extract_page(
    raw: bytes, url: str, rules: ExtractRules, *, charset: str | None = None, max_bytes: int = 50_000_000
) -> ParsedDoc:
    """One HTML page to a ParsedDoc by the source's rules, or a Rejection with a reason code."""
    if len(raw) > max_bytes:
        raise Rejection("html_too_large", f"{len(raw)} bytes > max_bytes={max_bytes}")
    if raw[:5] == b"%PDF-":
        raise Rejection("html_not_text", "PDF bytes, not HTML")
    head = raw[:65536]
    odd = sum(head.count(bytes([b])) for b in _BINARY_BYTES)
    if head and odd > 0.01 * len(head) and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise Rejection("html_not_text", f"{odd / len(head):.0%} control bytes: binary, not HTML")
    tree = parse_page(decode_page(raw, charset))
    title = page_title(tree, rules)
    main = select_main(tree, rules)
    return render(main, url, rules, title)


def render(main: HtmlElement, url: str, rules: ExtractRules, title: str | None) -> ParsedDoc:
    """Render a selected container with trafilatura (via extract_html), then finish_text."""
    from curate.parse.html import extract_html  # here: loading sources.yaml needs no trafilatura

    body = etree.tostring(main, encoding="unicode", method="html")
    head = f"<head><title>{html.escape(title or '')}</title></head>"
    page = f"<html>{head}<body><article>{body}</article></body></html>"
    try:
        doc = extract_html(page.encode("utf-8"), url=url)
    except Rejection as exc:
        # trafilatura wants 100 characters of prose; a short section a source's selectors already cut out
        # (a WikiDoc sub-page, a NICE overview) is still text: render it directly.
        if exc.reason != "html_no_text" or not rules.main:
            raise
        doc = ParsedDoc(text=simple_render(main), title=title, meta={"extractor": "selectors"})
    text = finish_text(doc.text, rules)
    if not _LETTER.search(text):
        raise Rejection("html_no_text", "nothing left after the source's extraction rules")
    meta = {k: v for k, v in doc.meta.items() if k not in ("encoding",)}
    return ParsedDoc(text=text, title=title or doc.title, meta=meta)


def simple_render(container: HtmlElement) -> str:
    """Headings as `#`, list items as `- `, other blocks as paragraphs (for small, selected content)."""
    blocks: list[str] = []
    for element in container.iter(*_HEADINGS, "p", "li", "dd", "dt", "blockquote"):
        if any(a.tag in ("p", "li", "blockquote") for a in element.iterancestors()):
            continue  # its text is part of the enclosing block
        text = text_of(element)
        if not text:
            continue
        if element.tag in _HEADINGS:
            text = f"{'#' * min(int(element.tag[1]), 3)} {text}"
        elif element.tag == "li":
            text = f"- {text}"
        if blocks and text.startswith("- ") and blocks[-1].startswith("- "):
            blocks[-1] += "\n" + text
        else:
            blocks.append(text)
    return "\n\n".join(blocks)


def finish_text(text: str, rules: ExtractRules) -> str:
    """Cut at stop headings, drop furniture and letterless lines, strip citation markers, tidy blank lines."""
    drop = [re.compile(p, re.I) for p in (*DEFAULT_DROP_LINES, *rules.drop_lines)]
    stops = {_norm_heading(h) for h in rules.stop_headings}
    kept: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        bare = _LEADING_MARKUP.sub("", stripped)
        if stripped.startswith("#") and _norm_heading(bare) in stops:
            break
        if any(p.match(bare) for p in drop):
            continue
        if rules.strip_markers:
            stripped = _MARKERS.sub("", stripped).rstrip()
            bare = _LEADING_MARKUP.sub("", stripped)
        if stripped and (not _LETTER.search(bare) or _BARE_URL.match(stripped)):
            continue
        kept.append(stripped)
    out = "\n".join(kept)
    out = re.sub(r"\n{3,}", "\n\n", out).strip()
    return _drop_empty_sections(out)


def _drop_empty_sections(text: str) -> str:
    """Remove headings left with nothing under them before the next heading of the same or higher level."""
    lines = text.split("\n\n")
    out: list[str] = []
    for i, block in enumerate(lines):
        if block.startswith("#"):
            level = len(block) - len(block.lstrip("#"))
            nxt = next((b for b in lines[i + 1 :] if b.strip()), None)
            if nxt is None or (nxt.startswith("#") and len(nxt) - len(nxt.lstrip("#")) <= level):
                continue
        out.append(block)
    return "\n\n".join(out)


def _norm_heading(text: str) -> str:
    return _SPACES.sub(" ", text).strip().rstrip(":").strip().lower()


def _matches(tree: HtmlElement, selectors: Iterable[str]) -> list[HtmlElement]:
    found: list[HtmlElement] = []
    for selector in selectors:
        found.extend(css(tree, selector))
    return found


def _outermost(elements: list[HtmlElement]) -> list[HtmlElement]:
    """Drop matches nested inside another match (each piece of text once)."""
    chosen = set(elements)
    return [e for e in elements if not any(a in chosen for a in e.iterancestors())]


def _remove(element: HtmlElement) -> None:
    """Remove an element but keep its tail text in place."""
    parent = element.getparent()
    if parent is None:
        return
    tail = element.tail
    if tail and tail.strip():
        previous = element.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(element)


def _first_stop_heading(container: HtmlElement, stops: Iterable[str]) -> HtmlElement | None:
    wanted = {_norm_heading(s) for s in stops}
    if not wanted:
        return None
    for element in container.iter(*_HEADINGS):
        if _norm_heading(text_of(element)) in wanted:
            return element
    return None


def _remove_from(container: HtmlElement, element: HtmlElement) -> None:
    """Remove element and everything after it in document order (inside container)."""
    node = element
    while node is not None and node is not container:
        parent = node.getparent()
        for sibling in list(node.itersiblings()):
            parent.remove(sibling)
        node.tail = None
        node = parent
    _remove(element)


def _remove_before(container: HtmlElement, element: HtmlElement) -> None:
    """Remove everything before element in document order (inside container)."""
    node = element
    while node is not None and node is not container:
        parent = node.getparent()
        for sibling in list(node.itersiblings(preceding=True)):
            parent.remove(sibling)
        parent.text = None
        node = parent


def _flatten_table(table: HtmlElement) -> None:
    """A kept table becomes one paragraph per row, cells joined by ' | ' (trafilatura drops tables)."""
    rows = []
    for row in table.iter("tr"):
        cells = [text_of(c) for c in row if isinstance(c.tag, str) and c.tag in ("td", "th")]
        cells = [c for c in cells if c]
        if cells:
            rows.append(" | ".join(cells))
    replacement = document_fromstring("<html><body><div></div></body></html>").find(".//div")
    for row in rows:
        p = etree.SubElement(replacement, "p")
        p.text = row
    replacement.tail = table.tail
    table.getparent().replace(table, replacement)
