"""The one polite fetcher: robots.txt, per-host rate limit, retries with backoff and Retry-After, timeouts
(per read and per page, in wall-clock time), a streamed size cap, content-type checks, allowed domains and
ports hop by hop, refused private addresses, conditional requests, and every exchange archived as WARC.

`Fetcher.fetch(request)` returns a Response or raises curate.schema.Rejection with a `fetch_*` (or
`robots_*`) reason; it never raises anything else for a bad site. It knows nothing of sources or spiders:
a crawl gives it the allowed domains, its settings and the crawl state.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, fields, replace
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx2 as httpx
from protego import Protego

from curate import __version__
from curate.errors import ConfigError
from curate.fetch.http import Request, Response
from curate.fetch.store import CacheEntry, CrawlState
from curate.fetch.urls import canonical, check_url, is_ip_literal, refused_ip, resolve_location, to_mirror
from curate.schema import Rejection

log = logging.getLogger("curate.fetch")

CONTACT = "https://github.com/curate-medical/curate"
USER_AGENT = f"curate/{__version__} (medical corpus builder; +{CONTACT})"
REDIRECTS = (301, 302, 303, 307, 308)
RETRY_STATUSES = (429, 500, 502, 503, 504)
ROBOTS_MAX_BYTES = 500_000  # RFC 9309: crawlers must read at least 500 KiB
ROBOTS_REDIRECTS = 5  # RFC 9309: follow at least five
_WIDE_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")  # UTF-16 LE/BE, UTF-32 BE (LE starts FF FE)
_BINARY_MAGIC = (b"%PDF", b"PK\x03\x04", b"\x1f\x8b", b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"\x7fELF")
T = TypeVar("T")


@dataclass(frozen=True)
class FetchSettings:
    """Politeness and limits; sources.yaml sets them per source under `scrape:`."""

    rate_limit: float = 1.0  # requests per second per host (a robots.txt Crawl-delay may space them more)
    user_agent: str = USER_AGENT
    max_bytes: int = 20_000_000
    timeout: float = 30.0  # seconds without a byte from the server (per read)
    page_timeout: float = 120.0  # wall-clock seconds for one page: robots.txt, redirects, retries, body
    connect_timeout: float = 10.0
    retries: int = 3  # after the first attempt, on 429/5xx, timeouts and connection errors
    backoff: float = 1.0  # first wait; doubles per retry
    max_retry_wait: float = 60.0  # cap on any wait, Retry-After and Crawl-delay included
    max_redirects: int = 10
    concurrency: int = 4  # requests in flight per source
    allow_private: bool = False  # fetch loopback/private addresses (never needed on the real web)
    robots: bool = True

    @classmethod
    def keys(cls) -> set[str]:
        """The keys a source's `scrape:` block may set."""
        return {f.name for f in fields(cls)}

    @classmethod
    def from_block(cls, block: Mapping[str, Any], where: str) -> FetchSettings:
        """Settings from the politeness keys of a `scrape:` block (others are the spider's), each checked:
        a ConfigError names the key at fault."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            value = block.get(f.name)
            if value is None:
                continue
            kind, low = _KINDS[f.name]
            if not _valid(kind, low, value):
                want = {bool: "true or false", str: "a non-empty string"}.get(
                    kind, f"a {'whole ' if kind is int else ''}number {'> 0' if low is None else f'>= {low}'}"
                )
                raise ConfigError(f"{where}.{f.name}: must be {want}, got {value!r}")
            values[f.name] = kind(value)
        return cls(**values)


# Each setting's type and least value (None: above zero).
_KINDS: dict[str, tuple[type, Any]] = {
    "rate_limit": (float, None),
    "user_agent": (str, None),
    "max_bytes": (int, 1),
    "timeout": (float, None),
    "page_timeout": (float, None),
    "connect_timeout": (float, None),
    "retries": (int, 0),
    "backoff": (float, 0),
    "max_retry_wait": (float, 0),
    "max_redirects": (int, 0),
    "concurrency": (int, 1),
    "allow_private": (bool, None),
    "robots": (bool, None),
}


def _valid(kind: type, low: Any, value: Any) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is str:
        return isinstance(value, str) and bool(value.strip())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if kind is int and not float(value).is_integer():
        return False
    return value > 0 if low is None else value >= low


class Deadline:
    """The wall-clock budget of one page: robots.txt, every redirect and retry, headers and body. httpx's
    timeout is per read (a server sending a byte a second never trips it), so this one bounds the whole.
    The clock stops while the page waits for politeness (rate limit, Crawl-delay) or a retry's backoff."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds of the budget still unspent."""
        return self._end - time.monotonic()

    async def pause(self, seconds: float) -> None:
        """Sleep without spending the budget."""
        if seconds > 0:
            await asyncio.sleep(seconds)
            self._end += seconds

    async def run(self, step: Coroutine[Any, Any, T]) -> T:
        """Await one network step within what is left; Rejection `fetch_timeout` when the budget runs out."""
        left = self.left()
        if left <= 0:
            step.close()
            raise self.expired()
        try:
            return await asyncio.wait_for(step, left)
        except asyncio.TimeoutError:
            raise self.expired() from None

    def expired(self) -> Rejection:
        return Rejection("fetch_timeout", f"no complete answer within page_timeout={self.seconds:g} s")


class Fetcher:
    """Fetches one crawl's requests politely; use as `async with Fetcher(...) as f: await f.fetch(req)`."""

    def __init__(
        self,
        state: CrawlState,
        settings: FetchSettings,
        allowed_domains: tuple[str, ...],
        *,
        name: str = "fetch",
        mirror: str | None = None,
    ):
        self.state = state
        self.settings = settings
        self.allowed_domains = tuple(allowed_domains)
        self.name = name  # for log lines: the source being crawled
        self.mirror = mirror.rstrip("/") if mirror else None
        self.stats: dict[str, int] = {"network": 0, "replayed": 0, "not_modified": 0, "retries": 0}
        self._robots: dict[str, Protego] = {}
        self._robots_failed: dict[str, str] = {}  # host -> why its robots.txt could not be read
        self._robots_lock: dict[str, asyncio.Lock] = {}
        self._next_slot: dict[str, float] = {}
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Fetcher:
        s = self.settings
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(s.timeout, connect=s.connect_timeout),
            follow_redirects=False,  # every hop is checked here
            # One connection per request: bytes a server sends past its Content-Length would otherwise be
            # read as the answer to the next request on the connection, and archived under that URL.
            headers={"User-Agent": s.user_agent, "Accept-Encoding": "gzip, deflate", "Connection": "close"},
            trust_env=False,  # no proxies from the environment: the address checks must hold
            limits=httpx.Limits(max_connections=max(1, s.concurrency), max_keepalive_connections=0),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()

    # ------------------------------------------------------------------------------------------ public
    async def fetch(self, request: Request) -> Response:
        """The Response to a Request (redirects followed and checked), or raise Rejection; the whole of it
        within page_timeout."""
        deadline = Deadline(self.settings.page_timeout)
        url = canonical(request.url)
        seen = {url}
        for _ in range(self.settings.max_redirects + 1):
            check_url(url, self.allowed_domains)
            status, headers, body = await self._get(url, deadline)
            location = headers.get("location")
            if status in REDIRECTS and location:
                target = resolve_location(location, url, self.mirror)
                if target in seen:
                    raise Rejection("fetch_redirect_loop", f"{url} redirects back to {target}")
                seen.add(target)
                url = target
                continue
            if status != 200:
                raise Rejection("fetch_http_error", f"HTTP {status}")
            response = Response(url=url, request=request, status=status, headers=headers, body=body)
            _check_content(request.kind, response.content_type, body, response.charset)
            return response
        raise Rejection("fetch_too_many_redirects", f"more than {self.settings.max_redirects} redirects")

    # ------------------------------------------------------------------------------------------ one URL
    async def _get(
        self, url: str, deadline: Deadline, is_robots: bool = False
    ) -> tuple[int, dict[str, str], bytes]:
        """One URL through the cache: replayed when fetched in this crawl, else fetched (conditionally)."""
        entry = self.state.cached(url)
        generation = self.state.generation
        if entry is not None and entry.generation == generation:
            replayed = self._replay(entry)
            if replayed is not None:
                self.stats["replayed"] += 1
                return replayed
            entry = None  # lost from the archive: fetched again, unconditionally
        await self._check_address(url, deadline)
        if self.settings.robots and not is_robots:
            await self._check_robots(url, deadline)
        conditional = {}
        if entry is not None and entry.status == 200:
            if entry.etag:
                conditional["If-None-Match"] = entry.etag
            if entry.last_modified:
                conditional["If-Modified-Since"] = entry.last_modified
        cap = ROBOTS_MAX_BYTES if is_robots else self.settings.max_bytes
        fetched = await self._fetch_with_retries(url, conditional, cap, deadline, is_robots)
        status, headers, body, sent = fetched
        name, offset = self.state.archive.write(url, sent, status, headers, body)
        if status == 304 and entry is not None and conditional:
            replayed = self._replay(entry)
            if replayed is not None:
                self.stats["not_modified"] += 1
                self.state.remember(replace(entry, generation=generation))  # still valid in this crawl
                return replayed
            # Not modified, but our copy is lost from the archive: ask for the whole page.
            status, headers, body, sent = await self._fetch_with_retries(url, {}, cap, deadline, is_robots)
            name, offset = self.state.archive.write(url, sent, status, headers, body)
        if status == 304:  # no copy of ours to stand for: not a response
            raise Rejection("fetch_http_error", "HTTP 304 to a request without validators")
        self.state.remember(
            CacheEntry(
                url=url,
                status=status,
                headers=headers,
                warc=name,
                offset=offset,
                etag=headers.get("etag"),
                last_modified=headers.get("last-modified"),
                generation=generation,
            )
        )
        return status, headers, body

    def _replay(self, entry: CacheEntry) -> tuple[int, dict[str, str], bytes] | None:
        """The archived response of a cache entry; None (and the entry forgotten) when it cannot be read
        back as that URL's response: a lost or truncated segment, or another URL's record at that offset."""
        try:
            return self.state.archive.read(entry.warc, entry.offset, entry.url)
        except Exception as exc:  # noqa: BLE001 - any failure to read it back is a cache miss, never a crash
            log.warning("%s: archived %s unreadable (%s): fetching it again", self.name, entry.url, exc)
            self.state.forget(entry.url)
            return None

    async def _fetch_with_retries(
        self, url: str, extra: dict[str, str], cap: int, deadline: Deadline, truncate: bool = False
    ) -> tuple[int, dict[str, str], bytes, dict[str, str]]:
        s = self.settings
        host = urlsplit(url).netloc
        for attempt in range(s.retries + 1):
            await deadline.pause(self._turn(host))
            last = attempt == s.retries
            try:
                status, headers, body, sent = await deadline.run(self._stream(url, extra, cap, truncate))
            except httpx.DecodingError as exc:  # a corrupt gzip/deflate/br body: the same bytes next time
                detail = f"Content-Encoding not decodable: {exc}"[:300]
                raise Rejection("fetch_bad_encoding", detail) from None
            except httpx.TimeoutException as exc:
                if last:
                    raise Rejection("fetch_timeout", f"{type(exc).__name__}, {attempt + 1} tries") from None
                wait = self._backoff(attempt, None)
            except httpx.TransportError as exc:
                if last:
                    raise Rejection("fetch_connection", f"{type(exc).__name__}: {exc}"[:300]) from None
                wait = self._backoff(attempt, None)
            else:
                if status not in RETRY_STATUSES or last:
                    return status, headers, body, sent
                wait = self._backoff(attempt, headers.get("retry-after"))
            self.stats["retries"] += 1
            log.info("%s: retry %d of %s in %.2f s", self.name, attempt + 1, url, wait)
            await deadline.pause(wait)
        raise AssertionError("unreachable")

    async def _stream(
        self, url: str, extra: dict[str, str], cap: int, truncate: bool = False
    ) -> tuple[int, dict[str, str], bytes, dict[str, str]]:
        """GET url (through the mirror if any), reading at most cap bytes of the decoded body: a longer
        body is refused, or with truncate (robots.txt, RFC 9309) cut at cap."""
        assert self._client is not None, "use the Fetcher as an async context manager"
        wire = to_mirror(url, self.mirror) if self.mirror else url
        self.stats["network"] += 1
        async with self._client.stream("GET", wire, headers=extra) as response:
            headers = {k.lower(): v for k, v in response.headers.items()}
            sent = dict(response.request.headers)
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > cap and not truncate:
                raise Rejection("fetch_too_large", f"Content-Length {declared} > max_bytes={cap}")
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > cap:
                    if not truncate:
                        raise Rejection("fetch_too_large", f"body over max_bytes={cap}: stopped reading")
                    chunks.append(chunk[: len(chunk) - (size - cap)])
                    break
                chunks.append(chunk)
            return response.status_code, headers, b"".join(chunks), sent

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        s = self.settings
        wait = s.backoff * (2**attempt) * (1 + random.random() / 4)  # jitter spreads synchronised retries
        if retry_after:
            wait = max(wait, _retry_after_seconds(retry_after))
        return min(wait, s.max_retry_wait)

    def _turn(self, host: str) -> float:
        """Book the next request slot of a host; the seconds to wait for it. Slots are 1/rate_limit apart,
        or the robots.txt Crawl-delay if longer (capped at max_retry_wait)."""
        interval = 1.0 / self.settings.rate_limit
        robots = self._robots.get(host)
        if robots is not None:
            delay = robots.crawl_delay(self.settings.user_agent)
            if delay:
                interval = max(interval, min(float(delay), self.settings.max_retry_wait))
        now = time.monotonic()
        slot = max(now, self._next_slot.get(host, 0.0))
        self._next_slot[host] = slot + interval
        return slot - now

    # ------------------------------------------------------------------------------------------ checks
    async def _check_address(self, url: str, deadline: Deadline) -> None:
        """Refuse loopback, private and link-local hosts (unless allowed): the mirror is the one exception."""
        if self.settings.allow_private:
            return
        hostname = urlsplit(url).hostname or ""
        if is_ip_literal(hostname):
            if refused_ip(hostname):
                raise Rejection("fetch_address_refused", f"{hostname} is not a public address")
            return
        if self.mirror:
            return  # the real host is never contacted in mirror mode
        loop = asyncio.get_running_loop()
        try:
            infos = await deadline.run(loop.getaddrinfo(hostname, None, type=socket.SOCK_STREAM))
        except OSError as exc:
            raise Rejection("fetch_connection", f"cannot resolve {hostname}: {exc}") from None
        bad = sorted({info[4][0] for info in infos if refused_ip(info[4][0])})
        if bad:
            raise Rejection("fetch_address_refused", f"{hostname} resolves to {', '.join(bad)}")

    async def _check_robots(self, url: str, deadline: Deadline) -> None:
        scheme, host = urlsplit(url)[:2]
        lock = self._robots_lock.setdefault(host, asyncio.Lock())
        async with lock:
            if host not in self._robots and host not in self._robots_failed:
                await self._load_robots(host, f"{scheme}://{host}/robots.txt", deadline)
        failure = self._robots_failed.get(host)
        if failure is not None:
            raise Rejection("robots_unreachable", failure)
        if not self._robots[host].can_fetch(url, self.settings.user_agent):
            log.info("%s: robots.txt disallows %s", self.name, url)
            raise Rejection("robots_disallowed", f"{host}/robots.txt disallows this URL")

    async def _load_robots(self, host: str, robots_url: str, deadline: Deadline) -> None:
        """Parse a host's robots.txt (RFC 9309): a 4xx allows everything; a 5xx, or no answer at all
        (connection error, timeout, redirect loop), disallows the whole host for this crawl."""
        url = robots_url
        try:
            for _ in range(ROBOTS_REDIRECTS + 1):
                status, headers, body = await self._get(url, deadline, is_robots=True)
                if status in REDIRECTS and headers.get("location"):
                    url = resolve_location(headers["location"], url, self.mirror)
                    check_url(url, self.allowed_domains)
                    continue
                break
        except Rejection as exc:
            cause = f"{exc.reason}: {exc.detail}" if exc.detail else exc.reason
            self._unreachable(host, robots_url, cause)
            return
        if 400 <= status < 500:
            self._robots[host] = Protego.parse("")
        elif status == 200:
            self._robots[host] = Protego.parse(body.decode("utf-8", "replace"))
        else:
            self._unreachable(host, robots_url, f"HTTP {status}")

    def _unreachable(self, host: str, robots_url: str, cause: str) -> None:
        detail = f"{robots_url} could not be read ({cause}): RFC 9309 disallows the whole host"
        log.warning("%s: %s", self.name, detail)
        self._robots_failed[host] = detail[:500]


def _retry_after_seconds(value: str) -> float:
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return 0.0


def _check_content(kind: str, content_type: str, body: bytes, charset: str | None = None) -> None:
    """Refuse a PDF request answered with something else, and binary data that claims to be text."""
    head = body[:1024].lstrip()
    if kind == "pdf":
        if not head.startswith(b"%PDF"):
            raise Rejection("fetch_not_pdf", f"a PDF link answered {content_type or 'no content type'}")
        return
    textual = content_type.startswith("text/") or content_type in ("application/xhtml+xml", "")
    # UTF-16 and UTF-32 text is full of NUL bytes: only a BOM or a declared charset says it is text.
    wide = body.startswith(_WIDE_BOMS) or (charset or "").lower().startswith(("utf-16", "utf-32"))
    nul = b"\x00" in body[:8192] and not wide
    if textual and (nul or head.startswith(_BINARY_MAGIC)):
        raise Rejection("fetch_not_text", f"binary data served as {content_type or 'no content type'}")
