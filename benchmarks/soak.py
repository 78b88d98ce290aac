"""Soak: run the demo pipeline many times, SIGKILL the driver at random moments, finish each run, compare.

    .venv/bin/python benchmarks/soak.py [--trials 10] [--max-kills 3] [--seed 0] [--out benchmarks/results]

Each trial starts `curate run pipelines/demo.yaml` in a fresh work directory, kills the driver 1..max-kills
times at random moments (re-starting it after each kill), then lets it finish. The result must equal an
uninterrupted reference run: the same counts per stage and the same output files with the same SHA-256, so
no document is lost or duplicated. Prints a table and writes soak.json.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
from _results import write_results

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from curate.pipeline import load_pipeline  # noqa: E402

DEMO = REPO / "pipelines" / "demo.yaml"
PIPELINE, _ = load_pipeline(DEMO)
STAGES = [planned.stage.name for planned in PIPELINE.stages]


def run(workdir: Path, kill_after: float | None = None) -> bool:
    """Run the demo into workdir; with kill_after, SIGKILL the driver after that long (True if killed)."""
    command = [sys.executable, "-m", "curate", "run", str(DEMO), "--workdir", str(workdir), "--num-cpus", "2"]
    driver = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if kill_after is None:
        _, err = driver.communicate(timeout=600)
        if driver.returncode != 0:
            raise RuntimeError(f"run failed: {err[-2000:]}")
        return False
    try:
        driver.wait(timeout=kill_after)
        return False  # finished before the kill
    except subprocess.TimeoutExpired:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        return True


def outcome(workdir: Path) -> dict[str, dict]:
    """Counts and output checksums of every stage."""
    result = {}
    for stage in STAGES:
        manifest = json.loads((workdir / stage / "manifest.json").read_text())
        result[stage] = {
            "counts": manifest["counts"],
            "outputs": {o["path"]: o["sha256"] for o in manifest["outputs"] + manifest["rejected_outputs"]},
        }
    return result


def _ids(folder: Path) -> list[str]:
    files = sorted(folder.glob("*.parquet"))
    return [i for f in files for i in pq.read_table(f, columns=["id"]).column("id").to_pylist()]


def missing_documents(workdir: Path) -> int:
    """Documents a stage read from earlier stages but neither kept nor rejected, plus any counted twice."""
    missing = 0
    for planned in PIPELINE.stages:
        folder = workdir / planned.stage.name
        counts = json.loads((folder / "manifest.json").read_text())["counts"]
        out = _ids(folder) + _ids(folder / "rejected")
        missing += abs(counts["in"] - len(out)) + (len(out) - len(set(out)))
        earlier = [i.path[1:] for i in planned.inputs if i.path.startswith("@")]  # "@stage": an earlier stage
        if earlier and len(earlier) == len(planned.inputs):
            read = {i for name in earlier for i in _ids(workdir / name)}
            missing += len(read ^ set(out))
    return missing


def main() -> None:
    """Run the soak and report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--max-kills", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "pipelines" / "demo"))
    from make_pdfs import make_demo_pdfs

    make_demo_pdfs(REPO / "pipelines" / "demo" / "pdf")
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run(Path(tmp) / "reference")
        full_seconds = time.perf_counter() - start
        reference = outcome(Path(tmp) / "reference")
        trials = []
        for trial in range(args.trials):
            workdir = Path(tmp) / f"trial-{trial}"
            delays = [round(rng.uniform(0.5, full_seconds), 2) for _ in range(rng.randint(1, args.max_kills))]
            kills = sum(run(workdir, kill_after=d) for d in delays)
            run(workdir)
            got = outcome(workdir)
            differing = [s for s in STAGES if got[s] != reference[s]]
            trials.append(
                {
                    "trial": trial,
                    "delays": delays,
                    "kills": kills,
                    "differing_stages": differing,
                    "missing_documents": missing_documents(workdir),
                }
            )
            print(
                f"trial {trial:>3}: kills {kills} at {delays}s  ->  "
                f"{'identical' if not differing else 'DIFFERS in ' + ', '.join(differing)}"
            )
    kills = sum(t["kills"] for t in trials)
    differing = sum(bool(t["differing_stages"]) for t in trials)
    missing = sum(t["missing_documents"] for t in trials)
    print(
        f"\nruns {len(trials)}, kills {kills}, runs whose output differed {differing}, "
        f"documents missing {missing}"
    )
    print(f"(an uninterrupted run took {full_seconds:.1f} s, Ray start included)")
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "soak",
        "trials": trials,
        "kills": kills,
        "differing_runs": differing,
        "missing_documents": missing,
        "full_run_seconds": full_seconds,
    }
    write_results("soak", report, args.out)
    sys.exit(1 if differing or missing else 0)


if __name__ == "__main__":
    main()
