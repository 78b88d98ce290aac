"""The fetcher and crawl loop against a real loopback server: every fault is a record or a logged skip."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from curate.fetch.http import Request
from curate.fetch.urls import canonical, check_url, refused_ip, resolve_location, to_mirror
from curate.schema import Rejection
from curate.scrape.crawl import crawl, fetch_settings
from curate.scrape.mirror import SiteServer, site_file
from curate.scrape.spiders import spider_for
from curate.sources.registry import load_sources
from tests.scrape.conftest import FAST, FAULT_ROUTES, HOST, source_for


def _by_url(rows: list[dict]) -> dict[str, dict]:
    return {r["url"]: r for r in rows}


def test_faults_each_give_a_reason_and_never_stop_the_crawl(tmp_path: Path, server: SiteServer) -> None:
    source = source_for(tmp_path, start="faults.html")
    result = crawl(source, spider_for(source), tmp_path / "state", mirror=server.url, settings=FAST)
    kept = _by_url(result.kept)
    rejected = {url: (r["drop_reason"], r["drop_detail"]) for url, r in _by_url(result.rejected).items()}
    base = f"https://{HOST}"

    # The good article and the one that needed a retry after a 503 with Retry-After are kept.
    assert kept[f"{base}/articles/asthma.html"]["title"].startswith("Asthma in adults")
    assert f"{base}/faults/503-once" in kept
    assert server.paths().count(f"/{HOST}/faults/503-once") == 2

    assert rejected[f"{base}/private/secret.html"][0] == "robots_disallowed"
    assert f"/{HOST}/private/secret.html" not in server.paths()  # never requested
    assert rejected[f"{base}/faults/500"] == ("fetch_http_error", "HTTP 500")
    assert server.paths().count(f"/{HOST}/faults/500") == FAST.retries + 1
    assert rejected[f"{base}/faults/429"] == ("fetch_http_error", "HTTP 429")
    assert rejected[f"{base}/faults/slow"][0] == "fetch_timeout"
    assert rejected[f"{base}/faults/loop-a"][0] == "fetch_redirect_loop"
    assert rejected[f"{base}/faults/offsite"][0] == "fetch_off_domain"
    assert "evil.test" in rejected[f"{base}/faults/offsite"][1]
    assert rejected[f"{base}/faults/binary.html"][0] == "fetch_not_text"
    assert rejected[f"{base}/faults/big.html"][0] == "fetch_too_large"
    assert rejected[f"{base}/faults/empty.html"][0] == "scrape_nothing_found"
    assert rejected[f"{base}/faults/fake.pdf"][0] == "fetch_not_pdf"
    assert rejected[f"{base}/faults/missing.html"] == ("fetch_http_error", "HTTP 404")
    assert rejected[f"{base}/faults/bad-gzip.html"][0] == "fetch_bad_encoding"
    assert server.paths().count(f"/{HOST}/faults/bad-gzip.html") == 1  # the same bytes again: not retried
    # UTF-16 with a BOM is NUL bytes everywhere, and text: kept, with the article's words.
    assert kept[f"{base}/faults/utf16.html"]["title"] == kept[f"{base}/articles/asthma.html"]["title"]
    # Links a page yields off the source (another host, file://, a private address) are logged skips.
    for url in ("https://elsewhere.test/page.html", "file:///etc/passwd", "http://10.1.2.3/admin"):
        assert url not in kept | rejected
    assert result.stats["skipped"] == {"fetch_bad_scheme": 1, "fetch_off_domain": 2}

    # A page in a broken encoding is decoded with replacements and kept (its prose is intact).
    broken = kept[f"{base}/faults/broken-encoding.html"]
    assert "the clinician records blood pressure" in broken["text"]

    # Path traversal: both spellings stay inside the site (404) and the secret beside it is never served.
    traversal = [u for u in rejected if "secret.txt" in u]
    assert len(traversal) == 2 and all(rejected[u][0] == "fetch_http_error" for u in traversal)
    assert all("TOP SECRET" not in r["text"] for r in result.kept)

    # Accounting: every other link of the listing is one record.
    assert len(result.kept) + len(result.rejected) == 21 - 3


def test_a_robots_txt_over_500_kib_is_read_as_far_as_500_kib(tmp_path: Path, site: Path) -> None:
    # RFC 9309: a crawler must parse at least the first 500 KiB; refusing the file would shut the whole host.
    rules = b"User-agent: *\nDisallow: /private/\n" + b"# padding\n" * 80_000
    routes = {f"/{HOST}/robots.txt": lambda h: h.send(200, rules, {"Content-Type": "text/plain"})}
    source = source_for(tmp_path, start="faults.html")
    with SiteServer(site, routes={**FAULT_ROUTES, **routes}) as server:
        result = crawl(source, spider_for(source), tmp_path / "state", mirror=server.url, settings=FAST)
    kept, rejected = _by_url(result.kept), _by_url(result.rejected)
    assert f"https://{HOST}/articles/asthma.html" in kept
    assert rejected[f"https://{HOST}/private/secret.html"]["drop_reason"] == "robots_disallowed"


def test_refused_start_urls_are_records(tmp_path: Path, server: SiteServer) -> None:
    """A source that points at file:// or a private address gets a rejected record, and nothing is fetched."""
    source = dataclasses.replace(
        source_for(tmp_path), allowed_domains=("example.test", "10.1.2.3", "169.254.169.254")
    )
    spider = spider_for(source)
    starts = ["file:///etc/passwd", "http://10.1.2.3/admin", "http://169.254.169.254/latest/meta-data/"]
    spider.start_requests = lambda: [Request(u, kind="article") for u in starts]
    result = crawl(source, spider, tmp_path / "state", mirror=server.url, settings=FAST)
    assert [(r["url"], r["drop_reason"]) for r in result.rejected] == [
        ("file:///etc/passwd", "fetch_bad_scheme"),
        ("http://10.1.2.3/admin", "fetch_address_refused"),
        ("http://169.254.169.254/latest/meta-data/", "fetch_address_refused"),
    ]
    assert result.kept == [] and server.log == []


def test_state_and_warc_stay_in_their_folder(tmp_path: Path, server: SiteServer) -> None:
    source = source_for(tmp_path, start="faults.html")
    before = {p for p in tmp_path.rglob("*")}
    crawl(source, spider_for(source), tmp_path / "state", mirror=server.url, settings=FAST)
    created = {p for p in tmp_path.rglob("*")} - before
    assert created and all(p.is_relative_to(tmp_path / "state") for p in created)
    warcs = sorted((tmp_path / "state" / "warc").iterdir())
    assert [p.name for p in warcs] == ["00001.warc.gz"]


def test_warc_holds_every_exchange_and_replays_without_network(tmp_path: Path, server: SiteServer) -> None:
    from warcio.archiveiterator import ArchiveIterator

    source = source_for(tmp_path, start="index.html")
    first = crawl(source, spider_for(source), tmp_path / "state", mirror=server.url, settings=FAST)
    with open(tmp_path / "state" / "warc" / "00001.warc.gz", "rb") as fh:
        records = [(r.rec_type, r.rec_headers.get_header("WARC-Target-URI")) for r in ArchiveIterator(fh)]
    responses = [u for t, u in records if t == "response"]
    assert f"https://{HOST}/robots.txt" in responses and f"https://{HOST}/docs/guide.pdf" in responses
    assert len([t for t, _ in records if t == "request"]) == len(responses)
    requests_before = len(server.log)
    # The same crawl resumed after it finished: everything comes from the archive.
    again = crawl(
        source, spider_for(source), tmp_path / "state", mirror=server.url, settings=FAST, resume=True
    )
    assert len(server.log) == requests_before
    assert again.kept == first.kept and again.rejected == first.rejected
    assert again.stats["network"] == 0


def test_rerun_sends_conditional_requests(tmp_path: Path, server: SiteServer) -> None:
    source = source_for(tmp_path, start="index.html")
    first = crawl(source, spider_for(source), tmp_path / "state", mirror=server.url, settings=FAST)
    n = len(server.log)
    second = crawl(source, spider_for(source), tmp_path / "state", mirror=server.url, settings=FAST)
    rerun = server.log[n:]
    assert rerun and all("if-none-match" in headers for _, _, headers in rerun)
    assert {status for _, status, _ in rerun} == {304}
    assert second.kept == first.kept
    assert len(first.kept) == 7  # 6 articles and the PDF


def test_user_agent_names_curate_and_a_contact(tmp_path: Path, server: SiteServer) -> None:
    source = source_for(tmp_path, start="index.html")
    crawl(source, spider_for(source), tmp_path / "state", mirror=server.url, settings=FAST, limit=1)
    agent = server.log[0][2]["user-agent"]
    assert agent.startswith("curate/") and "+http" in agent


def test_limit_keeps_the_first_documents_in_frontier_order(tmp_path: Path, server: SiteServer) -> None:
    source = source_for(tmp_path, start="index.html")
    result = crawl(source, spider_for(source), tmp_path / "state", mirror=server.url, settings=FAST, limit=2)
    assert [r["url"] for r in result.kept] == [
        f"https://{HOST}/articles/asthma.html",
        f"https://{HOST}/articles/diabetes.html",
    ]
    assert result.kept[0]["id"] == f"testsite:{HOST}/articles/asthma.html"


def test_page_budget_ends_a_crawl_that_keeps_nothing(tmp_path: Path, server: SiteServer) -> None:
    # What `sources check --live` relies on when a redesign breaks extraction: no document is ever kept, so
    # the document limit never stops the crawl; the page budget does.
    source = source_for(tmp_path, start="index.html")
    broken = dataclasses.replace(source.scrape.extract, main=("div.no-such-selector",))
    source = dataclasses.replace(source, scrape=dataclasses.replace(source.scrape, extract=broken))
    result = crawl(
        source, spider_for(source), tmp_path / "state", mirror=server.url, settings=FAST, limit=1, max_pages=3
    )
    assert result.kept == [] and result.stats["processed"] == 3
    paths = [entry[0] for entry in server.log]  # robots.txt, the budget, and fetches already in flight
    assert len(paths) == len(set(paths)) <= 1 + 3 + FAST.concurrency


def test_loopback_and_private_hosts_are_refused_without_a_mirror(tmp_path: Path, site: Path) -> None:
    """A source whose URLs point at loopback is refused unless explicitly allowed."""
    with SiteServer(site) as srv:
        port = srv.url.rsplit(":", 1)[1]
        (tmp_path / "s.yaml").write_text(
            f"""
sources:
  local:
    title: t
    homepage: http://localhost:{port}/{HOST}/index.html
    allowed_domains: [localhost, 127.0.0.1, "localhost:{port}", "127.0.0.1:{port}"]
    content: html
    license: x
    redistributable: false
    scrape:
      spider: crawltest
      discovery: {{type: listing, start: ["http://localhost:{port}/{HOST}/index.html",
                   "http://127.0.0.1:{port}/{HOST}/index.html"], links: a}}
"""
        )
        source = load_sources(tmp_path / "s.yaml")["local"]
        refused = crawl(source, spider_for(source), tmp_path / "state", settings=FAST)
        assert [r["drop_reason"] for r in refused.rejected] == ["fetch_address_refused"] * 2
        assert srv.log == []
        allowed = dataclasses.replace(FAST, allow_private=True)
        fetched = crawl(source, spider_for(source), tmp_path / "state2", settings=allowed, limit=1)
        assert len(fetched.kept) == 1 and srv.log


def test_url_rules() -> None:
    assert canonical("HTTPS://Example.TEST/a b#frag") == "https://example.test/a%20b"
    with pytest.raises(Rejection) as exc:
        check_url("file:///etc/passwd", ("example.test",))
    assert exc.value.reason == "fetch_bad_scheme"
    check_url("https://www.example.test/x", ("example.test",))  # a subdomain
    with pytest.raises(Rejection, match="fetch_bad_port"):
        check_url("https://example.test:22/x", ("example.test",))
    check_url("https://example.test:443/x", ("example.test",))  # the default port, written out
    check_url("https://example.test:8443/x", ("example.test", "Example.test:8443"))
    with pytest.raises(Rejection):
        check_url("https://example.test.evil/x", ("example.test",))
    assert all(
        refused_ip(a) for a in ("127.0.0.1", "10.0.0.1", "169.254.169.254", "::1", "::ffff:192.168.1.1")
    )
    assert not refused_ip("93.184.216.34")
    mirror = "http://127.0.0.1:9"
    assert to_mirror("https://h.test/a/b?x=1", mirror) == "http://127.0.0.1:9/h.test/a/b?x=1"
    assert resolve_location("/h.test/c", "https://h.test/a/b", mirror) == "https://h.test/c"
    assert resolve_location("d", "https://h.test/a/b", mirror) == "https://h.test/a/d"
    assert resolve_location("https://o.test/", "https://h.test/a", mirror) == "https://o.test/"


def test_site_file_rule(tmp_path: Path) -> None:
    root = tmp_path / "site"
    assert site_file(root, "/h/a/") == (root / "h/a/index.html").resolve()
    assert (
        site_file(root, "/h/cbrowse?pid=cdc%3A100&x=a/b")
        == (root / "h/cbrowse@pid=cdc%3A100&x=a%2Fb").resolve()
    )
    assert site_file(root, "/h/%2e%2e/%2e%2e/etc/passwd") is None


def test_retry_waits_honour_retry_after_within_the_cap(tmp_path: Path) -> None:
    from email.utils import formatdate

    from curate.fetch.fetcher import Fetcher, _retry_after_seconds
    from curate.fetch.store import CrawlState

    assert _retry_after_seconds("7") == 7.0
    assert 100 < _retry_after_seconds(formatdate(time.time() + 120, usegmt=True)) <= 120
    assert _retry_after_seconds("soon") == 0.0
    state = CrawlState(tmp_path / "state")
    settings = dataclasses.replace(FAST, backoff=0.5, max_retry_wait=30.0)
    fetcher = Fetcher(state, settings, ("example.test",))
    assert fetcher._backoff(0, "10") == 10.0  # Retry-After beats a shorter backoff
    assert fetcher._backoff(0, "3600") == 30.0  # ... up to the cap
    assert 2.0 <= fetcher._backoff(2, None) <= 2.5  # 0.5 * 2**2, plus at most a quarter of jitter
    state.close()


def test_settings_come_from_the_scrape_block(tmp_path: Path, server: SiteServer) -> None:
    source = source_for(tmp_path, start="index.html")
    block = dict(source.extra["scrape"], user_agent="curate-test (+https://example.test/contact)", timeout=5)
    source = dataclasses.replace(source, extra={**source.extra, "scrape": block})
    settings = fetch_settings(source)
    assert (settings.rate_limit, settings.timeout, settings.user_agent) == (1000.0, 5.0, block["user_agent"])
    crawl(source, spider_for(source), tmp_path / "state", mirror=server.url, limit=1)
    assert {headers["user-agent"] for _, _, headers in server.log} == {block["user_agent"]}


def test_one_crawl_per_state_folder(tmp_path: Path) -> None:
    from curate.errors import FolderBusy
    from curate.fetch.store import CrawlState

    first = CrawlState(tmp_path / "state")
    with pytest.raises(FolderBusy, match="another crawl is using"):
        CrawlState(tmp_path / "state")
    first.close()
    CrawlState(tmp_path / "state").close()  # free again once the first one is done


def test_a_malformed_link_is_skipped_and_a_malformed_start_url_is_a_record(
    tmp_path: Path, site: Path
) -> None:
    """`http://[oops/` cannot be parsed: as a link it is a counted skip (the listing's other links are
    kept), as a start URL a rejected record (on a resumed crawl too); neither stops the crawl."""
    from tests.scrape.test_resume import SOURCES

    index = site / HOST / "index.html"
    index.write_text(index.read_text().replace("<ul>", '<ul>\n<li><a href="http://[oops/">Broken</a></li>'))
    (tmp_path / "sources.yaml").write_text(SOURCES.replace('start: ["', 'start: ["http://[oops/", "'))
    source = load_sources(tmp_path / "sources.yaml")["testsite"]
    with SiteServer(site) as server:
        result = crawl(source, spider_for(source), tmp_path / "state", mirror=server.url, settings=FAST)
        again = crawl(
            source, spider_for(source), tmp_path / "state", mirror=server.url, settings=FAST, resume=True
        )
    assert len(result.kept) == 7  # the listing with the bad link still gave all its articles
    assert [(r["url"], r["drop_reason"]) for r in result.rejected] == [("http://[oops/", "fetch_bad_url")]
    assert result.stats["skipped"]["fetch_bad_url"] == 1
    assert (again.kept, again.rejected) == (result.kept, result.rejected)


def test_allowed_domains_match_whatever_their_case(tmp_path: Path, server: SiteServer) -> None:
    """The spider's link filter is the fetcher's rule: `Example.TEST` in sources.yaml allows example.test."""
    from tests.scrape.test_resume import SOURCES

    (tmp_path / "sources.yaml").write_text(SOURCES.replace("[example.test]", "[Example.TEST]"))
    source = load_sources(tmp_path / "sources.yaml")["testsite"]
    result = crawl(source, spider_for(source), tmp_path / "state", mirror=server.url, settings=FAST)
    assert len(result.kept) == 7 and result.rejected == []


def test_a_lost_warc_segment_is_fetched_again_and_never_misread(tmp_path: Path, server: SiteServer) -> None:
    """The archive is the cache: a record that is gone, or another URL's, is a miss (fetched again in full),
    never a crash, a disallowed host or another page's text; a segment name is never used twice."""
    import sqlite3

    source = source_for(tmp_path, start="index.html")
    state = tmp_path / "state"

    def run(**options):
        return crawl(source, spider_for(source), state, mirror=server.url, settings=FAST, **options)

    def segments() -> list[str]:
        return sorted(p.name for p in (state / "warc").iterdir())

    first = run()
    assert len(first.kept) == 7
    (state / "warc" / "00001.warc.gz").unlink()
    n = len(server.log)
    resumed = run(resume=True)  # everything was fetched in this crawl, but its archive is gone
    assert (resumed.kept, resumed.rejected) == (first.kept, first.rejected)
    assert len(server.log) > n and all("if-none-match" not in h for _, _, h in server.log[n:])
    assert segments() == ["00002.warc.gz"]

    (state / "warc" / "00002.warc.gz").unlink()
    n = len(server.log)
    fresh = run()  # a new crawl: conditional requests, answered 304 for pages whose copy is lost
    assert (fresh.kept, fresh.rejected) == (first.kept, first.rejected)
    log = server.log[n:]
    not_modified = [p for p, status, _ in log if status == 304]
    assert not_modified and sorted(not_modified) == sorted(
        p for p, status, h in log if status == 200 and "if-none-match" not in h
    )
    assert segments() == ["00003.warc.gz"]

    # The cache pointing at another URL's record (a segment replaced under it) is a miss too.
    asthma, diabetes = (f"https://{HOST}/articles/{name}.html" for name in ("asthma", "diabetes"))
    db = sqlite3.connect(state / "state.sqlite")
    where = {
        u: db.execute("SELECT warc, offset FROM cache WHERE url=?", (u,)).fetchone()
        for u in (asthma, diabetes)
    }
    with db:
        db.execute("UPDATE cache SET warc=?, offset=? WHERE url=?", (*where[diabetes], asthma))
    db.close()
    swapped = run(resume=True)
    assert (swapped.kept, swapped.rejected) == (first.kept, first.rejected)


def test_private_addresses_are_allowed_only_by_the_sources_scrape_block(tmp_path: Path, site: Path) -> None:
    """`allow_private: true` in a source's scrape block is the switch that lets it fetch loopback."""
    with SiteServer(site) as srv:
        yaml = f"""
sources:
  local:
    title: t
    homepage: http://127.0.0.1:{srv.url.rsplit(":", 1)[1]}/{HOST}/index.html
    allowed_domains: ["127.0.0.1:{srv.url.rsplit(":", 1)[1]}"]
    content: html
    license: x
    redistributable: false
    scrape:
      spider: crawltest
      rate_limit: 1000
      discovery: {{type: listing, links: a}}
"""
        (tmp_path / "s.yaml").write_text(yaml)
        source = load_sources(tmp_path / "s.yaml")["local"]
        refused = crawl(source, spider_for(source), tmp_path / "state", limit=1)
        assert [r["drop_reason"] for r in refused.rejected] == ["fetch_address_refused"] and srv.log == []
        (tmp_path / "s.yaml").write_text(
            yaml.replace("rate_limit: 1000", "rate_limit: 1000\n      allow_private: true")
        )
        source = load_sources(tmp_path / "s.yaml")["local"]
        fetched = crawl(source, spider_for(source), tmp_path / "state2", limit=1)
        assert len(fetched.kept) == 1 and srv.log
