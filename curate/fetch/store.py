"""What a crawl keeps between runs: a WARC archive of every exchange, and a sqlite file with the frontier
and the cache (which URL's response lies where in the archive, with its validators).

A crawl has a generation number. A cache entry fetched in the current generation is replayed from the
archive without touching the network (--resume); one from an earlier generation is re-checked with a
conditional request (ETag / Last-Modified) and replayed when the server answers 304.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from curate.errors import FolderBusy

STATE_DB = "state.sqlite"
LOCK_FILE = "lock"
WARC_DIR = "warc"
_SEGMENT = re.compile(r"^(\d{5})\.warc\.gz$")
# Headers that describe the bytes on the wire, not the decoded body the archive stores.
_WIRE_HEADERS = {"content-encoding", "transfer-encoding", "content-length"}
F = TypeVar("F", bound=Callable[..., Any])


class CrawlStateError(RuntimeError):
    """The crawl state folder cannot be written (full, read-only, gone): the crawl stops, naming it."""


def _state_error(folder: Path, exc: BaseException) -> CrawlStateError:
    full = getattr(exc, "errno", None) == errno.ENOSPC or "disk is full" in str(exc)
    what = "no space left in" if full else "cannot write"
    return CrawlStateError(
        f"{what} the crawl state folder {folder} ({exc}): "
        + ("free some space there" if full else "fix it")
        + " or name another folder with --state (`state:`), and rerun with --resume"
    )


def _writes_state(method: F) -> F:
    """Turn a failed write of the crawl state (OSError, sqlite error) into a CrawlStateError that names
    the folder: the runner would otherwise blame the stage's output folder, and the crawler one page."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (OSError, sqlite3.Error) as exc:
            raise _state_error(self.state_folder, exc) from exc

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class CacheEntry:
    """Where the last good response to a URL lies in the archive, with what a conditional request needs."""

    url: str
    status: int
    headers: dict[str, str]
    warc: str
    offset: int
    etag: str | None
    last_modified: str | None
    generation: int


@dataclass(frozen=True)
class FrontierRow:
    """One request of the current crawl, in discovery order; reason is set when fetching it failed."""

    seq: int
    url: str
    kind: str
    meta: dict[str, Any]
    reason: str | None = None
    detail: str | None = None


class WarcArchive:
    """Appends request/response pairs to gzip WARC files; a new segment per run so a torn tail is never
    appended to. File names are numbers, never derived from URLs, and never reused: `after` is the last
    number ever used (the state remembers it), so a lost segment's name cannot come back with other
    records at the offsets the cache points at."""

    def __init__(self, folder: Path, after: int = 0):
        self.folder = folder
        self.state_folder = folder.parent
        folder.mkdir(parents=True, exist_ok=True)
        numbers = [int(m.group(1)) for p in folder.iterdir() if (m := _SEGMENT.match(p.name))]
        self.number = max(*numbers, after, 0) + 1
        self.name = f"{self.number:05d}.warc.gz"
        self._fh = None
        self._writer = None

    @_writes_state
    def write(
        self,
        url: str,
        request_headers: dict[str, str],
        status: int,
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[str, int]:
        """Archive one exchange; returns (file name, offset of the response record)."""
        if self._fh is None:
            self._fh = open(self.folder / self.name, "ab")  # noqa: SIM115 - kept open for the run
            self._writer = WARCWriter(self._fh, gzip=True)
        writer = self._writer
        offset = self._fh.tell()
        kept = [(k, v) for k, v in headers.items() if k not in _WIRE_HEADERS]
        kept.append(("content-length", str(len(body))))
        response = writer.create_warc_record(
            url,
            "response",
            payload=BytesIO(body),
            http_headers=StatusAndHeaders(f"{status} -", kept, protocol="HTTP/1.1"),
        )
        writer.write_record(response)
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        request = writer.create_warc_record(
            url,
            "request",
            payload=BytesIO(b""),
            http_headers=StatusAndHeaders(
                f"GET {target} HTTP/1.1", list(request_headers.items()), is_http_request=True
            ),
            warc_headers_dict={"WARC-Concurrent-To": response.rec_headers.get_header("WARC-Record-ID")},
        )
        writer.write_record(request)
        self._fh.flush()  # before the state says it is there: a killed run never points past the end
        return self.name, offset

    @_writes_state
    def close(self) -> None:
        if self._fh is not None:
            fh, self._fh = self._fh, None
            fh.close()

    def read(self, name: str, offset: int, url: str) -> tuple[int, dict[str, str], bytes]:
        """The status, headers and body of url's response record at offset in segment name; ValueError
        when the record there is another URL's."""
        if not _SEGMENT.match(name):
            raise ValueError(f"not a WARC segment name: {name!r}")
        with open(self.folder / name, "rb") as fh:
            fh.seek(offset)
            record = next(iter(ArchiveIterator(fh)))
            target = record.rec_headers.get_header("WARC-Target-URI")
            if record.rec_type != "response" or target != url:
                raise ValueError(f"{name}@{offset} holds a {record.rec_type} record of {target}, not {url}")
            status = int(record.http_headers.get_statuscode())
            headers = {k.lower(): v for k, v in record.http_headers.headers}
            return status, headers, record.content_stream().read()


class CrawlState:
    """The sqlite file of one source's crawl: generation, frontier and cache."""

    def __init__(self, folder: Path):
        self.folder = self.state_folder = folder
        try:
            self._open(folder)
        except (OSError, sqlite3.Error) as exc:
            raise _state_error(folder, exc) from exc

    def _open(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        # One crawl of a source at a time; the kernel drops the lock when its process dies (SIGKILL too).
        self._lock = open(folder / LOCK_FILE, "a")  # noqa: SIM115 - held for the crawl's lifetime
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise FolderBusy(f"another crawl is using {folder}; wait for it or stop it") from None
        self.db = sqlite3.connect(folder / STATE_DB, isolation_level=None)  # autocommit; see _tx
        self.db.executescript(
            """
            PRAGMA journal_mode=WAL;
            PRAGMA synchronous=NORMAL;  -- survives a killed process (like the WARC's flush), not power loss
            CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS frontier(
                seq INTEGER PRIMARY KEY, url TEXT UNIQUE NOT NULL, kind TEXT NOT NULL, meta TEXT NOT NULL,
                reason TEXT, detail TEXT);
            CREATE TABLE IF NOT EXISTS cache(
                url TEXT PRIMARY KEY, status INTEGER NOT NULL, headers TEXT NOT NULL,
                warc TEXT NOT NULL, offset INTEGER NOT NULL, etag TEXT, last_modified TEXT,
                generation INTEGER NOT NULL);
            """
        )
        self.archive = WarcArchive(folder / WARC_DIR, after=int(self.get_meta("segment") or 0))
        self.set_meta("segment", str(self.archive.number))

    def get_meta(self, key: str) -> str | None:
        """A value the crawl keeps about itself (generation, config fingerprint, last WARC segment)."""
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    @_writes_state
    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES(?, ?)", (key, value))

    # ------------------------------------------------------------------ generations
    @property
    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    @_writes_state
    def new_crawl(self) -> None:
        """Forget the frontier and start a new generation (the cache stays, for conditional requests)."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM frontier")
            self.db.execute(
                "INSERT OR REPLACE INTO meta VALUES('generation', ?)",
                (str(self.generation + 1),),
            )

    @_writes_state
    def clear_frontier(self) -> None:
        """Forget the frontier but stay in this generation (what it fetched is still replayed)."""
        self.db.execute("DELETE FROM frontier")

    # ------------------------------------------------------------------ frontier
    def frontier(self) -> list[FrontierRow]:
        rows = self.db.execute("SELECT seq, url, kind, meta, reason, detail FROM frontier ORDER BY seq")
        return [FrontierRow(s, u, k, json.loads(m), r, d) for s, u, k, m, r, d in rows]

    @_writes_state
    def add(self, url: str, kind: str, meta: dict[str, Any]) -> FrontierRow | None:
        """Append a request to the frontier; None when its URL is already there."""
        cur = self.db.execute(
            "INSERT OR IGNORE INTO frontier(url, kind, meta) VALUES(?, ?, ?)",
            (url, kind, json.dumps(meta, sort_keys=True, default=str)),
        )
        if cur.rowcount == 0:
            return None
        return FrontierRow(int(cur.lastrowid), url, kind, dict(meta))

    @_writes_state
    def fail(self, url: str, reason: str, detail: str) -> None:
        """Remember that fetching url failed in this crawl, so a resumed crawl does not fetch it again."""
        self.db.execute("UPDATE frontier SET reason=?, detail=? WHERE url=?", (reason, detail, url))

    # ------------------------------------------------------------------ cache
    def cached(self, url: str) -> CacheEntry | None:
        row = self.db.execute(
            "SELECT url, status, headers, warc, offset, etag, last_modified, generation "
            "FROM cache WHERE url=?",
            (url,),
        ).fetchone()
        if row is None:
            return None
        return CacheEntry(row[0], row[1], json.loads(row[2]), *row[3:])

    @_writes_state
    def forget(self, url: str) -> None:
        """Drop url's cache entry (its archived response is lost or unreadable)."""
        self.db.execute("DELETE FROM cache WHERE url=?", (url,))

    @_writes_state
    def remember(self, entry: CacheEntry) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO cache VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry.url,
                entry.status,
                json.dumps(entry.headers, sort_keys=True),
                entry.warc,
                entry.offset,
                entry.etag,
                entry.last_modified,
                entry.generation,
            ),
        )

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Writes as one transaction: a page's thousands of links cost one commit, and land all or none."""
        self._begin()
        try:
            yield
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # sqlite may have rolled back already (disk full)
                self.db.execute("ROLLBACK")
            raise
        self._commit()

    @_writes_state
    def _begin(self) -> None:
        self.db.execute("BEGIN")

    @_writes_state
    def _commit(self) -> None:
        self.db.execute("COMMIT")

    def close(self) -> None:
        try:
            self.archive.close()
        finally:
            self.db.close()
            self._lock.close()
