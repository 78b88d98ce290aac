"""The `scrape` step: one task per source, each a polite crawl that returns kept and rejected records."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from curate.errors import ConfigError
from curate.io import read_json
from curate.layout import kept_file, rejected_file
from curate.schema import ERROR_REASON, records_table, with_drop
from curate.scrape.crawl import CrawlResult, crawl, fetch_settings
from curate.scrape.mirror import SiteServer
from curate.sources.registry import Source
from curate.stage import DERIVED, Input, Stage, StageResult, Task, require_source
from curate.storage import is_uri

REPORT_SUFFIX = ".crawl.json"  # a source's crawl report, beside its records
STATE_DIR = "_crawl"  # beside the stage's output folder: the runner may wipe the stage folder, never this
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Options that never change the records (where the crawl state lives, the mirror, resuming): they stay out
# of the fingerprint, so that flipping them neither recomputes the stage nor discards its crawl.
_NOT_FINGERPRINTED = {"name", "resume", "mirror", "state"}


def state_root(out_dir: str | Path, state: str = "") -> Path:
    """Where the crawl state of a scrape into out_dir lives: `state`, else `_crawl` beside out_dir."""
    return Path(state).resolve() if state else Path(out_dir).resolve().parent / STATE_DIR


@dataclass
class ScrapeStage(Stage):
    """Crawl each named source (sources.yaml, `scrape:` block) with its spider; one Ray task per source."""

    step: ClassVar[str] = "scrape"
    inputs_optional: ClassVar[bool] = True  # the web; given inputs, local copies of the sites
    sources: list[str] = field(default_factory=list)
    limit: int = 0  # keep at most this many documents per source (0: all)
    resume: bool = True  # continue a killed crawl, replaying what it fetched; false: a fresh crawl
    mirror: str = ""  # fetch https://HOST/PATH from MIRROR/HOST/PATH (fixture sites, offline checks)
    state: str = ""  # crawl state folder (default: _crawl beside the output folder)
    catalog: dict[str, Source] = field(default_factory=dict, metadata=DERIVED)  # sources.yaml's entries

    def __post_init__(self) -> None:
        if isinstance(self.sources, str):
            self.sources = [self.sources]
        for name in self.sources:
            if not _SAFE_NAME.match(name):  # it names a folder of the crawl state
                raise ValueError(f"source name {name!r} is not a plain name")
        if self.limit < 0:
            raise ValueError("limit must be >= 0")

    def bind(self, catalog: Mapping[str, Any], inputs: list[Input]) -> None:
        """The sources.yaml entries of the sources to scrape (ConfigError for one it lacks)."""
        self.catalog = {s: require_source(catalog, s) for s in self.sources}

    def params(self) -> dict[str, Any]:
        params = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in _NOT_FINGERPRINTED and f.name != "catalog"
        }
        params["catalog"] = {k: dataclasses.asdict(v) for k, v in sorted(self.catalog.items())}
        return params

    def plan(self, inputs: list[Input]) -> list[Task]:
        if not self.sources:
            raise ConfigError(f"stage {self.name!r}: list the sources to scrape under 'sources:'")
        missing = [s for s in self.sources if s not in self.catalog]
        if missing:
            raise ConfigError(f"stage {self.name!r}: unknown source(s) {', '.join(missing)}")
        local = [s for s in self.sources if getattr(self.catalog[s], "scrape", None) is None]
        if local:
            raise ConfigError(
                f"stage {self.name!r}: source(s) {', '.join(local)} have no 'scrape:' block in sources.yaml "
                "(local-only sources are read with their own step, not scraped)"
            )
        mirrors: dict[str, str] = {}
        for item in inputs:  # a local copy of a source's site (laid out HOST/PATH), served on loopback
            if item.source not in self.sources:
                raise ConfigError(
                    f"stage {self.name!r}: input {item.path} is a local copy of a site: give it "
                    f"'source:' naming one of the scraped sources ({', '.join(self.sources)})"
                )
            if not Path(item.path).is_dir():
                raise ConfigError(f"stage {self.name!r}: site folder not found: {item.path}")
            mirrors[item.source] = item.path
        names = dict.fromkeys(self.sources)
        return [Task(name=s, inputs=(mirrors[s],) if s in mirrors else ()) for s in names]

    def prepare(self, tasks: list[Task], map_fn, scratch: Path, out: Any = None) -> list[Task]:
        out = scratch.parent if out is None else out
        if not self.state and is_uri(out):
            # A crawl's sqlite file and WARC segments need a real folder, which only the user can name.
            raise ConfigError(
                f"stage {self.name!r}: a scrape into object storage keeps its crawl state (frontier, WARC "
                "archive) on a disk: set 'state:' (--state) to a local or shared folder"
            )
        root = str(state_root(out, self.state))
        return [dataclasses.replace(t, payload={"state": root}) for t in tasks]

    def process(self, task: Task) -> StageResult:
        from curate.scrape.spiders import spider_for

        source = self.catalog[task.name]
        root = Path((task.payload or {}).get("state") or state_root(".", self.state))
        spider = spider_for(source)
        mirror, settings = self.mirror or None, fetch_settings(source)
        with contextlib.ExitStack() as stack:
            if task.inputs:  # a local copy of the site, served on loopback
                mirror = stack.enter_context(SiteServer(task.inputs[0])).url
                # Our own server: the source's politeness delays protect nobody here.
                settings = dataclasses.replace(settings, rate_limit=max(settings.rate_limit, 200.0))
            result = crawl(
                source,
                spider,
                root / source.name,
                resume=self.resume,
                limit=self.limit,
                mirror=mirror,
                settings=settings,
            )
        kept, rejected = result_tables(self.name, result)
        report = json.dumps(result.stats, indent=2, sort_keys=True).encode()
        # Pages become records only as the crawl finds them: their number is the documents in.
        sidecars = {f"{task.name}{REPORT_SUFFIX}": report}
        return StageResult(kept, rejected, sidecars, documents_in=kept.num_rows + rejected.num_rows)

    def error_rows(self, task: Task, error: str) -> pa.Table:
        rows = [{"id": f"error:{task.name}", "text": "", "source": task.name, "url": None}]
        return with_drop(records_table(rows), self.name, [ERROR_REASON], [error])

    def finish(self, out_dir: Any, manifest: dict[str, Any]) -> None:
        """Each source's crawl report (pages, fetches, skipped links) into the manifest, and its warnings
        (a source that kept nothing, a page budget reached) where the command prints them."""
        crawls, warnings = {}, []
        failed = {f["task"] for f in manifest.get("failed_tasks", [])}
        for name in dict.fromkeys(self.sources):
            path = out_dir / f"{name}{REPORT_SUFFIX}"
            if name not in failed and path.exists():
                crawls[name] = read_json(path)
                warnings += crawls[name].get("warnings", [])
        manifest["crawl"] = crawls
        manifest["warnings"] = warnings


def forget_outputs(out_dir: str | Path, names: list[str]) -> None:
    """Remove the finished outputs of these sources, so that the runner crawls them again (a fresh scrape
    from the command line, which re-checks every page with conditional requests)."""
    out = Path(out_dir)
    for name in names:
        if _SAFE_NAME.match(name):
            kept_file(out, name).unlink(missing_ok=True)
            rejected_file(out, name).unlink(missing_ok=True)
            (out / f"{name}{REPORT_SUFFIX}").unlink(missing_ok=True)


def result_tables(stage: str, result: CrawlResult) -> tuple[pa.Table, pa.Table]:
    """A crawl's rows as the kept table and the rejected table (with drop columns) of a stage."""
    kept = records_table(result.kept)
    rejected = with_drop(
        records_table(result.rejected),
        stage,
        [r["drop_reason"] for r in result.rejected],
        [r["drop_detail"] for r in result.rejected],
    )
    return kept, rejected
