"""A loopback HTTP server for fixture sites: `site/<HOST>/<PATH>` served as MIRROR/HOST/PATH.

URL -> file rule (tests/fixtures/sites/README contract): the path is percent-decoded; a path ending in "/"
gets "index.html"; a non-empty query is appended as "@" + the raw query with "/" as "%2F". Content-Type comes
from the extension, else from the first bytes. A missing file (or a path that would leave the site folder)
is a 404. ETag / Last-Modified are sent and conditional requests answered with 304. Every request is logged.
Tests may add `routes`: a raw path (with query) -> handler function, for fault cases.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from collections.abc import Callable
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".pdf": "application/pdf",
    ".json": "application/json",
    ".xml": "application/xml",
    ".txt": "text/plain",
}


def site_file(root: Path, raw_path: str) -> Path | None:
    """The file under root that a request path (with its raw query) maps to, or None when outside root."""
    path, _, query = raw_path.partition("?")
    name = unquote(path)
    if name.endswith("/"):
        name += "index.html"
    if query:
        name += "@" + query.replace("/", "%2F")
    target = (root / name.lstrip("/")).resolve()
    base = root.resolve()
    return target if target.is_relative_to(base) and target != base else None


def content_type(path: Path, body: bytes) -> str:
    """Content-Type by extension (before any @query), else sniffed from the first bytes."""
    stem = path.name.split("@", 1)[0]
    suffix = Path(stem).suffix.lower()
    if suffix in TYPES:
        return TYPES[suffix]
    head = body[:64].lstrip()
    if head.startswith(b"%PDF"):
        return "application/pdf"
    if head[:1] in (b"{", b"["):
        return "application/json"
    if head.startswith(b"<?xml"):
        return "application/xml"
    return "text/html; charset=utf-8"


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up (a size cap, a timeout, a closed connection) is no error worth a traceback."""

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class SiteServer:
    """`with SiteServer(site_dir) as server:` serves on http://127.0.0.1:PORT (server.url) in a thread."""

    def __init__(
        self, root: str | Path, routes: dict[str, Callable[[BaseHTTPRequestHandler], None]] | None = None
    ):
        self.root = Path(root)
        self.routes = dict(routes or {})
        self.log: list[tuple[str, int, dict[str, str]]] = []  # (raw path, status, request headers)
        self.arrivals: list[tuple[float, str]] = []  # (time.monotonic(), raw path) as each request arrives
        self.lock = threading.Lock()
        # For kill tests: after this many requests, further ones are held unanswered until close (counted as
        # they arrive, so that concurrent requests cannot slip past the limit).
        self.hold_after: int | None = None
        self.held: list[str] = []
        self.arrived = 0
        self._release = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def paths(self) -> list[str]:
        """The raw paths requested so far, in order."""
        with self.lock:
            return [p for p, _, _ in self.log]

    def __enter__(self) -> SiteServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet: the log list is the record
                pass

            def record(self, status: int) -> None:
                with server.lock:
                    server.log.append((self.path, status, {k.lower(): v for k, v in self.headers.items()}))

            def send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                """A complete response (used by routes too)."""
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.record(status)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                with server.lock:
                    server.arrivals.append((time.monotonic(), self.path))
                    server.arrived += 1
                    hold = server.hold_after is not None and server.arrived > server.hold_after
                    if hold:
                        server.held.append(self.path)
                if hold:
                    server._release.wait()
                    return
                try:
                    route = server.routes.get(self.path)
                    if route is not None:
                        route(self)
                        return
                    self.serve_file()
                except (BrokenPipeError, ConnectionResetError):
                    self.record(499)  # the client hung up (a size cap, a timeout)

            def serve_file(self) -> None:
                target = site_file(server.root, self.path)
                if target is None or not target.is_file():
                    self.send(404, b"not found", {"Content-Type": "text/plain"})
                    return
                body = target.read_bytes()
                etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
                modified = formatdate(target.stat().st_mtime, usegmt=True)
                if self.headers.get("If-None-Match") == etag:
                    self.send(304, b"", {"ETag": etag})
                    return
                headers = {
                    "Content-Type": content_type(target, body),
                    "ETag": etag,
                    "Last-Modified": modified,
                }
                self.send(200, body, headers)

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
