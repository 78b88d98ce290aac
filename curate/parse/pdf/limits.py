"""The limits every way of parsing a PDF honours, in one place."""

from __future__ import annotations

from dataclasses import dataclass

OCR_MODES = ("auto", "off", "force")


@dataclass(frozen=True, slots=True)
class PdfLimits:
    """How much one PDF may take: pages, bytes, seconds and memory.

    `max_seconds` bounds reading the text layer; each page sent to OCR adds up to `ocr_page_seconds` to that
    budget (OCR is ~100x slower than the text layer, and only scanned pages need it). `max_memory_mb` is the
    address-space limit of the sandboxed worker (it has no effect in-process).
    """

    max_pages: int = 2000
    max_bytes: int = 500_000_000  # larger files are refused before PyMuPDF opens them
    max_seconds: float = 120.0
    max_memory_mb: int = 4096
    ocr_page_seconds: float = 60.0

    def __post_init__(self) -> None:
        for name in ("max_pages", "max_bytes", "max_memory_mb"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        for name in ("max_seconds", "ocr_page_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, not {getattr(self, name)}")


def check_ocr_mode(mode: str) -> str:
    """The OCR mode if it is one of auto, off, force; else ValueError naming them."""
    if mode not in OCR_MODES:
        raise ValueError(f"ocr must be one of {', '.join(OCR_MODES)}, not {mode!r}")
    return mode
