"""The fetcher's politeness and limits through the real `curate scrape`, each pinned by a test that fails
when it is removed (the mutations of `make mutants`, tests/mutation/mutations.py, module fetch)."""

from __future__ import annotations

from pathlib import Path

import pytest

from curate.scrape.mirror import SiteServer
from tests.scrape.conftest import HOST
from tests.scrape.test_hostile_sites import ARTICLES, article, listing, scrape


@pytest.mark.timeout(60)
def test_a_429_is_retried_after_the_wait_its_retry_after_asks(tmp_path: Path, site: Path) -> None:
    calls: list[int] = []

    def busy(handler) -> None:
        calls.append(1)
        if len(calls) == 1:
            handler.send(429, b"slow down", {"Content-Type": "text/plain", "Retry-After": "1"})
        else:
            handler.send(
                200, article("Busy page", "Served on the second try."), {"Content-Type": "text/html"}
            )

    listing(site, ["/busy.html"])
    with SiteServer(site, routes={f"/{HOST}/busy.html": busy}) as server:
        run = scrape(tmp_path, server.url, "retries: 1\nmax_retry_wait: 5")
        times = [t for t, path in server.arrivals if path.endswith("/busy.html")]
    assert run.code == 0 and [r["title"] for r in run.kept] == ["Busy page"], run.output
    assert len(times) == 2 and times[1] - times[0] >= 0.95  # the server's Retry-After, not the 0.01 s backoff


@pytest.mark.timeout(60)
def test_waiting_for_the_rate_limit_does_not_spend_the_page_budget(tmp_path: Path, site: Path) -> None:
    """Requests one second apart (rate_limit 1) with a page_timeout of 0.8 s: every page waits longer for its
    turn than its budget, and each is fetched within it once its turn comes."""
    listing(site, [f"/articles/{name}.html" for name in ARTICLES[:3]])
    with SiteServer(site) as server:
        run = scrape(tmp_path, server.url, "rate_limit: 1\npage_timeout: 0.8\nconcurrency: 4")
    assert run.code == 0 and run.rejected == [], run.rejected
    assert len(run.kept) == 3


@pytest.mark.timeout(60)
def test_a_host_that_merely_ends_with_an_allowed_domain_is_off_domain(tmp_path: Path, site: Path) -> None:
    listing(site, [f"https://not{HOST}/articles/asthma.html", "/articles/gout.html"])
    with SiteServer(site) as server:
        run = scrape(tmp_path, server.url)
        paths = server.paths()
    assert run.code == 0 and [r["url"] for r in run.kept] == [f"https://{HOST}/articles/gout.html"]
    assert run.rejected == [] and not any(f"not{HOST}" in p for p in paths)
    assert run.manifest["crawl"]["hostile"]["skipped"] == {"fetch_off_domain": 1}


@pytest.mark.timeout(60)
def test_a_declared_length_over_max_bytes_is_refused_before_the_body(tmp_path: Path, site: Path) -> None:
    huge = b"<html><body><main>" + b"<p>padding</p>" * 400_000 + b"</main></body></html>"
    listing(site, ["/huge.html", "/articles/gout.html"])
    routes = {f"/{HOST}/huge.html": lambda h: h.send(200, huge, {"Content-Type": "text/html"})}
    with SiteServer(site, routes=routes) as server:
        run = scrape(tmp_path, server.url, "max_bytes: 100000")
    assert run.code == 0 and len(run.kept) == 1
    [refused] = run.rejected
    assert refused["drop_reason"] == "fetch_too_large"
    assert refused["drop_detail"] == f"Content-Length {len(huge)} > max_bytes=100000"
