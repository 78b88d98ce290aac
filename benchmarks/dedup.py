"""Near-duplicate removal: curate's MinHash stage vs datatrove's 4-stage MinHash vs datasketch's MinHashLSH.

One corpus, generated from the real texts in ../shared/evaldata (JATS articles, news and health pages):
documents of about 4 KB made of sampled sentences, a quarter of them edited copies (word substitutions,
deletions, insertions at rates from 0 to 20%) of earlier documents, in Parquet shards. Ground truth: every
pair with exact Jaccard >= the threshold on word 5-grams of the normalised text (all pairs, through a sparse
product of the shingle matrix). Each tool runs in its own process on one core, for a clean peak memory.

    .venv/bin/python benchmarks/dedup.py                       # 20,000 documents, all three tools
    .venv/bin/python benchmarks/dedup.py --docs 1000000 --tools curate --no-truth

Prints a table and writes benchmarks/results/dedup-<docs>.json. Recall counts a true pair found when both
documents end in one cluster; precision is over the pairs a tool links (for curate: verified candidate pairs;
datatrove: its .dups pairs; datasketch: LSH query results); "cluster precision" is over all pairs of clusters.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import resource
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _results import write_results

REPO = Path(__file__).resolve().parents[1]
EVALDATA = REPO.parent / "shared" / "evaldata"
EDIT_RATES = [0.0, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.06, 0.1, 0.2]
SOURCES = ["who", "cdc", "wikidoc", "pubmed"]
COPY_SHARE = 0.25
TARGET_CHARS = 4000


# ---------------------------------------------------------------------------------------------- corpus


def real_sentences() -> list[str]:
    """Sentences of the evaluation texts: JATS paragraphs, news article bodies, health pages."""
    texts = []
    for path in sorted(EVALDATA.glob("pmc_pdf_jats/**/fulltext.xml")):
        root = ET.parse(path).getroot()
        texts += ["".join(p.itertext()) for p in root.iter("p")]
    truth = json.loads((EVALDATA / "html_scrapinghub_aeb" / "ground-truth.json").read_text(encoding="utf-8"))
    texts += [v.get("articleBody") or "" for v in truth.values()]
    for path in sorted(EVALDATA.glob("html_wcxb/dev/ground-truth/*.json")):
        texts.append(json.loads(path.read_text(encoding="utf-8"))["ground_truth"].get("main_content") or "")
    sentences = {s.strip() for t in texts for s in re.split(r"(?<=[.!?])\s+", t)}
    return sorted(s for s in sentences if len(s.split()) >= 6)


def _edit(rng: np.random.Generator, words: list[str], rate: float, vocabulary: list[str]) -> list[str]:
    """Substitute, delete or insert words at the given rate, new words from the real vocabulary."""
    if rate == 0:
        return words
    draws = rng.random(len(words))
    picks = rng.integers(0, len(vocabulary), len(words))
    out = []
    for w, r, p in zip(words, draws.tolist(), picks.tolist(), strict=True):
        if r >= rate:
            out.append(w)
        elif r < rate / 3:
            out.append(vocabulary[p])
        elif r >= 2 * rate / 3:
            out += [w, vocabulary[p]]
    return out


def write_corpus(folder: Path, docs: int, shard_docs: int, seed: int) -> list[int]:
    """Parquet shards of generated documents; returns the rows per shard."""
    folder.mkdir(parents=True, exist_ok=True)
    sentences = real_sentences()
    vocabulary = sorted({w for s in sentences for w in s.split()})
    rng = np.random.default_rng(seed)
    recent: list[str] = []  # earlier originals that copies are made from, across shards
    sizes = []
    for shard, start in enumerate(range(0, docs, shard_docs)):
        rows = {"id": [], "text": [], "source": []}
        for n in range(start, min(start + shard_docs, docs)):
            if recent and rng.random() < COPY_SHARE:
                original = recent[rng.integers(len(recent))]
                rate = EDIT_RATES[rng.integers(len(EDIT_RATES))]
                text = " ".join(_edit(rng, original.split(" "), rate, vocabulary))
            else:
                parts, size = [], 0
                while size < TARGET_CHARS:
                    parts.append(sentences[rng.integers(len(sentences))])
                    size += len(parts[-1]) + 1
                text = " ".join(parts)
                recent.append(text)
                if len(recent) > 5000:
                    recent.pop(rng.integers(len(recent)))
            source = SOURCES[rng.integers(len(SOURCES))]
            rows["id"].append(f"{source}:{n:07d}")
            rows["text"].append(text)
            rows["source"].append(source)
        pq.write_table(pa.table(rows), folder / f"part-{shard:05d}.parquet", compression="zstd")
        sizes.append(len(rows["id"]))
    return sizes


def read_corpus(folder: Path, columns: list[str]) -> pa.Table:
    """All shards, in shard order."""
    return pa.concat_tables([pq.read_table(p, columns=columns) for p in sorted(folder.glob("*.parquet"))])


# ---------------------------------------------------------------------------------------------- truth


def true_pairs(folder: Path, threshold: float) -> np.ndarray:
    """Every pair (i < j, as i * N + j) with exact Jaccard >= threshold: one sparse product over all docs."""
    from scipy.sparse import csr_matrix, triu

    from curate.dedup.minhash import shingle_sets

    texts = read_corpus(folder, ["text"]).column("text").to_pylist()
    sets = []
    for start in range(0, len(texts), 5000):
        sets += shingle_sets(texts[start : start + 5000], 5)
    sizes = np.array([len(s) for s in sets], np.int64)
    columns = np.unique(np.concatenate(sets), return_inverse=True)[1]
    indptr = np.concatenate([[0], np.cumsum(sizes)])
    matrix = csr_matrix(
        (np.ones(len(columns), np.int32), columns, indptr), shape=(len(texts), columns.max() + 1)
    )
    common = triu(matrix @ matrix.T, k=1).tocoo()
    jaccard = common.data / (sizes[common.row] + sizes[common.col] - common.data)
    keep = jaccard >= threshold
    return np.sort(common.row[keep].astype(np.int64) * len(texts) + common.col[keep])


def cluster_pairs(labels: dict[int, int], n: int) -> np.ndarray:
    """All pairs of documents (as i * N + j) that share a cluster label."""
    groups: dict[int, list[int]] = {}
    for doc, label in labels.items():
        groups.setdefault(label, []).append(doc)
    pairs = [a * n + b for g in groups.values() for a, b in itertools.combinations(sorted(g), 2)]
    return np.unique(np.array(pairs, np.int64))


def components(pairs: np.ndarray, n: int) -> dict[int, int]:
    """Cluster label of every document in a pair, from linked pairs."""
    from curate.dedup.clusters import cluster_labels

    if len(pairs) == 0:
        return {}
    nodes, labels = cluster_labels(np.stack([pairs // n, pairs % n], axis=1))
    return dict(zip(nodes.tolist(), labels.tolist(), strict=True))


# ---------------------------------------------------------------------------------------------- tools


def _measured(fn, args: tuple) -> tuple:
    """Run one task in this (fresh) process; its result and this process's peak RSS."""
    return fn(*args), peak_rss_mib()


def _idle() -> None:
    return None


class SpawnExecutor:
    """Each task in a fresh process (spawn, one task per process), so its peak RSS is that task's alone.

    Also records, when each step starts, the size of each folder in the stage's scratch directory.
    """

    def __init__(self, scratch: Path, processes: int = 1):
        import multiprocessing

        self.pool = multiprocessing.get_context("spawn").Pool(processes, maxtasksperchild=1)
        self.scratch = scratch
        self.peaks: dict[str, float] = {}
        self.disk: dict[str, int] = {}
        self.baseline = self.pool.apply(_measured, (_idle, ()))[1]  # an idle worker: interpreter + imports

    def map(self, fn, args_list, resources=None, on_progress=None):  # progress is for a person watching
        if self.scratch.is_dir():
            for folder in self.scratch.iterdir():
                size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
                self.disk[folder.name] = max(self.disk.get(folder.name, 0), size)
        pending = [self.pool.apply_async(_measured, (fn, args)) for args in args_list]
        for i, result in enumerate(pending):
            try:
                value, peak = result.get()
            except Exception as exc:  # noqa: BLE001 - recorded by the runner, as with its executors
                yield i, None, exc
                continue
            self.peaks[fn.__name__] = max(self.peaks.get(fn.__name__, 0.0), peak)
            yield i, value, None


def verified_pairs(stage, corpus: Path, scratch: Path) -> np.ndarray:
    """The pairs curate's stage links (verified candidates), from its phases run again in this process (the
    stage itself keeps only clusters): (shard << ROW_BITS | row) pairs of the task order."""
    from curate.dedup import clusters, lsh
    from curate.stage import Input

    def run(fn, args_list):
        return [fn(*args) for args in args_list]

    paths = [t.inputs[0] for t in stage.plan([Input(str(corpus))])]
    counts = lsh.signatures(stage, paths, run, scratch)
    ranges = lsh.partitions(sum(c["documents"] for c in counts))
    pairs = lsh.candidates(stage.bands, len(paths), ranges, np.zeros(0, np.int64), run, scratch)
    return clusters.verify(stage, paths, pairs, run, scratch) if stage.verify else pairs


def run_curate(corpus: Path, work: Path, threshold: float, memory: bool = False) -> dict:
    """curate's stage in-process (one core): per-phase seconds from its manifest, linked and cluster pairs.

    With memory, every task runs in its own fresh process instead (slower: each pays Python's start), and
    the figures are the driver's peak RSS, each step's largest task peak RSS and each scratch folder's size.
    """
    from curate.dedup.lsh import ROW_BITS
    from curate.dedup.near import NearDedup
    from curate.executors import LocalExecutor
    from curate.runner import run_stage
    from curate.stage import Input

    stage = NearDedup(name="near", threshold=threshold)
    executor = SpawnExecutor(work / "out" / ".scratch") if memory else LocalExecutor()
    start, start_cpu = time.perf_counter(), time.process_time()
    manifest = run_stage(stage, [Input(str(corpus))], work / "out", executor)
    total, total_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    measured = {}
    if memory:
        executor.pool.close()
        measured = {
            "driver_peak_rss_mib": peak_rss_mib(),
            "worker_idle_rss_mib": executor.baseline,
            "worker_peak_rss_mib": executor.peaks,
            "scratch_bytes": executor.disk,
            "corpus_parquet_bytes": sum(p.stat().st_size for p in corpus.glob("*.parquet")),
        }
    seconds = dict(manifest["global_pass"]["seconds"])
    seconds["remove"] = round(total - sum(seconds.values()), 3)
    cpu_seconds = dict(manifest["global_pass"]["cpu_seconds"])
    cpu_seconds["remove"] = round(total_cpu - sum(cpu_seconds.values()), 3)
    sizes = [pq.ParquetFile(p).metadata.num_rows for p in sorted(corpus.glob("*.parquet"))]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    n = int(offsets[-1])
    pairs = verified_pairs(stage, corpus, work / "pairs")
    index = offsets[pairs >> ROW_BITS] + (pairs & ((1 << ROW_BITS) - 1))
    linked = np.unique(np.minimum(index[:, 0], index[:, 1]) * n + np.maximum(index[:, 0], index[:, 1]))
    position = {doc_id: i for i, doc_id in enumerate(read_corpus(corpus, ["id"]).column("id").to_pylist())}
    labels = {}
    for folder in (work / "out", work / "out" / "rejected"):
        for path in sorted(folder.glob("*.parquet")):
            table = pq.read_table(path, columns=["id", "dup_cluster"])
            ids, clusters = table.column("id").to_pylist(), table.column("dup_cluster").to_pylist()
            labels.update({position[d]: position[c] for d, c in zip(ids, clusters, strict=True)})
    return {
        "params": {
            "num_perm": stage.num_perm,
            "bands": stage.bands,
            "rows": stage.rows,
            "verify": stage.verify,
        },
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "total_seconds": round(total, 3),
        "removed": manifest["counts"]["rejected"],
        "linked": linked,
        "clusters": cluster_pairs(labels, n),
        **({"memory": measured} if memory else {}),
    }


def run_datasketch(corpus: Path, work: Path, threshold: float) -> dict:
    """datasketch MinHash (sha1 per shingle, its defaults) + MinHashLSH insert and query, one process."""
    from datasketch import MinHash, MinHashLSH

    from curate.dedup.exact import normalize_text

    texts = read_corpus(corpus, ["text"]).column("text").to_pylist()
    n = len(texts)
    seconds = {}
    start, cpu = time.perf_counter(), time.process_time()
    cpu_seconds = {}
    sketches = []
    for text in texts:
        words = normalize_text(text).split()
        shingles = (
            {" ".join(words[i : i + 5]).encode() for i in range(max(len(words) - 4, 1))} if words else set()
        )
        sketch = MinHash(num_perm=128)
        sketch.update_batch(shingles)
        sketches.append(sketch)
    seconds["signatures"] = round(time.perf_counter() - start, 3)
    cpu_seconds["signatures"] = round(time.process_time() - cpu, 3)
    start, cpu = time.perf_counter(), time.process_time()
    lsh = MinHashLSH(threshold=threshold, num_perm=128)
    for i, sketch in enumerate(sketches):
        lsh.insert(i, sketch)
    seconds["index"] = round(time.perf_counter() - start, 3)
    cpu_seconds["index"] = round(time.process_time() - cpu, 3)
    start, cpu = time.perf_counter(), time.process_time()
    found = [
        min(i, j) * n + max(i, j) for i, sketch in enumerate(sketches) for j in lsh.query(sketch) if j != i
    ]
    seconds["query"] = round(time.perf_counter() - start, 3)
    cpu_seconds["query"] = round(time.process_time() - cpu, 3)
    linked = np.unique(np.array(found, np.int64))
    return {
        "params": {"num_perm": 128, "bands": lsh.b, "rows": lsh.r, "verify": False},
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "total_seconds": round(sum(seconds.values()), 3),
        "removed": None,
        "linked": linked,
        "clusters": cluster_pairs(components(linked, n), n),
    }


def run_datatrove(corpus: Path, work: Path, threshold: float) -> dict:
    """datatrove's four MinHash stages with its local executor, one worker, its default 14 x 8 buckets."""
    import struct

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter
    from datatrove.utils.hashing import HashConfig

    files = sorted(corpus.glob("*.parquet"))
    # datatrove 0.10.1 passes str to xxhash, which xxhash 4 refuses ("Strings must be encoded"): use its sha1.
    config = MinhashConfig(n_grams=5, hash_config=HashConfig(precision=64, hash_fc="sha1"))
    logs = str(work / "logs")

    def reader():
        return ParquetReader(str(corpus), text_key="text", id_key="id", glob_pattern="*.parquet")

    stages = {
        "signatures": ([reader(), MinhashDedupSignature(str(work / "sigs"), config=config)], len(files)),
        "buckets": ([MinhashDedupBuckets(str(work / "sigs"), str(work / "buckets"), config=config)], 14),
        "clusters": (
            [
                MinhashDedupCluster(
                    str(work / "buckets"), str(work / "remove"), config=config, save_cluster_id=True
                )
            ],
            1,
        ),
        "filter": (
            [reader(), MinhashDedupFilter(str(work / "remove")), ParquetWriter(str(work / "output"))],
            len(files),
        ),
    }
    seconds, cpu_seconds = {}, {}
    for name, (pipeline, tasks) in stages.items():
        start, cpu = time.perf_counter(), time.process_time()
        LocalPipelineExecutor(pipeline, tasks=tasks, workers=1, logging_dir=f"{logs}/{name}").run()
        seconds[name] = round(time.perf_counter() - start, 3)
        cpu_seconds[name] = round(time.process_time() - cpu, 3)
    sizes = [pq.ParquetFile(p).metadata.num_rows for p in files]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    n = int(offsets[-1])
    linked = []
    for path in sorted((work / "buckets").glob("*.dups")):
        values = np.frombuffer(path.read_bytes(), "<u4").reshape(-1, 4).astype(np.int64)
        a, b = offsets[values[:, 0]] + values[:, 1], offsets[values[:, 2]] + values[:, 3]
        linked.append(np.minimum(a, b) * n + np.maximum(a, b))
    labels = {}
    for path in sorted((work / "remove").glob("*.clusters")):
        rank = int(path.name.split(".")[0])
        for doc, cluster in struct.iter_unpack("<2I", path.read_bytes()):
            labels[int(offsets[rank]) + doc] = cluster
    linked_pairs = np.unique(np.concatenate(linked)) if linked else np.zeros(0, np.int64)
    return {
        "params": {
            "num_perm": 112,
            "bands": 14,
            "rows": 8,
            "verify": False,
            "hash": "sha1",
            "words": "spaCy",
        },
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "total_seconds": round(sum(seconds.values()), 3),
        "removed": sum(len(p.read_bytes()) // 4 for p in (work / "remove").glob("*.remove")),
        "linked": linked_pairs,
        "clusters": cluster_pairs(labels, n),
    }


TOOLS = {"curate": run_curate, "datatrove": run_datatrove, "datasketch": run_datasketch}


def peak_rss_mib() -> float:
    """This process's peak resident memory. Not ru_maxrss: Linux carries that over from the parent on exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_tool(tool: str, corpus: Path, work: Path, threshold: float, result: Path, memory: bool) -> None:
    """Child process: run one tool, save its pairs and figures (peak RSS of this process)."""
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    options = {"memory": True} if memory and tool == "curate" else {}
    figures = TOOLS[tool](corpus, work, threshold, **options)
    np.save(result.with_suffix(".linked.npy"), figures.pop("linked"))
    np.save(result.with_suffix(".clusters.npy"), figures.pop("clusters"))
    figures["peak_rss_mib"] = peak_rss_mib()
    result.write_text(json.dumps(figures))


# ---------------------------------------------------------------------------------------------- main


def score(found: np.ndarray, truth: np.ndarray | None) -> dict:
    if truth is None:
        return {}
    hits = len(np.intersect1d(found, truth, assume_unique=True))
    return {
        "precision": round(hits / len(found), 4) if len(found) else None,
        "hits": hits,
        "pairs": len(found),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--shard-docs", type=int, default=5_000)
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--tools", default="curate,datatrove,datasketch")
    parser.add_argument("--work", type=Path, default=Path("/tmp/curate-bench-dedup"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-truth", action="store_true", help="skip the exact all-pairs ground truth")
    parser.add_argument(
        "--memory",
        action="store_true",
        help="curate: each task in a fresh process, to report driver and per-step worker peak memory",
    )
    parser.add_argument("--child", nargs=2, metavar=("TOOL", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    corpus = args.work / f"corpus-{args.docs}-{args.seed}"
    if args.child:
        work = args.work / f"run-{args.child[0]}"
        run_tool(args.child[0], corpus, work, args.threshold, Path(args.child[1]), args.memory)
        return
    if not EVALDATA.is_dir():
        sys.exit(f"evaluation data not found at {EVALDATA}")
    if not (corpus / "_done").exists():
        start = time.perf_counter()
        write_corpus(corpus, args.docs, args.shard_docs, args.seed)
        (corpus / "_done").write_text("")
        print(f"corpus: {args.docs} documents in {time.perf_counter() - start:.0f} s -> {corpus}")
    text_bytes = sum(p.stat().st_size for p in corpus.glob("*.parquet"))
    truth = None
    if not args.no_truth:
        start = time.perf_counter()
        truth = true_pairs(corpus, args.threshold)
        took = time.perf_counter() - start
        print(f"truth: {len(truth)} pairs with Jaccard >= {args.threshold} ({took:.0f} s)")
    report = {"docs": args.docs, "threshold": args.threshold, "corpus_parquet_bytes": text_bytes, "tools": {}}
    report["true_pairs"] = None if truth is None else len(truth)
    for tool in args.tools.split(","):
        result = args.work / f"{tool}.json"
        cmd = [sys.executable, __file__, "--docs", str(args.docs), "--seed", str(args.seed)]
        cmd += ["--threshold", str(args.threshold), "--work", str(args.work), "--child", tool, str(result)]
        cmd += ["--memory"] if args.memory else []
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            report["tools"][tool] = {"error": proc.stderr.strip().splitlines()[-1:]}
            print(f"{tool} failed:\n{proc.stderr[-3000:]}")
            continue
        figures = json.loads(result.read_text())
        linked = np.load(result.with_suffix(".linked.npy"))
        clusters = np.load(result.with_suffix(".clusters.npy"))
        if truth is not None:
            found = len(np.intersect1d(clusters, truth, assume_unique=True))
            figures["recall"] = round(found / len(truth), 4) if len(truth) else None
            figures["precision"] = score(linked, truth)["precision"]
            figures["cluster_precision"] = score(clusters, truth)["precision"]
        figures["linked_pairs"], figures["cluster_pairs"] = len(linked), len(clusters)
        figures["docs_per_s"] = {
            k: round(args.docs / v, 1) if v else None for k, v in figures["seconds"].items()
        }
        figures["docs_per_s_total"] = round(args.docs / figures["total_seconds"], 1)
        # Per CPU second of the tool's process: what one core does, whatever else runs on the machine.
        figures["docs_per_cpu_s"] = {
            k: round(args.docs / v, 1) if v else None for k, v in figures["cpu_seconds"].items()
        }
        figures["docs_per_cpu_s_total"] = round(args.docs / sum(figures["cpu_seconds"].values()), 1)
        report["tools"][tool] = figures
    print_table(report)
    write_results(f"dedup-{args.docs}{'-memory' if args.memory else ''}", report)


def print_table(report: dict) -> None:
    print(f"\n{report['docs']} documents, threshold {report['threshold']}, true pairs {report['true_pairs']}")
    print(f"{'tool':<11}{'docs/s':>9}{'docs/cpu-s':>11}{'peak MiB':>10}{'recall':>8}{'prec.':>7}", end="")
    print(f"{'cl.prec.':>9}  per stage docs/s (docs/cpu-s)")
    for tool, f in report["tools"].items():
        if "error" in f:
            print(f"{tool:<11} failed: {f['error']}")
            continue
        per_cpu = f.get("docs_per_cpu_s", {})
        stages = ", ".join(
            f"{k} {v:,.0f} ({per_cpu.get(k) or 0:,.0f})" for k, v in f["docs_per_s"].items() if v
        )
        scores = [f.get(k) for k in ("recall", "precision", "cluster_precision")]
        recall, precision, cluster_precision = ("-" if v is None else f"{v:.3f}" for v in scores)
        print(
            f"{tool:<11}{f['docs_per_s_total']:>9,.0f}{f.get('docs_per_cpu_s_total', 0):>11,.0f}"
            f"{f['peak_rss_mib']:>10,.0f}{recall:>8}{precision:>7}{cluster_precision:>9}  {stages}"
        )
    tools = report["tools"]
    memory = tools.get("curate", {}).get("memory")
    if memory:
        workers = ", ".join(f"{k.strip('_')} {v:,.0f}" for k, v in memory["worker_peak_rss_mib"].items())
        disk = ", ".join(f"{k} {v / 2**20:,.1f}" for k, v in memory["scratch_bytes"].items())
        print(f"curate driver peak {memory['driver_peak_rss_mib']:,.0f} MiB; worker peak MiB per step (idle")
        print(f"  {memory['worker_idle_rss_mib']:,.0f}): {workers}; scratch MiB: {disk}")
    if "curate" in tools and "datatrove" in tools and "error" not in tools["datatrove"]:
        ratio = tools["curate"]["docs_per_s_total"] / tools["datatrove"]["docs_per_s_total"]
        print(f"curate / datatrove total throughput: {ratio:.1f}x", end="")
        if "docs_per_cpu_s_total" in tools["datatrove"]:
            per_cpu = tools["curate"]["docs_per_cpu_s_total"] / tools["datatrove"]["docs_per_cpu_s_total"]
            print(f" ({per_cpu:.1f}x per CPU second)", end="")
        print()


if __name__ == "__main__":
    main()
