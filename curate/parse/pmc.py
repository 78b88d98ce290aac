"""PMC open-access packages (folders or `*.tar.gz` holding an article's NXML and/or PDF) to documents.

A package is a folder whose files include `*.nxml`/`*.xml` or `*.pdf`; in a tarball, the members under one
top-level folder. Tarballs are read as a stream (`r|gz`), one package at a time. When a package has both,
the XML wins and the PDF is not parsed (JATS is the publisher's own text: no layout to guess).
"""

from __future__ import annotations

import os
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from curate.parse.pdf.limits import PdfLimits
from curate.schema import ParsedDoc, Rejection

XML_SUFFIXES = (".nxml", ".xml")
PDF_SUFFIX = ".pdf"
MAX_MEMBER_BYTES = 200_000_000  # larger files in a package are not articles (videos, data sets)
MAX_PACKAGE_BYTES = 400_000_000  # what one package may hold in memory, all its article files together


@dataclass
class PmcPackage:
    """One article's package: its name and the XML and PDF files it holds (name -> bytes)."""

    key: str
    xml: dict[str, bytes] = field(default_factory=dict)
    pdf: dict[str, bytes] = field(default_factory=dict)
    problem: Rejection | None = None  # set when the package could not be read completely
    skipped: list[str] = field(default_factory=list)  # article-like files left unread, with why


def is_tarball(name: str) -> bool:
    """Whether a path names a gzipped tar (`.tar.gz` / `.tgz`)."""
    return name.lower().endswith((".tar.gz", ".tgz"))


def package_dirs(root: str | os.PathLike) -> list[str]:
    """Folders under root (root included) that hold an XML or PDF file directly, sorted."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        if any(f.lower().endswith((*XML_SUFFIXES, PDF_SUFFIX)) for f in files):
            found.append(folder)
    return sorted(found)


def read_dir(
    folder: str | os.PathLike,
    *,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_package_bytes: int = MAX_PACKAGE_BYTES,
) -> PmcPackage:
    """The package in one folder (files directly inside it)."""
    package = PmcPackage(key=os.path.basename(os.path.normpath(folder)))
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not os.path.isfile(path) or os.path.islink(path) or not _is_article_file(name):
            continue
        if _fits(package, name, os.path.getsize(path), max_member_bytes, max_package_bytes):
            with open(path, "rb") as f:
                _add(package, name, f.read())
    return package


def iter_tarball(
    path: str | os.PathLike,
    *,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_package_bytes: int = MAX_PACKAGE_BYTES,
) -> Iterator[PmcPackage]:
    """Packages of a PMC tarball, streamed; a damaged tarball ends with a package carrying the problem.

    Members are never written to disk (member names cannot traverse paths) and a member is read only when
    its declared size fits the caps, so a decompression bomb costs time to skip, not memory.
    """
    current: PmcPackage | None = None
    try:
        with tarfile.open(os.fspath(path), mode="r|gz") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                parts = PurePosixPath(member.name).parts
                key = parts[0] if len(parts) > 1 else PurePosixPath(member.name).stem
                if current is not None and key != current.key:
                    yield current
                    current = None
                if current is None:
                    current = PmcPackage(key=key)
                name = parts[-1]
                if not _is_article_file(name):
                    continue
                if not _fits(current, name, member.size, max_member_bytes, max_package_bytes):
                    continue
                handle = tar.extractfile(member)
                if handle is not None:
                    _add(current, name, handle.read(member.size))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        problem = Rejection("pmc_truncated", f"tarball ends early or is damaged: {exc}")
        if current is None:
            current = PmcPackage(key=PurePosixPath(os.fspath(path)).name)
        current.problem = problem
    if current is not None:
        yield current


def _is_article_file(name: str) -> bool:
    return name.lower().endswith((*XML_SUFFIXES, PDF_SUFFIX))


def _fits(package: PmcPackage, name: str, size: int, max_member: int, max_package: int) -> bool:
    """Whether a file of this size may be read into the package; records why not when it may not."""
    held = sum(map(len, package.xml.values())) + sum(map(len, package.pdf.values()))
    if size > max_member:
        package.skipped.append(f"{name}: {size} bytes > {max_member} per file")
    elif held + size > max_package:
        package.skipped.append(f"{name}: package would hold {held + size} bytes > {max_package}")
    else:
        return True
    return False


def _add(package: PmcPackage, name: str, data: bytes) -> None:
    target = package.xml if name.lower().endswith(XML_SUFFIXES) else package.pdf
    target[name] = data


def parse_package(
    package: PmcPackage, *, max_pages: int = PdfLimits().max_pages, **jats_options: bool
) -> ParsedDoc:
    """The article of a package: from its XML when there is one, else from its PDF; Rejection otherwise."""
    from curate.parse.jats import parse_jats

    if package.problem is not None and not package.xml and not package.pdf:
        raise package.problem
    if package.xml:
        # Prefer .nxml (PMC's article file); other .xml files in a package can be supplements.
        name = sorted(package.xml, key=lambda n: (not n.lower().endswith(".nxml"), -len(package.xml[n])))[0]
        doc = parse_jats(package.xml[name], **jats_options)
        doc.meta.update({"package": package.key, "from": name})
        if package.skipped:
            doc.meta["skipped"] = package.skipped
        if package.pdf:
            doc.meta["pdf_skipped"] = sorted(package.pdf)
        return doc
    if package.pdf:
        from curate.parse.pdf import parse_pdf_isolated

        # The article is the largest PDF; smaller ones are supplements.
        name = max(package.pdf, key=lambda n: len(package.pdf[n]))
        with tempfile.NamedTemporaryFile(suffix=".pdf") as tmp:
            tmp.write(package.pdf[name])
            tmp.flush()
            # A killable child process: a PDF on which MuPDF loops or explodes cannot take the worker.
            doc = parse_pdf_isolated(tmp.name, PdfLimits(max_pages=max_pages))
        doc.meta.update({"package": package.key, "from": name, "format": "pdf"})
        return doc
    if package.skipped:
        raise Rejection("pmc_too_large", "; ".join(package.skipped)[:2000])
    raise Rejection("pmc_no_article", "the package holds no .nxml/.xml or .pdf file")
