"""How curate's stages scale with Ray workers: near-dedup (MinHash) and PDF parsing on 1, 2, ... CPUs.

The same workload runs on a fresh local Ray of each size (`ray.init(num_cpus=N)`, one worker process per
CPU); the time is the stage's own (`run_stage`, Ray start and worker warm-up excluded), and each size must
write the same output (checked: the SHA-256 of every output file).

- dedup: `near_dedup` over benchmarks/dedup.py's generated corpus (real sentences from ../shared/evaldata,
  a quarter of the documents edited copies), in Parquet shards.
- pdf: the `pdf` stage over the PDFs of ../shared/evaldata/pmc_pdf_jats, copied (real copies, no links)
  to a few hundred files in a temp dir; each PDF is parsed in a child process (the stage's default).

    .venv/bin/python benchmarks/scaling.py                       # 1 and 2 CPUs, both workloads
    .venv/bin/python benchmarks/scaling.py --cpus 1,2,4,8,16 --dedup-docs 400000 --dedup-shards 256 \
        --pdf-copies 800                                         # on a 16-core machine (enough tasks per CPU)

Prints a table and writes benchmarks/results/scaling.json (speed-up of each size against 1 CPU).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import write_results

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

EVALDATA = REPO.parent / "shared" / "evaldata"
RESULTS = REPO / "benchmarks" / "results"
WORKLOADS = ("dedup", "pdf")


def make_dedup_corpus(folder: Path, docs: int, shards: int) -> int:
    """benchmarks/dedup.py's corpus: docs documents in shards Parquet files; returns the document count."""
    from dedup import write_corpus

    return sum(write_corpus(folder, docs, max(1, -(-docs // shards)), seed=0))


def make_pdf_corpus(folder: Path, copies: int) -> int:
    """copies PDF files (real copies) cycled from the evaluation PDFs; returns the file count."""
    originals = sorted((EVALDATA / "pmc_pdf_jats").rglob("*.pdf"))
    if not originals:
        raise SystemExit(
            f"no PDFs under {EVALDATA / 'pmc_pdf_jats'} (../shared/evaldata beside the checkout)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(copies):
        original = originals[n % len(originals)]
        shutil.copyfile(original, folder / f"{n:05d}-{original.parent.name}.pdf")
    return copies


def run_child(workload: str, cpus: int, corpus: str, out: str, batch_size: int) -> dict:
    """In a fresh process: start a local Ray of `cpus` CPUs, warm its workers, time the stage."""
    import ray

    from curate.executors import RayExecutor, start_ray
    from curate.runner import run_stage
    from curate.stage import Input

    start_ray(num_cpus=cpus)

    @ray.remote(num_cpus=1)
    def warm() -> int:
        import curate.dedup.near  # noqa: F401 - the imports a task pays once per worker
        import curate.parse.pdf  # noqa: F401

        time.sleep(0.5)  # hold the CPU so that every worker process gets one
        return os.getpid()

    workers = len(set(ray.get([warm.remote() for _ in range(cpus)])))
    if workload == "dedup":
        from curate.dedup.near import NearDedup

        stage = NearDedup(name="near_dedup")
    else:
        from curate.parse.stages import PdfStage

        stage = PdfStage(name="pdf", source="local-pdf", batch_size=batch_size, licenses={"local-pdf": None})
    start = time.perf_counter()
    manifest = run_stage(
        stage, [Input(corpus, "local-pdf" if workload == "pdf" else None)], out, RayExecutor()
    )
    seconds = time.perf_counter() - start
    ray.shutdown()
    return {
        "seconds": round(seconds, 3),
        "workers": workers,
        "counts": manifest["counts"],
        "tasks": manifest["tasks"]["total"],
        "outputs_sha256": _digest(manifest),
    }


def _digest(manifest: dict) -> str:
    parts = [f"{e['path']}:{e['sha256']}" for e in manifest["outputs"] + manifest["rejected_outputs"]]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def measure(workload: str, cpus: int, corpus: Path, work: Path, batch_size: int) -> dict:
    """One run in its own process (a fresh Ray each time)."""
    out = work / f"{workload}-{cpus}"
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, __file__, "--child", workload, str(cpus), str(corpus), str(out)]
    done = subprocess.run(
        [*command, "--pdf-batch", str(batch_size)], capture_output=True, text=True, cwd=REPO
    )
    if done.returncode:
        raise SystemExit(f"{workload} on {cpus} CPU(s) failed:\n{done.stderr[-4000:]}")
    shutil.rmtree(out, ignore_errors=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    """Run the workloads for each CPU count, print a table, write JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cpus", default="1,2", help="comma-separated Ray CPU counts (default 1,2)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="dedup, pdf or both")
    # Fewer documents measure fixed costs (task dispatch, the driver's steps between phases), not scaling:
    # on 2 cores, 8,000 documents gave 1.61x, 40,000 gave 1.68x, 100,000 gave 1.83x.
    parser.add_argument("--dedup-docs", type=int, default=100_000)
    parser.add_argument("--dedup-shards", type=int, default=100)
    parser.add_argument("--pdf-copies", type=int, default=200)
    parser.add_argument("--pdf-batch", type=int, default=4, help="PDFs per task")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--child", nargs=4, metavar=("WORKLOAD", "CPUS", "CORPUS", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        workload, cpus, corpus, out = args.child
        print(json.dumps(run_child(workload, int(cpus), corpus, out, args.pdf_batch)))
        return
    cpu_counts = [int(c) for c in args.cpus.split(",")]
    workloads = [w for w in args.workloads.split(",") if w]
    if unknown := set(workloads) - set(WORKLOADS):
        parser.error(f"unknown workload(s) {sorted(unknown)}; choose from {', '.join(WORKLOADS)}")
    if max(cpu_counts) > (os.cpu_count() or 1):
        print(f"warning: {max(cpu_counts)} CPUs asked for, this machine has {os.cpu_count()} cores")
    report: dict = {
        "benchmark": "scaling",
        "machine": {
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "load_average_before": os.getloadavg(),
        "workloads": {},
    }
    with tempfile.TemporaryDirectory(prefix="scaling") as tmp:
        for workload in workloads:
            corpus = Path(tmp) / f"{workload}-corpus"
            if workload == "dedup":
                items = make_dedup_corpus(corpus, args.dedup_docs, args.dedup_shards)
                unit = "docs"
            else:
                items = make_pdf_corpus(corpus, args.pdf_copies)
                unit = "PDFs"
            runs = {c: measure(workload, c, corpus, Path(tmp), args.pdf_batch) for c in cpu_counts}
            base = runs[cpu_counts[0]]["seconds"] * cpu_counts[0]  # 1-CPU time (or its estimate)
            for run in runs.values():
                run["per_second"] = round(items / run["seconds"], 1)
                run["speedup_vs_1"] = round(base / run["seconds"], 3)
            digests = {r["outputs_sha256"] for r in runs.values()}
            report["workloads"][workload] = {
                "items": items,
                "unit": unit,
                "same_output_on_every_size": len(digests) == 1,
                "runs": {str(c): r for c, r in runs.items()},
            }
            print(f"\n{workload}: {items} {unit}, {runs[cpu_counts[0]]['tasks']} tasks")
            print(f"{'CPUs':>5}{'workers':>9}{'seconds':>10}{unit + '/s':>10}{'speed-up':>10}")
            for cpus, run in runs.items():
                print(
                    f"{cpus:>5}{run['workers']:>9}{run['seconds']:>10.2f}{run['per_second']:>10.1f}"
                    f"{run['speedup_vs_1']:>9.2f}x"
                )
            if len(digests) != 1:
                print("warning: outputs differ between CPU counts")
    report["load_average_after"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    write_results("scaling", report, args.out)


if __name__ == "__main__":
    main()
