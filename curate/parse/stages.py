"""Parse stages: raw files (PDF, saved HTML) in folders to records, one task per batch of files."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from curate.parse.pdf.limits import PdfLimits, check_ocr_mode
from curate.schema import (
    ERROR_REASON,
    ParsedDoc,
    Rejection,
    clean_str,
    dumps_meta,
    records_table,
    with_drop,
)
from curate.stage import Input, Stage, StageResult, Task, describe_error, short_hash

_PDF_LIMITS = PdfLimits()


@dataclass
class FileStage(Stage):
    """Base of stages whose inputs are files: each file is one document, kept, rejected or errored."""

    suffixes: ClassVar[tuple[str, ...]] = ()
    source: str = ""
    licenses: dict[str, str | None] = field(default_factory=dict)
    batch_size: int = 16

    def plan(self, inputs: list[Input]) -> list[Task]:
        files: list[tuple[str, str, str]] = []  # (path, source, id key)
        for item in inputs:
            source = item.source or self.source
            if not source:
                raise ValueError(f"stage {self.name!r}: no source tag for input {item.path}")
            root = Path(item.path)
            if root.is_file():
                files.append((str(root), source, _strip_suffix(root.name, self.suffixes)))
                continue
            if not root.is_dir():
                raise FileNotFoundError(f"stage {self.name!r}: input not found: {root}")
            for f in sorted(root.rglob("*")):
                # Symlinks could point anywhere (outside the input, or in a loop): listed, then rejected.
                if (f.is_symlink() or f.is_file()) and f.name.lower().endswith(self.suffixes):
                    key = _strip_suffix(f.relative_to(root).as_posix(), self.suffixes)
                    files.append((str(f), source, key))
        if not files:
            wanted = ", ".join(self.suffixes)
            raise FileNotFoundError(
                f"stage {self.name!r}: no {wanted} files under {[i.path for i in inputs]}"
            )
        return self.batch([(path, (source, key)) for path, source, key in files])

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

    def process(self, task: Task) -> StageResult:
        kept, dropped, reasons, details = [], [], [], []
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
                reasons.append(rejection.reason)
                details.append(clean_str(rejection.detail))
                dropped.append(row)
                continue
            except Exception as exc:  # noqa: BLE001 - one bad file must not fail its batch
                reasons.append(ERROR_REASON)
                details.append(clean_str(describe_error(exc)))
                dropped.append(row)
                continue
            meta = {"file": key, "bytes": Path(path).stat().st_size, **doc.meta}
            kept.append(
                {**row, "text": clean_str(doc.text), "title": clean_str(doc.title), "meta": dumps_meta(meta)}
            )
        rejected = with_drop(records_table(dropped), self.name, reasons, details)
        return StageResult(kept=records_table(kept), rejected=rejected)

    def parse(self, path: Path) -> ParsedDoc:
        """Parse one file, raising Rejection for known bad input."""
        raise NotImplementedError


def _strip_suffix(name: str, suffixes: tuple[str, ...]) -> str:
    lower = name.lower()
    for suffix in sorted(suffixes, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


@dataclass
class PdfStage(FileStage):
    """PDF files to records with PyMuPDF (OCR for pages without a usable text layer)."""

    step: ClassVar[str] = "pdf"
    suffixes: ClassVar[tuple[str, ...]] = (".pdf",)
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
    source: str = "local-html"
    batch_size: int = 64
    max_bytes: int = 50_000_000

    def parse(self, path: Path) -> ParsedDoc:
        from curate.parse.html import extract_html, read_html_file

        raw = read_html_file(path, max_bytes=self.max_bytes)
        return extract_html(raw, url=None, max_bytes=self.max_bytes)
