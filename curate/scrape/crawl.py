"""The crawl loop: a Spider says where to start and how to parse; this drives it with the Fetcher.

Requests are fetched a few at a time but processed strictly in frontier order (breadth first), so the
frontier, the records and a `--limit` cut are the same on every run. A resumed crawl walks the same frontier
and replays what it already fetched from the WARC archive, so its records equal an uninterrupted run's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.fetch.fetcher import Fetcher, FetchSettings
from curate.fetch.http import Request
from curate.fetch.store import CrawlState, CrawlStateError, FrontierRow
from curate.fetch.urls import canonical, check_url
from curate.progress import report_documents
from curate.schema import ERROR_REASON, Rejection, clean_str, dumps_meta
from curate.scrape.spiders.base import Item
from curate.sources.config import DEFAULT_MAX_PAGES
from curate.sources.registry import Source
from curate.stage import describe_error

log = logging.getLogger("curate.scrape")

NOTHING_FOUND = "scrape_nothing_found"  # a page that yielded neither links nor documents (empty listing)
EMPTY_TEXT = "scrape_empty_text"
DUPLICATE = "scrape_duplicate"
OVER_BUDGET = "scrape_page_budget"  # a link not queued: the crawl's max_pages were all queued already
PROGRESS_EVERY = 25  # pages between progress lines (curate -v)
_CONFIG_KEYS = ("discovery", "extract", "spider", "max_pages")


@dataclass
class CrawlResult:
    """Kept record rows, rejected rows (with reason and detail), and counts for reports."""

    kept: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


def fetch_settings(source: Source) -> FetchSettings:
    """The fetcher's settings from the source's `scrape:` block (validated when sources.yaml was loaded)."""
    return FetchSettings.from_block(source.extra.get("scrape") or {}, f"source {source.name!r}: scrape")


def record_id(source: str, url: str) -> str:
    """`source:host/path?query`: stable across runs, derived from the URL alone (even an unparseable one)."""
    _, sep, rest = url.partition("://")
    return f"{source}:{rest if sep else url}"


def config_fingerprint(source: Source) -> str:
    """A hash of what decides a crawl's frontier and records: the source's scrape block (discovery, start
    URLs, extraction, spider), its allowed domains and content type; politeness settings stay out."""
    config = source.scrape
    data = {
        "block": {k: v for k, v in (source.extra.get("scrape") or {}).items() if k in _CONFIG_KEYS},
        "start": list(config.discovery.start) if config is not None else [],
        "domains": list(source.allowed_domains),
        "content": source.content,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def crawl(
    source: Source,
    spider: Any,
    state_dir: Path,
    *,
    resume: bool = False,
    limit: int = 0,
    mirror: str | None = None,
    settings: FetchSettings | None = None,
    max_pages: int = 0,
) -> CrawlResult:
    """Crawl one source into records; the frontier, cache and WARC archive persist in state_dir.

    `limit` stops after that many kept documents; at most `max_pages` pages are queued (default: the
    source's `scrape.max_pages`), whatever they gave. Raises CrawlStateError when state_dir cannot be
    written.
    """
    crawler = _Crawl(source, spider, state_dir, resume, limit, mirror, settings, max_pages=max_pages)
    return asyncio.run(crawler.run())


class _Crawl:
    """One crawl of one source: the frontier walked in order, a few fetches ahead of the parsing."""

    def __init__(
        self,
        source: Source,
        spider: Any,
        state_dir: Path,
        resume: bool,
        limit: int,
        mirror: str | None,
        settings: FetchSettings | None,
        max_pages: int = 0,
    ):
        self.source = source
        self.spider = spider
        self.state = CrawlState(Path(state_dir))
        self.resume = resume
        self.limit = limit
        own = source.scrape.max_pages if source.scrape is not None else DEFAULT_MAX_PAGES
        self.max_pages = min(max_pages, own) if max_pages else own
        self.mirror = mirror
        self.settings = settings or fetch_settings(source)
        self.result = CrawlResult()
        self.ids: set[str] = set()
        self.queued: set[str] = set()  # the frontier's URLs: links are de-duplicated here, in linear time
        self.skipped: Counter = Counter()
        self.kinds: Counter = Counter()

    async def run(self) -> CrawlResult:
        try:
            fingerprint = config_fingerprint(self.source)
            queue = self.state.frontier() if self.resume else []
            self.queued = {row.url for row in queue}
            if queue and self.state.get_meta("config") != fingerprint:
                # The frontier came from other discovery or extraction rules: walk the new ones from the
                # start, in the same generation, so that pages this crawl fetched are replayed, not fetched.
                log.info("%s: the scrape config changed: crawling again from the start", self.source.name)
                self.state.clear_frontier()
                queue = []
                self.queued = set()
            elif queue:
                log.info("%s: resuming a crawl of %d known requests", self.source.name, len(queue))
            else:
                self.state.new_crawl()
            if not queue:
                self.state.set_meta("config", fingerprint)
                with self.state.batch():
                    for request in self.spider.start_requests():
                        # Start requests are always queued: one that is refused becomes a rejected record.
                        self._enqueue(queue, request, start=True)
            fetcher = Fetcher(
                self.state,
                self.settings,
                self.source.allowed_domains,
                name=self.source.name,
                mirror=self.mirror,
            )
            async with fetcher:
                processed = await self._loop(queue, fetcher)
            self.skipped.update(getattr(self.spider, "skipped", {}))  # bad links the spider passed over
            self.result.stats = {
                "requests": len(queue),
                "processed": processed,
                "pending": len(queue) - processed,
                "kept": len(self.result.kept),
                "rejected": len(self.result.rejected),
                "kinds": dict(sorted(self.kinds.items())),
                "skipped": dict(sorted(self.skipped.items())),
                **fetcher.stats,
            }
            self.result.stats["warnings"] = warnings = self._warnings(processed)
            for warning in warnings:
                log.warning("%s", warning)
            log.info(
                "%s: %d pages (%d fetched, %d replayed), %d documents kept, %d rejected",
                self.source.name,
                processed,
                fetcher.stats["network"],
                fetcher.stats["replayed"],
                len(self.result.kept),
                len(self.result.rejected),
            )
            return self.result
        finally:
            self.state.close()

    async def _loop(self, queue: list[FrontierRow], fetcher: Fetcher) -> int:
        window = max(1, self.settings.concurrency)
        inflight: dict[int, asyncio.Task] = {}
        scheduled = done = 0
        try:
            while done < len(queue):
                while scheduled < len(queue) and scheduled < done + window:
                    inflight[scheduled] = asyncio.create_task(self._fetch(queue[scheduled], fetcher))
                    scheduled += 1
                outcome = await inflight.pop(done)
                await self._process(queue, queue[done], outcome)
                done += 1
                if done % PROGRESS_EVERY == 0:
                    log.info(
                        "%s: %d pages, %d documents kept, %d queued",
                        self.source.name,
                        done,
                        len(self.result.kept),
                        len(queue) - done,
                    )
                if self.limit and len(self.result.kept) >= self.limit:
                    break
                if self.max_pages and done >= self.max_pages:
                    break
        finally:
            for task in inflight.values():  # past the limit: fetched ones stay in the cache for next time
                task.cancel()
            await asyncio.gather(*inflight.values(), return_exceptions=True)
        return done

    def _warnings(self, processed: int) -> list[str]:
        """What a person must hear about this crawl: it kept nothing (and why), or it hit its page budget."""
        name, warnings = self.source.name, []
        over = self.skipped.get(OVER_BUDGET, 0)
        if over:
            warnings.append(
                f"{name}: the page budget was reached (max_pages={self.max_pages}): {over} more link(s) were "
                "not queued; raise scrape.max_pages in sources.yaml to crawl them"
            )
        if not self.result.kept and self.result.rejected:
            reasons = Counter(r["drop_reason"] for r in self.result.rejected)
            reason, count = reasons.most_common(1)[0]
            first = next(r for r in self.result.rejected if r["drop_reason"] == reason)
            warnings.append(
                f"{name}: nothing kept from {processed} page(s): {count} x {reason}, e.g. {first['url']}: "
                f"{first['drop_detail']}"
            )
        return warnings

    async def _fetch(self, row: FrontierRow, fetcher: Fetcher) -> Any:
        """The Response, or the Rejection (remembered, so a resumed crawl does not fetch it again)."""
        if row.reason:
            return Rejection(row.reason, row.detail or "")
        try:
            return await fetcher.fetch(Request(url=row.url, kind=row.kind, meta=row.meta))
        except Rejection as exc:
            self.state.fail(row.url, exc.reason, exc.detail)
            return exc
        except CrawlStateError:
            raise  # the state cannot be written: no page can be, so the crawl stops (and says where)
        except Exception as exc:  # noqa: BLE001 - a fetcher bug costs one page, never the crawl
            log.warning("%s: fetching %s failed: %s", self.source.name, row.url, describe_error(exc))
            self.state.fail(row.url, ERROR_REASON, describe_error(exc))
            return Rejection(ERROR_REASON, describe_error(exc))

    async def _process(self, queue: list[FrontierRow], row: FrontierRow, outcome: Any) -> None:
        request = Request(url=row.url, kind=row.kind, meta=row.meta)
        if isinstance(outcome, Rejection):
            log.info("%s: %s: %s %s", self.source.name, row.url, outcome.reason, outcome.detail)
            self._reject(row.url, outcome.reason, outcome.detail)
            self._failed(queue, request, outcome)
            return
        try:
            # Parsing may be slow (PDFs): off the event loop, so that fetches in flight keep their timeouts.
            results = await asyncio.to_thread(lambda: list(self.spider.parse(outcome)))
        except Exception as exc:  # noqa: BLE001 - a spider bug costs one page, never the crawl
            log.warning("%s: parsing %s failed: %s", self.source.name, row.url, describe_error(exc))
            self._reject(row.url, ERROR_REASON, describe_error(exc))
            self._failed(queue, request, Rejection(ERROR_REASON, describe_error(exc)))
            return
        if not results:
            self._reject(row.url, NOTHING_FOUND, f"{row.kind} page yielded no links and no documents")
        self._results(queue, row.url, results)

    def _failed(self, queue: list[FrontierRow], request: Any, rejection: Rejection) -> None:
        """Tell the spider that a request came to nothing: a chained spider (NICE chapters, WikiDoc
        sub-pages) carries a document in the request's meta and must go on or finish it."""
        try:
            results = list(self.spider.on_error(request, rejection))
        except Exception as exc:  # noqa: BLE001 - a spider bug costs one page, never the crawl
            log.warning("%s: on_error for %s failed: %s", self.source.name, request.url, describe_error(exc))
            return
        self._results(queue, request.url, results)

    def _results(self, queue: list[FrontierRow], url: str, results: list[Any]) -> None:
        with self.state.batch():  # a page's links land in the frontier together, in one commit
            for result in results:
                if isinstance(result, Request):
                    self._enqueue(queue, result)
                elif isinstance(result, Item):
                    if self.limit and len(self.result.kept) >= self.limit:
                        break
                    self._item(result)
                else:
                    self._reject(url, ERROR_REASON, f"spider yielded a {type(result).__name__}")

    def _enqueue(self, queue: list[FrontierRow], request: Request, start: bool = False) -> None:
        if request.url in self.queued:
            return  # already queued (as spiders spell most links: absolute, canonical)
        if not start and len(queue) >= self.max_pages:
            self.skipped[OVER_BUDGET] += 1  # the frontier is full: a link not queued, counted and reported
            return
        failure = None
        try:
            url = canonical(request.url)
            if not start:
                check_url(url, self.source.allowed_domains)
        except Rejection as exc:
            if not start:
                self.skipped[exc.reason] += 1  # a link off the source (or unparseable): a logged skip
                log.debug("%s: skipping %s: %s", self.source.name, request.url, exc)
                return
            # Start requests are always queued; one that cannot even be parsed is queued as failed, so that
            # a resumed crawl reports it too.
            url, failure = request.url, exc
        if url in self.queued:
            return  # already queued
        row = self.state.add(url, request.kind, dict(request.meta or {}))
        self.queued.add(url)
        if row is None:
            return  # already queued
        if failure is not None:
            self.state.fail(url, failure.reason, failure.detail)
            row = dataclasses.replace(row, reason=failure.reason, detail=failure.detail)
        self.kinds[request.kind] += 1
        queue.append(row)

    def _item(self, item: Any) -> None:
        try:
            url = canonical(item.url)
        except Rejection:
            url = item.url
        if item.rejection is not None:
            self._reject(url, item.rejection.reason, item.rejection.detail)
            return
        doc = item.doc
        if doc is None or not (doc.text or "").strip():
            self._reject(url, EMPTY_TEXT, "the spider extracted no text")
            return
        rid = record_id(self.source.name, url)
        if rid in self.ids:
            self._reject(url, DUPLICATE, "a document with this URL was already kept")
            return
        self.ids.add(rid)
        self.result.kept.append(
            {
                "id": rid,
                "text": clean_str(doc.text.strip()),
                "source": self.source.name,
                "url": url,
                "title": clean_str(doc.title),
                "license": self.source.license,
                "meta": dumps_meta(doc.meta),
            }
        )
        report_documents(1)  # live progress: a crawl's documents appear only as it finds them

    def _reject(self, url: str, reason: str, detail: str | None) -> None:
        self.result.rejected.append(
            {
                "id": record_id(self.source.name, url),
                "text": "",
                "source": self.source.name,
                "url": url,
                "license": self.source.license,
                "meta": "{}",
                "drop_reason": reason,
                "drop_detail": clean_str(detail),
            }
        )
        report_documents(1)
