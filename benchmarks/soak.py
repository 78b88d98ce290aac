"""Soak: run the demo pipeline many times, with faults at random moments, finish each run, compare.

    .venv/bin/python benchmarks/soak.py [--trials 3] [--max-kills 3] [--seed 0] [--out benchmarks/results]

Each trial runs `curate run pipelines/demo.yaml` in a fresh work directory, and takes turns at three faults:
  kill        SIGKILL the driver 1..max-kills times at random moments (re-starting it after each kill);
  damage      the same kills, then one bit flipped in a data page of a finished output (its footer stays
              readable, so only the SHA-256 the manifest keeps can tell), before the run is finished;
  concurrent  a second `curate run` on the same work directory while the first runs: it must stop at once
              with exit 2 and a message naming the first (the work-directory lock), touching nothing; then
              the first is killed at a random moment and the second run finishes the work.
The result must equal an uninterrupted reference run: the same counts per stage, the same output files with
the same SHA-256, no document lost or duplicated, and `curate verify` clean. Prints a table and writes
soak.json (machine and date inside). The default is a short run; the long soak is `--trials 30`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq
from _results import write_results

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from curate.pipeline import load_pipeline  # noqa: E402
from curate.verify import verify  # noqa: E402

DEMO = REPO / "pipelines" / "demo.yaml"
PIPELINE, _ = load_pipeline(DEMO)
STAGES = [planned.stage.name for planned in PIPELINE.stages]
KINDS = ("kill", "damage", "concurrent")


def _command(workdir: Path) -> list[str]:
    return [sys.executable, "-m", "curate", "run", str(DEMO), "--workdir", str(workdir), "--num-cpus", "2"]


def run(workdir: Path, kill_after: float | None = None) -> bool:
    """Run the demo into workdir; with kill_after, SIGKILL the driver after that long (True if killed)."""
    command = _command(workdir)
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


def damage(workdir: Path, rng: random.Random) -> str | None:
    """Flip one bit in a data page of an output some stage's manifest lists (the footer stays readable)."""
    listed = []
    for stage in STAGES:
        path = workdir / stage / "manifest.json"
        if path.exists():
            manifest = json.loads(path.read_text())
            listed += [
                workdir / stage / o["path"] for o in manifest["outputs"] + manifest["rejected_outputs"]
            ]
    listed = [p for p in listed if p.exists() and pq.ParquetFile(p).metadata.num_rows]
    if not listed:
        return None
    target = rng.choice(sorted(listed))
    meta = pq.ParquetFile(target).metadata
    chunks = [meta.row_group(0).column(i) for i in range(meta.num_columns)]
    chunk = rng.choice([c for c in chunks if c.total_compressed_size > 16] or chunks)
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data = bytearray(target.read_bytes())
    data[start + rng.randrange(chunk.total_compressed_size // 2, chunk.total_compressed_size)] ^= (
        1 << rng.randrange(8)
    )
    target.write_bytes(bytes(data))
    return str(target.relative_to(workdir))


def concurrent(workdir: Path, first_for: float, kill_after: float) -> dict:
    """A second run while the first runs: it must stop at once (exit 2, the lock); then kill the first."""
    first = subprocess.Popen(
        _command(workdir), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(first_for)
    started = time.perf_counter()
    second = subprocess.run(_command(workdir), cwd=REPO, capture_output=True, text=True, timeout=600)
    waited = time.perf_counter() - started
    first_running = first.poll() is None  # else the second may have run legitimately, after the first
    killed = False
    try:
        first.wait(timeout=max(0.0, kill_after - first_for - waited))
    except subprocess.TimeoutExpired:
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed = True
    message = " ".join(second.stderr.split())
    refused = second.returncode == 2 and "is in use by another curate process" in message
    return {
        "second_exit": second.returncode,
        "second_seconds": round(waited, 2),
        "refused_while_first_ran": refused,
        "kills": int(killed),
        "bad": first_running and not refused or "Traceback" in second.stderr,
    }


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
    parser.add_argument("--trials", type=int, default=3, help="trials, taking turns at: " + ", ".join(KINDS))
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
            kind = KINDS[trial % len(KINDS)]
            workdir = Path(tmp) / f"trial-{trial}"
            record: dict = {"trial": trial, "kind": kind}
            if kind == "concurrent":
                first_for = rng.uniform(0.5, full_seconds / 2)  # while the first surely runs
                kill_after = rng.uniform(first_for, full_seconds)
                record.update(concurrent(workdir, round(first_for, 2), round(kill_after, 2)))
                record["delays"] = [round(kill_after, 2)]
            else:
                delays = [
                    round(rng.uniform(0.5, full_seconds), 2) for _ in range(rng.randint(1, args.max_kills))
                ]
                record.update(delays=delays, kills=sum(run(workdir, kill_after=d) for d in delays))
                if kind == "damage":
                    record["damaged"] = damage(workdir, rng)
                    while record["damaged"] is None:  # killed before any stage finished: run on, kill later
                        delay = round(rng.uniform(full_seconds / 2, full_seconds), 2)
                        record["delays"].append(delay)
                        record["kills"] += run(workdir, kill_after=delay)
                        record["damaged"] = damage(workdir, rng)
            run(workdir)
            got = outcome(workdir)
            record["differing_stages"] = [s for s in STAGES if got[s] != reference[s]]
            record["missing_documents"] = missing_documents(workdir)
            record["verify_problems"] = verify(workdir)[1]
            trials.append(record)
            failed = record["differing_stages"] or record["verify_problems"] or record.get("bad")
            what = f"damaged {record['damaged']}" if record.get("damaged") else ""
            if kind == "concurrent":
                what = f"second run exit {record['second_exit']} after {record['second_seconds']} s"
            print(
                f"trial {trial:>3} {kind:<10}: kills {record['kills']} at {record['delays']}s {what} ->  "
                + ("identical" if not failed else f"DIFFERS: {record['differing_stages'] or ''} "
                   f"{record['verify_problems'] or ''} {'lock not held' if record.get('bad') else ''}")
            )  # fmt: skip
    kills = sum(t["kills"] for t in trials)
    differing = sum(bool(t["differing_stages"] or t["verify_problems"] or t.get("bad")) for t in trials)
    missing = sum(t["missing_documents"] for t in trials)
    print(
        f"\nruns {len(trials)}, kills {kills}, runs whose output differed {differing}, "
        f"documents missing {missing}"
    )
    print(f"(an uninterrupted run took {full_seconds:.1f} s, Ray start included)")
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "soak",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
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
