"""What a local `curate` command costs beyond its stage: command wall time against the stage's own time.

A small run (`curate filter` over 2,000 documents) and a large one (`curate dedup --near` over 20,000
documents, a fifth of them near-copies), each as a user runs it: a fresh process, a fresh output folder. Stage
time is the manifest's `wall_seconds` (planning, the worker pool's start, the tasks, the manifest); overhead
is the command's wall time less that (Python's start, imports, the summary, exit); the goal: 2 s at most.

Anchor, in the same run: the same commands on an in-process Ray (`--address local`, the default before the
local worker pool), whose start the issue measured at 13-21 s.

    .venv/bin/python benchmarks/cli_overhead.py [--small 2000] [--large 20000] [--repeat 3] [--no-ray]

Prints a table and writes benchmarks/results/cli_overhead.json (machine and date inside).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _results import write_results  # noqa: E402

from curate.io import write_parquet  # noqa: E402
from curate.schema import records_table  # noqa: E402

WORDS = [f"w{i}" for i in range(5000)]


def make_corpus(folder: Path, docs: int, shards: int, seed: int = 0) -> None:
    """docs documents of 120 words in shards files; a fifth copy an earlier one with a word left out."""
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    per_shard = docs // shards
    for s in range(shards):
        rows = []
        for n in range(per_shard):
            if texts and rng.random() < 0.2:
                words = texts[int(rng.integers(len(texts)))].split()
                del words[int(rng.integers(len(words)))]
                text = " ".join(words)
            else:
                text = " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), 120))
                texts.append(text)
            rows.append({"id": f"bench:{s}-{n}", "text": text, "source": "bench"})
        write_parquet(records_table(rows), folder / f"part-{s:04d}.parquet")


def timed(command: list[str], out: Path) -> dict[str, float]:
    """Run one command into a fresh out folder: its wall time, its stage's wall time, the difference."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "curate", *command, "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"curate {' '.join(command)} failed:\n{run.stderr}")
    stage = json.loads((out / "manifest.json").read_text())["wall_seconds"]
    return {
        "command_seconds": round(wall, 3),
        "stage_seconds": stage,
        "overhead_seconds": round(wall - stage, 3),
    }


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each number's median over the runs."""
    return {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}


def main() -> None:
    """Run the benchmark, print a table, write JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=2000, help="documents of the small run (filter)")
    parser.add_argument("--large", type=int, default=20000, help="documents of the large run (near_dedup)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each local command (median shown)")
    parser.add_argument("--no-ray", action="store_true", help="skip the in-process Ray anchor")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    load_before = os.getloadavg()  # other jobs on the machine stretch every number here
    results = []
    with tempfile.TemporaryDirectory(prefix="curate-overhead-") as tmp:
        root = Path(tmp)
        cases = [
            ("small: filter", args.small, 4, ["filter"]),
            ("large: dedup --near", args.large, 16, ["dedup", "--near"]),
        ]
        for name, docs, shards, command in cases:
            corpus = root / f"corpus-{docs}"
            if not corpus.exists():
                make_corpus(corpus, docs, shards)
            local = median_of([timed([*command, str(corpus)], root / "out") for _ in range(args.repeat)])
            row = {"run": name, "documents": docs, "shards": shards, "local": local}
            if not args.no_ray:
                row["ray_anchor"] = timed([*command, str(corpus), "--address", "local"], root / "out")
            results.append(row)
    print(f"{os.cpu_count()} cores, load {load_before[0]:.1f}; seconds (local: median of {args.repeat} runs)")
    header = ("command", "stage", "overhead", "Ray: command", "stage")
    print(f"{'run':<22}{'docs':>7}  " + "".join(f"{h:>{max(9, len(h) + 2)}}" for h in header))
    for r in results:
        local, ray = r["local"], r.get("ray_anchor") or {}
        cells = [local["command_seconds"], local["stage_seconds"], local["overhead_seconds"]]
        cells += [ray.get("command_seconds", float("nan")), ray.get("stage_seconds", float("nan"))]
        widths = [max(9, len(h) + 2) for h in header]
        print(
            f"{r['run']:<22}{r['documents']:>7}  "
            + "".join(f"{c:>{w}.2f}" for c, w in zip(cells, widths, strict=True))
        )
    worst = max(r["local"]["overhead_seconds"] for r in results)
    print(f"largest local overhead: {worst:.2f} s (goal: at most about 2 s)")
    report = {
        "machine": {"load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]},
        "repeat": args.repeat,
        "runs": results,
        "largest_local_overhead_seconds": worst,
    }
    write_results("cli_overhead", report, args.out)


if __name__ == "__main__":
    main()
