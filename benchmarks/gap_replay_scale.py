"""What rebuilding GAP-Replay (Meditron's 48.1B-token corpus) would cost: a sample run through the pipeline's
stages, measured, and projected to the full corpus.

    .venv/bin/python benchmarks/gap_replay_scale.py [--docs 1000] [--workers 1] [--out benchmarks/results]

1. A sample is generated offline from ../shared/evaldata, in the formats the pipeline reads, with the real
   length distributions of each part and the part sizes of the corpus (by documents: 76% abstracts, 24%
   papers, replay 2%, guidelines at least --guidelines pages):
   - PubMed baseline files (`pubmed*.xml.gz`, 500 citations each): MEDLINE citations with authors and
     affiliations, MeSH terms, ids and history, as in the baseline; abstracts made of sentences of the 25
     PMC articles' paragraphs, their lengths drawn from a log-normal fitted to those articles' abstracts;
     --no-abstract of the citations have none (the stage keeps only abstracts of 200+ characters);
   - PMC open-access packages (one `.tar.gz` per article, as in oa_package/): the JATS XML of one of the 25
     articles with every paragraph replaced by another article's (so no two papers are near-duplicates, and
     each keeps its template's real length and markup) and the article's real PDF beside it; --pdf-share of
     the packages hold only the PDF, which the stage then parses;
   - guideline HTML: the 62 health and medical pages of WCXB (cdc.gov, nih.gov, fda.gov, ...), as saved;
   - replay JSONL: the reference texts of the Scrapinghub and WCXB article pages (general news and web).
2. The stages are those of pipelines/gap_replay.yaml (read from the file, so stages added there are measured
   too), with the raw inputs pointed at the sample; the `scrape` stage, which needs the web, becomes an
   `html` stage over the guideline pages. Each stage runs in a fresh driver process of its own, with its tasks
   (and its global pass's tasks) in --workers worker processes: CPU seconds of the driver and of the
   workers, and the peak resident memory of each, are measured.
3. Projection: each stage's CPU seconds scaled by the text bytes it would see in the full corpus (per part:
   46K guidelines, 16.1M abstracts, 5M papers of 40 KB of text, replay as 1% of the 48.1B tokens), then
   core-hours per stage and in total, wall time on 1, 4 and 16 nodes of 16 cores (workers' seconds spread
   over all cores, the driver's seconds serial), and the driver's memory at 21M documents (its growth over
   the sample, per document, times 21M). The stages are ranked by core-hours.

Prints the tables; writes gap_replay_scale.json (machine, date, per-stage measures, projection).
"""

from __future__ import annotations

import argparse
import copy
import csv
import gzip
import io
import json
import math
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tracemalloc
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import yaml  # noqa: E402
from _results import write_results  # noqa: E402
from lxml import etree  # noqa: E402

EVALDATA = REPO.parent / "shared" / "evaldata"
PIPELINE = REPO / "pipelines" / "gap_replay.yaml"
GUIDELINE_SOURCE = (
    "nice"  # a guideline source of sources.yaml, so that the mix counts the pages as guidelines
)

# The full corpus (Meditron, gap-replay/README.md, and the figures of issue 20).
FULL_TOKENS = 48.1e9
FULL_DOCS = {"guidelines": 46_000, "abstracts": 16_100_000, "papers": 5_000_000}
PAPER_TEXT_BYTES = 40_000
REPLAY_SHARE = 0.01
CHARS_PER_TOKEN = 4  # the mix stage's approximation without a tokenizer
PARTS = {"nice": "guidelines", "pubmed": "abstracts", "pmc": "papers", "replay": "replay"}
NODES = (1, 4, 16)
CORES_PER_NODE = 16
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_SPACES = re.compile(r"\s+")


# --- the sample -----------------------------------------------------------------------------------------


def _text(element: Any) -> str:
    return _SPACES.sub(" ", " ".join(element.itertext())).strip()


class Articles:
    """The 25 PMC articles of the evaluation data: templates, paragraphs, sentences, names, keywords."""

    def __init__(self, root: Path):
        self.root = root
        self.rows = list(csv.DictReader((root / "index.csv").open()))
        self.trees = [etree.parse(str(root / r["xml"])) for r in self.rows]
        self.paragraphs: list[str] = []
        self.abstract_lengths: list[int] = []
        self.names: list[tuple[str, str]] = []
        self.keywords: list[str] = []
        for tree in self.trees:
            self.paragraphs += [t for t in map(_text, tree.iterfind(".//{*}body//{*}p")) if len(t) >= 100]
            abstract = " ".join(_text(a) for a in tree.iterfind(".//{*}abstract"))
            if abstract:
                self.abstract_lengths.append(len(abstract))
            for name in tree.iterfind(".//{*}contrib//{*}name"):
                surname, given = name.findtext("{*}surname"), name.findtext("{*}given-names")
                if surname and given:
                    self.names.append((surname, given))
            self.keywords += [_text(k) for k in tree.iterfind(".//{*}kwd") if _text(k)]
        self.sentences = [s for p in self.paragraphs for s in _SENTENCE.split(p) if len(s) > 20]
        logs = [math.log(n) for n in self.abstract_lengths]
        self.log_mean = sum(logs) / len(logs)
        self.log_sd = (sum((x - self.log_mean) ** 2 for x in logs) / len(logs)) ** 0.5

    def abstract(self, rng: random.Random) -> str:
        """Sentences until a length drawn from the articles' abstract lengths (log-normal)."""
        target = rng.lognormvariate(self.log_mean, self.log_sd)
        out: list[str] = []
        while sum(map(len, out)) < target:
            out.append(rng.choice(self.sentences))
        return " ".join(out)


def _pubmed_citation(pmid: int, articles: Articles, rng: random.Random, with_abstract: bool) -> str:
    """One <PubmedArticle> as the baseline writes it."""
    esc = lambda s: s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")  # noqa: E731
    title = esc(rng.choice(articles.sentences).rstrip("."))
    journal = esc(rng.choice(articles.rows)["journal"])
    year = rng.randint(1990, 2023)
    authors = "".join(
        f'<Author ValidYN="Y"><LastName>{esc(last)}</LastName><ForeName>{esc(first)}</ForeName>'
        f"<Initials>{esc(first[:1])}</Initials><AffiliationInfo><Affiliation>Department of "
        f"{esc(rng.choice(articles.keywords or ['Medicine']))}, University Hospital, "
        f"{rng.randint(1, 99)} Main Street, City, Country.</Affiliation></AffiliationInfo></Author>"
        for last, first in rng.sample(articles.names, min(len(articles.names), rng.randint(2, 8)))
    )
    abstract = ""
    if with_abstract:
        text = articles.abstract(rng)
        if rng.random() < 0.3:  # structured abstracts: labelled sections
            cut = [0, len(text) // 4, len(text) // 2, 3 * len(text) // 4, len(text)]
            labels = ("BACKGROUND", "METHODS", "RESULTS", "CONCLUSIONS")
            pieces = "".join(
                f'<AbstractText Label="{label}" NlmCategory="{label}">{esc(text[a:b].strip())}</AbstractText>'
                for label, a, b in zip(labels, cut, cut[1:], strict=False)
            )
        else:
            pieces = f"<AbstractText>{esc(text)}</AbstractText>"
        abstract = f"<Abstract>{pieces}</Abstract>"
    mesh = "".join(
        f'<MeshHeading><DescriptorName UI="D{rng.randint(1, 99999):06d}" MajorTopicYN="N">{esc(k)}'
        "</DescriptorName></MeshHeading>"
        for k in rng.sample(articles.keywords, min(len(articles.keywords), rng.randint(4, 14)))
    )
    doi = f"10.{rng.randint(1000, 9999)}/{pmid}"
    return (
        f'<PubmedArticle><MedlineCitation Status="MEDLINE" Owner="NLM"><PMID Version="1">{pmid}</PMID>'
        f"<DateCompleted><Year>{year}</Year><Month>05</Month><Day>12</Day></DateCompleted>"
        f'<Article PubModel="Print"><Journal><ISSN IssnType="Electronic">1234-5678</ISSN>'
        f'<JournalIssue CitedMedium="Internet"><Volume>{rng.randint(1, 80)}</Volume><Issue>3</Issue>'
        f"<PubDate><Year>{year}</Year><Month>Mar</Month></PubDate></JournalIssue><Title>{journal}</Title>"
        f"<ISOAbbreviation>{journal[:20]}</ISOAbbreviation></Journal><ArticleTitle>{title}.</ArticleTitle>"
        f"<Pagination><MedlinePgn>{rng.randint(1, 500)}-{rng.randint(501, 999)}</MedlinePgn></Pagination>"
        f'<ELocationID EIdType="doi" ValidYN="Y">{doi}</ELocationID>{abstract}'
        f'<AuthorList CompleteYN="Y">{authors}</AuthorList><Language>eng</Language><PublicationTypeList>'
        '<PublicationType UI="D016428">Journal Article</PublicationType></PublicationTypeList></Article>'
        f"<MedlineJournalInfo><Country>England</Country><MedlineTA>{journal[:20]}</MedlineTA>"
        "<NlmUniqueID>101088661</NlmUniqueID><ISSNLinking>1234-5678</ISSNLinking></MedlineJournalInfo>"
        f"<CitationSubset>IM</CitationSubset><MeshHeadingList>{mesh}</MeshHeadingList></MedlineCitation>"
        f'<PubmedData><History><PubMedPubDate PubStatus="pubmed"><Year>{year}</Year><Month>3</Month>'
        "<Day>1</Day></PubMedPubDate></History><PublicationStatus>ppublish</PublicationStatus><ArticleIdList>"
        f'<ArticleId IdType="pubmed">{pmid}</ArticleId><ArticleId IdType="doi">{doi}</ArticleId>'
        "</ArticleIdList></PubmedData></PubmedArticle>"
    )


def write_pubmed(folder: Path, n: int, no_abstract: float, articles: Articles, rng: random.Random) -> None:
    """n citations in baseline files of 500."""
    folder.mkdir(parents=True)
    per_file = 500
    for f in range(0, n, per_file):
        body = "".join(
            _pubmed_citation(30_000_000 + i, articles, rng, rng.random() >= no_abstract)
            for i in range(f, min(n, f + per_file))
        )
        xml = f'<?xml version="1.0" encoding="utf-8"?>\n<PubmedArticleSet>{body}</PubmedArticleSet>\n'
        (folder / f"pubmed26n{f // per_file + 1:04d}.xml.gz").write_bytes(gzip.compress(xml.encode(), 6))


def _paper_xml(template: Any, pmcid: str, articles: Articles, rng: random.Random) -> bytes:
    """A template article with every body and abstract paragraph replaced by one from the other articles."""
    tree = copy.deepcopy(template)
    for p in tree.iterfind(".//{*}body//{*}p"):
        tail = p.tail
        p.clear()
        p.text, p.tail = rng.choice(articles.paragraphs), tail
    for p in tree.iterfind(".//{*}abstract//{*}p"):
        tail = p.tail
        p.clear()
        p.text, p.tail = articles.abstract(rng), tail
    for aid in tree.iter("{*}article-id"):
        if aid.get("pub-id-type") in ("pmc", "pmcid"):
            aid.text = pmcid.removeprefix("PMC")
    return etree.tostring(tree, xml_declaration=True, encoding="utf-8")


def _tar(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz", compresslevel=6) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def write_pmc(folder: Path, n: int, pdf_share: float, articles: Articles, rng: random.Random) -> None:
    """n single-article packages; pdf_share of them hold only the PDF (the real one, no two alike)."""
    folder.mkdir(parents=True)
    pdf_only = set(rng.sample(range(n), min(len(articles.rows), round(n * pdf_share))))
    pdfs = iter(rng.sample(range(len(articles.rows)), len(articles.rows)))
    for i in range(n):
        pmcid = f"PMC{90_000_000 + i}"
        if i in pdf_only:
            row = articles.rows[next(pdfs)]
            _tar(
                folder / f"{pmcid}.tar.gz",
                {f"{pmcid}/article.pdf": (articles.root / row["pdf"]).read_bytes()},
            )
            continue
        k = rng.randrange(len(articles.rows))
        files = {
            f"{pmcid}/article.nxml": _paper_xml(articles.trees[k], pmcid, articles, rng),
            f"{pmcid}/article.pdf": (articles.root / articles.rows[k]["pdf"]).read_bytes(),
        }
        _tar(folder / f"{pmcid}.tar.gz", files)


def write_guidelines(folder: Path, n: int, rng: random.Random) -> None:
    """n of WCXB's health and medical pages (repeated when n is larger than the 62 there are)."""
    root = EVALDATA / "html_wcxb"
    entries = [
        e for e in json.loads((root / "selection.json").read_text()) if e["selection"] == "health_medical"
    ]
    folder.mkdir(parents=True)
    order = rng.sample(entries, len(entries))
    for i in range(n):
        entry = order[i % len(order)]  # past 62 pages, copies: the dedup stage drops them
        raw = gzip.decompress((root / entry["split"] / "html" / f"{entry['file_id']}.html.gz").read_bytes())
        (folder / f"page-{i:05d}.html").write_bytes(raw)


def write_replay(folder: Path, n: int, rng: random.Random) -> None:
    """n general-domain texts (news and web articles' reference texts) as JSONL."""
    texts = [
        e["articleBody"]
        for e in json.loads((EVALDATA / "html_scrapinghub_aeb/ground-truth.json").read_text()).values()
    ]
    wcxb = EVALDATA / "html_wcxb"
    for entry in json.loads((wcxb / "selection.json").read_text()):
        if entry["selection"] != "health_medical":
            truth = json.loads(
                (wcxb / entry["split"] / "ground-truth" / f"{entry['file_id']}.json").read_text()
            )
            texts.append(truth["ground_truth"]["main_content"])
    texts = [t for t in texts if len(t) > 200]
    folder.mkdir(parents=True)
    with (folder / "replay-00000.jsonl").open("w") as out:
        for i in range(n):
            out.write(
                json.dumps(
                    {"id": f"r{i}", "text": texts[i % len(texts)] + ("" if i < len(texts) else f" ({i})")}
                )
                + "\n"
            )


def write_sample(work: Path, args: argparse.Namespace) -> dict[str, Path]:
    """The sample's input folders, by the step that reads them."""
    rng = random.Random(args.seed)
    articles = Articles(EVALDATA / "pmc_pdf_jats")
    papers = max(1, round(args.docs * 0.24))
    abstracts = max(1, round(args.docs * 0.76 / (1 - args.no_abstract)))  # citations, with and without
    data = work / "data"
    folders = {
        "pubmed": data / "pubmed",
        "pmc": data / "pmc",
        "html": data / "guidelines",
        "replay": data / "replay",
    }
    write_pubmed(folders["pubmed"], abstracts, args.no_abstract, articles, rng)
    write_pmc(folders["pmc"], papers, args.pdf_share, articles, rng)
    write_guidelines(folders["html"], max(args.guidelines, round(args.docs * 0.002)), rng)
    write_replay(folders["replay"], max(5, round(args.docs * 0.02)), rng)
    return folders


# --- the pipeline, pointed at the sample --------------------------------------------------------------


def sample_pipeline(source: Path, folders: dict[str, Path], work: Path) -> Path:
    """The pipeline YAML with its raw inputs replaced by the sample's folders (scrape becomes html)."""
    data = yaml.safe_load(source.read_text())
    names = [str(s.get("name", s["step"])) for s in data["stages"]]
    for stage in data["stages"]:
        step = stage["step"]
        if step == "scrape":
            stage.clear()
            stage.update(name=names[data["stages"].index(stage)], step="html")
            stage["inputs"] = [{"path": str(folders["html"]), "source": GUIDELINE_SOURCE}]
        elif step in ("pubmed", "pmc", "html"):
            stage["inputs"] = [str(folders[step])]
        elif step == "pdf":
            stage["inputs"] = [str(folders["pmc"])]
        elif step == "mix":
            inputs = []
            for item in stage.get("inputs") or []:
                path = item if isinstance(item, str) else item.get("path")
                if path in names:
                    inputs.append(item)
                else:  # the replay corpus
                    inputs.append({**item, "path": str(folders["replay"])})
            stage["inputs"] = inputs
        else:
            for item in stage.get("inputs") or []:
                path = item if isinstance(item, str) else item.get("path")
                if path not in names:
                    sys.exit(f"stage {stage.get('name')!r} ({step}) reads {path!r}: no sample for that input")
    data["workdir"] = str(work / "run")
    out = work / "pipeline.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


# --- one stage, measured (in a process of its own) ----------------------------------------------------


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes


def warm_up() -> None:
    """Import every curate module (and so trafilatura, PyMuPDF, fastText, datatrove...) before measuring:
    a process imports them once, not once per document, so their cost must not be scaled with the corpus."""
    import pkgutil

    import curate

    for module in pkgutil.walk_packages(curate.__path__, "curate."):
        if module.name != "curate.__main__":
            __import__(module.name)
    # And what is imported inside functions at a driver's first use of it (pyarrow's pandas bridge for
    # to_numpy of strings, near dedup's clusters, token counts): a pipeline's driver pays that once.
    for name in ("pandas", "scipy.sparse.csgraph", "tokenizers"):
        __import__(name)


def _tree_cpu_seconds() -> float:
    """CPU seconds of this process and its descendants, live or reaped by one of them (Linux /proc): the PDF
    parser runs in children of a fork server, which the process's own CPU time does not include."""
    parents, ticks = {}, {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                data = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            fields = data[data.rindex(")") + 2 :].split()
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
            ticks[int(entry.name)] = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    total, stack = 0, [os.getpid()]
    while stack:
        pid = stack.pop()
        total += ticks.get(pid, 0)
        stack.extend(parents.get(pid, []))
    return total / os.sysconf("SC_CLK_TCK")


def _measured(fn: Any, *args: Any) -> tuple[Any, float, int]:
    """fn(*args) in a worker, with the CPU seconds it took and the worker's peak memory so far."""
    start = _tree_cpu_seconds()
    try:
        result = fn(*args)
    except Exception as exc:
        exc.curate_node = "bench-worker"  # type: ignore[attr-defined]
        exc.bench_cpu = _tree_cpu_seconds() - start  # type: ignore[attr-defined]
        raise
    return result, _tree_cpu_seconds() - start, _peak_rss_bytes()


class MeasuredExecutor:
    """curate's executor interface over a pool of spawned worker processes, adding up their CPU seconds."""

    def __init__(self, workers: int):
        self.pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=warm_up)
        self.cpu_seconds = 0.0
        self.peak_rss = 0
        self.tasks = 0

    def map(self, fn: Any, args_list: Any, resources: Any = None, on_progress: Any = None) -> Any:
        # Live progress is for a person watching; the benchmark reads the manifests.
        futures = {self.pool.submit(_measured, fn, *args): i for i, args in enumerate(args_list)}
        for future in as_completed(futures):
            try:
                result, cpu, rss = future.result()
            except Exception as exc:  # noqa: BLE001 - a failed task is the runner's to record
                self.cpu_seconds += getattr(exc, "bench_cpu", 0.0)
                yield futures[future], None, exc
                continue
            self.cpu_seconds += cpu
            self.peak_rss = max(self.peak_rss, rss)
            self.tasks += 1
            yield futures[future], result, None


def _text_bytes_by_source(paths: list[Path]) -> dict[str, list[int]]:
    """{source: [documents, UTF-8 bytes of text]} of Parquet files."""
    from curate.io import read_parquet

    found: dict[str, list[int]] = {}
    for path in paths:
        table = read_parquet(str(path), ["text", "source"])
        sizes = pc.binary_length(pc.cast(table.column("text"), pa.binary()))
        grouped = pa.table({"source": table.column("source"), "bytes": sizes}).group_by("source")
        for row in grouped.aggregate([("bytes", "sum"), ("bytes", "count")]).to_pylist():
            entry = found.setdefault(row["source"], [0, 0])
            entry[0] += row["bytes_count"]
            entry[1] += row["bytes_sum"] or 0
    return found


def run_one_stage(pipeline_file: Path, name: str, workers: int, trace_memory: bool = True) -> dict[str, Any]:
    """Run one stage of the sample pipeline here (earlier stages done), measured; its figures as a dict.
    trace_memory: measure what the global pass holds (tracemalloc, which slows the driver: its CPU seconds
    are then not the stage's)."""
    from curate.pipeline import load_pipeline
    from curate.runner import run_stage
    from curate.stage import Input, TableStage

    pipeline, _ = load_pipeline(pipeline_file, REPO / "sources.yaml")
    workdir = Path(pipeline.workdir)
    planned = next(p for p in pipeline.stages if p.stage.name == name)
    inputs = [Input(str(workdir / i.path[1:])) if i.path.startswith("@") else i for i in planned.inputs]
    executor = MeasuredExecutor(workers)
    list(executor.map(len, [([],)] * workers))  # the workers start (and import) before the clock does
    warm_up()

    # What the driver holds for the documents is its global pass's state (exact keys, MinHash candidates, the
    # mix's choices): Python objects (tracemalloc) and Arrow buffers (its pool) at their peak during prepare.
    # The rest of the driver (one entry per task and output file) grows with the tasks, not the documents.
    stage = planned.stage
    prepare_data = [0]
    original_prepare = type(stage).prepare

    def measured_prepare(self: Any, *args: Any, **kwargs: Any) -> Any:
        tracemalloc.start()
        arrow_before = pa.total_allocated_bytes()
        try:
            return original_prepare(self, *args, **kwargs)
        finally:
            arrow_peak = max(0, pa.default_memory_pool().max_memory() - arrow_before)
            prepare_data[0] = tracemalloc.get_traced_memory()[1] + arrow_peak
            tracemalloc.stop()

    # On the class, in this driver only: the stage object is pickled to the workers, which import the class.
    if trace_memory:
        type(stage).prepare = measured_prepare  # type: ignore[method-assign]
    base_rss = _peak_rss_bytes()
    start, wall = time.process_time(), time.perf_counter()
    manifest = run_stage(stage, inputs, workdir / name, executor, None, planned.resources)
    driver_cpu, wall = time.process_time() - start, time.perf_counter() - wall
    driver_data = prepare_data[0]
    executor.pool.shutdown()
    out = workdir / name
    kept = _text_bytes_by_source(sorted(out.glob("*.parquet")))
    if isinstance(planned.stage, TableStage) or planned.stage.step in ("mix", "shard"):
        files = [
            p
            for i in inputs
            for p in (sorted(Path(i.path).glob("*.parquet")) if Path(i.path).is_dir() else [])
        ]
        seen = _text_bytes_by_source(files)
        raw_bytes = None
        for i in inputs:  # mix's raw replay input: JSONL
            path = Path(i.path)
            if path.is_dir() and not any(path.glob("*.parquet")):
                texts = [json.loads(line)["text"] for f in sorted(path.glob("*.jsonl")) for line in f.open()]
                seen.setdefault("replay", [0, 0])
                seen["replay"][0] += len(texts)
                seen["replay"][1] += sum(len(t.encode()) for t in texts)
    else:  # a parse stage: it sees raw files; its documents are what it keeps
        seen = kept
        raw_bytes = sum(f.stat().st_size for i in inputs for f in Path(i.path).rglob("*") if f.is_file())
    return {
        "stage": name,
        "step": planned.stage.step,
        "counts": manifest["counts"],
        "seen": seen,
        "kept": kept,
        "raw_bytes": raw_bytes,
        "driver_cpu_s": driver_cpu,
        "worker_cpu_s": executor.cpu_seconds,
        "tasks": executor.tasks,
        "wall_s": wall,
        "driver_base_rss": base_rss,
        "driver_peak_rss": _peak_rss_bytes(),
        "driver_data_bytes": driver_data if trace_memory else None,
        "worker_peak_rss": executor.peak_rss,
    }


# --- projection -----------------------------------------------------------------------------------------


def part_scales(stages: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, float], dict[str, Any]]:
    """Per part (guidelines, abstracts, papers, replay): full-corpus / sample, in text bytes and documents,
    taken where the part enters the pipeline (what its parse stage keeps; replay as the mix reads it)."""
    sample: dict[str, list[int]] = {}
    for stage in stages:
        for source, (docs, size) in stage["kept" if stage["raw_bytes"] is not None else "seen"].items():
            part = PARTS.get(source)
            if part and part not in sample and (stage["raw_bytes"] is not None or part == "replay"):
                sample[part] = [docs, size]
    full_bytes = {
        "guidelines": FULL_DOCS["guidelines"] * sample["guidelines"][1] / sample["guidelines"][0],
        "abstracts": FULL_DOCS["abstracts"] * sample["abstracts"][1] / sample["abstracts"][0],
        "papers": FULL_DOCS["papers"] * PAPER_TEXT_BYTES,
        "replay": REPLAY_SHARE * FULL_TOKENS * CHARS_PER_TOKEN,
    }
    full_docs = {**FULL_DOCS, "replay": full_bytes["replay"] * sample["replay"][0] / sample["replay"][1]}
    byte_scale = {part: full_bytes[part] / sample[part][1] for part in sample}
    doc_scale = {part: full_docs[part] / sample[part][0] for part in sample}
    corpus = {"bytes": full_bytes, "docs": full_docs, "sample": sample}
    return byte_scale, doc_scale, corpus


def project(stages: list[dict[str, Any]]) -> dict[str, Any]:
    """Core-hours per stage and in total, wall time per cluster size, driver memory at full scale."""
    byte_scale, doc_scale, corpus = part_scales(stages)
    rows = []
    for stage in stages:
        seen = {PARTS.get(s, s): v for s, v in stage["seen"].items()}
        sample_bytes = sum(size for _, size in seen.values())
        sample_docs = sum(docs for docs, _ in seen.values())
        full_bytes = sum(byte_scale.get(part, 0.0) * size for part, (_, size) in seen.items())
        full_docs = sum(doc_scale.get(part, 0.0) * docs for part, (docs, _) in seen.items())
        factor = full_bytes / sample_bytes if sample_bytes else 0.0
        cpu = stage["driver_cpu_s"] + stage["worker_cpu_s"]
        slope = stage.get("driver_slope") or {
            "cpu_s_per_byte": stage["driver_cpu_s"] / max(1, sample_bytes),
            "data_bytes_per_doc": stage["driver_data_bytes"] / max(1, sample_docs),
        }
        driver_hours = (stage["driver_cpu_s"] + slope["cpu_s_per_byte"] * (full_bytes - sample_bytes)) / 3600
        worker_hours = stage["worker_cpu_s"] * factor / 3600
        rows.append(
            {
                "stage": stage["stage"],
                "step": stage["step"],
                "sample_docs": sample_docs,
                "sample_bytes": sample_bytes,
                "bytes_per_s_per_core": sample_bytes / cpu if cpu else None,
                "docs_per_s_per_core": sample_docs / cpu if cpu else None,
                "full_docs": full_docs,
                "full_bytes": full_bytes,
                "worker_core_hours": worker_hours,
                "driver_hours": driver_hours,
                "core_hours": worker_hours + driver_hours,
                "worker_peak_rss": stage["worker_peak_rss"],
                "driver_peak_rss": stage["driver_peak_rss"],
                "driver_data_per_doc": slope["data_bytes_per_doc"],
                "driver_rss_at_full": stage["driver_peak_rss"]
                + slope["data_bytes_per_doc"] * max(0.0, full_docs - sample_docs),
            }
        )
    total = sum(r["core_hours"] for r in rows)
    wall = {}
    for nodes in NODES:
        cores = nodes * CORES_PER_NODE
        wall[nodes] = sum(r["worker_core_hours"] / cores + r["driver_hours"] for r in rows)
    ranking = sorted(rows, key=lambda r: -r["core_hours"])
    return {
        "corpus": corpus,
        "stages": rows,
        "total_core_hours": total,
        "wall_hours": wall,
        "driver_rss_at_full": max(r["driver_rss_at_full"] for r in rows),
        "ranking": [r["stage"] for r in ranking],
    }


def _mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB"


def print_report(result: dict[str, Any]) -> None:
    """The measured table, the projection, the ranking."""
    proj = result["projection"]
    print(f"\nsample: {json.dumps(proj['corpus']['sample'])} (documents, text bytes) per part")
    columns = ("docs", 7), ("MB", 8), ("KB/s/core", 11), ("docs/s/core", 13), ("worker peak", 13)
    print(f"{'stage':<12}" + "".join(f"{name:>{width}}" for name, width in columns) + f"{'driver peak':>13}")
    for r in proj["stages"]:
        print(
            f"{r['stage']:<12}{r['sample_docs']:>7}{r['sample_bytes'] / 1e6:>8.1f}"
            f"{(r['bytes_per_s_per_core'] or 0) / 1e3:>11,.0f}{r['docs_per_s_per_core'] or 0:>13,.1f}"
            f"{_mb(r['worker_peak_rss']):>13}{_mb(r['driver_peak_rss']):>13}"
        )
    print(
        f"\nprojection to the full corpus ({FULL_TOKENS / 1e9:.1f}B tokens; documents: "
        + ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in proj["corpus"]["docs"].items())
        + ")"
    )
    print(f"{'stage':<12}{'documents':>12}{'GB':>8}{'core-hours':>12}{'share':>8}{'driver at full':>16}")
    total = proj["total_core_hours"]
    for r in sorted(proj["stages"], key=lambda r: -r["core_hours"]):
        print(
            f"{r['stage']:<12}{r['full_docs'] / 1e6:>11.2f}M{r['full_bytes'] / 1e9:>8.1f}"
            f"{r['core_hours']:>12,.1f}{r['core_hours'] / total:>8.0%}{_mb(r['driver_rss_at_full']):>16}"
        )
    print(f"{'total':<32}{total:>12,.1f}")
    print(
        "wall time: "
        + ", ".join(
            f"{n} node{'s' if n > 1 else ''} x {CORES_PER_NODE} cores {h:,.1f} h"
            for n, h in proj["wall_hours"].items()
        )
    )
    documents = sum(proj["corpus"]["docs"].values())
    print(f"driver memory at {documents / 1e6:.1f}M documents: {_mb(proj['driver_rss_at_full'])}")
    print(f"stages by cost: {' > '.join(proj['ranking'])}")


def run_sample(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    """Write a sample of args.docs documents under work and measure every stage over it."""
    t0 = time.perf_counter()
    folders = write_sample(work, args)
    print(f"sample of {args.docs} documents written to {work} in {time.perf_counter() - t0:.0f} s")
    pipeline_file = sample_pipeline(args.pipeline, folders, work)
    stages = []
    for entry in yaml.safe_load(pipeline_file.read_text())["stages"]:
        name = str(entry.get("name", entry["step"]))
        command = [
            sys.executable,
            __file__,
            "--workers",
            str(args.workers),
            "--run-stage",
            str(pipeline_file),
            name,
        ]
        # The driver's seconds are small next to the workers': the least of a few fresh runs keeps a busy
        # moment of the machine from passing for work that grows with the data. One more run measures the
        # driver's memory: tracemalloc slows the driver, so its seconds are not counted.
        repeats = []
        for n in range(args.driver_repeat + 1):
            shutil.rmtree(work / "run" / name, ignore_errors=True)
            traced = ["--trace-memory"] if n == args.driver_repeat else []
            run = subprocess.run(command + traced, capture_output=True, text=True, cwd=REPO)
            if run.returncode != 0:
                sys.exit(f"stage {name} failed:\n{run.stderr[-3000:]}")
            repeats.append(json.loads(run.stdout.strip().splitlines()[-1]))
        stage = repeats[-1]
        stage["driver_cpu_s_traced"] = stage["driver_cpu_s"]
        stage["driver_cpu_s_runs"] = [r["driver_cpu_s"] for r in repeats[:-1]]
        stage["driver_cpu_s"] = min(stage["driver_cpu_s_runs"])
        if stage["counts"]["errored"]:
            sys.exit(
                f"stage {name}: {stage['counts']['errored']} documents errored (see {work / 'run' / name})"
            )
        print(
            f"  {name:<12} {stage['counts']['in']:>6} in {stage['counts']['kept']:>6} kept  "
            f"{stage['driver_cpu_s'] + stage['worker_cpu_s']:7.1f} CPU s  {stage['wall_s']:6.1f} s wall"
        )
        stages.append(stage)
    return stages


def driver_slope(large: dict[str, Any], small: dict[str, Any]) -> dict[str, float]:
    """The driver's CPU seconds per text byte and data bytes per document, from two sample sizes."""

    def total(stage: dict[str, Any], i: int) -> int:
        return sum(v[i] for v in stage["seen"].values())

    d_bytes, d_docs = total(large, 1) - total(small, 1), total(large, 0) - total(small, 0)
    cpu = (large["driver_cpu_s"] - small["driver_cpu_s"]) / d_bytes if d_bytes > 0 else 0.0
    data = (large["driver_data_bytes"] - small["driver_data_bytes"]) / d_docs if d_docs > 0 else 0.0
    return {"cpu_s_per_byte": max(0.0, cpu), "data_bytes_per_doc": max(0.0, data)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1000, help="abstracts + papers in the sample")
    parser.add_argument("--guidelines", type=int, default=30, help="guideline pages (at least)")
    parser.add_argument("--pdf-share", type=float, default=0.1, help="papers that come as a PDF only")
    parser.add_argument("--no-abstract", type=float, default=0.4, help="citations without an abstract")
    parser.add_argument("--workers", type=int, default=1, help="worker processes per stage")
    parser.add_argument(
        "--driver-repeat",
        type=int,
        default=3,
        help="runs of each stage whose least driver CPU counts (one more measures the driver's memory)",
    )
    parser.add_argument("--pipeline", type=Path, default=PIPELINE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="where the sample goes (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the sample and the stage outputs")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--run-stage", nargs=2, metavar=("PIPELINE", "STAGE"), help=argparse.SUPPRESS)
    parser.add_argument("--trace-memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_stage:  # the child that measures one stage
        stage_figures = run_one_stage(
            Path(args.run_stage[0]), args.run_stage[1], args.workers, trace_memory=args.trace_memory
        )
        print(json.dumps(stage_figures))
        return
    if not EVALDATA.is_dir():
        sys.exit(f"evaluation data not found at {EVALDATA} (it lives in ../shared beside the checkout)")
    load_at_start = os.getloadavg()[0]  # the stages' own load would hide what else ran
    work = args.work or Path(tempfile.mkdtemp(prefix="gap-replay-scale-"))
    try:
        # The driver's own work is mostly fixed (planning, manifests) with a part that grows with the data:
        # a second, smaller sample separates the two.
        small = argparse.Namespace(**{**vars(args), "docs": max(50, args.docs // 4)})
        runs = {"small": run_sample(small, work / "small"), "full": run_sample(args, work / "full")}
        stages = runs["full"]
        for stage, other in zip(stages, runs["small"], strict=True):
            stage["driver_slope"] = driver_slope(stage, other)
        result = {
            "machine": {"load_average_1min_at_start": load_at_start},
            "args": {
                k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "run_stage"
            },
            "pipeline": str(args.pipeline),
            "measured": stages,
            "measured_small_sample": runs["small"],
            "projection": project(stages),
        }
        print_report(result)
        write_results("gap_replay_scale", result, args.out)
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
