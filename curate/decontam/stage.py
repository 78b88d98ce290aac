"""The `decontaminate` step: remove (or cut out of) documents the test items of evaluation sets.

The global pass (prepare) builds the n-gram index once: one task per evaluation file hashes its items' word
n-grams, and the driver sorts them into two arrays (curate.decontam.ngrams). The index travels to the tasks
with the stage, which Ray puts in its object store once. Then one task per input shard matches its documents
in batches:
  - `action: drop` (default): a contaminated document is rejected, `drop_reason: contaminated`, with
    `drop_detail` a JSON object naming the benchmark, the item, the overlapping n-gram, the share of the
    item's n-grams found, and how many other items it holds;
  - `action: cut`: the matching stretches, widened by `window` characters to whitespace, are removed and
    the rest kept (as GPT-3's authors did); `meta.decontaminate` records the items and characters removed. A
    document cut into more than MAX_PIECES pieces, or with nothing left, is dropped as above.
A document whose `meta.pmid` is a PubMedQA item's PMID is contaminated whatever its text looks like (the
item's abstract re-formatted by another parser), and is always dropped: there is no span to cut.
Each task writes `<task>.decontamination.json` (its matches); `finish` sums them into `decontamination.json`,
the report `curate stats` shows.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from curate.decontam.evalsets import EvalSet, evalsets_sha256, parse_evalsets, read_items
from curate.decontam.ngrams import (
    ITEM_BATCH,
    ItemIndex,
    Match,
    build_index,
    cut_spans,
    find_matches,
    item_hashes,
    ngram_text,
    remove_spans,
)
from curate.decontam.report import INDEX_INFO, REPORT, SIDECAR_SUFFIX, index_info, summarise
from curate.errors import ConfigError
from curate.io import read_json, read_parquet, write_json
from curate.schema import Verdict, conform, dumps_meta, split_verdicts
from curate.stage import DERIVED, PIPELINE_PATHS, StageResult, TableStage, Task

log = logging.getLogger("curate")

REASON = "contaminated"
ACTIONS = ("drop", "cut")
MATCH_BATCH = 1000  # documents matched at once: bounds the memory of their n-gram arrays
MAX_PIECES = 10  # GPT-3's rule: a document cut into more pieces than this is dropped whole
EXAMPLE_CHARS = 300  # characters of a document shown around a match in the report
EXAMPLES_PER_TASK = 5  # per benchmark: the report keeps the first few of the whole stage
_PMID = re.compile(r'"pmid":\s*"?(\d+)')


def _hash_task(texts: list[str], ngram: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Global pass, one batch of items: their distinct n-gram hashes (item numbers local to the batch)."""
    return item_hashes(texts, ngram)


@dataclass
class DecontaminateStage(TableStage):
    """Drops documents holding test items of evaluation sets (or cuts the items out), by n-grams and PMID."""

    step: ClassVar[str] = "decontaminate"
    # Paths, or {path, layout, name}; in pipeline YAML, relative to the YAML file.
    benchmarks: list = field(default_factory=list, metadata=PIPELINE_PATHS)
    ngram: int = 5
    min_share: float = 0.2
    min_ngrams: int = 3
    action: str = "drop"
    window: int = 200
    # Of the files' contents: changed evaluation sets recompute the stage.
    benchmarks_sha256: str = field(default="", metadata=DERIVED)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ConfigError(f"action must be one of {', '.join(ACTIONS)}, not {self.action!r}")
        if isinstance(self.ngram, bool) or not isinstance(self.ngram, int) or not 1 <= self.ngram <= 64:
            raise ConfigError(f"ngram must be a whole number from 1 to 64, not {self.ngram!r}")
        if isinstance(self.min_share, bool) or not 0.0 <= float(self.min_share) <= 1.0:
            raise ConfigError(f"min_share must be a fraction from 0 to 1, not {self.min_share!r}")
        if isinstance(self.min_ngrams, bool) or not isinstance(self.min_ngrams, int) or self.min_ngrams < 1:
            raise ConfigError(f"min_ngrams must be a whole number of at least 1, not {self.min_ngrams!r}")
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 0:
            raise ConfigError(f"window must be a number of characters (0 or more), not {self.window!r}")
        self.min_share = float(self.min_share)
        evalsets = parse_evalsets(self.benchmarks)
        names = [e.name for e in evalsets]
        for e in evalsets:  # every item readable now, so a bad file stops the run before any work
            for _ in read_items(e):
                pass
        self.benchmarks = [{"path": e.path, "layout": e.layout, "name": e.name} for e in evalsets]
        if not self.benchmarks_sha256:
            self.benchmarks_sha256 = evalsets_sha256(evalsets)
        self.index: ItemIndex | None = None
        log.debug("decontaminate: benchmarks %s", ", ".join(sorted(set(names))))

    @property
    def evalsets(self) -> list[EvalSet]:
        """The evaluation files, resolved."""
        return [EvalSet(b["path"], b["layout"], b["name"]) for b in self.benchmarks]

    # ------------------------------------------------------------------------------------------ global pass

    def prepare(self, tasks: list[Task], map_fn, scratch: Path, out: Any = None) -> list[Task]:
        # The driver reads the evaluation files (they need not be on every node); tasks hash batches of items.
        names = list(dict.fromkeys(b["name"] for b in self.benchmarks))
        ids: list[str] = []
        codes: list[int] = []
        pmids: dict[str, list[int]] = {}
        texts: list[str] = []
        for evalset in self.evalsets:
            for item in read_items(evalset):
                if item.pmid:
                    pmids.setdefault(item.pmid, []).append(len(ids))
                ids.append(item.id)
                codes.append(names.index(evalset.name))
                texts.append(item.text)
        batches = [(texts[s : s + ITEM_BATCH], self.ngram) for s in range(0, len(texts), ITEM_BATCH)]
        hashed = map_fn(_hash_task, batches)
        del texts, batches
        benchmark = np.array(codes, np.int16)
        self.index = build_index(hashed, ids, benchmark, names, pmids, self.ngram)
        log.info(
            "stage %s: %d test items, %d indexed %d-grams (%.1f MB), %d items without any",
            self.name,
            len(ids),
            len(self.index.keys),
            self.ngram,
            self.index.nbytes / 1e6,
            int((self.index.item_ngrams == 0).sum()),
        )
        if out is not None:
            write_json(index_info(self.index, self.evalsets), out / INDEX_INFO)
        return tasks

    # ------------------------------------------------------------------------------------------ per shard

    def process(self, task: Task) -> StageResult:
        table = conform(pa.concat_tables([read_parquet(p) for p in task.inputs], promote_options="default"))
        kept, rejected, matches = self.decontaminate(table)
        sidecar = json.dumps({"documents": table.num_rows, "matches": matches}, indent=1, sort_keys=True)
        return StageResult(kept, rejected, {f"{task.name}{SIDECAR_SUFFIX}": sidecar.encode()})

    def apply(self, table: pa.Table, task: Task) -> tuple[pa.Table, pa.Table]:
        kept, rejected, _ = self.decontaminate(table)
        return kept, rejected

    def decontaminate(self, table: pa.Table) -> tuple[pa.Table, pa.Table, list[dict[str, Any]]]:
        """Kept rows (cut, with the cut action), rejected rows, and one record per (document, item) found."""
        index = self.index
        if index is None:
            raise RuntimeError("decontaminate: the index is built by prepare() before any shard is processed")
        texts = table.column("text").to_pylist()
        by_doc: dict[int, list[Match]] = {}
        for start in range(0, len(texts), MATCH_BATCH):
            for m in find_matches(texts[start : start + MATCH_BATCH], index, self.min_share, self.min_ngrams):
                by_doc.setdefault(start + m.doc, []).append(m)
        by_pmid = self._pmid_matches(table.column("meta").to_pylist())
        ids = table.column("id").to_pylist()
        metas = table.column("meta").to_pylist()
        verdicts: list[Verdict] = [True] * len(texts)
        new_texts, new_metas = list(texts), list(metas)
        records: list[dict[str, Any]] = []
        shown: Counter = Counter()
        for row in sorted(set(by_doc) | set(by_pmid)):
            text = texts[row] or ""
            matches = sorted(by_doc.get(row, []), key=lambda m: (-m.share, m.item))
            found = [self._record(text, m) for m in matches]
            found += [
                self._pmid_record(i) for i in by_pmid.get(row, []) if i not in {m.item for m in matches}
            ]
            left, removed, why = "", 0, ""
            if self.action == "cut" and not by_pmid.get(row):  # a PMID match has no stretch to cut
                left, removed, why = self._cut(text, matches)
            if left:
                new_texts[row] = left
                new_metas[row] = _with_cut(metas[row], found, removed)
                action, chars = "cut", removed
            else:
                verdicts[row] = (False, REASON, _detail(found, why))
                action, chars = "drop", len(text)
            for r in found:
                r.update(document=ids[row], action=action, characters_removed=chars)
                if shown[r["benchmark"]] < EXAMPLES_PER_TASK:
                    shown[r["benchmark"]] += 1
                    r["excerpt"] = _excerpt(text, r.get("span"))
                r.pop("span", None)
            records.extend(found)
        if self.action == "cut":
            table = _replace(table, "text", pa.array(new_texts, pa.string()))
            table = _replace(table, "meta", pa.array(new_metas, pa.string()))
        kept, rejected = split_verdicts(table, verdicts, self.name)
        return kept, rejected, records

    def _cut(self, text: str, matches: list[Match]) -> tuple[str, int, str]:
        """(text left, characters removed, "") after cutting the matches out; ("", 0, why) to drop instead."""
        spans = cut_spans(text, [(m.start, m.end) for m in matches], self.window)
        if spans is None:
            return "", 0, "its words could not be aligned with the text to cut"
        if len(spans) > MAX_PIECES:
            return "", 0, f"more than {MAX_PIECES} stretches to cut"
        left = remove_spans(text, spans)
        if not left:
            return "", 0, "nothing left after the cut"
        return left, sum(b - a for a, b in spans), ""

    def _pmid_matches(self, metas: list[str | None]) -> dict[int, list[int]]:
        """Rows whose meta.pmid is a PubMedQA item's PMID, with those items."""
        index = self.index
        found: dict[int, list[int]] = {}
        if not index or not index.pmids:
            return found
        for row, meta in enumerate(metas):
            hit = _PMID.search(meta) if meta else None
            if hit is None or hit.group(1) not in index.pmids:
                continue
            try:
                pmid = str(json.loads(meta).get("pmid") or "")
            except (ValueError, AttributeError):
                continue
            if pmid in index.pmids:
                found[row] = index.pmids[pmid]
        return found

    def _record(self, text: str, m: Match) -> dict[str, Any]:
        index = self.index
        assert index is not None
        return {
            "benchmark": index.benchmarks[index.item_benchmark[m.item]],
            "item": index.item_ids[m.item],
            "by": "ngrams",
            "ngram": ngram_text(text, m.start, index.ngram),
            "share": m.share,
            "found": m.found,
            "span": (m.start, m.end),
        }

    def _pmid_record(self, item: int) -> dict[str, Any]:
        index = self.index
        assert index is not None
        return {
            "benchmark": index.benchmarks[index.item_benchmark[item]],
            "item": index.item_ids[item],
            "by": "pmid",
            "ngram": None,
            "share": None,
            "found": None,
            "span": None,
        }

    def finish(self, out_dir: Path, manifest: dict[str, Any]) -> None:
        shards = {Path(o["path"]).stem for o in manifest["outputs"]}
        parts = []
        for f in sorted(out_dir.glob(f"*{SIDECAR_SUFFIX}")):
            if f.name.removesuffix(SIDECAR_SUFFIX) not in shards:
                f.unlink()
            else:
                parts.append(read_json(f))
        info = read_json(out_dir / INDEX_INFO) if (out_dir / INDEX_INFO).exists() else {}
        params = {k: v for k, v in self.params().items() if k != "benchmarks_sha256"}
        report = summarise(parts, params, info)
        write_json(report, out_dir / REPORT)
        manifest["decontamination"] = {k: v for k, v in report.items() if k != "examples"}


def _replace(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    i = table.column_names.index(name)
    return table.set_column(i, table.schema.field(name), values)


def _detail(found: list[dict[str, Any]], why: str) -> str:
    """drop_detail: the best match (benchmark, item, n-gram, share), how many more, and why it was not cut."""
    first = {k: found[0][k] for k in ("benchmark", "item", "by", "ngram", "share")}
    if len(found) > 1:
        first["more_items"] = len(found) - 1
    if why:
        first["not_cut"] = why
    return json.dumps(first, ensure_ascii=False, sort_keys=True)


def _with_cut(meta: str | None, found: list[dict[str, Any]], removed: int) -> str:
    try:
        data = json.loads(meta) if meta else {}
    except ValueError:
        data = {"meta_unparsed": meta}
    if not isinstance(data, dict):
        data = {"meta_unparsed": meta}
    data["decontaminate"] = {
        "characters_removed": removed,
        "items": [f"{r['benchmark']}:{r['item']}" for r in found],
    }
    return dumps_meta(data)


def _excerpt(text: str, span: tuple[int, int] | None) -> str:
    """About EXAMPLE_CHARS characters of the document, from near the start of the match."""
    if span is None:
        return text[:EXAMPLE_CHARS]
    from curate.decontam.ngrams import word_spans

    spans = word_spans(text)
    at = spans[span[0]][0] if spans and span[0] < len(spans) else 0
    start = max(0, at - 40)
    return ("..." if start else "") + text[start : start + EXAMPLE_CHARS]
