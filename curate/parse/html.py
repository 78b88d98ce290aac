"""HTML pages to clean text: trafilatura plus a fallback, capped reading, encoding repair, binary sniffing.

`read_html_file` reads `.html`/`.htm` and gzip-compressed pages with a size cap that also holds for the
decompressed size (a gzip bomb is refused while it inflates). `extract_html` turns page bytes into a
`ParsedDoc` whose text uses `#`/`##`/`###` headings, `- ` list items and one blank line between blocks.
Every way a page can be unusable becomes a `Rejection` with a reason code:

- `html_too_large`: more than `max_bytes` (compressed or not), or more than `max_text_chars` of main text;
- `html_not_text`: binary served as HTML (PDF/zip/gzip/image magic, NUL bytes, mostly undecodable bytes);
- `html_no_text`: no extractor found main text, or less than `MIN_TEXT_CHARS` characters of prose;
- `html_broken`: a corrupt or truncated gzip file, or a page lxml/trafilatura cannot process;
- `html_too_complex`: markup no parser reads in bounded time (an element with thousands of attributes);
- `html_timeout`: extraction took longer than `max_seconds`.

Extraction (`_readings` says what runs when, `choose_text` which text wins): the page is parsed once, as
trafilatura parses it, and trafilatura's cascade runs in steps on that tree (`_Trafilatura`): its main
extractor first; resiliparse's main-content reading where the page holds enough words for it to be fuller;
the rest of trafilatura's default cascade (readability and jusText, baseline, recall escalation) and its
favor_recall reading only where the first text looks truncated or failed. Each later step is decided
before it runs, from what the earlier ones found, so most pages cost trafilatura's main extractor and one
resiliparse pass rather than its whole default cascade. A later reading replaces trafilatura's text only
when it is fuller (the same text and more of it). The markdown is rendered here from trafilatura's XML body
(and resiliparse's minimal HTML) rather than taken from trafilatura's markdown output, which escapes
punctuation (`1\\.`, `\\*`) and wraps bold/italic runs in `**`/`*`.

Containment: a C parser cannot be interrupted, so markup that libxml2 cannot read in bounded time is refused
before any parser sees it (`check_markup`: an element with more than MAX_ATTRIBUTES attributes, as
`html_too_complex`); every extractor works on the tree lxml parsed, and libxml2 stops nesting at 256 levels,
so a page nested 100,000 deep costs no more than a flat one (resiliparse on the raw page slows down
cubically with depth: 3 s at 10,000 levels). The time limit is a deadline checked between the steps and, in
the main thread, a SIGALRM that interrupts a step's Python code; the main text is capped at `max_text_chars`.
"""

from __future__ import annotations

import codecs
import copy
import os
import re
import signal
import threading
import time
import unicodedata
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import lxml.html
from charset_normalizer import from_bytes
from lxml import etree
from lxml.html import HtmlElement
from resiliparse.extract.html2text import extract_plain_text
from trafilatura.baseline import baseline, html2txt
from trafilatura.core import (
    ESCALATION_ACCEPT_RATIO,
    ESCALATION_JUSTEXT_RATIO,
    ESCALATION_MAX_LENGTH,
    ESCALATION_PAGE_SHARE,
    _forum_thread_page,
    _prepare_tree,
    _recall_retry,
)
from trafilatura.external import compare_extraction, justext_rescue
from trafilatura.htmlprocessing import prune_unwanted_nodes
from trafilatura.main_extractor import extract_content
from trafilatura.settings import Extractor
from trafilatura.utils import DOCTYPE_TAG, FAULTY_HTML
from trafilatura.xpaths import RAW_TREE_PRUNE_XPATH, REMOVE_COMMENTS_AND_LISTS_XPATH

from curate.schema import ParsedDoc, Rejection

# Fewer characters of prose than this is "no text": a stub, a login wall, a navigation-only page. Prose is
# lines that end a sentence or have at least _PROSE_WORDS words or _PROSE_CHARS characters (CJK has no
# spaces): when trafilatura finds no article it falls back to all of the page's text, and menus are short
# unpunctuated lines. Headings and list/heading markers are not counted.
MIN_TEXT_CHARS = 100
_PROSE_WORDS = 5
_PROSE_CHARS = 40
_SENTENCE_END = (".", "!", "?", ":", ";", "。", "！", "？", "…", '"', "”", "»", ")")

# trafilatura's options for every reading: main text only (no comments, tables, images, links, formatting).
# Built once: an Extractor reads its configuration file's values on every construction.
_BALANCED = Extractor(output_format="python", comments=False, tables=False, formatting=False)

# The fallback rule (choose_text). trafilatura keeps the one container it judges to be the article; when an
# article is split over several containers (sections, tabs, cards, a CMS's blocks) it keeps one of them and
# the text stops early. A second reading replaces the current text only when it is FULLER: at least
# FULLER_GROWTH times as many tokens, and containing at least FULLER_CONTAINS of the current text's tokens,
# i.e. the same text and more of it, never a different part of the page. Boilerplate is what the extra
# text risks bringing in, so a candidate must add half as much again, not a caption or an author box.
FULLER_GROWTH = 1.5
FULLER_CONTAINS = 0.8
# A page whose trafilatura text is a stub (under this much prose) has no article outside its comments: a
# forum thread or a Q&A page. There the posts are the content, so a reading with comments also competes.
STUB_CHARS = 2 * MIN_TEXT_CHARS
_TOKEN = re.compile(r"\w+")
# A first reading that keeps under this share of the page's words looks truncated: trafilatura's rescue
# stages and its favor_recall reading are tried (unless resiliparse's reading is fuller). On the evaluation
# pages every page where one of them improved the text kept less than this.
RECALL_COVERAGE = 0.3
# A first reading that holds under this share of the page's words (or is a stub) is a failed extraction, not
# a cut-short article: there trafilatura's rescue stages compete even when resiliparse's reading is fuller.
FAILED_COVERAGE = 0.1

# Chrome that trafilatura's own boilerplate rules keep: MediaWiki's "[edit]" links inside headings, its
# "Retrieved from" line, category box and jump links. Pruned before extraction.
PRUNE_XPATH = [
    "//*[@id='catlinks' or @id='siteSub' or @id='contentSub' or @id='jump-to-nav' or @id='toc'"
    " or contains(concat(' ', normalize-space(@class), ' '), ' mw-editsection ')"
    " or contains(concat(' ', normalize-space(@class), ' '), ' printfooter ')"
    " or contains(concat(' ', normalize-space(@class), ' '), ' mw-jump-link ')]"
]
# The prunes of the raw tree, in trafilatura's order (ours first, as its prune_xpath), each with the words
# one of which an id or class attribute must hold for it to match anything. An XPath with regular
# expressions tests every element of the page in Python and cost more than the rest of trafilatura's main
# extractor; the page's ids and classes, read once, tell which prunes can match ("\ntoc\n": the whole
# value). _NO_COMMENTS is skipped on forum threads, where the posts are the content.
_PRUNES = [
    (
        [etree.XPath(expression) for expression in PRUNE_XPATH],
        ("catlinks", "siteSub", "contentSub", "jump-to-nav", "mw-editsection", "printfooter",
         "mw-jump-link", "\ntoc\n"),
    ),
    (RAW_TREE_PRUNE_XPATH[:1], ("mvp-post-add-", "infinite")),
    (RAW_TREE_PRUNE_XPATH[1:], ("elementor-share-buttons",)),
]  # fmt: skip
_NO_COMMENTS = (REMOVE_COMMENTS_AND_LISTS_XPATH, ("omment", "comol", "disqus_thread"))
# Elements an inline style hides: schema.org copies of the article and its metadata, share-bar templates,
# pop-ups. trafilatura prunes them only inside the container it picks, so they leaked in wherever a wider
# reading won (its readability/jusText comparison, resiliparse): a second copy of the article followed by
# dates and image URLs. Pruned from the raw tree with trafilatura's guard (nothing goes when that would leave
# under a seventh of the page's text: a page that shows its content by script). Only scraps (no paragraph of
# prose) and copies of text shown elsewhere on the page go: an accordion's answers, hidden until a reader
# clicks, are prose of their own. The `hidden` attribute is left alone: on the evaluation pages it marked
# collapsed parts of the article.
_HIDDEN = etree.XPath("//body//*[contains(translate(@style, ' ', ''), 'display:none')]")
_UNSEEN = "data-curate-unseen"
_MARKED_UNSEEN = etree.XPath(f"//*[@{_UNSEEN}]")
_HIDDEN_PROSE = 120  # characters: a hidden paragraph this long is prose to open (banners are shorter)


def _mark_unseen(tree: HtmlElement) -> bool:
    """Mark the hidden elements no reader sees (scraps, copies of shown text); whether there were any."""
    page: str | None = None  # the page's text, read only for hidden prose (most hidden things are scraps)
    marked = False
    for element in _HIDDEN(tree):
        if any(len(" ".join(p.itertext()).strip()) >= _HIDDEN_PROSE for p in element.iter("p")):
            if page is None:
                page = " ".join(" ".join(tree.itertext()).split())
            if page.count(" ".join(" ".join(element.itertext()).split())[:_HIDDEN_PROSE]) < 2:
                continue  # prose of its own, hidden until a reader opens it
        element.set(_UNSEEN, "")
        marked = True
    return marked


_PARSER = lxml.html.HTMLParser(
    collect_ids=False, default_doctype=False, encoding="utf-8", remove_comments=True, remove_pis=True
)
_PARSER.set_element_class_lookup(
    etree.ElementDefaultClassLookup(
        element=HtmlElement,
        comment=lxml.html.HtmlComment,
        pi=lxml.html.HtmlProcessingInstruction,
        entity=lxml.html.HtmlEntity,
    )
)
_IDS_AND_CLASSES = etree.XPath("//@id|//@class", smart_strings=False)
_PAGE_TEXT = etree.XPath("//text()[not(parent::script or parent::style)]", smart_strings=False)

_READ_CHUNK = 1 << 20
_SNIFF_CHARS = 65_536  # the start of a page is enough to tell text from binary
_MAX_ODD_SHARE = 0.05  # control/replacement characters above this share: binary (random bytes give >10%)
_MAX_NUL_SHARE = 0.01  # NUL bytes above this share (outside UTF-16): binary
_DETECT_BYTES = 20_000  # charset detection on the first bytes only: it is slow on whole pages

# Formats that are never HTML: a download link served as a page, or bytes still compressed.
_MAGIC = {
    b"%PDF-": "PDF",
    b"PK\x03\x04": "zip",
    b"\x1f\x8b": "gzip",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"7z\xbc\xaf\x27\x1c": "7z",
    b"Rar!\x1a\x07": "rar",
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"\xff\xd8\xff": "JPEG",
    b"RIFF": "RIFF (WebP/WAV/AVI)",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1": "OLE (old Office)",
    b"\x7fELF": "ELF",
    b"wOFF": "WOFF font",
    b"wOF2": "WOFF2 font",
    b"OggS": "Ogg",
    b"ID3": "MP3",
    b"\x00\x00\x01\x00": "ICO",
}
_BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
]
# The WHATWG encoding standard decodes these labels as windows-1252, and so do browsers: pages that say
# latin-1 routinely contain curly quotes in 0x80-0x9F.
_AS_CP1252 = {"latin_1", "iso8859_1", "ascii", "cp1252"}
_DECLARED_CHARSET = re.compile(
    rb"""<meta[^>]*?charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)|<\?xml[^>]*?encoding\s*=\s*["']([a-zA-Z0-9_.:-]+)""",
    re.IGNORECASE,
)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
# C0/C1 controls other than tab, newline, carriage return and form feed; U+FFFD; noncharacters.
_ODD = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\ufffd\ufffe\uffff]")
_CONTROLS = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\ufffe\uffff]")
_C0_BYTES = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
_C1_UTF8 = re.compile(rb"\xc2[\x80-\x9f]")
_INVISIBLE = re.compile("[\u00ad\u200b\u2060\ufeff]")  # soft hyphen, zero-width space/joiner, BOM
_SPACES = re.compile(r"\s+")
_MARKER = re.compile(r"^(?:#{1,3} |- )", re.MULTILINE)
_ISO_DATE = re.compile(r"^\s*(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})")
_JSONLD_DATE = re.compile(r'"datePublished"\s*:\s*"(\d{4}-\d{2}-\d{2})')

# libxml2 (and lexbor, which resiliparse uses) compares each attribute of an element with all the earlier
# ones: 20,000 attributes take 0.4 s to parse, 200,000 took 420 s, and a C call cannot be interrupted. Real
# pages have at most a few dozen (64 on the evaluation pages), so an element with more is refused before any
# parser sees it. An attribute takes at least two characters, so only start tags longer than twice the limit
# are counted.
MAX_ATTRIBUTES = 1000
# A start tag as the HTML tokenizer reads it: to the first '>' outside a quoted attribute value. Possessive
# quantifiers keep the scan linear on any input.
_START_TAG = re.compile(r"""<[A-Za-z](?:=\s*+"[^"]*+"|=\s*+'[^']*+'|[^>])*+>?""")
_QUOTED_VALUE = re.compile(r"""=\s*+"[^"]*+"|=\s*+'[^']*+'""")
# Elements whose content is raw text, not markup (a script's "i<n" is no tag).
_RAW_TEXT_START = re.compile(r"<(script|style)(?=[\s/>])", re.IGNORECASE)
_RAW_TEXT_END = {
    "script": re.compile(r"</script", re.IGNORECASE),
    "style": re.compile(r"</style", re.IGNORECASE),
}

# trafilatura's output tree: these tags start a block of text; everything else is inline.
_HEAD_TAGS = {"head", "h1", "h2", "h3", "h4", "h5", "h6"}
_ITEM_TAGS = {"item", "li", "dt", "dd"}
_LIST_TAGS = {"list", "ul", "ol", "dl"}
_BLOCK_TAGS = _HEAD_TAGS | _ITEM_TAGS | _LIST_TAGS | {
    "body", "doc", "main", "article", "section", "div", "p", "quote", "blockquote", "code", "pre",
    "table", "row", "cell", "tr", "td", "th", "figure", "details", "summary",
    "header", "footer", "aside", "nav", "form", "fieldset",
}  # fmt: skip
# Blocks whose content is a run of text: trafilatura's <code> inside one of them is inline code.
_TEXT_BLOCKS = _HEAD_TAGS | _ITEM_TAGS | {"p", "quote", "blockquote", "cell", "td", "th"}
_DATE_META = (
    "article:published_time",
    "og:article:published_time",
    "citation_publication_date",
    "citation_date",
    "dc.date.issued",
    "dcterms.issued",
    "dc.date",
    "dcterms.date",
    "date",
    "publication_date",
    "article:modified_time",
    "dcterms.modified",
    "last-modified",
)


def read_html_file(path: str | os.PathLike, *, max_bytes: int = 50_000_000) -> bytes:
    """Read a saved page (.html, .htm, or gzip .html.gz), refusing more than max_bytes even once inflated."""
    name = os.fspath(path)
    with open(name, "rb") as fh:
        magic = fh.read(2)
        fh.seek(0)
        # Decide by content, not name: servers and crawlers often save gzip bodies under .html.
        if magic == b"\x1f\x8b":
            return _gunzip_capped(fh, max_bytes)
        if name.lower().endswith(".gz"):
            raise Rejection("html_broken", "file named .gz is not gzip-compressed")
        size = os.fstat(fh.fileno()).st_size
        if size > max_bytes:
            raise Rejection("html_too_large", f"{size} bytes > max_bytes={max_bytes}")
        data = fh.read(max_bytes + 1)  # the cap holds even for files that grow or lie about their size
    if len(data) > max_bytes:
        raise Rejection("html_too_large", f"more than max_bytes={max_bytes} bytes")
    return data


def _gunzip_capped(fh: Any, max_bytes: int) -> bytes:
    """Inflate a gzip stream (all its members) chunk by chunk, stopping as soon as it exceeds max_bytes."""
    out = bytearray()
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        while chunk := fh.read(_READ_CHUNK):
            data = chunk
            while data:
                if inflater.eof:
                    # Another member, or padding: gzip allows both after a complete member.
                    data = data.lstrip(b"\x00")
                    if not data:
                        break
                    if not data.startswith(b"\x1f\x8b"):
                        data = b""  # trailing garbage after a verified member: keep what was read
                        break
                    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                # max_length bounds the output of this call, so a bomb never inflates past the cap.
                out += inflater.decompress(data, max_bytes + 1 - len(out))
                if len(out) > max_bytes:
                    raise Rejection("html_too_large", f"gzip inflates past max_bytes={max_bytes}")
                data = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
    except zlib.error as exc:
        raise Rejection("html_broken", f"corrupt gzip: {exc}") from exc
    if not inflater.eof:
        raise Rejection("html_broken", "gzip stream ends before its end marker (truncated or corrupt)")
    return bytes(out)


def extract_html(
    raw: bytes,
    *,
    url: str | None = None,
    max_bytes: int = 50_000_000,
    max_seconds: float = 60.0,
    max_text_chars: int = 5_000_000,
) -> ParsedDoc:
    """Extract a page's main text (markdown-style headings and lists), title and cheap metadata."""
    deadline = _Deadline(max_seconds)
    try:
        with deadline.alarm():
            return _extract(raw, url, max_bytes, max_text_chars, deadline)
    except _Timeout:
        raise Rejection("html_timeout", f"extraction took more than max_seconds={max_seconds:g}") from None
    except Rejection:
        raise
    except RecursionError as exc:
        raise Rejection("html_broken", "nesting too deep to render") from exc
    except Exception as exc:  # noqa: BLE001 - lxml/trafilatura failures of every kind mean a broken page
        raise Rejection("html_broken", f"{type(exc).__name__}: {exc}"[:300]) from exc


def check_markup(page: str) -> None:
    """Raise Rejection('html_too_complex') for markup that parsers cannot read in bounded time (see
    MAX_ATTRIBUTES); linear in the page's length."""
    if len(page) <= 2 * MAX_ATTRIBUTES:
        return
    tags = _START_TAG.findall(_markup_only(page))
    if max(map(len, tags), default=0) <= 2 * MAX_ATTRIBUTES:
        return
    for tag in tags:
        if len(tag) > 2 * MAX_ATTRIBUTES:
            # Names, and names with their values once quoted values are out of the way (an overcount for
            # "name = value", which is rare).
            attributes = len(_QUOTED_VALUE.sub("=", tag).split()) - 1
            if attributes > MAX_ATTRIBUTES:
                detail = f"an element with {attributes} attributes (limit {MAX_ATTRIBUTES})"
                raise Rejection("html_too_complex", detail)


def _markup_only(page: str) -> str:
    """The page with the content of <script> and <style> elements left out (their start tags kept)."""
    parts: list[str] = []
    pos = 0
    while match := _RAW_TEXT_START.search(page, pos):
        start_tag = _START_TAG.match(page, match.start())
        tag_end = start_tag.end() if start_tag else match.end()
        parts.append(page[pos:tag_end])
        close = _RAW_TEXT_END[match.group(1).lower()].search(page, tag_end)
        if close is None:
            return "".join(parts)
        pos = close.start()
    parts.append(page[pos:])
    return "".join(parts)


class _Timeout(BaseException):
    """Raised by the alarm; a BaseException so that the extractors' own `except Exception` cannot eat it."""


class _Deadline:
    """A time limit: checked between steps, and enforced inside a step by SIGALRM where that is possible."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise _Timeout

    @contextmanager
    def alarm(self) -> Iterator[None]:
        # Signals reach only the main thread, and an itimer someone else set is left alone: then the checks
        # between steps are the limit.
        usable = threading.current_thread() is threading.main_thread() and signal.getitimer(
            signal.ITIMER_REAL
        ) == (0.0, 0.0)
        if not usable or self.seconds <= 0:
            self.check()
            yield
            return

        def on_alarm(signum: int, frame: Any) -> None:
            # The handler puts the old one back itself: an alarm that came during a C call runs at Python's
            # next step, which can be past the body, in the clean-up below, and would cut it short.
            signal.signal(signal.SIGALRM, previous)
            raise _Timeout

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def _extract(
    raw: bytes | str, url: str | None, max_bytes: int, max_text_chars: int, deadline: _Deadline
) -> ParsedDoc:
    if len(raw) > max_bytes:
        raise Rejection("html_too_large", f"{len(raw)} bytes > max_bytes={max_bytes}")
    if isinstance(raw, str):
        page, encoding = raw, "unicode"
    else:
        raw = bytes(raw)
        if not raw.strip():
            raise Rejection("html_no_text", "empty page")
        page, encoding = _decode(raw)
    # A page decoded from UTF-8 tells from its bytes whether it holds a control character at all: a C-speed
    # test where the regexes over the decoded page cost half as much as parsing it.
    no_controls = encoding == "utf-8" and not _utf8_has_controls(raw)
    sample = page[:_SNIFF_CHARS]
    odd = sample.count("\ufffd") if no_controls else len(_ODD.findall(sample))
    if sample and odd > _MAX_ODD_SHARE * len(sample):
        raise Rejection("html_not_text", f"{odd / len(sample):.0%} control or undecodable characters")
    if not no_controls:
        # VT and FF are whitespace in HTML; other controls are noise lxml would reject or keep verbatim.
        page = _CONTROLS.sub("", page.replace("\x0b", " ").replace("\x0c", " "))
    page = _XML_DECLARATION.sub("", page, count=1)  # lxml refuses str input with an encoding declaration
    if not page.strip():
        raise Rejection("html_no_text", "empty page")
    check_markup(page)

    tree = _parse_page(page)

    head = _head_meta(tree)
    meta: dict[str, Any] = {"encoding": encoding, **_page_meta(tree, head)}
    title = _page_title(tree, head)
    deadline.check()

    candidates, failures = _readings(tree, page, url, deadline)
    deadline.check()
    if len(failures) == len(candidates):
        raise failures[0]  # every extractor failed: the page is broken (html_broken, in extract_html)

    extractor, text = choose_text(candidates)
    meta = {"extractor": extractor, **meta}
    prose = _prose_chars(text)
    if prose < MIN_TEXT_CHARS:
        raise Rejection("html_no_text", f"{prose} characters of prose in the main text (< {MIN_TEXT_CHARS})")
    if len(text) > max_text_chars:
        detail = f"{len(text)} characters of main text > max_text_chars={max_text_chars}"
        raise Rejection("html_too_large", detail)
    return ParsedDoc(text=text, title=title, meta=meta)


def _parse_page(page: str) -> HtmlElement:
    """The page's tree; a fragment or plain text is read as a page's body."""
    tree = _parse(page)
    if tree is None:
        # trafilatura refuses a fragment or plain text without an <html> tag; here it is still a page.
        tree = _parse(f"<html><body>{page}</body></html>")
    if tree is None:
        raise Rejection("html_broken", "lxml could not parse the page")
    return tree


def _parse(page: str) -> HtmlElement | None:
    """The page's tree as trafilatura.load_html parses a string: its repairs (a doctype with a system
    identifier, a self-closing <html/>), its parser settings, None for what is not HTML. Its third repair,
    removing control characters, is done already (_CONTROLS), and elements are looked up in C: lxml.html's
    lookup in Python runs for every element trafilatura touches (2% of the extraction here)."""
    beginning = page[:50].lower()
    if "doctype" in beginning:
        line_end = page.find("\n")
        doctype = DOCTYPE_TAG.match(page, 0, len(page) if line_end < 0 else line_end)
        if doctype:
            page = page[doctype.end() :]
    for line in page[:4096].splitlines()[:4]:
        if "<html" in line and line.endswith("/>"):
            page = FAULTY_HTML.sub(r"\1>", page, count=1)
            break
    tree = None
    for markup in (page, page.encode("utf-8", "surrogatepass")):  # bytes: lxml refuses some strings
        try:
            tree = lxml.html.fromstring(markup, parser=_PARSER)
        except Exception:  # noqa: BLE001, S112 - lxml raises several kinds for what it cannot parse
            continue
        if tree is not None and len(tree):
            break
    # Without "html" at its start and with fewer than two children it is text or a fragment, not a page.
    if tree is not None and "html" not in beginning and len(tree) < 2:
        return None
    return tree


def _readings(
    tree: HtmlElement, page: str, url: str | None, deadline: _Deadline
) -> tuple[dict[str, str], list[Exception]]:
    """The page's candidate texts for choose_text, in its order, and the failures of those that ran.

    Each later step runs only where it could change the text, decided before running it:
    1. trafilatura's main extractor (_Trafilatura; its rescue stages at once when it finds next to nothing);
    2. resiliparse, unless the page holds under FULLER_GROWTH times the first text's words (_page_words):
       no reading can then be fuller;
    3. where resiliparse's reading is fuller, trafilatura kept one part of a split article and resiliparse
       read all of it: it wins, and nothing else is run, unless the first text is a failed extraction
       (a stub, or under FAILED_COVERAGE of the page's words);
    4. where the first text failed or holds under RECALL_COVERAGE of the page's words, the rest of
       trafilatura's default cascade (readability, jusText, baseline, recall escalation: the text its
       default mode gives) and its favor_recall reading, and on a stub page resiliparse with comments.
    On the evaluation pages step 4 is skipped on 258 of 324; on 253 of them trafilatura's later stages
    would not have changed its text, and on the other 5 resiliparse's fuller reading replaced it anyway.
    """
    candidates: dict[str, str] = {}
    failures: list[Exception] = []

    def read(name: str, step: Callable[[], str]) -> str:
        deadline.check()
        try:
            candidates[name] = step()
        except Exception as exc:  # noqa: BLE001 - one extractor failing leaves the others to read the page
            failures.append(exc)
            candidates.setdefault(name, "")  # a later step of a reading that failed keeps its earlier text
        return candidates[name]

    page_words = _page_words(tree)
    reading = _Trafilatura(tree, url)
    first = read("trafilatura", reading.main_text)
    # Where the main extractor finds next to nothing, trafilatura's rescue stages are its first reading.
    full = reading.short()
    if full:
        first = read("trafilatura", reading.full_text)
    words = _words(first)
    if page_words < FULLER_GROWTH * words:
        return candidates, failures
    # resiliparse reads the tree lxml parsed (its depth capped by libxml2), not the raw string, and as
    # trafilatura's raw-tree prunes left it: a comment section or an appended next story that trafilatura
    # removed on purpose cannot make resiliparse's reading the fuller one.
    page_html = lxml.html.tostring(reading.tree, encoding="unicode")
    later: dict[str, str] = {}
    later["resiliparse"] = read("resiliparse", lambda: _resiliparse(page_html, comments=False))
    failed = _prose_chars(first) < STUB_CHARS or words < FAILED_COVERAGE * page_words
    if _is_fuller(later["resiliparse"], first, FULLER_CONTAINS) and not failed:
        return candidates, failures  # resiliparse read the article trafilatura cut short: it wins
    if not failed and words >= RECALL_COVERAGE * page_words:
        return candidates, failures
    if not full:
        first = read("trafilatura", reading.full_text)
    if page_words >= FULLER_GROWTH * _words(first):  # else the recall reading could not be fuller
        later["trafilatura-recall"] = read("trafilatura-recall", reading.recall_text)
    if _prose_chars(first) < STUB_CHARS:  # only a stub page is read with its comments: see STUB_CHARS
        whole_page = lxml.html.tostring(_parse_page(page), encoding="unicode")  # comments not pruned
        later["resiliparse+comments"] = read(
            "resiliparse+comments", lambda: _resiliparse(whole_page, comments=True)
        )
    ordered = ["trafilatura", "trafilatura-recall", "resiliparse", "resiliparse+comments"]
    return {name: candidates[name] for name in ordered if name in candidates}, failures


def _words(text: str) -> int:
    """Words as _page_words counts them: runs of non-space characters."""
    return len(text.split())


def _page_words(tree: HtmlElement) -> int:
    """Words in the page's text outside scripts and styles: no reading holds more (each text node counted
    apart, so a word split by markup counts twice)."""
    return len(" ".join(_PAGE_TEXT(tree)).split())


class _Trafilatura:
    """trafilatura's extraction cascade (trafilatura.core.trafilatura_sequence, for curate's options: no
    comments, tables, images or links) in steps, so that its costly later stages run only where needed.

    main_text: its main extractor (as in its default mode); full_text, after it: the rest of its default
    cascade, i.e. readability and jusText compared with the main text, the baseline rescue and the recall
    escalation; recall_text: its favor_recall reading. The last two share one recall run.
    """

    def __init__(self, tree: HtmlElement, url: str | None):
        self.tree, self.options = tree, copy.copy(_BALANCED)
        self.options.url = self.options.source = url
        self.text = ""
        self._recall: tuple[Any, str] | None = None

    def main_text(self) -> str:
        """Prune the raw tree as trafilatura does for these options (and of hidden elements, _HIDDEN), then
        run its main extractor."""
        tree, options = self.tree, self.options
        names = "\n" + "\n".join(_IDS_AND_CLASSES(tree)) + "\n"
        (ours, ours_words), *raw = _PRUNES
        if any(word in names for word in ours_words):
            tree = prune_unwanted_nodes(tree, ours)
        forum = _forum_thread_page(tree)
        for xpaths, words in raw if forum else [*raw, _NO_COMMENTS]:
            if any(word in names for word in words):
                tree = prune_unwanted_nodes(tree, xpaths)
        if _mark_unseen(tree):
            tree = prune_unwanted_nodes(tree, [_MARKED_UNSEEN], with_backup=True)
        self.tree = tree
        cleaned, self._backup = _prepare_tree(tree, options, options.url)
        self.body, self.text = extract_content(cleaned, options)
        return _render(self.body) if self.text else ""

    def short(self) -> bool:
        """True when the main extractor found less than trafilatura's minimum (its rescue stages run)."""
        return len(self.text) < self.options.min_extracted_size

    def full_text(self) -> str:
        """trafilatura's default reading: the main text compared with readability's and jusText's, rescued
        by its baseline when short, and escalated to the recall run when it covers little of the page."""
        options, tree = self.options, self.tree
        body, text = compare_extraction(self._backup, copy.copy(tree), self.body, self.text, options)
        if len(text) < options.min_extracted_size:
            b_body, b_text, b_len = baseline(tree)
            if b_len > len(text):
                body, text = b_body, b_text
        if 0 < len(text) < ESCALATION_MAX_LENGTH and len(text) < ESCALATION_PAGE_SHARE * len(html2txt(tree)):
            r_body, r_text = self._recall_run()
            j_body, j_text = justext_rescue(copy.copy(tree), options)
            j_len, r_len = len(j_text), len(r_text)
            if j_len > r_len and j_len > ESCALATION_JUSTEXT_RATIO * len(text):
                body, text = j_body, j_text
            elif r_len >= options.min_extracted_size and r_len > ESCALATION_ACCEPT_RATIO * len(text):
                body, text = r_body, r_text
        return _render(body) if text else ""

    def recall_text(self) -> str:
        """trafilatura's favor_recall reading of the same pruned tree."""
        body, text = self._recall_run()
        if len(text) < self.options.min_extracted_size:
            b_body, b_text, b_len = baseline(self.tree)
            if b_len > len(text):
                body, text = b_body, b_text
        return _render(body) if text else ""

    def _recall_run(self) -> tuple[Any, str]:
        if self._recall is None:
            options = copy.copy(self.options)
            options.focus = "recall"
            self._recall = _recall_retry(self.tree, options, options.url)
        return self._recall


def _resiliparse(page_html: str, *, comments: bool) -> str:
    """resiliparse's main-content text of a page (its minimal HTML: headings, paragraphs, lists), rendered."""
    markup = extract_plain_text(
        page_html,
        preserve_formatting="minimal_html",
        main_content=True,
        comments=comments,
        alt_texts=False,
        links=False,
        form_fields=False,
        noscript=False,
    )
    if not markup.strip():
        return ""
    return _render(lxml.html.fragment_fromstring(markup, create_parent="div"))


def choose_text(candidates: dict[str, str]) -> tuple[str, str]:
    """(extractor, text): trafilatura's text, replaced in turn by each later candidate that is fuller.

    Candidates are tried in their order (trafilatura, its favor_recall mode, resiliparse, resiliparse with
    comments); see FULLER_GROWTH for the rule. The comments reading is only offered for stub pages and is
    not held to containment: a stub is usually the page's footer, which a thread's posts do not contain.
    """
    names = list(candidates)
    best = names[0]
    for name in names[1:]:
        contains = 0.0 if name.endswith("+comments") else FULLER_CONTAINS
        if _is_fuller(candidates[name], candidates[best], contains):
            best = name
    return best, candidates[best]


def _is_fuller(candidate: str, current: str, contains: float) -> bool:
    """True when candidate has FULLER_GROWTH x current's tokens and holds `contains` of them."""
    new, old = _TOKEN.findall(candidate.lower()), _TOKEN.findall(current.lower())
    if not new:
        return False
    if not old:
        return True
    if len(new) < FULLER_GROWTH * len(old):
        return False
    return (Counter(new) & Counter(old)).total() >= contains * len(old)


def _prose_chars(text: str) -> int:
    """Characters in lines that read as prose (not headings, not short menu-like labels)."""
    total = 0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        line = _MARKER.sub("", line)
        if len(line) >= _PROSE_CHARS or len(line.split()) >= _PROSE_WORDS or line.endswith(_SENTENCE_END):
            total += len(line)
    return total


def _decode(raw: bytes) -> tuple[str, str]:
    """Bytes to str: BOM, then UTF-8, then the declared charset, then detection; invalid bytes replaced."""
    for bom, name in _BOMS:
        if raw.startswith(bom):
            return raw[len(bom) :].decode(name, errors="replace"), name
    utf16 = _bomless_utf16(raw)
    if utf16:
        return raw.decode(utf16, errors="replace"), utf16
    for magic, kind in _MAGIC.items():
        if raw[:64].lstrip(b" \t\r\n").startswith(magic):
            raise Rejection("html_not_text", f"{kind} bytes, not HTML")
    head = raw[:_SNIFF_CHARS]
    if head.count(b"\x00") > _MAX_NUL_SHARE * len(head):
        raise Rejection("html_not_text", "NUL bytes: binary content")
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    # Mostly valid UTF-8 with a few bad bytes (a truncated or spliced page) stays UTF-8: a legacy charset
    # would turn every correct multi-byte character into mojibake to save the few broken ones.
    lenient = raw.decode("utf-8", errors="replace")
    bad = lenient.count("\ufffd")
    non_ascii = len(lenient) - len(lenient.encode("ascii", errors="ignore"))
    if non_ascii - bad > bad:
        return lenient, "utf-8"
    declared = _declared_charset(raw)
    if declared and declared != "utf_8":
        try:
            return raw.decode(declared), declared
        except (UnicodeDecodeError, LookupError):
            pass  # declared wrongly: fall through to detection
    matches = from_bytes(raw[:_DETECT_BYTES])
    best = matches.best()
    if best is not None:
        # A few accented letters fit cp1250, cp1252 and cp1257 equally well (a tie, or the same decoding);
        # on the web windows-1252 is by far the most used of them, so it wins ties.
        tied = [m for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
        name = "cp1252" if any("cp1252" in m.could_be_from_charset for m in tied) else best.encoding
        try:
            return raw.decode(name, errors="replace"), name
        except LookupError:
            pass
    fallback = declared if declared and declared != "utf_8" else "cp1252"
    return raw.decode(fallback, errors="replace"), fallback


def _utf8_has_controls(raw: bytes) -> bool:
    """True when UTF-8 bytes decode to a character that _CONTROLS, _ODD or the VT/FF replacement acts on
    (U+FFFD aside): C0 controls and DEL as bytes, C1 controls and U+FFFE/U+FFFF as their encodings."""
    return (
        len(raw.translate(None, _C0_BYTES)) < len(raw)
        or _C1_UTF8.search(raw) is not None
        or b"\xef\xbf\xbe" in raw
        or b"\xef\xbf\xbf" in raw
    )


def _bomless_utf16(raw: bytes) -> str | None:
    """'utf-16-le'/'utf-16-be' when the bytes look like ASCII-range text in UTF-16 without a BOM."""
    head = raw[:4096]
    pairs = len(head) // 2
    if pairs < 8:
        return None
    even, odd = head[0::2].count(0), head[1::2].count(0)
    if odd > 0.6 * pairs and even < 0.05 * pairs and head[0:1] == b"<":
        return "utf-16-le"
    if even > 0.6 * pairs and odd < 0.05 * pairs and head[1:2] == b"<":
        return "utf-16-be"
    return None


def _declared_charset(raw: bytes) -> str | None:
    """The charset that the page's <meta> or XML declaration names, as a Python codec name."""
    match = _DECLARED_CHARSET.search(raw[:4096])
    if not match:
        return None
    label = (match.group(1) or match.group(2)).decode("ascii", errors="ignore")
    try:
        name = codecs.lookup(label).name.replace("-", "_")
    except LookupError:
        return None
    if name.startswith(("utf_16", "utf_32")):
        return "utf_8"  # bytes that reached here are ASCII-compatible: WHATWG reads such pages as UTF-8
    return "cp1252" if name in _AS_CP1252 else name


def _page_title(tree: HtmlElement, head: dict[str, str]) -> str | None:
    """The single <h1> if there is one, else og:title, else <title>, else the first <h1>/<h2>."""
    h1 = [t for t in (_text_of(e) for e in tree.iter("h1")) if t]
    if len(h1) == 1:
        return h1[0]
    for candidate in (head.get("og:title"), _text_of(tree.find(".//title"))):
        if candidate:
            return candidate
    if h1:
        return h1[0]
    h2 = [t for t in (_text_of(e) for e in tree.iter("h2")) if t]
    return h2[0] if h2 else None


def _head_meta(tree: HtmlElement) -> dict[str, str]:
    """<meta name|property|itemprop|http-equiv=key content=...> as {lowercased key: content}, first wins."""
    found: dict[str, str] = {}
    for element in tree.iter("meta"):
        content = element.get("content")
        if not content:
            continue
        for attr in ("name", "property", "itemprop", "http-equiv"):
            key = (element.get(attr) or "").strip().lower()
            if key and key not in found:
                value = _SPACES.sub(" ", content).strip()
                if value:
                    found[key] = value
    return found


def _page_meta(tree: HtmlElement, head: dict[str, str]) -> dict[str, str]:
    """Cheap, deterministic extras: publication date, description, site name, declared language."""
    meta: dict[str, str] = {}
    date = next((d for d in (_iso_date(head.get(key)) for key in _DATE_META) if d), None)
    if date is None:
        for script in tree.iterfind(".//script[@type='application/ld+json']"):
            found = _JSONLD_DATE.search(script.text or "")
            if found:
                date = found.group(1)
                break
    if date:
        meta["date"] = date
    description = head.get("description") or head.get("og:description")
    if description:
        meta["description"] = description[:500]
    if head.get("og:site_name"):
        meta["sitename"] = head["og:site_name"]
    root = tree.getroottree().getroot()
    lang = (root.get("lang") or root.get("xml:lang") or "").strip()
    if lang:
        meta["html_lang"] = lang[:20]
    return meta


def _iso_date(value: str | None) -> str | None:
    """YYYY-MM-DD from an ISO-like date string, or None."""
    match = _ISO_DATE.match(value or "")
    if not match:
        return None
    year, month, day = int(match.group(1)), int(match.group(2)), int(match.group(3))
    if not (1900 <= year <= 2100 and 1 <= month <= 12 and 1 <= day <= 31):
        return None
    return f"{year:04d}-{month:02d}-{day:02d}"


def _text_of(element: HtmlElement | None) -> str:
    if element is None:
        return ""
    return _SPACES.sub(" ", _INVISIBLE.sub("", element.text_content())).strip()


# --- rendering trafilatura's XML body -----------------------------------------------------------------


def _render(body: Any) -> str:
    """Blocks of trafilatura's output tree as text: '# heading', '- item', paragraphs; NFC, tidy spaces."""
    blocks: list[tuple[str, str]] = []
    _walk(body, blocks, "p")
    out: list[str] = []
    previous = ""
    for kind, raw_text in blocks:
        text = unicodedata.normalize("NFC", _INVISIBLE.sub("", raw_text))
        if kind == "p":
            lines = (_SPACES.sub(" ", part).strip() for part in text.split("\n"))
            rendered = "\n".join(part for part in lines if part)
        else:
            line = _SPACES.sub(" ", text).strip()
            marker = "-" if kind == "item" else "#" * min(int(kind[1]), 3)
            rendered = f"{marker} {line}" if line else ""
        if not rendered:
            continue
        if out:
            # Items stay on consecutive lines (nested lists flattened); other boundaries get one blank line.
            out.append("\n" if kind == previous == "item" else "\n\n")
        out.append(rendered)
        previous = kind
    return "".join(out)


def _walk(element: Any, blocks: list[tuple[str, str]], kind: str) -> None:
    """Collect (kind, text) blocks: element's own loose and inline text, split around its block children."""
    buffer = [element.text or ""]

    def flush() -> None:
        text = "".join(buffer)
        buffer.clear()
        if text.strip():
            blocks.append((kind, text))

    for child in element:
        tag = child.tag if isinstance(child.tag, str) else ""  # comments and processing instructions: ""
        if tag in _BLOCK_TAGS and not (tag == "code" and element.tag in _TEXT_BLOCKS):
            flush()
            if tag in _HEAD_TAGS:
                rend = child.get("rend") or tag
                _walk(child, blocks, rend if re.fullmatch(r"h[1-6]", rend) else "h2")
            else:
                # Loose text in a list container reads like one of its items.
                _walk(child, blocks, "item" if tag in _ITEM_TAGS or tag in _LIST_TAGS else "p")
        elif tag in ("lb", "br"):
            buffer.append("\n")
        elif tag:
            buffer.append(_inline_text(child))
        buffer.append(child.tail or "")
    flush()


def _inline_text(element: Any) -> str:
    parts = [element.text or ""]
    for child in element:
        tag = child.tag if isinstance(child.tag, str) else ""
        if tag in ("lb", "br"):
            parts.append("\n")
        elif tag:
            parts.append(_inline_text(child))
        parts.append(child.tail or "")
    return "".join(parts)
