"""HTML main-text extraction: curate's extract_html and plain trafilatura (defaults), same pages, one run.

Over ../shared/evaldata/html_scrapinghub_aeb (181 article pages, reference `articleBody`),
../shared/evaldata/html_wcxb (104 pages, reference `main_content`; 62 health/medical pages among them) and
../shared/evaldata/html_trafilatura_eval (39 health pages of trafilatura's own evaluation, mostly German,
scored by their must/must-not snippets as trafilatura's evaluation does: true positives, false negatives and
false positives summed over the pages, then precision, recall and F1; a snippet counts as found when its
token sequence occurs in the text's, and `f1_raw` counts it as trafilatura's script does, as a plain
substring of the text).
Both methods get the same bytes (the decompressed page) and the page's URL:

- `plain`: `trafilatura.extract(page, url=url)` with every option at its default (trafilatura 2.3.1:
  comments and tables included, plain-text output);
- `curate`: `curate.parse.html.extract_html(page, url=url)`, what `curate html` and the `html` stage run.

A page a method rejects or returns nothing for scores as empty text (P = R = F1 = 0). Scoring as
../shared/evaldata/README.md says, the same function for both: lowercase, Unicode NFKC, collapse whitespace,
split on non-word characters; bag-of-token precision, recall and F1 per page; the mean over pages. For WCXB
also the share of its must-contain snippets found and of its must-not-contain snippets found (lower is
better), compared as token sequences. Speed: pages per second of CPU time in this process (= per core),
the median of `--repeat` runs in which the two methods alternate page by page (so both see the same load on
a shared machine); `speed_vs_plain` is the median of the runs' ratios.

    .venv/bin/python benchmarks/html_extraction.py [--limit N] [--repeat 3] [--out benchmarks/results]

Prints a table per set (and for curate which extractor won how often); writes html_extraction.json, with
each page's scores, extractor and the SHA-256 of its text.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import logging
import os
import platform
import re
import statistics
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from _results import write_results

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import trafilatura  # noqa: E402

from curate.parse.html import extract_html  # noqa: E402
from curate.schema import Rejection  # noqa: E402

EVALDATA = REPO.parent / "shared" / "evaldata"
_NON_WORD = re.compile(r"\W+")
_SPACE = re.compile(r"\s+")


@dataclass
class Page:
    """One evaluation page: its bytes, URL, reference text and (WCXB) snippets."""

    dataset: str
    key: str
    raw: bytes
    url: str
    reference: str
    group: str = ""
    must: list[str] = field(default_factory=list)
    must_not: list[str] = field(default_factory=list)
    snippets_only: bool = False  # no reference text: scored by its snippets alone


def tokens(text: str) -> list[str]:
    """The evaluation's tokens: NFKC, lowercase, whitespace collapsed, split on non-word characters."""
    text = _SPACE.sub(" ", unicodedata.normalize("NFKC", text).lower())
    return [t for t in _NON_WORD.split(text) if t]


def prf(predicted: str, reference: str) -> tuple[float, float, float]:
    """Bag-of-token precision, recall and F1 (all 0 when nothing overlaps)."""
    p, r = Counter(tokens(predicted)), Counter(tokens(reference))
    overlap = sum((p & r).values())
    if not overlap:
        return 0.0, 0.0, 0.0
    precision, recall = overlap / sum(p.values()), overlap / sum(r.values())
    return precision, recall, 2 * precision * recall / (precision + recall)


def snippet_share(text: str, snippets: list[str]) -> float | None:
    """Share of snippets whose token sequence occurs in text's token sequence."""
    if not snippets:
        return None
    haystack = " " + " ".join(tokens(text)) + " "
    found = sum(1 for s in snippets if tokens(s) and f" {' '.join(tokens(s))} " in haystack)
    return found / len(snippets)


def load_aeb(root: Path) -> list[Page]:
    """Scrapinghub's article extraction benchmark: html/<hash>.html.gz and ground-truth.json."""
    truth = json.loads((root / "ground-truth.json").read_text())
    pages = []
    for path in sorted((root / "html").glob("*.html.gz")):
        key = path.name.removesuffix(".html.gz")
        entry = truth[key]
        pages.append(Page("aeb", key, gzip.decompress(path.read_bytes()), entry["url"], entry["articleBody"]))
    return pages


def load_wcxb(root: Path) -> list[Page]:
    """The WCXB pages listed in selection.json, with their ground-truth JSON."""
    pages = []
    for entry in json.loads((root / "selection.json").read_text()):
        split, file_id = entry["split"], entry["file_id"]
        truth = json.loads((root / split / "ground-truth" / f"{file_id}.json").read_text())
        gt = truth["ground_truth"]
        raw = gzip.decompress((root / split / "html" / f"{file_id}.html.gz").read_bytes())
        pages.append(
            Page(
                "wcxb",
                file_id,
                raw,
                truth.get("url") or entry["url"],
                gt["main_content"],
                entry["selection"],
                gt.get("with") or [],
                gt.get("without") or [],
            )
        )
    return pages


def load_trafilatura_eval(root: Path) -> list[Page]:
    """trafilatura's evaluation pages: selected_entries.json maps each URL to its file and snippets."""
    pages = []
    for url, entry in sorted(json.loads((root / "selected_entries.json").read_text()).items()):
        raw = (root / entry["path"]).read_bytes()
        pages.append(Page("trafilatura_eval", url, raw, url, "", "", entry["with"], entry["without"], True))
    return pages


def snippet_counts(text: str, page: Page, raw: bool = False) -> tuple[int, int, int]:
    """(true positives, false negatives, false positives) of a page's must and must-not snippets."""
    if raw:
        found = [s in text for s in page.must]
        wrong = sum(s in text for s in page.must_not)
    else:
        haystack = " " + " ".join(tokens(text)) + " "
        found = [bool(tokens(s)) and f" {' '.join(tokens(s))} " in haystack for s in page.must]
        wrong = sum(bool(tokens(s)) and f" {' '.join(tokens(s))} " in haystack for s in page.must_not)
    return sum(found), len(found) - sum(found), wrong


def snippet_f1(counts: list[tuple[int, int, int]]) -> float:
    """trafilatura's evaluation: precision and recall over the summed snippet counts, then F1."""
    tp, fn, fp = (sum(c[i] for c in counts) for i in range(3))
    precision, recall = tp / (tp + fp) if tp + fp else 0.0, tp / (tp + fn) if tp + fn else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def run_plain(page: Page) -> tuple[str, str]:
    """trafilatura 2.3.1 with its defaults."""
    return trafilatura.extract(page.raw, url=page.url) or "", "trafilatura"


def run_curate(page: Page) -> tuple[str, str]:
    """curate's extractor; a rejection is empty text."""
    try:
        doc = extract_html(page.raw, url=page.url)
    except Rejection as rejection:
        return "", f"rejected:{rejection.reason}"
    return doc.text, doc.meta.get("extractor", "?")


METHODS: dict[str, Callable[[Page], tuple[str, str]]] = {"plain": run_plain, "curate": run_curate}


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def score(pages: list[Page], repeat: int = 3) -> dict:
    """Run both methods over the pages `repeat` times, interleaved page by page (the order of the two
    alternating between repetitions) so that both see the same machine load; per-page and mean scores
    from the first repetition (the text is deterministic), the median CPU time, extractor counts."""
    per_page: dict[str, list[dict]] = {name: [] for name in METHODS}
    summary: dict[str, dict] = {}
    outputs: dict[str, list[tuple[str, str]]] = {name: [] for name in METHODS}
    cpu_runs: dict[str, list[float]] = {name: [0.0] * repeat for name in METHODS}
    for run in range(repeat):
        order = list(METHODS.items()) if run % 2 == 0 else list(METHODS.items())[::-1]
        for page in pages:
            for name, method in order:
                start = time.process_time()
                result = method(page)
                cpu_runs[name][run] += time.process_time() - start
                if run == 0:
                    outputs[name].append(result)
    for name in METHODS:
        cpu = statistics.median(cpu_runs[name])
        used: Counter = Counter(extractor for _, extractor in outputs[name])
        for page, (text, extractor) in zip(pages, outputs[name], strict=True):
            if page.snippets_only:
                per_page[name].append(
                    {
                        "key": page.key,
                        "snippets": snippet_counts(text, page),
                        "snippets_raw": snippet_counts(text, page, raw=True),
                        "extractor": extractor,
                        "sha256": _sha256(text),
                    }
                )
                continue
            p, r, f = prf(text, page.reference)
            row = {
                "key": page.key,
                "group": page.group,
                "p": round(p, 4),
                "r": round(r, 4),
                "f1": round(f, 4),
            }
            row.update(extractor=extractor, sha256=_sha256(text))
            if page.dataset == "wcxb":
                row["with"] = snippet_share(text, page.must)
                row["without"] = snippet_share(text, page.must_not)
            per_page[name].append(row)
        rows = per_page[name]
        timing = {
            "cpu_s": round(cpu, 2),
            "cpu_s_runs": [round(c, 2) for c in cpu_runs[name]],
            "pages_per_s_per_core": round(len(rows) / cpu, 1) if cpu else None,
        }
        if name != "plain":
            ratios = [p / c for p, c in zip(cpu_runs["plain"], cpu_runs[name], strict=True) if c]
            timing["speed_vs_plain"] = round(statistics.median(ratios), 3) if ratios else None
        if pages and pages[0].snippets_only:
            summary[name] = {
                "pages": len(rows),
                "f1": round(snippet_f1([x["snippets"] for x in rows]), 4),
                "f1_raw": round(snippet_f1([x["snippets_raw"] for x in rows]), 4),
                "empty": sum(1 for x in rows if not x["snippets"][0] and not x["snippets"][2]),
                **timing,
                "extractors": dict(used.most_common()),
            }
            continue
        summary[name] = {
            "pages": len(rows),
            "precision": round(statistics.fmean(x["p"] for x in rows), 4),
            "recall": round(statistics.fmean(x["r"] for x in rows), 4),
            "f1": round(statistics.fmean(x["f1"] for x in rows), 4),
            "empty": sum(1 for x in rows if x["f1"] == 0.0),
            **timing,
            "extractors": dict(used.most_common()),
        }
        health = [x["f1"] for x in rows if x["group"] == "health_medical"]
        if health:
            summary[name]["f1_health_medical"] = round(statistics.fmean(health), 4)
        for key in ("with", "without"):
            shares = [x[key] for x in rows if x.get(key) is not None]
            if shares:
                summary[name][f"snippets_{key}"] = round(statistics.fmean(shares), 4)
    return {"summary": summary, "pages": per_page}


def print_table(dataset: str, result: dict) -> None:
    """One line per method, then curate's extractor counts and the pages where it differs most."""
    summary = result["summary"]
    print(f"\n{dataset}: {summary['plain']['pages']} pages")
    header = ["P", "R", "F1", "health", "with", "w/out", "empty"]
    print(f"  {'method':8s} " + " ".join(f"{h:>6s}" for h in header) + " pages/s")
    for name, s in summary.items():
        cells = [
            f"{s.get(k):6.3f}" if s.get(k) is not None else "     -" for k in ("precision", "recall", "f1")
        ]
        extra = [f"{s[k]:6.3f}" if k in s else "     -" for k in ("f1_health_medical",)]
        snips = [f"{s[k]:6.3f}" if k in s else "     -" for k in ("snippets_with", "snippets_without")]
        row = " ".join([*cells, *extra, *snips, f"{s['empty']:6d}"])
        print(f"  {name:8s} {row} {s['pages_per_s_per_core']}")
    print(f"  curate's extractor per page: {summary['curate']['extractors']}")
    runs = len(summary["curate"]["cpu_s_runs"])
    print(f"  curate/plain speed: {summary['curate']['speed_vs_plain']:.2f}x (median of {runs} runs)")
    if "f1_raw" in summary["plain"]:
        raw = {name: summary[name]["f1_raw"] for name in summary}
        print(f"  F1 with snippets as plain substrings: {raw}")
        return
    deltas = sorted(
        (
            (c["f1"] - p["f1"], c["key"][:12], c["extractor"])
            for c, p in zip(result["pages"]["curate"], result["pages"]["plain"], strict=True)
        ),
    )
    worse = [f"{k} {d:+.2f} ({e})" for d, k, e in deltas[:3] if d < 0]
    better = [f"{k} {d:+.2f} ({e})" for d, k, e in deltas[::-1][:3] if d > 0]
    print(f"  largest gains: {', '.join(better) or '-'}; largest losses: {', '.join(worse) or '-'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=EVALDATA)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--limit", type=int, default=0, help="first N pages of each set (default: all)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs over each set (default: 3)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # trafilatura logs every page it finds little in
    loaders = {
        "html_scrapinghub_aeb": load_aeb,
        "html_wcxb": load_wcxb,
        "html_trafilatura_eval": load_trafilatura_eval,
    }
    report: dict = {"benchmark": "html_extraction", "data": str(args.data), "sets": {}}
    for dataset, load in loaders.items():
        root = args.data / dataset
        if not root.is_dir():
            sys.exit(f"evaluation data not found at {root} (it lives in ../shared beside the checkout)")
        pages = load(root)
        if args.limit:
            pages = pages[: args.limit]
        result = score(pages, args.repeat)
        print_table(dataset, result)
        report["sets"][dataset] = result
    report.update(
        python=platform.python_version(),
        trafilatura=trafilatura.__version__,
        machine=platform.machine(),
        cpus=os.cpu_count(),
        date=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        limit=args.limit or None,
        repeat=args.repeat,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    write_results("html_extraction", report, args.out)


if __name__ == "__main__":
    main()
