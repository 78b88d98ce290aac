"""The scrape step in a pipeline: one task per source, records accounted for, crawl state beside the stage."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curate.executors import LocalExecutor
from curate.pipeline import load_pipeline, run_pipeline
from curate.scrape.mirror import SiteServer
from curate.scrape.spiders.base import register
from tests.cluster.test_s3_storage import BUCKET, s3  # noqa: F401 - moto's S3 server on loopback (fixture)
from tests.scrape.conftest import SOURCES_YAML, CrawlTestSpider


@register("crawltest-buggy")
class BuggySpider(CrawlTestSpider):
    """Raises on one page: that page is an errored record, the rest of the crawl goes on."""

    def parse(self, response):
        if response.url.endswith("/gout.html"):
            raise RuntimeError("spider bug")
        yield from super().parse(response)


def test_pipeline_scrape_stage_accounts_for_every_page(tmp_path: Path, site: Path) -> None:
    (tmp_path / "sources.yaml").write_text(
        SOURCES_YAML.format(name="testsite", start="index.html")
        + SOURCES_YAML.format(name="buggy", start="list2.html")
        .replace("sources:\n", "")
        .replace("crawltest", "crawltest-buggy")
    )
    with SiteServer(site) as server:
        (tmp_path / "p.yaml").write_text(
            f"""
name: t
stages:
  - name: scrape
    step: scrape
    sources: [testsite, buggy]
    mirror: {server.url}
  - name: shard
    step: shard
"""
        )
        pipeline, _ = load_pipeline(tmp_path / "p.yaml", tmp_path / "sources.yaml")
        manifests = run_pipeline(pipeline, tmp_path / "work", LocalExecutor())
    scrape = manifests[0]
    assert scrape["counts"] == {"in": 11, "kept": 10, "rejected": 0, "errored": 1}
    assert sorted(o["path"] for o in scrape["outputs"]) == ["buggy.parquet", "testsite.parquet"]
    assert "mirror" not in scrape["params"] and scrape["params"]["sources"] == ["testsite", "buggy"]
    errored = pq.read_table(tmp_path / "work" / "scrape" / "rejected" / "buggy.parquet").to_pylist()
    assert [(r["url"], r["drop_reason"]) for r in errored] == [
        ("https://example.test/articles/gout.html", "error")
    ]
    assert "spider bug" in errored[0]["drop_detail"]
    assert manifests[-1]["counts"]["kept"] == 10
    for name in ("testsite", "buggy"):
        assert (tmp_path / "work" / "_crawl" / name / "state.sqlite").exists()
    kept = pq.read_table(tmp_path / "work" / "scrape" / "testsite.parquet").to_pylist()
    assert all(r["license"] == "test licence" and json.loads(r["meta"]) is not None for r in kept)


def test_scrape_on_ray_equals_in_process(ray_session, tmp_path: Path, site: Path) -> None:
    """One Ray task per source (YAML-only sources: the generic spider); the records equal a local run's."""
    from curate.executors import RayExecutor
    from curate.runner import run_stage
    from curate.scrape.stage import ScrapeStage
    from curate.sources.registry import load_sources
    from tests.scrape.test_resume import SOURCES

    second = SOURCES.replace("sources:\n", "").replace("testsite:", "second:")
    second = second.replace("index.html", "list2.html")
    (tmp_path / "sources.yaml").write_text(SOURCES + second)
    catalog = load_sources(tmp_path / "sources.yaml")
    outputs = {}
    with SiteServer(site) as server:
        for name, executor in (("ray", RayExecutor()), ("local", LocalExecutor())):
            stage = ScrapeStage(sources=["testsite", "second"], mirror=server.url, catalog=catalog)
            stage.name = "scrape"
            manifest = run_stage(stage, [], tmp_path / name / "scrape", executor)
            assert manifest["tasks"]["run"] == 2 and manifest["counts"]["kept"] == 7 + 4
            outputs[name] = [pq.read_table(tmp_path / name / "scrape" / f"{s}.parquet") for s in catalog]
    assert all(a.equals(b) for a, b in zip(outputs["ray"], outputs["local"], strict=True))


def test_changed_extraction_rules_reextract_from_the_archive(tmp_path: Path, site: Path) -> None:
    """A new rule in sources.yaml recomputes the stage from the WARC archive, without one request."""
    from curate.runner import run_stage
    from curate.scrape.stage import ScrapeStage
    from curate.sources.registry import load_sources
    from tests.scrape.test_resume import SOURCES

    texts = []
    with SiteServer(site) as server:
        for extract in ("{main: main}", "{main: main, drop: [h1]}"):
            (tmp_path / "sources.yaml").write_text(SOURCES.replace("{main: main}", extract))
            catalog = load_sources(tmp_path / "sources.yaml")
            stage = ScrapeStage(sources=["testsite"], mirror=server.url, catalog=catalog)
            before = len(server.log)
            run_stage(stage, [], tmp_path / "scrape", LocalExecutor())
            texts.append(pq.read_table(tmp_path / "scrape" / "testsite.parquet").column("text").to_pylist())
        assert before > 0 and len(server.log) == before  # the second run fetched nothing
    assert texts[0][0].startswith("# Asthma in adults") and not texts[1][0].startswith("# Asthma")
    assert texts[1][0].startswith("Asthma paragraph 1")


def test_changed_discovery_under_resume_equals_a_fresh_crawl(tmp_path: Path, site: Path) -> None:
    """A new start URL in sources.yaml: the resumed stage crawls from it (not the old frontier) and writes
    what a fresh crawl writes, replaying from the archive the pages it already has."""
    from curate.runner import run_stage
    from curate.scrape.stage import ScrapeStage
    from curate.sources.registry import load_sources
    from tests.scrape.test_resume import SOURCES

    def scrape(yaml: str, out: Path) -> list[list[dict]]:
        (tmp_path / "sources.yaml").write_text(yaml)
        stage = ScrapeStage(
            sources=["testsite"], mirror=server.url, catalog=load_sources(tmp_path / "sources.yaml")
        )
        stage.name = "scrape"
        run_stage(stage, [], out, LocalExecutor())
        return [
            pq.read_table(out / f).to_pylist()
            for f in ("testsite.parquet", "rejected/testsite.parquet")
            if (out / f).exists()
        ]

    changed = SOURCES.replace("index.html", "list2.html")
    with SiteServer(site) as server:
        before = scrape(SOURCES, tmp_path / "run" / "scrape")
        fetched = len(server.log)
        after = scrape(changed, tmp_path / "run" / "scrape")
        assert len(server.log) == fetched  # list2.html and its articles were in the archive already
        fresh = scrape(changed, tmp_path / "fresh" / "scrape")
    assert after == fresh and len(after[0]) == 4 and len(before[0]) == 7


@pytest.mark.usefixtures("s3")
def test_scrape_into_object_storage_needs_a_state_folder(tmp_path: Path, site: Path) -> None:
    """With the work directory on S3 (moto on loopback) the crawl state needs a folder named with `state:`."""
    from curate.errors import ConfigError
    from curate.runner import run_stage
    from curate.scrape.stage import ScrapeStage
    from curate.sources.registry import load_sources
    from tests.scrape.test_resume import SOURCES

    (tmp_path / "sources.yaml").write_text(SOURCES)
    out = f"s3://{BUCKET}/scrape-test/scrape"
    with SiteServer(site) as server:
        stage = ScrapeStage(
            sources=["testsite"], mirror=server.url, catalog=load_sources(tmp_path / "sources.yaml")
        )
        stage.name = "scrape"
        with pytest.raises(ConfigError, match="set 'state:'"):
            run_stage(stage, [], out, LocalExecutor())
        stage.state = str(tmp_path / "crawl")
        manifest = run_stage(stage, [], out, LocalExecutor())
    assert manifest["counts"]["kept"] == 7
    assert (tmp_path / "crawl" / "testsite" / "state.sqlite").exists()
