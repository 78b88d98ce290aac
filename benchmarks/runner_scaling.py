"""How much the Ray runner costs and gains: the language-filter stage over generated shards.

Anchor, in the same run: a plain loop in one process that reads the same shards and runs the same fastText
predictions (no Ray, no atomic writes, no manifest). curate runs with a local Ray of 1 and of 2 CPUs.

    .venv/bin/python benchmarks/runner_scaling.py [--docs 40000] [--shards 16] [--out benchmarks/results]

Prints a table and writes runner_scaling.json. Text comes from ../shared/evaldata (HTML benchmark ground
truth) when present, else from the demo pages' sentences.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import write_results

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from curate.filter.language import identify_languages  # noqa: E402
from curate.io import read_parquet, write_parquet  # noqa: E402
from curate.schema import records_table  # noqa: E402

EVALDATA = REPO.parent / "shared" / "evaldata"


def source_texts() -> list[str]:
    """Real article bodies to build documents from."""
    truth = EVALDATA / "html_scrapinghub_aeb" / "ground-truth.json"
    if truth.exists():
        return [v["articleBody"] for v in json.loads(truth.read_text()).values() if v.get("articleBody")]
    pages = sorted((REPO / "pipelines" / "demo" / "html").rglob("*.html"))
    return [p.read_text(errors="replace") for p in pages]


def make_corpus(folder: Path, docs: int, shards: int, seed: int = 0) -> None:
    """Write docs documents (about 3 KB each, spliced from real texts) into shards Parquet files."""
    rng = random.Random(seed)
    paragraphs = [p for t in source_texts() for p in t.split("\n") if len(p) > 80]
    per_shard = docs // shards
    for s in range(shards):
        rows = []
        for i in range(per_shard):
            text = "\n\n".join(rng.choice(paragraphs) for _ in range(6))[:3000]
            rows.append({"id": f"bench:{s}-{i}", "text": text, "source": "bench"})
        write_parquet(records_table(rows), folder / f"part-{s:04d}.parquet")


def plain_loop(folder: Path) -> float:
    """The anchor: read each shard and predict languages in one process."""
    start = time.perf_counter()
    for path in sorted(folder.glob("*.parquet")):
        identify_languages(read_parquet(path, ["text"]).column("text").to_pylist())
    return time.perf_counter() - start


def curate_run(folder: Path, cpus: int, work: Path) -> float:
    """The stage through `curate filter` on a fresh local Ray with the given CPUs (Ray start excluded)."""
    out = work / f"filter-{cpus}"
    shutil.rmtree(out, ignore_errors=True)
    code = f"""
import time, json
from curate.executors import RayExecutor, start_ray
from curate.runner import run_stage
from curate.filter.language import LanguageFilter
from curate.stage import Input
start_ray(num_cpus={cpus})
executor = RayExecutor()
t = time.perf_counter()
m = run_stage(LanguageFilter(name="filter"), [Input({str(folder)!r})], {str(out)!r}, executor)
print(json.dumps({{"seconds": time.perf_counter() - t, "counts": m["counts"]}}))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    return json.loads(result.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    """Run the benchmark, print a table, write JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=40_000)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        make_corpus(corpus, args.docs, args.shards)
        identify_languages(["warm up the model"])
        plain = plain_loop(corpus)
        runs = {cpus: curate_run(corpus, cpus, Path(tmp)) for cpus in (1, 2)}
    rows = [
        ("plain loop, 1 process (anchor)", plain),
        *[(f"curate filter, Ray {c} CPU", s) for c, s in runs.items()],
    ]
    print(f"{args.docs} documents in {args.shards} shards, {os.cpu_count()} cores")
    print(f"{'run':<34}{'seconds':>9}{'docs/s':>10}{'vs anchor':>11}")
    for name, seconds in rows:
        print(f"{name:<34}{seconds:>9.2f}{args.docs / seconds:>10.0f}{plain / seconds:>10.2f}x")
    result = {
        "benchmark": "runner_scaling",
        "docs": args.docs,
        "shards": args.shards,
        "machine": {
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "plain_seconds": plain,
        "curate_seconds": {str(c): s for c, s in runs.items()},
        "speedup_2_vs_1": runs[1] / runs[2],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_results("runner_scaling", result, args.out)


if __name__ == "__main__":
    main()
