"""`curate scrape` killed halfway, rerun with --resume: nothing fetched twice, output equals a clean run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curate.scrape.mirror import SiteServer
from tests.scrape.conftest import HOST

REPO = Path(__file__).resolve().parents[2]
# The generic spider of curate.sources (a YAML-only source), so the CLI needs no test code.
SOURCES = """
sources:
  testsite:
    title: Example guidelines (test fixture)
    homepage: https://example.test/
    allowed_domains: [example.test]
    content: html
    license: test licence
    redistributable: false
    scrape:
      rate_limit: 1000
      discovery: {type: listing, start: ["https://example.test/index.html"], links: "ul a",
                  next: "a[data-kind=listing]"}
      extract: {main: main}
"""


def _scrape(tmp: Path, out: Path, mirror: str, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "curate", "scrape", "testsite", "--out", str(out), "--mirror", mirror]
    cmd += ["--sources", str(tmp / "sources.yaml"), "--local", *extra]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _finish(proc: subprocess.Popen) -> str:
    output = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 0, output
    return output


def _cached_urls(db: Path) -> set[str]:
    if not db.exists():
        return set()
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return {row[0] for row in conn.execute("SELECT url FROM cache")}
    except sqlite3.OperationalError:  # not created yet
        return set()


def _rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist() if path.exists() else []


@pytest.mark.timeout(300)
def test_killed_scrape_resumes_without_fetching_twice(tmp_path: Path, site: Path) -> None:
    (tmp_path / "sources.yaml").write_text(SOURCES)
    out = tmp_path / "run" / "scrape"
    db = tmp_path / "run" / "_crawl" / "testsite" / "state.sqlite"

    with SiteServer(site) as server:
        server.hold_after = 5  # robots.txt, index.html and three pages it links to; then no more answers
        proc = _scrape(tmp_path, out, server.url)
        deadline = time.monotonic() + 120
        # Kill once a request is hanging and every answered one is in the crawl's state (the worst moment
        # that is still well defined: a page in flight, everything before it committed).
        while not (
            server.held
            and len(server.paths()) == server.hold_after
            and _cached_urls(db) >= {f"https:/{p}" for p in server.paths()}
        ):
            assert proc.poll() is None, "the scrape ended before it could be killed"
            assert time.monotonic() < deadline, "the scrape never reached the halfway point"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not (out / "testsite.parquet").exists()  # killed before it finished
        first_half = server.paths()
        server.hold_after = None
        _finish(_scrape(tmp_path, out, server.url, "--resume"))
        served = server.paths()

    # No page fetched twice: the resumed run asked only for what the killed one never got answered.
    counts = Counter(served)
    assert [p for p, n in counts.items() if n > 1] == []
    assert len(first_half) == 5 and set(first_half) < set(served)
    assert f"/{HOST}/robots.txt" in first_half

    # Output equals an uninterrupted run's.
    clean = tmp_path / "clean" / "scrape"
    with SiteServer(site) as server:
        _finish(_scrape(tmp_path, clean, server.url))
        assert sorted(server.paths()) == sorted(served)
    resumed = _rows(out / "testsite.parquet")
    assert len(resumed) == 7
    assert resumed == _rows(clean / "testsite.parquet")
    assert _rows(out / "rejected" / "testsite.parquet") == _rows(clean / "rejected" / "testsite.parquet")


def test_rerun_without_resume_rechecks_with_conditional_requests(tmp_path: Path, site: Path) -> None:
    (tmp_path / "sources.yaml").write_text(SOURCES)
    out = tmp_path / "run" / "scrape"
    with SiteServer(site) as server:
        _finish(_scrape(tmp_path, out, server.url))
        first = _rows(out / "testsite.parquet")
        n = len(server.log)
        _finish(_scrape(tmp_path, out, server.url, "--resume"))  # finished: nothing to do
        assert len(server.log) == n
        _finish(_scrape(tmp_path, out, server.url))  # a fresh scrape: every page re-checked
        assert [status for _, status, _ in server.log[n:]] == [304] * n
    assert _rows(out / "testsite.parquet") == first
