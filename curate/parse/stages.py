"""Parse stages: raw files (PDF, saved HTML) in folders to records, one task per batch of files."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from curate.errors import ConfigError, MissingInput
from curate.parse.pdf.limits import PdfLimits, check_ocr_mode
from curate.progress import report_documents
from curate.schema import (
    ERROR_REASON,
    ParsedDoc,
    Rejection,
    clean_str,
    dumps_meta,
    records_table,
    with_drop,
)
from curate.stage import (
    DERIVED,
    Input,
    Stage,
    StageResult,
    Task,
    describe_error,
    require_source,
    short_hash,
)

_PDF_LIMITS = PdfLimits()


@dataclass
class DocumentRows:
    """Kept and rejected rows of one parse task, built up document by document."""

    stage: str
    kept: list[dict] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    def keep(self, row: dict, doc: ParsedDoc, meta: dict) -> None:
        self.kept.append(
            {**row, "text": clean_str(doc.text), "title": clean_str(doc.title), "meta": dumps_meta(meta)}
        )

    def drop(self, row: dict, reason: str, detail: str) -> None:
        self.dropped.append({**row, "text": row.get("text", "")})
        self.reasons.append(reason)
        self.details.append(detail)

    def result(self) -> StageResult:
        rejected = with_drop(records_table(self.dropped), self.stage, self.reasons, self.details)
        return StageResult(kept=records_table(self.kept), rejected=rejected)

    def __len__(self) -> int:
        return len(self.kept) + len(self.dropped)


@dataclass
class FileStage(Stage):
    """Base of stages whose inputs are files: each file is one document, kept, rejected or errored."""

    suffixes: ClassVar[tuple[str, ...]] = ()
    # The extension left out of ids, exact case (see file_keys); None: whichever of `suffixes` ends the name.
    id_suffix: ClassVar[str | None] = None
    source: str = ""
    licenses: dict[str, str | None] = field(default_factory=dict, metadata=DERIVED)  # source -> licence
    batch_size: int = 16

    def bind(self, catalog: Mapping[str, Any], inputs: list[Input]) -> None:
        """The licence of each source tag the inputs use (or the stage's own tag), from sources.yaml."""
        used = {item.source or self.source for item in inputs}
        self.licenses = {source: require_source(catalog, source).license for source in sorted(used)}

    def plan(self, inputs: list[Input]) -> list[Task]:
        found: dict[str, tuple[str, str, str]] = {}  # absolute path -> (source, input folder, path)
        for item in inputs:
            source = item.source or self.source
            if not source:
                raise ConfigError(f"stage {self.name!r}: no source tag for input {item.path}")
            root = Path(item.path)
            if root.is_file():
                members, folder = [root], root.parent
            elif root.is_dir():
                # Symlinks could point anywhere (outside the input, or in a loop): listed, then rejected.
                members = [
                    f
                    for f in sorted(root.rglob("*"))
                    if (f.is_symlink() or f.is_file()) and f.name.lower().endswith(self.suffixes)
                ]
                folder = root
            else:
                raise MissingInput(f"stage {self.name!r}: input not found: {root}")
            for f in members:
                # A file named twice (the same input twice, or a folder and a file in it) is parsed once.
                found.setdefault(os.path.abspath(f), (source, os.path.abspath(folder), str(f)))
        if not found:
            wanted = ", ".join(self.suffixes)
            raise MissingInput(f"stage {self.name!r}: no {wanted} files under {[i.path for i in inputs]}")
        keys = file_keys(list(found.values()), self._without_suffix)
        units = [(path, (source, key)) for (source, _, path), key in zip(found.values(), keys, strict=True)]
        return self.batch(units)

    def _without_suffix(self, key: str) -> str:
        if self.id_suffix is None:
            return strip_suffix(key, self.suffixes)
        suffix = self.id_suffix if key.endswith(self.id_suffix) else ""
        return key[: len(key) - len(suffix)] if suffix and len(key) > len(suffix) else key

    def batch(self, units: list[tuple[str, Any]]) -> list[Task]:
        """Consecutive (input path, payload item) units in tasks of batch_size, named from their paths."""
        tasks = []
        for start in range(0, len(units), self.batch_size):
            batch = units[start : start + self.batch_size]
            name = f"part-{start // self.batch_size:05d}-{short_hash(*[p for p, _ in batch])}"
            tasks.append(
                Task(name=name, inputs=tuple(p for p, _ in batch), payload=tuple(x for _, x in batch))
            )
        return tasks

    def count_in(self, task: Task) -> int:
        return len(task.inputs)

    def planned_documents(self, task: Task) -> int | None:
        # One document per file, unless a subclass counts otherwise (a tarball or a PubMed file holds many).
        return len(task.inputs) if type(self).count_in is FileStage.count_in else None

    def process(self, task: Task) -> StageResult:
        rows = DocumentRows(self.name)
        for path, (source, key) in zip(task.inputs, task.payload, strict=True):
            row = {
                "id": clean_str(f"{source}:{key}"),
                "text": "",
                "source": source,
                "url": Path(path).resolve().as_uri(),
                "license": self.licenses.get(source),
            }
            try:
                if Path(path).is_symlink():
                    raise Rejection("input_symlink", f"symbolic link to {os.readlink(path)!r}, not followed")
                doc = self.parse(Path(path))
            except Rejection as rejection:
                rows.drop(row, rejection.reason, clean_str(rejection.detail))
            except Exception as exc:  # noqa: BLE001 - one bad file must not fail its batch
                rows.drop(row, ERROR_REASON, clean_str(describe_error(exc)))
            else:
                rows.keep(row, doc, {"file": key, "bytes": Path(path).stat().st_size, **doc.meta})
            report_documents(1)
        return rows.result()

    def parse(self, path: Path) -> ParsedDoc:
        """Parse one file, raising Rejection for known bad input."""
        raise NotImplementedError


def strip_suffix(name: str, suffixes: tuple[str, ...]) -> str:
    """`name` less the longest of `suffixes` it ends with (any case); a bare suffix stays as it is."""
    lower = name.lower()
    suffix = max((s for s in suffixes if lower.endswith(s)), key=len, default="")
    return name[: len(name) - len(suffix)] if suffix and len(name) > len(suffix) else name


def file_keys(files: list[tuple[str, str, str]], strip: Callable[[str], str]) -> list[str]:
    """The id key of each (source, input folder, path): unique among files of one source, stable across runs.

    The key is the file's path relative to its input folder (the folder given, or a file's own folder), less
    what `strip` removes (the stage's usual extension: for pdf and html `.pdf` and `.html` in exact case, so
    that `a.html`, `a.htm`, `a.HTML` and `a.html.gz` are `a`, `a.htm`, `a.HTML` and `a.html.gz`). When one
    source has files from several input folders, the key starts with the folder's name (with as many parent
    folders as it takes to tell the folders apart): `curate pdf a b` gives `a/paper` and `b/paper`.
    """
    folders: dict[str, dict[str, None]] = {}
    for source, folder, _ in files:
        folders.setdefault(source, {})[folder] = None
    labels = {
        (s, f): label for s, found in folders.items() for f, label in _folder_labels(list(found)).items()
    }
    full = []
    for source, folder, path in files:
        relative = Path(os.path.relpath(path, folder)).as_posix()
        label = labels[source, folder]
        full.append(f"{label}/{relative}" if label else relative)
    taken = {(source, key) for (source, _, _), key in zip(files, full, strict=True)}
    keys = []
    for (source, _, _), key in zip(files, full, strict=True):
        short = strip(key)
        # `a.htm.html` keeps its suffix where `a.htm` is another file's key: keys never collide.
        keys.append(key if short != key and (source, short) in taken else short)
    seen: dict[tuple[str, str], str] = {}
    for (source, _, path), key in zip(files, keys, strict=True):
        other = seen.setdefault((source, key), path)
        if other != path:  # only folders nested in odd ways can get here
            raise ConfigError(
                f"{other} and {path} would both get the id {source}:{key}; give their folders "
                "distinct names or different source tags"
            )
    return keys


def _folder_labels(folders: list[str]) -> dict[str, str]:
    """Each folder's shortest trailing path that no other folder ends with; '' when there is one folder."""
    if len(folders) < 2:
        return dict.fromkeys(folders, "")
    parts = {f: Path(f).parts for f in folders}
    labels = {}
    for folder, mine in parts.items():
        for n in range(1, len(mine) + 1):
            tail = mine[-n:]
            if all(other[-n:] != tail for f, other in parts.items() if f != folder):
                break
        labels[folder] = "/".join(p.strip("/") for p in tail if p.strip("/")) or "root"
    return labels


@dataclass
class PdfStage(FileStage):
    """PDF files to records with PyMuPDF (OCR for pages without a usable text layer)."""

    step: ClassVar[str] = "pdf"
    suffixes: ClassVar[tuple[str, ...]] = (".pdf",)
    id_suffix: ClassVar[str] = ".pdf"
    source: str = "local-pdf"
    batch_size: int = 8
    max_pages: int = _PDF_LIMITS.max_pages
    max_seconds: float = _PDF_LIMITS.max_seconds
    max_memory_mb: int = _PDF_LIMITS.max_memory_mb
    max_bytes: int = _PDF_LIMITS.max_bytes  # larger files are refused before PyMuPDF opens them
    ocr: str = "auto"  # auto: only pages without a usable text layer; off: never; force: every page with ink
    ocr_page_seconds: float = _PDF_LIMITS.ocr_page_seconds
    ocr_languages: str = "eng"  # Tesseract models, "+"-joined ("eng+fra+deu"): more languages, slower
    # Parse in a sandboxed worker process: a looping or exploding PDF cannot take the worker.
    isolate: bool = True

    def __post_init__(self) -> None:
        check_ocr_mode(self.ocr)
        self.limits()  # a bad limit is a configuration error now, not one per file later

    def limits(self) -> PdfLimits:
        """The stage's limits as the parser takes them."""
        return PdfLimits(
            max_pages=self.max_pages,
            max_bytes=self.max_bytes,
            max_seconds=self.max_seconds,
            max_memory_mb=self.max_memory_mb,
            ocr_page_seconds=self.ocr_page_seconds,
        )

    def parse(self, path: Path) -> ParsedDoc:
        from curate.parse.pdf import parse_pdf, parse_pdf_isolated

        limits = self.limits()
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise Rejection("pdf_too_large", f"{size} bytes > max_bytes={limits.max_bytes}")
        parse = parse_pdf_isolated if self.isolate else parse_pdf
        return parse(path, limits, ocr=self.ocr, ocr_languages=self.ocr_languages)


@dataclass
class HtmlStage(FileStage):
    """Saved HTML pages (.html, .htm, .html.gz) to records with trafilatura."""

    step: ClassVar[str] = "html"
    suffixes: ClassVar[tuple[str, ...]] = (".html", ".htm", ".html.gz", ".htm.gz")
    id_suffix: ClassVar[str] = ".html"
    source: str = "local-html"
    batch_size: int = 64
    max_bytes: int = 50_000_000

    def parse(self, path: Path) -> ParsedDoc:
        from curate.parse.html import extract_html, read_html_file

        raw = read_html_file(path, max_bytes=self.max_bytes)
        return extract_html(raw, url=None, max_bytes=self.max_bytes)
