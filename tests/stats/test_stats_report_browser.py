"""The HTML stats report in a real headless Chromium: it renders, has every plot, no console errors."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest

from curate.stats.compute import collect_stats
from curate.stats.report import write_html

from .test_stats import DOCS, kept_table, manifest, rejected_table, write_stage

CHROMIUM = Path(os.environ.get("CURATE_CHROMIUM", "/usr/bin/chromium"))
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]
CONSOLE_ERROR = re.compile(r"Uncaught|CONSOLE\(\d+\)\].*(error|Error)|:ERROR:CONSOLE")

pytestmark = [
    pytest.mark.requires("browser"),
    pytest.mark.skipif(
        not CHROMIUM.is_file(),
        reason=f"no Chromium at {CHROMIUM} (make browser, or set CURATE_CHROMIUM)",
    ),
]


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    command = [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=tmp_path)


@pytest.fixture
def report(tmp_path: Path) -> Path:
    """A report over a work directory with every section: funnel, sources, languages, drops, clusters."""
    root = tmp_path / "run"
    write_stage(
        root / "filter",
        [kept_table(DOCS)],
        [rejected_table("filter", [(f"nice:{n}", "lang", "de") for n in range(4)])],
        manifest("filter", 9, 5, 4, 0, 50),
    )
    kept = kept_table(DOCS[:4]).append_column("dup_cluster", pa.array(["A", "B", "C", "D"], pa.string()))
    dropped = rejected_table(
        "dedup", [("pmc:e", "near_duplicate", "of pmc:d"), ("x:1", "exact_duplicate", "of A")]
    )
    dropped = dropped.add_column(dropped.num_columns - 3, "dup_cluster", pa.array(["D", "A"], pa.string()))
    write_stage(root / "dedup", [kept], [dropped], manifest("dedup", 6, 4, 2, 0, 45))
    (root / "pipeline.json").write_text('{"pipeline": "browser", "stages": ["filter", "dedup"]}')
    path = tmp_path / "report.html"
    write_html(collect_stats(root), path)
    return path


def test_report_renders_with_every_plot_and_no_console_errors(report: Path, tmp_path: Path) -> None:
    dom = _chromium(tmp_path, "--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    charts = set(re.findall(r'<svg[^>]*data-chart="([^"]+)"', dom.stdout))
    expected = {"funnel", "sources", "languages", "drop-reasons", "clusters", "length-all"}
    assert expected | {"length-source:nice", "length-source:who", "length-source:pmc"} <= charts
    assert dom.stdout.count("<rect") > 20  # the bars are drawn, not only the frames
    assert "Sample of dropped documents, by reason" in dom.stdout and "near_duplicate" in dom.stdout
    assert not CONSOLE_ERROR.search(dom.stderr), dom.stderr[-2000:]

    shot = tmp_path / "report.png"
    result = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,2400", report.as_uri())
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    assert not CONSOLE_ERROR.search(result.stderr), result.stderr[-2000:]
    import pymupdf  # reads PNG: count the pixels that are neither white nor near-white

    pix = pymupdf.Pixmap(str(shot))
    assert (pix.width, pix.height) == (1200, 2400)
    samples = pix.samples
    step = pix.n * 7  # every 7th pixel is plenty
    inked = sum(1 for i in range(0, len(samples) - pix.n, step) if min(samples[i : i + 3]) < 200)
    assert inked > 2000, "the screenshot is (nearly) blank"
    # the bar colour of the plots (#1565c0) is on screen
    blue = bytes.fromhex("1565c0")
    assert any(samples[i : i + 3] == blue for i in range(0, len(samples) - pix.n, pix.n * 3))


def test_the_console_check_catches_a_script_error(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><p>x</p><script>undefinedFunction()</script></body></html>")
    result = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert result.returncode == 0
    assert CONSOLE_ERROR.search(result.stderr), result.stderr[-2000:]
