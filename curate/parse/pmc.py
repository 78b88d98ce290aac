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

from curate.schema import ParsedDoc, Rejection

XML_SUFFIXES = (".nxml", ".xml")
PDF_SUFFIX = ".pdf"
MAX_MEMBER_BYTES = 200_000_000  # larger files in a package are not articles (videos, data sets)


@dataclass
class PmcPackage:
    """One article's package: its name and the XML and PDF files it holds (name -> bytes)."""

    key: str
    xml: dict[str, bytes] = field(default_factory=dict)
    pdf: dict[str, bytes] = field(default_factory=dict)
    problem: Rejection | None = None  # set when the package could not be read completely


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


def read_dir(folder: str | os.PathLike) -> PmcPackage:
    """The package in one folder (files directly inside it)."""
    package = PmcPackage(key=os.path.basename(os.path.normpath(folder)))
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not os.path.isfile(path) or os.path.islink(path):
            continue
        _add(package, name, path=path)
    return package


def iter_tarball(path: str | os.PathLike) -> Iterator[PmcPackage]:
    """Packages of a PMC tarball, streamed; a damaged tarball ends with a package carrying the problem."""
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
                if not name.lower().endswith((*XML_SUFFIXES, PDF_SUFFIX)):
                    continue
                if member.size > MAX_MEMBER_BYTES:
                    continue
                handle = tar.extractfile(member)
                if handle is not None:
                    _add(current, name, data=handle.read())
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        problem = Rejection("pmc_truncated", f"tarball ends early or is damaged: {exc}")
        if current is None:
            current = PmcPackage(key=PurePosixPath(os.fspath(path)).name)
        current.problem = problem
    if current is not None:
        yield current


def _add(package: PmcPackage, name: str, *, path: str | None = None, data: bytes | None = None) -> None:
    lower = name.lower()
    if lower.endswith(XML_SUFFIXES):
        target = package.xml
    elif lower.endswith(PDF_SUFFIX):
        target = package.pdf
    else:
        return
    if data is None:
        assert path is not None
        if os.path.getsize(path) > MAX_MEMBER_BYTES:
            return
        with open(path, "rb") as f:
            data = f.read()
    target[name] = data


def parse_package(package: PmcPackage, *, max_pages: int = 2000, **jats_options: bool) -> ParsedDoc:
    """The article of a package: from its XML when there is one, else from its PDF; Rejection otherwise."""
    from curate.parse.jats import parse_jats

    if package.problem is not None and not package.xml and not package.pdf:
        raise package.problem
    if package.xml:
        # Prefer .nxml (PMC's article file); other .xml files in a package can be supplements.
        name = sorted(package.xml, key=lambda n: (not n.lower().endswith(".nxml"), -len(package.xml[n])))[0]
        doc = parse_jats(package.xml[name], **jats_options)
        doc.meta.update({"package": package.key, "from": name})
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
            doc = parse_pdf_isolated(tmp.name, max_pages=max_pages)
        doc.meta.update({"package": package.key, "from": name, "format": "pdf"})
        return doc
    raise Rejection("pmc_no_article", "the package holds no .nxml/.xml or .pdf file")
