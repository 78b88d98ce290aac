"""PubMed/MEDLINE XML of every era to one record per citation, streamed with bounded memory.

Roots read: `PubmedArticleSet` (baseline and update files since 2017, E-utilities `efetch`) holding
`PubmedArticle`, `PubmedBookArticle` and `DeleteCitation`; `MedlineCitationSet` (MEDLINE files before 2017)
holding bare `MedlineCitation` and `DeleteCitation`; a lone citation as the root. Anything else is
`Rejection("xml_not_pubmed")`, which says what the file is.

The file is split into citations on the bytes, before any XML parsing, and each citation is parsed on its own.
So a citation larger than `MAX_CITATION_BYTES` is skipped as it streams (`pubmed_too_large`) without its text
ever being held, and damage inside one citation (a bad byte, a cut tag) is that citation's own `Broken` item:
reading goes on at the next citation. A file that ends early (a cut gzip, XML cut inside a valid gzip) yields
every citation before the cut, then raises `Rejection("pubmed_truncated")`. `<DeleteCitation>` PMIDs
(update files) are reported so that a later step can remove those citations.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from lxml import etree

from curate.parse.xmltext import MATHML_NS, collapse, math_text, parse_xml
from curate.schema import Rejection

MAX_CITATION_BYTES = 16_000_000  # the largest real citations (thousands of authors) are a few MB
_BLOCK = 1 << 20
_HEAD = 65_536  # what is kept of a citation too large to read, to find its PMID
_YEAR = re.compile(r"\b(1[89]\d\d|20\d\d)\b")
_PMID = re.compile(rb"<PMID[^>]*>\s*(\d+)\s*</PMID>")
_MATH = f"{{{MATHML_NS}}}math"
_CITATIONS = {b"PubmedArticle", b"PubmedBookArticle", b"MedlineCitation"}
_SETS = {b"PubmedArticleSet", b"MedlineCitationSet", b"PubmedBookArticleSet"}
_NAME = re.compile(rb"<([A-Za-z_][\w.:-]*)")
_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_NAME_END = b" \t\r\n>/"


@dataclass
class PubmedRecord:
    """One citation: PMID, title, abstract (labelled sections as `## Label`), and descriptive fields."""

    pmid: str
    title: str
    abstract: str
    journal: str | None = None
    year: int | None = None
    mesh: list[str] = field(default_factory=list)
    publication_types: list[str] = field(default_factory=list)
    doi: str | None = None
    pmcid: str | None = None
    language: str | None = None
    copyright: str | None = None
    other_abstracts: int = 0
    unresolved_entities: dict[str, int] = field(default_factory=dict)  # undeclared, dropped from the text

    @property
    def text(self) -> str:
        """Title and abstract as one document."""
        return "\n\n".join(part for part in (f"# {self.title}" if self.title else "", self.abstract) if part)

    @property
    def meta(self) -> dict[str, object]:
        """The record's metadata for the `meta` column (empty values left out)."""
        fields = {
            "pmid": self.pmid,
            "journal": self.journal,
            "year": self.year,
            "mesh": self.mesh,
            "publication_types": self.publication_types,
            "doi": self.doi,
            "pmcid": self.pmcid,
            "language": self.language,
            "copyright": self.copyright,
            "other_abstracts": self.other_abstracts,
            "unresolved_entities": self.unresolved_entities,
        }
        return {k: v for k, v in fields.items() if v}


@dataclass
class Deleted:
    """PMIDs that an update file's `<DeleteCitation>` removes."""

    pmids: list[str]


@dataclass
class NoPmid:
    """A citation without a PMID (cannot be identified): its position among the file's elements, from 1."""

    position: int


@dataclass
class Broken:
    """An element that could not be read (a damaged or too large citation, or not a citation at all): its
    position among the file's elements (from 1), its PMID when its bytes name one, and why."""

    position: int
    pmid: str | None
    reason: str
    detail: str


def _broken(position: int, data: bytes, reason: str, detail: str) -> Broken:
    pmid = _PMID.search(data)
    return Broken(position, pmid.group(1).decode() if pmid else None, reason, f"element {position}: {detail}")


def iter_pubmed(
    path: str | os.PathLike, *, max_citation_bytes: int = MAX_CITATION_BYTES
) -> Iterator[PubmedRecord | Deleted | NoPmid | Broken]:
    """Citations and deletions of a PubMed XML file (`.xml` or `.xml.gz`), in file order, streamed."""
    read = position = 0
    try:
        with _open(path) as stream:
            splitter = _Splitter(stream, max_citation_bytes)
            for kind, tag, data in splitter:
                position += 1
                read += tag in _CITATIONS
                if kind == "element":
                    yield _item(data, splitter, position)
                elif kind == "too_large":
                    detail = f"<{tag.decode()}> of {splitter.skipped_bytes} bytes > {max_citation_bytes}"
                    yield _broken(position, data, "pubmed_too_large", detail)
                elif kind == "cut":
                    detail = f"<{tag.decode()}> is cut short: it starts again before it ends"
                    yield _broken(position, data, "xml_broken", detail)
    except (EOFError, zlib.error) as exc:
        if not read and isinstance(exc, zlib.error):
            raise Rejection("xml_broken", f"not a gzip file, or damaged from the start: {exc}") from None
        raise Rejection("pubmed_truncated", f"file ends early after {read} citations: {exc}") from None
    except OSError as exc:
        raise Rejection("xml_broken", f"cannot read: {exc}") from None
    except _Truncated as exc:
        raise Rejection("pubmed_truncated", f"{exc} after {read} complete citations") from None


def iter_pmids(
    path: str | os.PathLike, *, max_citation_bytes: int = MAX_CITATION_BYTES
) -> Iterator[tuple[bool, str]]:
    """(deleted?, PMID) of each citation and deletion of a file, found on the bytes without parsing (a tenth
    of the cost of iter_pubmed); stops quietly where the file is damaged."""
    try:
        with _open(path) as stream:
            for _, tag, data in _Splitter(stream, max_citation_bytes):
                if tag == b"DeleteCitation":
                    for match in _PMID.finditer(data):
                        yield True, match.group(1).decode()
                elif tag in _CITATIONS:
                    match = _PMID.search(data)
                    if match:
                        yield False, match.group(1).decode()
    except (EOFError, zlib.error, OSError, Rejection, _Truncated):
        return


def _open(path: str | os.PathLike):
    name = os.fspath(path)
    return _Gunzip(open(name, "rb")) if name.endswith(".gz") else open(name, "rb")


class _Gunzip:
    """A gzip stream that hands over every byte before a cut, then raises EOFError (gzip.GzipFile drops the
    bytes decompressed in the read that meets the cut); members one after another are read as one stream."""

    def __init__(self, raw):
        self.raw = raw
        self.inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.pending = b""
        self.in_member = False

    def read(self, size: int) -> bytes:
        while True:
            if self.pending:
                self.in_member = True
                out = self.inflate.decompress(self.pending, size)
                self.pending = self.inflate.unconsumed_tail
                if self.inflate.eof:
                    rest = self.inflate.unused_data + self.pending
                    self.inflate, self.in_member = zlib.decompressobj(16 + zlib.MAX_WBITS), False
                    self.pending = rest if rest.strip(b"\x00") else b""  # zero padding after the last member
                if out:
                    return out
                continue
            self.pending = self.raw.read(1 << 16)
            if not self.pending:
                if self.in_member:
                    raise EOFError("compressed file ended before the end-of-stream marker was reached")
                return b""

    def __enter__(self) -> _Gunzip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.raw.close()


class _Truncated(Exception):
    pass


def _item(data: bytes, splitter: _Splitter, position: int) -> PubmedRecord | Deleted | NoPmid | Broken:
    """One top-level element of the file, parsed on its own inside a copy of the file's root tag (so that
    namespaces and entities declared there still apply)."""
    try:
        root, unresolved = parse_xml(splitter.prolog + data + splitter.root_end)
    except Rejection as rejection:
        return _broken(position, data, rejection.reason, rejection.detail)
    element = root[0] if splitter.wrapped and len(root) else root
    try:
        return _citation(element, splitter, position, unresolved)
    except RecursionError:  # MathML nested some hundred levels deep
        return _broken(position, data, "xml_broken", "elements nested too deeply to read")


def _citation(
    element, splitter: _Splitter, position: int, unresolved
) -> PubmedRecord | Deleted | NoPmid | Broken:
    name = element.tag
    if name == "DeleteCitation":
        return Deleted([_text(p) for p in element.iter("PMID") if _text(p)])
    if name == "PubmedArticle":
        record = _record(element.find("MedlineCitation"), element)
    elif name == "MedlineCitation":
        record = _record(element, None)
    elif name == "PubmedBookArticle":
        record = _book_record(element)
    else:
        detail = f"element {position}: <{name}> in <{splitter.root_name}> is not a citation"
        return Broken(position, None, "xml_not_pubmed", detail)
    if record is None:
        return NoPmid(position)
    if unresolved:
        record.unresolved_entities = dict(sorted(unresolved.items()))
    return record


class _Splitter:
    """Splits a PubMed file into its top-level elements on the bytes: yields (kind, tag, bytes), kind one of
    element, too_large (bytes: the head only), cut (bytes: up to where the same tag starts again)."""

    def __init__(self, stream, max_bytes: int):
        self.stream = stream
        self.max_bytes = max_bytes
        self.buf = b""
        self.eof = False
        self.skipped_bytes = 0
        self.prolog = b""
        self.root_end = b""
        self.root_name = ""
        self.wrapped = True
        self._after = 0  # where the element just yielded ends

    def _fill(self) -> bool:
        if self.eof:
            return False
        data = self.stream.read(_BLOCK)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _find(self, needle: bytes, start: int) -> int:
        while True:
            i = self.buf.find(needle, start)
            if i >= 0:
                return i
            start = max(start, len(self.buf) - len(needle))
            if not self._fill():
                return -1

    def __iter__(self) -> Iterator[tuple[str, bytes, bytes]]:
        pos = self._prolog()
        if pos is None:
            return
        while True:
            if pos > _BLOCK:  # drop what has been read: the buffer holds one citation and a block or two
                self.buf, pos = self.buf[pos:], 0
            start = self._find(b"<", pos)
            if start < 0:
                raise _Truncated(f"file ends before </{self.root_name}>")
            if self.buf.startswith(b"</", start):
                return  # the root closes: the end of the file
            if self.buf.startswith((b"<!--", b"<?"), start):
                end = self._find(b"-->" if self.buf.startswith(b"<!--", start) else b"?>", start)
                if end < 0:
                    raise _Truncated("file ends inside a comment")
                pos = end + 2
                continue
            while len(self.buf) < start + 256 and self._fill():
                pass
            match = _NAME.match(self.buf, start)
            if match is None:
                pos = start + 1  # a stray "<": skip it
                continue
            tag = match.group(1)
            yield from self._element(tag, start)
            pos = self._after

    def _element(self, tag: bytes, start: int) -> Iterator[tuple[str, bytes, bytes]]:
        close, opening = b"</" + tag + b">", b"<" + tag
        head_end = self._find(b">", start)
        if head_end < 0:
            raise _Truncated(f"file ends inside <{tag.decode()}>")
        if self.buf[head_end - 1 : head_end] == b"/":  # an empty element
            self._after = head_end + 1
            yield "element", tag, self.buf[start : head_end + 1]
            return
        search = again_from = head_end
        while True:
            end = self.buf.find(close, search)
            again = self._next_open(opening, again_from, end if end >= 0 else len(self.buf))
            if again >= 0:
                self._after = again
                yield "cut", tag, self.buf[start:again]
                return
            if end >= 0:
                self._after = end + len(close)
                yield "element", tag, self.buf[start : self._after]
                return
            if len(self.buf) - start > self.max_bytes:
                yield "too_large", tag, self._skip(close, start)
                return
            search = max(head_end, len(self.buf) - len(close))
            again_from = max(head_end, len(self.buf) - len(opening) - 1)
            if not self._fill():
                raise _Truncated(f"file ends inside <{tag.decode()}>")

    def _next_open(self, opening: bytes, start: int, end: int) -> int:
        """Where the same tag opens again before `end` (a citation whose end tag was damaged), else -1."""
        i = self.buf.find(opening, start, end)
        while i >= 0:
            after = self.buf[i + len(opening) : i + len(opening) + 1]
            if after and after in _NAME_END:
                return i
            i = self.buf.find(opening, i + 1, end)
        return -1

    def _skip(self, close: bytes, start: int) -> bytes:
        """Skip a too-large element to its end, holding one block at a time; return its head."""
        head = self.buf[start : start + _HEAD]
        size = len(self.buf) - start
        keep = self.buf[-(len(close) - 1) :]  # the end tag may straddle two blocks
        self.buf = b""
        while self._fill():
            size += len(self.buf)
            data, self.buf = keep + self.buf, b""
            end = data.find(close)
            if end >= 0:
                self._after = end + len(close)
                self.skipped_bytes = size - (len(data) - self._after)
                self.buf = data
                return head
            keep = data[-(len(close) - 1) :]
        raise _Truncated("file ends inside a citation too large to read")

    def _prolog(self) -> int | None:
        """Read up to the root's start tag; keep what each citation needs to parse on its own."""
        self._fill()
        while len(self.buf) < 4096 and self._fill():
            pass
        if self.buf.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in self.buf[:64]:
            raise Rejection("xml_broken", "a UTF-16 file: convert it to UTF-8")
        pos = 3 if self.buf.startswith(b"\xef\xbb\xbf") else 0
        declaration = b""
        doctype = b""
        while True:
            start = self._find(b"<", pos)
            if start < 0:
                if not self.buf.strip():
                    raise Rejection("xml_broken", "empty file")
                raise Rejection("xml_broken", "no XML element in the file")
            if self.buf.startswith(b"<?", start):
                end = self._find(b"?>", start)
                if end < 0:
                    raise Rejection("xml_broken", "file ends inside its XML declaration")
                if self.buf.startswith(b"<?xml", start):
                    declaration = self.buf[start : end + 2]
                pos = end + 2
            elif self.buf.startswith(b"<!--", start):
                end = self._find(b"-->", start)
                if end < 0:
                    raise Rejection("xml_broken", "file ends inside a comment")
                pos = end + 3
            elif self.buf.startswith(b"<!DOCTYPE", start):
                end = self._doctype_end(start)
                doctype = self.buf[start:end]
                pos = end
            else:
                break
        match = _NAME.match(self.buf, start)
        head_end = self._find(b">", start)
        if match is None or head_end < 0:
            raise Rejection("xml_broken", "the root element is not well-formed")
        name = match.group(1)
        self.root_name = name.decode("utf-8", "replace")
        root_tag = self.buf[start : head_end + 1]
        encoding = _ENCODING.search(declaration)
        # libxml2 wants the encoding of each piece it parses; the rest of the declaration does not matter.
        prefix = b'<?xml version="1.0" encoding="' + encoding.group(1) + b'"?>' if encoding else b""
        if name in _SETS:
            if root_tag.endswith(b"/>"):
                return None  # an empty set
            self.prolog = prefix + doctype + root_tag
            self.root_end = b"</" + name + b">"
            return head_end + 1
        if name in _CITATIONS or name == b"DeleteCitation":
            self.prolog, self.root_end, self.wrapped = prefix + doctype, b"", False
            return start
        raise Rejection("xml_not_pubmed", _what_it_is(self.root_name))

    def _doctype_end(self, start: int) -> int:
        """The end of a DOCTYPE declaration, past its internal subset ([...]) if it has one."""
        close = self._find(b">", start)
        bracket = self.buf.find(b"[", start, close if close >= 0 else len(self.buf))
        if bracket >= 0:
            subset_end = self._find(b"]", bracket)
            close = self._find(b">", subset_end) if subset_end >= 0 else -1
        if close < 0:
            raise Rejection("xml_broken", "file ends inside its DOCTYPE")
        return close + 1


def _what_it_is(root: str) -> str:
    kinds = {
        "article": "a JATS article (read it with `curate pmc`)",
        "pmc-articleset": "a set of JATS articles from E-utilities (read it with `curate pmc`)",
        "html": "an HTML page (read it with `curate html`)",
        "eSearchResult": "an E-utilities search result (PMIDs only, no citations)",
        "eFetchResult": "an E-utilities error or empty result",
    }
    what = kinds.get(root, "not a PubMed or MEDLINE citation file")
    return f"root element is <{root}>: {what}"


# --------------------------------------------------------------------------------------------- records


def _text(el) -> str:
    """The text of an element on one line; MathML as linear text."""
    if el is None:
        return ""
    if not len(el):
        return collapse(el.text or "")
    if next(el.iter(_MATH), None) is None:
        return collapse(etree.tostring(el, method="text", encoding=str, with_tail=False))
    parts: list[str] = []
    _walk(el, parts)
    return collapse("".join(parts))


def _walk(el, parts: list[str]) -> None:
    if el.text:
        parts.append(el.text)
    for child in el:
        if child.tag == _MATH:
            parts.append(math_text(child))
        elif isinstance(child.tag, str):
            _walk(child, parts)
        if child.tail:
            parts.append(child.tail)


def _abstract(abstract) -> str:
    """An abstract's text: labelled parts as `## Label` sections."""
    parts = []
    if abstract is None:
        return ""
    for piece in abstract.iterchildren("AbstractText"):
        text = _text(piece)
        if not text:
            continue
        label = (piece.get("Label") or "").strip()
        # MEDLINE's capitals ("BACKGROUND") read as a sentence's; a label set in mixed case keeps its
        # acronyms ("Role of HIV testing").
        label = label.capitalize() if label.isupper() else label
        parts.append(f"## {label}\n\n{text}" if label else text)
    return "\n\n".join(parts)


def _record(citation, article) -> PubmedRecord | None:
    """A `<MedlineCitation>` (and its `<PubmedArticle>` where there is one) as a record; None without PMID."""
    if citation is None:
        return None
    pmid = _text(citation.find("PMID"))
    if not pmid:
        return None
    art = citation.find("Article")
    title = _text(art.find("ArticleTitle")) if art is not None else ""
    if not title and art is not None:
        title = _text(art.find("VernacularTitle"))
    abstract = art.find("Abstract") if art is not None else None
    journal = _text(art.find("Journal/Title")) if art is not None else ""
    if not journal:
        journal = _text(citation.find("MedlineJournalInfo/MedlineTA"))
    ids = {}
    if article is not None:
        ids = {el.get("IdType"): _text(el) for el in article.iterfind("PubmedData/ArticleIdList/ArticleId")}
    doi = ids.get("doi")
    if not doi and art is not None:
        doi = next((_text(e) for e in art.iterfind("ELocationID") if e.get("EIdType") == "doi"), None)
    pmcid = ids.get("pmc") or next(
        (_text(o) for o in citation.iterfind("OtherID") if _text(o).upper().startswith("PMC")), None
    )
    language = _text(art.find("Language")) if art is not None else ""
    copyright_info = _text(abstract.find("CopyrightInformation")) if abstract is not None else ""
    text, others = _abstract(abstract), citation.findall("OtherAbstract")
    if not text:
        # Older citations from partner databases (PIP, KIE, NASA, AIDS) hold their only English abstract in
        # <OtherAbstract>, whose Language is "eng" unless it says otherwise; translations stay out.
        for other in others:
            if (other.get("Language") or "eng").strip().lower() == "eng":
                text = _abstract(other)
                if text:
                    others = [o for o in others if o is not other]
                    break
    return PubmedRecord(
        pmid=pmid,
        title=title,
        abstract=text,
        journal=journal or None,
        year=_year(art),
        mesh=[_text(d) for d in citation.iterfind("MeshHeadingList/MeshHeading/DescriptorName")],
        publication_types=[
            _text(p) for p in citation.iterfind("Article/PublicationTypeList/PublicationType")
        ],
        doi=doi or None,
        pmcid=pmcid or None,
        language=language or None,
        copyright=copyright_info or None,
        other_abstracts=len(others),
    )


def _book_record(article) -> PubmedRecord | None:
    """One `<PubmedBookArticle>` (a book chapter or report, e.g. from NCBI Bookshelf) as a record."""
    book = article.find("BookDocument")
    pmid = _text(book.find("PMID")) if book is not None else ""
    if not pmid:
        return None
    title = _text(book.find("ArticleTitle")) or _text(book.find("Book/BookTitle"))
    year = _YEAR.search(_text(book.find("Book/PubDate/Year")) or _text(book.find("Book/PubDate/MedlineDate")))
    abstract = book.find("Abstract")
    return PubmedRecord(
        pmid=pmid,
        title=title,
        abstract=_abstract(abstract),
        journal=_text(book.find("Book/BookTitle")) or None,
        year=int(year.group(1)) if year else None,
        publication_types=[_text(p) for p in book.iterfind("PublicationType")],
        language=_text(book.find("Language")) or None,
        copyright=(_text(abstract.find("CopyrightInformation")) if abstract is not None else "") or None,
    )


def _year(art) -> int | None:
    """The issue year, else the year in its MedlineDate ("1998 Dec-1999 Jan"), else the article date."""
    if art is None:
        return None
    for path in (
        "Journal/JournalIssue/PubDate/Year",
        "Journal/JournalIssue/PubDate/MedlineDate",
        "ArticleDate/Year",
    ):
        match = _YEAR.search(_text(art.find(path)))
        if match:
            return int(match.group(1))
    return None
