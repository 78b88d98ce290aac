"""How long `curate stats` takes over a large generated corpus (acceptance: 1,000,000 documents in < 60 s).

    .venv/bin/python benchmarks/stats.py [--docs 1000000] [--files 40] [--workdir /tmp/curate-bench-stats]
                                         [--keep] [--out benchmarks/results]

Generates the corpus with vectorised pyarrow/numpy (no Python loop per document): words drawn from a Zipf
vocabulary of 30,000 pseudo-words plus medical terms with non-ASCII characters (µg, °C, β-blocker, ...),
document lengths log-normal per source (six sources, abstracts to full papers), lang/license/dup_cluster/meta
columns, zstd Parquet with 1,000-row row groups like the shard stage writes. About 4 GB for a million
documents. Then runs `curate stats DIR --json` in a subprocess (what a user runs), checks its documents,
characters and words against what was generated, prints a table and writes stats.json. The work directory is
removed afterwards unless --keep (a kept corpus is reused by the next run with the same parameters).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from _results import write_results

REPO = Path(__file__).resolve().parents[1]
VOCABULARY = 30_000
MEDICAL = ["µg", "°C", "β-blocker", "naïve", "Sjögren", "café–au–lait", "α-synuclein", "≥", "≤", "±", "IL-6"]
MEDICAL += ["HbA1c", "mmHg", "SpO₂"]
# (source, licence, mean words per document): log-normal lengths around these means
SOURCES = [
    ("pubmed", "PubMed terms", 220),
    ("pmc", "CC-BY-4.0", 3_600),
    ("nice", "OGL-UK-3.0", 2_400),
    ("who", "CC-BY-NC-SA-3.0-IGO", 1_600),
    ("cdc", "public domain", 900),
    ("wikidoc", "CC-BY-SA-3.0", 700),
]
SHARES = np.array([0.35, 0.2, 0.15, 0.1, 0.1, 0.1])


def _vocabulary(rng: np.random.Generator) -> pa.Array:
    lengths = rng.integers(2, 12, VOCABULARY - len(MEDICAL))
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", np.uint8)[rng.integers(0, 26, lengths.sum())]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    words = pa.StringArray.from_buffers(len(lengths), pa.py_buffer(offsets), pa.py_buffer(letters.tobytes()))
    return pa.concat_arrays([words, pa.array(MEDICAL, pa.string())])


def make_file(args: tuple[Path, int, int, int]) -> dict[str, int]:
    """One Parquet file of n documents; returns its documents, characters and words."""
    path, n, seed, first_id = args
    rng = np.random.default_rng([seed, first_id])
    vocab = _vocabulary(np.random.default_rng(seed))  # the same vocabulary in every file
    # Zipf word frequencies as a lookup table: one gather per word instead of a search per word.
    weights = 1.0 / np.arange(1, VOCABULARY + 1)
    table = np.repeat(
        np.arange(VOCABULARY), np.maximum(1, np.round(weights / weights.sum() * 2**21)).astype(int)
    )
    source = rng.choice(len(SOURCES), size=n, p=SHARES)
    means = np.array([m for _, _, m in SOURCES], np.float64)[source]
    words = np.clip(rng.lognormal(np.log(means) - 0.18, 0.6), 3, 200_000).astype(np.int64)
    ids = table[rng.integers(0, len(table), int(words.sum()))]
    medical = rng.random(len(ids)) < 0.01  # one word in a hundred is a term with non-ASCII characters
    ids[medical] = VOCABULARY - len(MEDICAL) + rng.integers(0, len(MEDICAL), int(medical.sum()))
    offsets = np.concatenate([[0], np.cumsum(words)]).astype(np.int64)
    text = pc.binary_join(pa.LargeListArray.from_arrays(pa.array(offsets), vocab.take(pa.array(ids))), " ")
    text = text.cast(pa.string())
    names = np.array([s for s, _, _ in SOURCES], dtype=object)
    doc_ids = pc.binary_join_element_wise(
        pa.array(names[source], pa.string()),
        pc.cast(pa.array(np.arange(first_id, first_id + n)), pa.string()),
        ":",
    )
    lang = np.array(["en", "fr", "de", "es"], dtype=object)[rng.choice(4, size=n, p=[0.94, 0.03, 0.02, 0.01])]
    table_out = pa.table(
        {
            "id": doc_ids,
            "text": text,
            "source": pa.array(names[source], pa.string()),
            "url": pc.binary_join_element_wise("https://example.org/", doc_ids, ""),
            "title": pc.binary_join_element_wise("Document ", doc_ids, ""),
            "license": pa.array(np.array([lic for _, lic, _ in SOURCES], dtype=object)[source], pa.string()),
            "meta": pc.binary_join_element_wise('{"words": ', pc.cast(pa.array(words), pa.string()), "}"),
            "lang": pa.array(lang, pa.string()),
            "lang_score": pa.array(rng.uniform(0.65, 1.0, n)),
            "dup_cluster": pc.utf8_slice_codeunits(doc_ids, 0, 40),
        }
    )
    pq.write_table(table_out, path, compression="zstd", row_group_size=1000)
    characters = int(pc.sum(pc.utf8_length(text)).as_py())
    return {"documents": n, "characters": characters, "words": int(words.sum())}


def generate(folder: Path, docs: int, files: int, seed: int) -> dict[str, int]:
    """Write the corpus in parallel (one process per CPU), deterministic for a seed."""
    folder.mkdir(parents=True, exist_ok=True)
    per = [docs // files + (1 if i < docs % files else 0) for i in range(files)]
    starts = np.concatenate([[0], np.cumsum(per)])
    jobs = [(folder / f"shard-{i:05d}.parquet", per[i], seed, int(starts[i])) for i in range(files) if per[i]]
    with Pool(os.cpu_count() or 1) as pool:
        parts = pool.map(make_file, jobs)
    return {k: sum(p[k] for p in parts) for k in ("documents", "characters", "words")}


def main() -> None:
    """Generate (or reuse) the corpus, time `curate stats` on it, check and report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/curate-bench-stats"))
    parser.add_argument("--keep", action="store_true", help="keep the generated corpus (and reuse it)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--limit", type=float, default=60.0, help="acceptance limit in seconds")
    args = parser.parse_args()

    corpus = args.workdir / "shard"
    expected_file = args.workdir / "expected.json"
    key = {"docs": args.docs, "files": args.files, "seed": args.seed}
    expected = json.loads(expected_file.read_text()) if expected_file.exists() else None
    if expected is None or expected.get("key") != key:
        shutil.rmtree(args.workdir, ignore_errors=True)
        t0 = time.perf_counter()
        expected = {"key": key, **generate(corpus, args.docs, args.files, args.seed)}
        expected["generate_seconds"] = round(time.perf_counter() - t0, 1)
        expected_file.write_text(json.dumps(expected))
        print(f"generated {args.docs:,} documents in {expected['generate_seconds']} s", file=sys.stderr)
    size = sum(f.stat().st_size for f in corpus.glob("*.parquet"))

    load_before = os.getloadavg()
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "curate", "stats", str(corpus), "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.returncode != 0:
        sys.exit(f"curate stats failed ({run.returncode}): {run.stderr[-2000:]}")
    stats = json.loads(run.stdout)
    checks = {k: (stats[k], expected[k]) for k in ("documents", "characters", "words")}
    ok = all(a == b for a, b in checks.values())
    result = {
        "documents": args.docs,
        "files": args.files,
        "parquet_bytes": size,
        "text_characters": expected["characters"],
        "words": expected["words"],
        "generate_seconds": expected.get("generate_seconds"),
        "stats_wall_seconds": round(wall, 2),
        "stats_cpu_seconds": round(
            (usage.ru_utime - usage_before.ru_utime) + (usage.ru_stime - usage_before.ru_stime), 2
        ),
        "documents_per_second": round(args.docs / wall),
        "parquet_mb_per_second": round(size / 1e6 / wall, 1),
        "limit_seconds": args.limit,
        "under_limit": wall < args.limit,
        "counts_match": ok,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "pyarrow": pa.__version__,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_results("stats", result, args.out)
    print(f"{'corpus':<28}{args.docs:,} documents, {args.files} files, {size / 1e9:.2f} GB Parquet")
    print(f"{'text':<28}{expected['characters'] / 1e9:.2f} G characters, {expected['words']:,} words")
    print(
        f"{'curate stats wall':<28}{wall:.1f} s (CPU {result['stats_cpu_seconds']} s, {os.cpu_count()} CPUs)"
    )
    rate = f"{result['documents_per_second']:,} documents/s, {result['parquet_mb_per_second']} MB/s"
    print(f"{'throughput':<28}{rate}")
    print(
        f"{'load average before/after':<28}{result['load_average_before']} / {result['load_average_after']}"
    )
    print(f"{'counts match generated':<28}{ok} {checks if not ok else ''}")
    print(f"{'under the limit':<28}{result['under_limit']} ({args.limit:.0f} s)")
    if not args.keep:
        shutil.rmtree(args.workdir, ignore_errors=True)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
