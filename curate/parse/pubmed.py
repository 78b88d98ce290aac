"""PubMed baseline/update XML (`pubmed*.xml.gz`) to one record per citation, streamed.

The file is read with `iterparse` and every `<PubmedArticle>` is cleared once read, so memory stays bounded
whatever the file's size. `<DeleteCitation>` PMIDs (update files) are reported so that a later step can
remove those citations. A file that ends early (truncated gzip, cut XML) yields what it read, then raises
`Rejection("pubmed_truncated")`; XML that is broken before that raises `Rejection("xml_broken")`.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from lxml import etree

from curate.schema import Rejection

_SPACES = re.compile(r"\s+")
_YEAR = re.compile(r"\b(1[89]\d\d|20\d\d)\b")


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
        }
        return {k: v for k, v in fields.items() if v}


@dataclass
class Deleted:
    """PMIDs that an update file's `<DeleteCitation>` removes."""

    pmids: list[str]


@dataclass
class NoPmid:
    """A citation without a PMID (cannot be identified): its position in the file, counting from 1."""

    position: int


def iter_pubmed(path: str | os.PathLike) -> Iterator[PubmedRecord | Deleted | NoPmid]:
    """Citations and deletions of a PubMed XML file (`.xml` or `.xml.gz`), in file order, streamed."""
    name = os.fspath(path)
    opener = gzip.open if name.endswith(".gz") else open
    read = 0
    try:
        with opener(name, "rb") as stream:
            events = etree.iterparse(
                stream,
                events=("end",),
                tag=("PubmedArticle", "DeleteCitation", "PubmedBookArticle"),
                resolve_entities=False,
                no_network=True,
                load_dtd=False,
                huge_tree=True,
            )
            for _, element in events:
                if element.tag == "DeleteCitation":
                    pmids = [_text(p) for p in element.iter("PMID") if _text(p)]
                    yield Deleted(pmids)
                else:
                    record = _record(element) if element.tag == "PubmedArticle" else _book_record(element)
                    read += 1
                    yield record if record is not None else NoPmid(read)
                # Done with it: drop it and the siblings before it, so memory does not grow with the file.
                element.clear()
                while element.getprevious() is not None:
                    del element.getparent()[0]
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise Rejection("pubmed_truncated", f"file ends early after {read} citations: {exc}") from None
    except etree.XMLSyntaxError as exc:
        message = _SPACES.sub(" ", str(exc))[:200]
        # lxml reports a stream that stops mid-document as premature end of data / unclosed tags.
        if read and ("end of data" in message.lower() or "premature" in message.lower()):
            raise Rejection("pubmed_truncated", f"XML ends early after {read} citations: {message}") from None
        raise Rejection("xml_broken", f"malformed XML after {read} citations: {message}") from None
    except OSError as exc:
        raise Rejection("xml_broken", f"cannot read: {exc}") from None


def _text(el) -> str:
    return _SPACES.sub(" ", "".join(el.itertext())).strip() if el is not None else ""


def _record(article) -> PubmedRecord | None:
    """One `<PubmedArticle>` as a record; None when it has no PMID."""
    citation = article.find("MedlineCitation")
    if citation is None:
        return None
    pmid = _text(citation.find("PMID"))
    if not pmid:
        return None
    art = citation.find("Article")
    title = _text(art.find("ArticleTitle")) if art is not None else ""
    if not title and art is not None:
        title = _text(art.find("VernacularTitle"))
    parts = []
    abstract = art.find("Abstract") if art is not None else None
    if abstract is not None:
        for piece in abstract.findall("AbstractText"):
            text = _text(piece)
            if not text:
                continue
            label = piece.get("Label")
            parts.append(f"## {label.strip().capitalize()}\n\n{text}" if label else text)
    journal = _text(art.find("Journal/Title")) if art is not None else ""
    if not journal:
        journal = _text(citation.find("MedlineJournalInfo/MedlineTA"))
    ids = {el.get("IdType"): _text(el) for el in article.iterfind("PubmedData/ArticleIdList/ArticleId")}
    language = _text(art.find("Language")) if art is not None else ""
    return PubmedRecord(
        pmid=pmid,
        title=title,
        abstract="\n\n".join(parts),
        journal=journal or None,
        year=_year(art),
        mesh=[_text(d) for d in citation.iterfind("MeshHeadingList/MeshHeading/DescriptorName")],
        publication_types=[
            _text(p) for p in citation.iterfind("Article/PublicationTypeList/PublicationType")
        ],
        doi=ids.get("doi") or None,
        pmcid=ids.get("pmc") or None,
        language=language or None,
    )


def _book_record(article) -> PubmedRecord | None:
    """One `<PubmedBookArticle>` (a book chapter or report, e.g. from NCBI Bookshelf) as a record."""
    book = article.find("BookDocument")
    pmid = _text(book.find("PMID")) if book is not None else ""
    if not pmid:
        return None
    title = _text(book.find("ArticleTitle")) or _text(book.find("Book/BookTitle"))
    parts = []
    for piece in book.iterfind("Abstract/AbstractText"):
        text, label = _text(piece), piece.get("Label")
        if text:
            parts.append(f"## {label.strip().capitalize()}\n\n{text}" if label else text)
    year = _YEAR.search(_text(book.find("Book/PubDate")))
    return PubmedRecord(
        pmid=pmid,
        title=title,
        abstract="\n\n".join(parts),
        journal=_text(book.find("Book/BookTitle")) or None,
        year=int(year.group(1)) if year else None,
        publication_types=[_text(p) for p in book.iterfind("PublicationType")],
        language=_text(book.find("Language")) or None,
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
