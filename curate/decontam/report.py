"""The decontamination report: per benchmark, items found in the corpus, documents and characters removed.

Written by the stage as `decontamination.json` (from its tasks' `<task>.decontamination.json`) and shown by
`curate stats` in the terminal, in `--json` and in the HTML report.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

REPORT = "decontamination.json"
INDEX_INFO = "decontamination-index.json"  # what prepare() indexed; read again when every task was skipped
SIDECAR_SUFFIX = ".decontamination.json"
EXAMPLES = 5  # per benchmark


def index_info(index: Any, evalsets: list[Any]) -> dict[str, Any]:
    """Per benchmark: its files, items, and items with no n-gram to match (too short, or only templates)."""
    import numpy as np

    benchmarks: dict[str, dict[str, Any]] = {}
    for e in evalsets:
        entry = benchmarks.setdefault(e.name, {"files": [], "layout": e.layout})
        entry["files"].append(e.path)
    for code, name in enumerate(index.benchmarks):
        mine = index.item_benchmark == code
        benchmarks[name]["items"] = int(mine.sum())
        benchmarks[name]["items_unmatchable"] = int((mine & (index.item_ngrams == 0)).sum())
        benchmarks[name]["items_with_pmid"] = len(
            {p for p, items in index.pmids.items() for i in items if mine[i]}
        )
    return {
        "benchmarks": benchmarks,
        "indexed_ngrams": int(len(index.keys)),
        "index_bytes": int(index.nbytes),
        "items": int(len(index.item_ids)),
        "items_unmatchable": int(np.sum(index.item_ngrams == 0)),
    }


def summarise(parts: list[dict[str, Any]], params: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """The stage's report from its tasks' match lists, its parameters and its index info."""
    benchmarks = {
        name: {
            **entry,
            "items_found": 0,
            "documents": 0,
            "documents_by_pmid": 0,
            "characters_removed": 0,
        }
        for name, entry in (info.get("benchmarks") or {}).items()
    }
    examples: dict[str, list[dict[str, Any]]] = defaultdict(list)
    items: dict[str, set[str]] = defaultdict(set)
    docs: dict[str, set[str]] = defaultdict(set)
    by_pmid: dict[str, set[str]] = defaultdict(set)
    removed: dict[str, tuple[str, int]] = {}  # document -> (action, characters removed)
    documents = 0
    for part in parts:
        documents += part.get("documents", 0)
        for m in part.get("matches", []):
            name = m["benchmark"]
            entry = benchmarks.setdefault(
                name, {"items_found": 0, "documents": 0, "documents_by_pmid": 0, "characters_removed": 0}
            )
            items[name].add(m["item"])
            if m["document"] not in docs[name]:
                docs[name].add(m["document"])
                entry["documents"] += 1
                entry["characters_removed"] += m["characters_removed"]
            if m["by"] == "pmid":
                by_pmid[name].add(m["document"])
            removed[m["document"]] = (m["action"], m["characters_removed"])
            if "excerpt" in m and len(examples[name]) < EXAMPLES:
                examples[name].append(m)
    for name, found in items.items():
        benchmarks[name]["items_found"] = len(found)
        benchmarks[name]["documents_by_pmid"] = len(by_pmid[name])
    actions = [a for a, _ in removed.values()]
    return {
        "parameters": params,
        "documents": documents,
        "documents_contaminated": len(removed),
        "documents_dropped": actions.count("drop"),
        "documents_cut": actions.count("cut"),
        "characters_removed": sum(c for _, c in removed.values()),
        "items": info.get("items"),
        "items_unmatchable": info.get("items_unmatchable"),
        "indexed_ngrams": info.get("indexed_ngrams"),
        "index_bytes": info.get("index_bytes"),
        "benchmarks": dict(sorted(benchmarks.items())),
        "examples": {k: examples[k] for k in sorted(examples)},
    }
