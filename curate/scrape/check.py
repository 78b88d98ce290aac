"""`curate sources check`: crawl a little of a source (its bundled fixture site, or --live) and say whether
discovery and extraction still work, so that a site's redesign is seen the day it happens."""

from __future__ import annotations

import dataclasses
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.errors import ConfigError
from curate.scrape.crawl import EMPTY_TEXT, NOTHING_FOUND, CrawlResult, crawl, fetch_settings
from curate.scrape.mirror import SiteServer
from curate.sources.registry import Source, load_yaml

FIXTURES = Path("tests") / "fixtures" / "sites"
# Reasons that mean "the page was there but the rules found nothing in it".
EMPTY_REASONS = {EMPTY_TEXT, "html_no_text", "pdf_no_text", "pdf_empty", "xml_no_text"}
MISS_REASONS = {NOTHING_FOUND, "listing_empty", "pdf_link_missing", "selector_missing", "main_missing"}
# Reasons that mean "the site did not answer": nothing about discovery or extraction can be judged then.
UNREACHABLE_REASONS = {"robots_unreachable", "fetch_connection", "fetch_timeout", "fetch_address_refused"}
# --live fetches at most this many pages per document asked for (listings, landing pages, retries' worth).
LIVE_PAGES_PER_DOCUMENT = 4


@dataclass
class CheckReport:
    """What a check found: counts, and the problems that make it fail."""

    source: str
    where: str
    result: CrawlResult
    problems: list[str] = field(default_factory=list)

    @property
    def unreachable(self) -> str | None:
        """Why the site could not be reached, when nothing was kept and every page failed that way."""
        rows = self.result.rejected
        if self.result.kept or not rows or any(r["drop_reason"] not in UNREACHABLE_REASONS for r in rows):
            return None
        return f"{rows[0]['url']}: {rows[0]['drop_reason']}: {rows[0]['drop_detail']}"

    @property
    def reasons(self) -> Counter:
        return Counter(r["drop_reason"] for r in self.result.rejected)

    def summary(self) -> dict[str, Any]:
        """The numbers a person reads first."""
        stats = self.result.stats
        return {
            "discovered": stats.get("kinds", {}),
            "pages": stats.get("processed", 0),
            "kept": len(self.result.kept),
            "rejected": dict(sorted(self.reasons.items())),
            "empty extractions": sum(n for r, n in self.reasons.items() if r in EMPTY_REASONS),
            "selector misses": sum(
                n for r, n in self.reasons.items() if r in MISS_REASONS or "selector" in r
            ),
            "skipped links": stats.get("skipped", {}),
        }


def fixture_site(name: str, sources_file: Path | None) -> Path | None:
    """The bundled fixture folder of a source (tests/fixtures/sites/NAME beside sources.yaml or curate)."""
    roots = [sources_file.resolve().parent] if sources_file else []
    roots.append(Path(__file__).resolve().parents[2])
    for root in roots:
        folder = root / FIXTURES / name
        if (folder / "site").is_dir():
            return folder
    return None


def check_source(
    source: Source,
    *,
    live: bool = False,
    pages: int = 10,
    sources_file: Path | None = None,
) -> CheckReport:
    """Crawl a handful of pages of the live site, or all of the bundled fixture site, and judge them."""
    from curate.scrape.spiders import spider_for

    settings = fetch_settings(source)
    spider = spider_for(source)  # a source without a scrape block fails here, before any fetch
    with tempfile.TemporaryDirectory(prefix="curate-check-") as tmp:
        if live:
            # A broken site keeps nothing: the page budget, not the document limit, ends such a check.
            budget = pages * LIVE_PAGES_PER_DOCUMENT
            result = crawl(source, spider, Path(tmp), limit=pages, max_pages=budget, settings=settings)
            report = CheckReport(source.name, source.homepage or "live site", result)
            expected = None
        else:
            folder = fixture_site(source.name, sources_file)
            if folder is None:
                raise ConfigError(f"source {source.name!r} has no fixture site under {FIXTURES}/; use --live")
            fast = dataclasses.replace(settings, rate_limit=max(settings.rate_limit, 200.0))
            with SiteServer(folder / "site") as server:
                result = crawl(source, spider, Path(tmp), mirror=server.url, settings=fast)
            report = CheckReport(source.name, str(folder), result)
            expected_file = folder / "expected.yaml"
            expected = load_yaml(expected_file) if expected_file.is_file() else None
    report.problems = judge(report, expected)
    return report


def judge(report: CheckReport, expected: dict[str, Any] | None) -> list[str]:
    """Problems: nothing kept, start pages failing, empty extractions, selector misses, fixture mismatches."""
    problems = []
    result = report.result
    summary = report.summary()
    if report.unreachable:
        return [f"the site could not be reached: {report.unreachable}"]
    if not result.kept:
        problems.append("no document was extracted")
    if expected is not None:  # the fixture says what must come out, intended failures included
        return problems + compare_expected(result, expected)
    fetch_failures = Counter(
        r["drop_reason"] for r in result.rejected if r["drop_reason"].startswith(("fetch_", "robots_"))
    )
    if fetch_failures:
        problems.append(f"pages failed to fetch: {dict(sorted(fetch_failures.items()))}")
    if summary["empty extractions"]:
        problems.append(f"{summary['empty extractions']} page(s) gave no text: the main-content selector?")
    if summary["selector misses"]:
        problems.append(f"{summary['selector misses']} page(s) matched no link/selector: the site changed?")
    return problems


def compare_expected(result: CrawlResult, expected: dict[str, Any]) -> list[str]:
    """Differences between a fixture crawl and its expected.yaml (documents missing or unexpected,
    boilerplate, rejected count)."""
    problems = []
    kept = {r["url"]: r for r in result.kept}
    for doc in expected.get("documents") or []:
        row = kept.get(doc["url"])
        if row is None:
            problems.append(f"missing document {doc['url']}")
            continue
        text = row["text"].strip()
        if "title" in doc and row["title"] != doc["title"]:
            problems.append(f"{doc['url']}: title {row['title']!r}, expected {doc['title']!r}")
        if doc.get("first") and not text.startswith(doc["first"].strip()):
            problems.append(f"{doc['url']}: text starts {text[:80]!r}, expected {doc['first'][:80]!r}")
        if doc.get("last") and not text.endswith(doc["last"].strip()):
            problems.append(f"{doc['url']}: text ends {text[-80:]!r}, expected {doc['last'][-80:]!r}")
        for needle in doc.get("contains") or []:
            if needle not in text:
                problems.append(f"{doc['url']}: text lacks {needle!r}")
    listed = {doc["url"] for doc in expected.get("documents") or []}
    for url in kept:
        if url not in listed:
            problems.append(f"unexpected document {url}")
    for needle in expected.get("absent") or []:
        dirty = [r["url"] for r in result.kept if needle in r["text"]]
        if dirty:
            problems.append(f"boilerplate {needle!r} in {len(dirty)} document(s), e.g. {dirty[0]}")
    wanted = expected.get("rejected")
    if wanted is not None and len(result.rejected) != int(wanted):
        reasons = dict(Counter(r["drop_reason"] for r in result.rejected))
        problems.append(f"{len(result.rejected)} rejected, expected {wanted}: {reasons}")
    return problems
