"""PMC open-access inputs (folders, or `*.tar.gz` of them) to one document per article.

Two layouts hold articles: the per-article package (`PMC13900/` with the article's `.nxml`, its PDF and its
figures) and the bulk package (`oa_comm_xml.PMC000xxxxxx.baseline.*.tar.gz`: thousands of `PMC*.xml` in one
folder). Both are read the same way: every `.nxml`/`.xml` file is read, and every article in it (one, or
many in an article set such as E-utilities' `pmc-articleset`) is a document; an XML file that holds no
article is one rejected row that says what it is. A folder's PDFs are parsed only when none of its XML files
holds an article (the largest PDF is the article, the others its supplements); beside one article they are
named in its meta, beside several they are rejected rows (`pmc_pdf_skipped`).

Tarballs are read as a stream (`r|gz`) and members are never written to disk; a member is read only when its
declared size fits the caps, so a decompression bomb costs time to skip, not memory. XML is parsed as it
streams: a bulk folder of any size holds one article in memory at a time (PDFs wait for their folder's end).
"""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from curate.parse.pdf.limits import PdfLimits
from curate.schema import ParsedDoc, Rejection

XML_SUFFIXES = (".nxml", ".xml")
PDF_SUFFIX = ".pdf"
MAX_MEMBER_BYTES = 200_000_000  # larger files in a package are not articles (videos, data sets)
MAX_PACKAGE_BYTES = 400_000_000  # the PDFs one folder may hold in memory until the folder ends


@dataclass
class PmcItem:
    """One document of a PMC input: an article (from JATS or a PDF), or the Rejection of one file.

    `key` is the id key when the article names no PMCID: the file's path in its input, without suffix, and
    `#n` for the n-th article of an article set. `where` is its URL (`file://...tar.gz#member` in a tarball);
    `position` is (XML file number in its input, article number in the file), as `pmcid_index` counts them.
    """

    key: str
    where: str
    doc: ParsedDoc | None = None
    problem: Rejection | None = None
    position: tuple[int, int] | None = None


@dataclass
class _File:
    group: str  # the package it belongs to: its top-level folder in a tarball ("" for a folder's own files)
    path: str  # its path inside the input (a tarball member name, or a file name)
    size: int
    read: Callable[[], bytes]
    article: bool = True  # an .nxml/.xml/.pdf file; other members only show that their package exists

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name


def is_tarball(name: str) -> bool:
    """Whether a path names a gzipped tar (`.tar.gz` / `.tgz`)."""
    return name.lower().endswith((".tar.gz", ".tgz"))


def is_xml(name: str) -> bool:
    return name.lower().endswith(XML_SUFFIXES)


def package_dirs(root: str | os.PathLike) -> list[str]:
    """Folders under root (root included) that hold an XML or PDF file directly, sorted."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        if any(f.lower().endswith((*XML_SUFFIXES, PDF_SUFFIX)) for f in files):
            found.append(folder)
    return sorted(found)


def _strip(name: str) -> str:
    lower = name.lower()
    for suffix in (".tar.gz", ".tgz", ".nxml", ".xml", ".pdf"):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _folder_files(folder: str) -> Iterator[_File]:
    """The article-like files directly in a folder, sorted by name; symlinks are never followed."""
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.islink(path) or not os.path.isfile(path) or not _is_article_file(name):
            continue
        yield _File("", name, os.path.getsize(path), lambda p=path: _read_file(p))


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _tar_files(tar: tarfile.TarFile) -> Iterator[_File]:
    for member in tar:
        if not member.isfile():
            continue
        parts = PurePosixPath(member.name).parts
        group = parts[0] if len(parts) > 1 else ""
        if not _is_article_file(parts[-1]):
            yield _File(group, member.name, member.size, lambda: b"", article=False)
            continue

        def read(member: tarfile.TarInfo = member) -> bytes:
            handle = tar.extractfile(member)
            return handle.read(member.size) if handle is not None else b""

        yield _File(group, member.name, member.size, read)


def iter_folder(
    folder: str | os.PathLike,
    key_prefix: str,
    read_xml: Callable[[bytes], list[ParsedDoc | Rejection]],
    *,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_package_bytes: int = MAX_PACKAGE_BYTES,
    max_pages: int = PdfLimits().max_pages,
) -> Iterator[PmcItem]:
    """The documents of the files directly in one folder; `key_prefix` is the folder's path in its input."""
    folder = os.fspath(folder)
    base = Path(folder).absolute()
    reader = _Documents(
        read_xml,
        key_prefix,
        lambda name: (base / name).as_uri(),
        max_member_bytes,
        max_package_bytes,
        max_pages,
        folder_input=True,
    )
    yield from reader.read(_folder_files(folder))


def iter_tarball(
    path: str | os.PathLike,
    key_prefix: str,
    read_xml: Callable[[bytes], list[ParsedDoc | Rejection]],
    *,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_package_bytes: int = MAX_PACKAGE_BYTES,
    max_pages: int = PdfLimits().max_pages,
) -> Iterator[PmcItem]:
    """The documents of a PMC tarball, streamed; a damaged tarball ends with a `pmc_truncated` item after
    the documents read before the damage."""
    where = os.fspath(path)
    uri = Path(where).absolute().as_uri()
    reader = _Documents(
        read_xml, key_prefix, lambda member: f"{uri}#{member}", max_member_bytes, max_package_bytes, max_pages
    )
    try:
        with tarfile.open(where, mode="r|gz") as tar:
            yield from reader.read(_tar_files(tar))
    except _DAMAGE as exc:  # the tarball cannot be opened, or fails as it closes
        if not reader.damage_reported:
            yield reader.damaged(exc)


_DAMAGE = (tarfile.TarError, EOFError, zlib.error, OSError)


@dataclass
class _Documents:
    """Reads a stream of files folder by folder (see the module docstring for the rules)."""

    read_xml: Callable[[bytes], list[ParsedDoc | Rejection]]
    key_prefix: str
    url: Callable[[str], str]  # the URL of a file, from its path in the input
    max_member: int
    max_package: int
    max_pages: int
    folder_input: bool = False
    damage_reported: bool = False

    def read(self, files: Iterable[_File]) -> Iterator[PmcItem]:
        package: _Package | None = None
        xml_number = 0
        damage = None
        try:
            for f in files:
                if package is not None and f.group != package.group:
                    yield from package.finish(self.max_pages)
                    package = None
                if package is None:
                    package = _Package(f.group, self)
                if not f.article:
                    continue
                if not is_xml(f.name):
                    package.add_pdf(f, self.max_member, self.max_package)
                    continue
                xml_number += 1
                yield from package.add_xml(f, xml_number, self.read_xml, self.max_member)
        except _DAMAGE as exc:
            damage = exc
        if package is not None:
            yield from package.finish(self.max_pages)
        if damage is not None:
            yield self.damaged(damage)

    def key(self, path: str) -> str:
        return "/".join(part for part in (self.key_prefix, _strip(path)) if part)

    def damaged(self, exc: BaseException) -> PmcItem:
        self.damage_reported = True
        if self.folder_input:
            problem = Rejection("pmc_unreadable", f"cannot read the folder's files: {exc}")
        else:
            problem = Rejection("pmc_truncated", f"tarball ends early or is damaged: {exc}")
        return PmcItem(f"{self.key_prefix}#damaged", self.url("").rstrip("#"), problem=problem)


@dataclass
class _Package:
    """One package (a tarball's top-level folder, or a folder) while its files stream past: its first
    article is held until the package shows whether it holds one article (its PDFs are then named in its
    meta) or many (a bulk folder: the articles stream on)."""

    group: str
    reader: _Documents
    held: list[PmcItem] = field(default_factory=list)
    article_files: int = 0
    files: int = 0
    pdfs: dict[str, bytes] = field(default_factory=dict)  # path -> bytes
    skipped: dict[str, str] = field(default_factory=dict)  # path -> why it was not read
    held_bytes: int = 0

    def add_xml(
        self, f: _File, number: int, read_xml: Callable[[bytes], list[ParsedDoc | Rejection]], max_member: int
    ) -> Iterator[PmcItem]:
        self.files += 1
        key, where = self.reader.key(f.path), self.reader.url(f.path)
        if f.size > max_member:
            problem = Rejection("pmc_too_large", f"{f.name}: {f.size} bytes > {max_member} per file")
            yield PmcItem(key, where, problem=problem)
            return
        data = f.read()
        try:
            results = read_xml(data)
        except Rejection as rejection:
            results = [rejection]
        items = []
        for n, result in enumerate(results):
            item_key = key if n == 0 else f"{key}#{n + 1}"
            if isinstance(result, Rejection):
                items.append(PmcItem(item_key, where, problem=result, position=(number, n)))
            else:
                result.meta["from"] = f.name
                items.append(PmcItem(item_key, where, doc=result, position=(number, n)))
        if not any(item.doc is not None for item in items):
            yield from items
            return
        self.article_files += 1
        if self.article_files == 1:
            self.held = items
            return
        yield from self.held
        self.held = []
        yield from items

    def add_pdf(self, f: _File, max_member: int, max_package: int) -> None:
        self.files += 1
        if f.size > max_member:
            self.skipped[f.path] = f"{f.name}: {f.size} bytes > {max_member} per file"
        elif self.held_bytes + f.size > max_package:
            total = self.held_bytes + f.size
            self.skipped[f.path] = f"{f.name}: the package's PDFs would hold {total} bytes > {max_package}"
        else:
            self.pdfs[f.path] = f.read()
            self.held_bytes += f.size

    def finish(self, max_pages: int) -> Iterator[PmcItem]:
        key, url = self.reader.key, self.reader.url
        if self.article_files == 1:
            for item in self.held:
                if item.doc is not None:
                    if self.pdfs:
                        item.doc.meta["pdf_skipped"] = sorted(PurePosixPath(p).name for p in self.pdfs)
                    if self.skipped:
                        item.doc.meta["skipped"] = list(self.skipped.values())
            yield from self.held
        elif self.article_files > 1:
            detail = "a PDF beside several JATS articles: the articles are read from their XML"
            for path in sorted(self.pdfs):
                yield PmcItem(key(path), url(path), problem=Rejection("pmc_pdf_skipped", detail))
            for path, why in self.skipped.items():
                yield PmcItem(key(path), url(path), problem=Rejection("pmc_too_large", why))
        elif self.pdfs:
            yield self._pdf_article(max_pages)
        elif self.skipped:
            path = next(iter(self.skipped))
            problem = Rejection("pmc_too_large", "; ".join(self.skipped.values())[:2000])
            yield PmcItem(self._package_key(path), url(path), problem=problem)
        elif not self.files:
            problem = Rejection("pmc_no_article", "the package holds no .nxml/.xml or .pdf file")
            yield PmcItem(self._package_key(self.group), url(self.group), problem=problem)

    def _package_key(self, path: str) -> str:
        """A package is named after its folder (after the file when it lies at the top of a tarball)."""
        if self.group:
            return self.reader.key(self.group)
        return self.reader.key_prefix if self.reader.folder_input else self.reader.key(path)

    def _pdf_article(self, max_pages: int) -> PmcItem:
        from curate.parse.pdf import parse_pdf_isolated

        # The article is the largest PDF; smaller ones are supplements.
        path = max(self.pdfs, key=lambda n: len(self.pdfs[n]))
        key, where = self._package_key(path), self.reader.url(path)
        try:
            with tempfile.NamedTemporaryFile(suffix=".pdf") as tmp:
                tmp.write(self.pdfs[path])
                tmp.flush()
                # A killable child process: a PDF on which MuPDF loops or explodes cannot take the worker.
                doc = parse_pdf_isolated(tmp.name, PdfLimits(max_pages=max_pages))
        except Rejection as rejection:
            return PmcItem(key, where, problem=rejection)
        doc.meta.update(
            {"from": PurePosixPath(path).name, "format": "pdf", "license": None, "redistributable": False}
        )
        others = sorted(PurePosixPath(n).name for n in self.pdfs if n != path)
        if others:
            doc.meta["pdf_supplements"] = others
        if self.skipped:
            doc.meta["skipped"] = list(self.skipped.values())
        return PmcItem(key, where, doc=doc)


def _is_article_file(name: str) -> bool:
    return name.lower().endswith((*XML_SUFFIXES, PDF_SUFFIX))


# --------------------------------------------------------------------------------------- the PMCID index

_TAG = re.compile(
    rb"<(?:[\w.-]+:)?(article-meta|article-id|article)(?=[\s>/])([^>]*)>|</(?:[\w.-]+:)?article-meta>"
)
_PMC_TYPE = re.compile(rb"""pub-id-type\s*=\s*["'](?:pmc|pmcid)["']""")


def scan_pmcids(data: bytes) -> list[str | None]:
    """The PMCID of each article in an XML file, as the JATS reader finds it (its first `pmc` article-id in
    `article-meta`), by a scan of the bytes: a tenth of the cost of parsing."""
    found: list[str | None] = []
    in_meta = False
    for match in _TAG.finditer(data):
        name = match.group(1)
        if name == b"article":
            found.append(None)
            in_meta = False
        elif name == b"article-meta":
            in_meta = bool(found) and found[-1] is None
        elif name is None:
            in_meta = False
        elif in_meta and found[-1] is None and _PMC_TYPE.search(match.group(2)):
            end = data.find(b"<", match.end())
            value = b" ".join(data[match.end() : end].split()).decode("utf-8", "replace")
            if value:
                found[-1] = value if value.upper().startswith("PMC") else f"PMC{value}"
    return found


def id_hash(value: str) -> int:
    """A stable 63-bit hash of an id (the same in every process, unlike hash())."""
    return (
        int.from_bytes(hashlib.blake2b(value.encode("utf-8", "surrogateescape"), digest_size=8).digest()) >> 1
    )


def pmcid_index(path: str, *, max_member_bytes: int = MAX_MEMBER_BYTES) -> list[tuple[int, int, int]]:
    """(XML file number, article number, PMCID hash) of every article with a PMCID in one input (a tarball or
    a folder's files), numbered as the reader numbers them; a damaged tarball's up to the damage."""
    out: list[tuple[int, int, int]] = []
    try:
        if is_tarball(path):
            with tarfile.open(path, mode="r|gz") as tar:
                _index_files(_tar_files(tar), max_member_bytes, out)
        else:
            _index_files(_folder_files(path), max_member_bytes, out)
    except _DAMAGE:
        pass  # the stage reports the damage; the index keeps what it read
    return out


def _index_files(files: Iterable[_File], max_member: int, out: list[tuple[int, int, int]]) -> None:
    number = 0
    for f in files:
        if not f.article or not is_xml(f.name):
            continue
        number += 1
        if f.size > max_member:
            continue
        for n, pmcid in enumerate(scan_pmcids(f.read())):
            if pmcid:
                out.append((number, n, id_hash(pmcid)))
