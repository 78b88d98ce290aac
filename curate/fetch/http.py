"""What a crawl asks for and what it gets back: the two values that pass between spiders and the fetcher.

At the bottom of the fetch package (no imports from curate): spiders build Requests and read Responses,
the fetcher turns one into the other, and neither needs to know the other's module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.I)


@dataclass(frozen=True)
class Request:
    """A URL a spider wants fetched, with its own label and state carried to the response."""

    url: str  # absolute http(s) URL on the real site
    kind: str = "page"  # the spider's own label: "listing", "article", "pdf", "api", ...
    meta: Mapping[str, Any] = field(default_factory=dict)  # carried to the Response (JSON-serialisable)


@dataclass
class Response:
    """What the fetcher got for a Request (url is the final real URL after redirects)."""

    url: str
    request: Request
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def content_type(self) -> str:
        """The mime type without parameters, lower case ('' when absent)."""
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    @property
    def charset(self) -> str | None:
        """The charset parameter of Content-Type, if any (as the server wrote it: it may name no codec)."""
        match = _CHARSET.search(self.headers.get("content-type", ""))
        return match.group(1) if match else None

    @property
    def is_pdf(self) -> bool:
        """A PDF by its bytes, whatever the type says (PDFs come as octet-stream, login pages as .pdf)."""
        return b"%PDF-" in self.body[:1024]
