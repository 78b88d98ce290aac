"""`curate scrape` against loopback servers that misbehave on purpose: every limit holds in wall-clock time,
every page is a record or a counted skip, and nothing prints a traceback.

Each test runs the real command (in process, `--local`) with a source whose `scrape:` block sets the
limits under test, and bounds the whole run in time.
"""

from __future__ import annotations

import json
import random
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from curate.cli import app
from curate.scrape.mirror import SiteServer
from tests.conftest import small_disk
from tests.scrape.conftest import HOST

SOURCE = """
sources:
  hostile:
    title: A site that misbehaves on purpose
    homepage: https://example.test/
    allowed_domains: {domains}
    content: html
    license: test licence
    redistributable: false
    scrape:
      rate_limit: 1000
      retries: 0
      backoff: 0.01
      discovery: {{type: listing, start: ["https://example.test/{start}"], links: a}}
      extract: {{main: main}}
{settings}
"""
REPO = Path(__file__).resolve().parents[2]
ARTICLES = ["asthma", "diabetes", "copd", "gout", "anaemia", "hypertension"]


@dataclass
class Run:
    """What a user sees of one `curate scrape`: exit code, output, time taken, and the records."""

    code: int
    output: str
    seconds: float
    kept: list[dict]
    rejected: list[dict]
    manifest: dict

    def reasons(self) -> dict[str, str]:
        return {r["url"]: r["drop_reason"] for r in self.rejected}


def scrape(
    tmp_path: Path,
    mirror: str,
    settings: str = "",
    start: str = "list.html",
    domains: str = f"[{HOST}]",
    extra: tuple[str, ...] = (),
    kill_after: float = 0,
) -> Run:
    """`curate scrape hostile --mirror MIRROR --local` with the given scrape settings (YAML lines): in this
    process, or with kill_after in a child process killed after that many seconds (where a regression
    would hang in a thread that no test timeout can stop)."""
    block = "".join(f"      {line.strip()}\n" for line in settings.strip().splitlines())
    sources = tmp_path / "sources.yaml"
    sources.write_text(SOURCE.format(domains=domains, start=start, settings=block))
    out = tmp_path / "run" / "scrape"
    args = ["scrape", "hostile", "--out", str(out), "--mirror", mirror, "--sources", str(sources), "--local"]
    began = time.monotonic()
    if kill_after:
        child = subprocess.Popen(
            [sys.executable, "-m", "curate", *args, *extra],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            output = child.communicate(timeout=kill_after)[0].decode()
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            pytest.fail(f"curate scrape still running after {kill_after} s")
        code = child.returncode
    else:
        result = CliRunner().invoke(app, [*args, *extra])
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        output, code = result.output, result.exit_code
    seconds = time.monotonic() - began
    assert "Traceback" not in output, output

    def rows(path: Path) -> list[dict]:
        return pq.read_table(path).to_pylist() if path.exists() else []

    manifest = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").exists() else {}
    kept, rejected = rows(out / "hostile.parquet"), rows(out / "rejected" / "hostile.parquet")
    return Run(code, output, seconds, kept, rejected, manifest)


def listing(site: Path, links: list[str], name: str = "list.html") -> None:
    """A listing page of the fixture site linking to these URLs (relative or absolute)."""
    items = "".join(f'<li><a href="{link}">link</a></li>' for link in links)
    (site / HOST / name).write_text(f"<html><body><ul>{items}</ul></body></html>")


def article(title: str, words: str) -> bytes:
    paragraphs = "".join(
        f"<p>{words} Paragraph {n} says what a clinician should do next.</p>" for n in range(4)
    )
    head = f"<html><head><title>{title}</title></head>"
    return f"{head}<body><main><h1>{title}</h1>{paragraphs}</main></body></html>".encode()


def drip(handler, data: bytes, every: float = 0.2, limit: float = 60.0) -> None:
    """Send data a byte at a time, `every` seconds apart: every read gets a byte well within its timeout."""
    end = time.monotonic() + limit
    try:
        for i in range(len(data)):
            if time.monotonic() > end:
                break
            handler.wfile.write(data[i : i + 1])
            time.sleep(every)
    except OSError:
        pass  # the client gave up: what the test wants
    handler.close_connection = True


def drip_body(handler) -> None:
    handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 100000\r\n\r\n")
    drip(handler, article("Slow body", "Dripping.") * 20)


def drip_headers(handler) -> None:
    drip(handler, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Slow: " + b"a" * 1000)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------- issue 19, row 4


@pytest.mark.timeout(60)
def test_a_server_dripping_headers_or_body_is_cut_at_page_timeout(tmp_path: Path, site: Path) -> None:
    """One byte every 0.2 s never trips the 1 s read timeout; page_timeout (2 s) ends each page."""
    listing(site, ["/drip/body.html", "/drip/headers.html", "/articles/asthma.html"])
    routes = {f"/{HOST}/drip/body.html": drip_body, f"/{HOST}/drip/headers.html": drip_headers}
    with SiteServer(site, routes=routes) as server:
        run = scrape(tmp_path, server.url, "timeout: 1\npage_timeout: 2")
    assert run.code == 0, run.output
    assert [r["url"] for r in run.kept] == [f"https://{HOST}/articles/asthma.html"]
    slow = {r["url"].rsplit("/", 1)[1]: r for r in run.rejected}
    assert sorted(slow) == ["body.html", "headers.html"]
    assert all(
        r["drop_reason"] == "fetch_timeout" and "page_timeout=2" in r["drop_detail"] for r in slow.values()
    )
    assert run.seconds < 2 + 8  # both pages in flight together; the rest is the command's own start


@pytest.mark.timeout(60)
def test_a_robots_txt_dripping_bytes_disallows_the_host_within_page_timeout(
    tmp_path: Path, site: Path
) -> None:
    listing(site, ["/articles/asthma.html", "/articles/gout.html"])

    def robots(handler) -> None:
        handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5000\r\n\r\n")
        drip(handler, b"User-agent: *\nDisallow:\n" + b"#" * 4000)

    with SiteServer(site, routes={f"/{HOST}/robots.txt": robots}) as server:
        run = scrape(tmp_path, server.url, "timeout: 1\npage_timeout: 2")
        paths = [path for _, path in server.arrivals]
    assert run.code == 0 and run.kept == []
    assert set(run.reasons().values()) == {"robots_unreachable"}
    assert "page_timeout=2" in run.rejected[0]["drop_detail"]
    assert paths == [f"/{HOST}/robots.txt"]  # nothing else was asked of a host whose rules are unknown
    assert run.seconds < 2 + 8


# ---------------------------------------------------------------------------------------- issue 19, row 5


@pytest.mark.timeout(120)
def test_a_listing_of_200000_links_is_cut_at_the_page_budget_in_linear_time(
    tmp_path: Path, site: Path
) -> None:
    """Each link is handled once, in linear time (a list test took 32 s for 80,000); at most max_pages are
    queued, the rest counted and named in a warning."""
    links = [f"/articles/{name}.html" for name in ARTICLES] + [f"/page/{n}.html" for n in range(200_000)]
    listing(site, links + links[:1000])  # and some links twice
    with SiteServer(site) as server:
        run = scrape(tmp_path, server.url, "max_pages: 20", kill_after=90)
        paths = server.paths()
    assert run.code == 0, run.output
    assert len(run.kept) == len(ARTICLES) and len(run.rejected) == 20 - 1 - len(ARTICLES)  # listing: no row
    assert {r["drop_reason"] for r in run.rejected} == {"fetch_http_error"}  # /page/N.html: 404
    assert len(paths) == 1 + 20  # robots.txt and the budget
    not_queued = 200_000 + len(ARTICLES) - (20 - 1)
    assert run.manifest["crawl"]["hostile"]["skipped"] == {"scrape_page_budget": not_queued}
    assert f"page budget was reached (max_pages=20): {not_queued} more link(s)" in run.output
    db = sqlite3.connect(tmp_path / "run" / "_crawl" / "hostile" / "state.sqlite")
    assert db.execute("SELECT COUNT(*) FROM frontier").fetchone()[0] == 20
    db.close()


# ---------------------------------------------------------------------------------------- issue 19, row 20


@pytest.mark.timeout(60)
def test_bytes_past_content_length_never_answer_the_next_request(tmp_path: Path, site: Path) -> None:
    """A response longer than its Content-Length carries a whole second response: it must not become the
    answer to the next request on the same connection (and be archived under that page's URL)."""
    listing(site, ["/smuggle.html", "/articles/asthma.html"])
    smuggled = article("Smuggled", "SMUGGLED text that belongs to no URL.")
    short = article("Short page", "The declared body.")

    def smuggler(handler) -> None:
        extra = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % len(smuggled)
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % len(short)
        handler.wfile.write(head + short + extra + smuggled)

    with SiteServer(site, routes={f"/{HOST}/smuggle.html": smuggler}) as server:
        run = scrape(tmp_path, server.url, "concurrency: 1")  # one connection, if it were reused
    kept = {r["url"]: r for r in run.kept}
    assert kept[f"https://{HOST}/articles/asthma.html"]["title"] == "Asthma in adults"
    assert kept[f"https://{HOST}/smuggle.html"]["title"] == "Short page"
    assert not any("SMUGGLED" in r["text"] for r in run.kept)
    from warcio.archiveiterator import ArchiveIterator

    with open(tmp_path / "run" / "_crawl" / "hostile" / "warc" / "00001.warc.gz", "rb") as fh:
        bodies = {
            r.rec_headers.get_header("WARC-Target-URI"): r.content_stream().read()
            for r in ArchiveIterator(fh)
            if r.rec_type == "response"
        }
    assert b"Asthma paragraph 1" in bodies[f"https://{HOST}/articles/asthma.html"]
    assert not any(b"SMUGGLED" in body for body in bodies.values())


# ---------------------------------------------------------------------------------------- issue 19, row 21


@pytest.mark.timeout(60)
def test_an_unknown_charset_label_and_a_stray_byte_are_decoded_not_rejected(
    tmp_path: Path, site: Path
) -> None:
    page = article("Café au lait spots", "Café au lait macules are flat, light-brown patches.")
    stray = page.replace(b"light-brown", b"light\xffbrown", 1)
    routes = {
        f"/{HOST}/undefined.html": lambda h: h.send(
            200, page, {"Content-Type": "text/html; charset=undefined"}
        ),
        f"/{HOST}/unicode-escape.html": lambda h: h.send(
            200, page, {"Content-Type": "text/html; charset=rot13"}
        ),
        f"/{HOST}/stray.html": lambda h: h.send(200, stray, {"Content-Type": "text/html; charset=utf-8"}),
    }
    listing(site, ["/undefined.html", "/unicode-escape.html", "/stray.html"])
    with SiteServer(site, routes=routes) as server:
        run = scrape(tmp_path, server.url)
    assert run.code == 0 and run.rejected == [], run.rejected
    assert len(run.kept) == 3
    for row in run.kept:  # the accented words intact everywhere (no windows-1252 mojibake such as "CafÃ©")
        assert row["title"] == "Café au lait spots"
        assert "Café au lait macules are flat" in row["text"]
    stray_text = next(r["text"] for r in run.kept if r["url"].endswith("/stray.html"))
    assert "light\ufffdbrown" in stray_text


# ---------------------------------------------------------------------------------------- issue 19, row 23


@pytest.mark.timeout(120)
def test_a_full_state_folder_is_named_and_a_resume_finishes(tmp_path: Path, site: Path) -> None:
    with small_disk(tmp_path / "small", "1m", "the full state folder") as small:
        rng = random.Random(0)
        for n in range(12):  # about 30 KB of barely compressible text each: more than the free space
            words = " ".join("".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=7)) for _ in range(3750))
            (site / HOST / "big").mkdir(exist_ok=True)
            (site / HOST / "big" / f"{n}.html").write_bytes(article(f"Big {n}", words))
        listing(site, [f"/big/{n}.html" for n in range(12)])
        filler = small / "filler"
        filler.write_bytes(b"\0" * 850_000)
        state = small / "state"
        with SiteServer(site) as server:
            full = scrape(tmp_path, server.url, extra=("--state", str(state)))
            filler.unlink()
            resumed = scrape(tmp_path, server.url, extra=("--state", str(state), "--resume"))
    assert full.code == 1, full.output
    assert f"no space left in the crawl state folder {state}" in full.output
    assert "rerun with --resume" in full.output
    assert "no space left while writing" not in full.output  # the runner blamed the output folder
    assert resumed.code == 0, resumed.output
    assert len(resumed.kept) == 12 and resumed.rejected == []


# ---------------------------------------------------------------------------------------- issue 19, row 24


@pytest.mark.timeout(60)
def test_only_default_ports_or_listed_ones_are_fetched(tmp_path: Path, site: Path) -> None:
    """https://example.test:22/ is not a web page of the source; a port listed in allowed_domains is its
    own site in mirror mode too (never the default port's page under another URL)."""
    other = site / f"{HOST}:8443"
    other.mkdir()
    (other / "port.html").write_bytes(article("Port page", "Served on port 8443 only."))
    listing(
        site,
        [
            f"https://{HOST}:22/articles/asthma.html",
            f"https://{HOST}:8443/port.html",
            f"https://{HOST}:443/articles/gout.html",  # the default port, written out: one page
            "/articles/gout.html",
        ],
    )
    with SiteServer(site) as server:
        run = scrape(tmp_path, server.url, domains=f'[{HOST}, "{HOST}:8443"]')
        paths = server.paths()
    assert run.code == 0, run.output
    kept = {r["url"]: r for r in run.kept}
    assert sorted(kept) == [f"https://{HOST}/articles/gout.html", f"https://{HOST}:8443/port.html"]
    assert kept[f"https://{HOST}:8443/port.html"]["title"] == "Port page"
    assert run.rejected == []
    assert not any(":22" in p or "asthma" in p for p in paths)
    assert run.manifest["crawl"]["hostile"]["skipped"] == {"fetch_bad_port": 1}


# ------------------------------------------------------------------------------------ issue 13: robots.txt


def _silent(handler) -> None:
    time.sleep(20)  # never answers within the page budget


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("robots", "allowed"),
    [
        (lambda h: h.send(503, b"busy", {"Content-Type": "text/plain"}), False),
        (lambda h: h.send(500, b"oops", {"Content-Type": "text/plain"}), False),
        (_silent, False),
        (lambda h: h.send(404, b"no such file", {"Content-Type": "text/plain"}), True),
        (lambda h: h.send(403, b"forbidden", {"Content-Type": "text/plain"}), True),
    ],
    ids=["503", "500", "no-answer", "404", "403"],
)
def test_robots_txt_5xx_or_no_answer_disallows_the_host_and_4xx_allows_it(
    tmp_path: Path, site: Path, robots, allowed: bool
) -> None:
    """RFC 9309 2.3.1.3-4: an unreachable robots.txt (5xx, no answer) means complete disallow; 4xx allow."""
    listing(site, ["/articles/asthma.html", "/articles/gout.html"])
    with SiteServer(site, routes={f"/{HOST}/robots.txt": robots}) as server:
        run = scrape(tmp_path, server.url, "retries: 1\npage_timeout: 2")
        pages = [p for p in server.paths() if "/articles/" in p]
    assert run.code == 0, run.output
    if allowed:
        assert len(run.kept) == 2 and len(pages) == 2
        return
    assert run.kept == [] and pages == []  # not one page asked of a host whose rules could not be read
    assert {r["drop_reason"] for r in run.rejected} == {"robots_unreachable"}
    assert "RFC 9309 disallows the whole host" in run.rejected[0]["drop_detail"]
    assert "warning:" in run.output and "nothing kept" in run.output


# ------------------------------------------------------------------------------------ issue 13: politeness


def _arrivals(server: SiteServer, part: str) -> list[float]:
    return [t for t, path in server.arrivals if part in path]


def _assert_spaced(times: list[float], interval: float) -> None:
    """Request k arrives no sooner than k intervals after the first. Load can only delay a request, which
    shortens the gap after it, so the check is on the time since the first, less the first one's delay."""
    late_start = 0.1
    for k, t in enumerate(times):
        assert t - times[0] >= k * interval - late_start, [round(b - times[0], 3) for b in times]


@pytest.mark.timeout(60)
def test_requests_to_a_host_are_spaced_by_the_rate_limit(tmp_path: Path, site: Path) -> None:
    listing(site, [f"/articles/{name}.html" for name in ARTICLES[:5]])
    with SiteServer(site) as server:
        run = scrape(tmp_path, server.url, "rate_limit: 4\nconcurrency: 4")  # 0.25 s apart, 4 in flight
        times = _arrivals(server, f"/{HOST}/")
    assert run.code == 0 and len(run.kept) == 5
    assert len(times) == 2 + 5  # robots.txt, the listing, five articles
    _assert_spaced(times, 0.25)


@pytest.mark.timeout(60)
def test_requests_to_a_host_are_spaced_by_its_crawl_delay(tmp_path: Path, site: Path) -> None:
    listing(site, [f"/articles/{name}.html" for name in ARTICLES[:4]])
    (site / HOST / "robots.txt").write_text("User-agent: *\nCrawl-delay: 0.4\nDisallow: /private/\n")
    with SiteServer(site) as server:
        run = scrape(tmp_path, server.url, "rate_limit: 1000\nconcurrency: 4")
        times = _arrivals(server, "/articles/")
    assert run.code == 0 and len(run.kept) == 4
    assert len(times) == 4
    _assert_spaced(times, 0.4)


# ---------------------------------------------------------------------------------------- issue 16: site down


@pytest.mark.timeout(60)
def test_a_site_that_is_down_is_a_warning_naming_the_connection_error(tmp_path: Path, site: Path) -> None:
    listing(site, ["/articles/asthma.html"])
    run = scrape(tmp_path, f"http://127.0.0.1:{free_port()}")  # nothing listens there
    assert run.code == 0, run.output
    assert run.kept == []
    [row] = run.rejected
    assert row["drop_reason"] == "robots_unreachable"  # not "robots_disallowed": no rule said no
    assert "ConnectError" in row["drop_detail"]
    warning = next(line for line in run.output.splitlines() if line.startswith("warning:"))
    assert (
        "hostile: nothing kept" in warning and "robots_unreachable" in warning and "ConnectError" in warning
    )
    assert run.manifest["warnings"] == [warning.removeprefix("warning: ")]


@pytest.mark.timeout(60)
def test_sources_check_live_of_a_site_that_is_down_says_so(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "sources.yaml").write_text(
        SOURCE.replace("https://example.test/{start}", f"http://127.0.0.1:{port}/")
        .replace("https://example.test/", f"http://127.0.0.1:{port}/")
        .format(domains=f'["127.0.0.1:{port}"]', start="", settings="      allow_private: true\n")
    )
    result = CliRunner().invoke(
        app, ["sources", "check", "hostile", "--live", "--sources", str(tmp_path / "sources.yaml")]
    )
    assert result.exit_code == 1, result.output
    assert "the site could not be reached" in result.output and "ConnectError" in result.output
    assert "discovery or extraction is broken" not in result.output
    assert "Traceback" not in result.output


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
    """Requests half a second apart (rate_limit 2) with a page_timeout of 0.4 s: the pages wait longer for
    their turn than their budget, and each is fetched within it once its turn comes."""
    listing(site, [f"/articles/{name}.html" for name in ARTICLES[:3]])
    with SiteServer(site) as server:
        run = scrape(tmp_path, server.url, "rate_limit: 2\npage_timeout: 0.4\nconcurrency: 4")
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
