"""SHA-256 of every kept and rejected Parquet file and stats file the stages write: the demo and small
benchmark corpora.

A refactoring must not change a byte of output. This runs the demo pipeline and every step over small
configurations of the benchmarks' corpora (benchmarks/dedup.py's near-copies, the evaluation PDFs and HTML
pages, the JATS and PubMed conformance files and generated PubMed, benchmarks/decontam.py's planted test
items, the test BPE tokenizer) through the `curate` command, and writes the SHA-256 of every .parquet
and stats file under each stage folder. Run it on two checkouts and compare:

    .venv/bin/python benchmarks/output_hashes.py --save /tmp/before.json            # on the old commit
    .venv/bin/python benchmarks/output_hashes.py --compare /tmp/before.json         # on the new one

Inputs are generated once into --root/inputs (kept between runs, so both runs read the same bytes) and the
stages write into --root/work (emptied first): both paths are the same for every checkout, so file paths
recorded in rows (file:// URLs of inputs) agree. The commands run as `python -m curate` with this
interpreter, so each checkout's own curate is the one measured. Needs ../shared/evaldata for the PDF, HTML,
dedup and decontamination corpora (those cases are skipped without it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EVALDATA = REPO.parent / "shared" / "evaldata"
sys.path.insert(0, str(REPO / "benchmarks"))


def curate(*args: str | Path, cwd: Path, check: bool = True) -> None:
    """One `curate` command with this interpreter (exit 1, failed tasks, is allowed when check is False)."""
    command = [sys.executable, "-m", "curate", *map(str, args)]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode not in ((0,) if check else (0, 1)):
        raise SystemExit(f"{' '.join(command)} exited {result.returncode}:\n{result.stderr[-3000:]}")


# ---------------------------------------------------------------------------------------------- inputs


def make_inputs(root: Path, docs: int, pdfs: int, pages: int) -> None:
    """Every corpus the cases read, written once (deterministic: fixed seeds, fixed names)."""
    inputs = root / "inputs"
    if (inputs / ".complete").exists():
        return
    shutil.rmtree(inputs, ignore_errors=True)
    inputs.mkdir(parents=True)
    # The demo: its YAML, pages, evaluation files and generated PDFs; the fixture sites it scrapes.
    shutil.copytree(REPO / "pipelines" / "demo", inputs / "pipelines" / "demo", ignore=_no_pdfs)
    shutil.copy(REPO / "pipelines" / "demo.yaml", inputs / "pipelines" / "demo.yaml")
    shutil.copy(REPO / "sources.yaml", inputs / "sources.yaml")
    shutil.copytree(REPO / "tests" / "fixtures" / "sites", inputs / "tests" / "fixtures" / "sites")
    subprocess.run(
        [
            sys.executable,
            str(REPO / "pipelines" / "demo" / "make_pdfs.py"),
            str(inputs / "pipelines/demo/pdf"),
        ],
        check=True,
        capture_output=True,
    )
    shutil.copytree(REPO / "tests" / "fixtures" / "xml", inputs / "xml")
    from xml_fidelity import write_pubmed

    (inputs / "pubmed-generated").mkdir()
    write_pubmed(inputs / "pubmed-generated" / "pubmed25n0001.xml.gz", 400, seed=0)
    sys.path.insert(0, str(REPO))
    from tests.fixtures.tokenizer import build_tokenizer

    build_tokenizer(inputs / "tokenizer.json")
    if EVALDATA.is_dir():
        from dedup import write_corpus

        write_corpus(inputs / "near", docs, max(1, docs // 4), seed=0)
        originals = sorted((EVALDATA / "pmc_pdf_jats").rglob("*.pdf"))[:pdfs]
        (inputs / "pdf").mkdir()
        for original in originals:
            shutil.copyfile(original, inputs / "pdf" / f"{original.parent.name}.pdf")
        (inputs / "html").mkdir()
        found = sorted((EVALDATA / "html_scrapinghub_aeb" / "html").glob("*"))[: pages // 2]
        found += sorted((EVALDATA / "html_wcxb" / "dev").rglob("*.html*"))[: pages - len(found)]
        for page in found:
            shutil.copyfile(page, inputs / "html" / page.name)
        _decontamination_inputs(inputs / "decontam")
    (inputs / ".complete").write_text("")


def _no_pdfs(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if n == "pdf"]


def _decontamination_inputs(folder: Path, items: int = 2000, clean: int = 300, planted: int = 40) -> None:
    """benchmarks/decontam.py's corpus, small: evaluation files and a shard of clean and planted documents."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from decontam import (
        VARIANTS,
        ItemMaker,
        clean_documents,
        make_items,
        medical_articles,
        plant,
        sentences_of,
        split_articles,
        write_evalsets,
    )

    rng = np.random.default_rng(0)
    clean_articles, item_articles = split_articles(medical_articles())
    maker = ItemMaker(sentences_of(item_articles), rng)
    records = make_items(maker, items)
    write_evalsets(records, folder / "eval")
    texts = [r["question"] for rows in records.values() for r in rows]
    rows = [
        {"id": f"clean:{n}", "text": t, "source": "clean"}
        for n, t in enumerate(clean_documents(clean_articles, clean, rng))
    ]
    hosts = clean_documents(clean_articles, planted, rng)
    for variant in VARIANTS:
        for n, host in enumerate(hosts):
            item = str(texts[int(rng.integers(len(texts)))])
            rows.append(
                {
                    "id": f"{variant}:{n}",
                    "text": plant(host, item, variant, rng, maker.vocab),
                    "source": "planted",
                }
            )
    (folder / "docs").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), folder / "docs" / "part-0.parquet")


# ---------------------------------------------------------------------------------------------- cases


def case_demo(inputs: Path, work: Path) -> None:
    """`make demo`: the whole demo pipeline, on a local Ray."""
    curate("run", inputs / "pipelines" / "demo.yaml", "--workdir", work / "demo", cwd=inputs)


def case_xml(inputs: Path, work: Path) -> None:
    """pmc over the JATS conformance files (folder), pubmed over its conformance and generated files."""
    curate("pmc", inputs / "xml" / "jats", "--out", work / "pmc", cwd=inputs, check=False)
    curate(
        "pmc",
        inputs / "xml" / "jats",
        "--references",
        "--tables",
        "--captions",
        "--out",
        work / "pmc-all",
        cwd=inputs,
        check=False,
    )
    curate(
        "pubmed",
        inputs / "xml" / "pubmed",
        inputs / "pubmed-generated",
        "--out",
        work / "pubmed",
        cwd=inputs,
        check=False,
    )


def case_parse(inputs: Path, work: Path) -> None:
    """pdf and html over the evaluation PDFs and pages, then filter, clean, quality, classify on them."""
    curate("pdf", inputs / "pdf", "--out", work / "pdf", cwd=inputs, check=False)
    curate("html", inputs / "html", "--out", work / "html", cwd=inputs, check=False)
    both = (work / "pdf", work / "html")
    curate("filter", *both, "--out", work / "filter", cwd=inputs)
    curate(
        "filter",
        *both,
        "--lang",
        "en",
        "--lang",
        "fr",
        "--threshold",
        "0.3",
        "--out",
        work / "filter-fr",
        cwd=inputs,
    )
    curate("clean", work / "filter", "--out", work / "clean", cwd=inputs)
    for profile in ("guidelines", "papers", "web"):
        curate(
            "quality",
            "filter",
            work / "clean",
            "--profile",
            profile,
            "--out",
            work / f"quality-{profile}",
            cwd=inputs,
        )
    curate(
        "mix",
        "--out",
        work / "mix",
        "-c",
        f"pdf={work / 'pdf'}",
        "-c",
        f"html={work / 'html'}",
        "--share",
        "pdf=0.5",
        "--share",
        "html=0.5",
        "--validation",
        "0.1",
        cwd=inputs,
    )
    curate(
        "mix",
        "--out",
        work / "mix-epochs",
        "-c",
        f"pdf={work / 'pdf'}",
        "-c",
        f"html={work / 'html'}",
        "--epochs",
        "pdf=2",
        "--epochs",
        "html=1",
        "--tokenizer",
        inputs / "tokenizer.json",
        cwd=inputs,
    )


def case_near(inputs: Path, work: Path) -> None:
    """benchmarks/dedup.py's corpus: exact and near dedup (within and across sources, an index), shard."""
    corpus = inputs / "near"
    curate("dedup", corpus, "--out", work / "exact", cwd=inputs)
    curate("dedup", "--near", corpus, "--out", work / "near", "--write-index", work / "index", cwd=inputs)
    curate(
        "dedup",
        "--near",
        corpus,
        "--within-source",
        "--threshold",
        "0.7",
        "--out",
        work / "near-within",
        cwd=inputs,
    )
    curate(
        "dedup",
        "--near",
        work / "near",
        "--against",
        work / "index",
        "--out",
        work / "near-against",
        cwd=inputs,
    )
    curate("shard", work / "near", "--target-size", "2MB", "--out", work / "shard", cwd=inputs)
    curate(
        "shard",
        work / "near",
        "--target-size",
        "1MB",
        "--tokenizer",
        inputs / "tokenizer.json",
        "--out",
        work / "shard-tok",
        cwd=inputs,
    )
    curate(
        "tokenize",
        work / "shard-tok",
        "--tokenizer",
        inputs / "tokenizer.json",
        "--out",
        work / "tokenize",
        cwd=inputs,
    )


def case_decontaminate(inputs: Path, work: Path) -> None:
    """benchmarks/decontam.py's planted items: drop and cut."""
    evalsets = sorted((inputs / "decontam" / "eval").glob("*.jsonl"))
    benchmarks = [a for p in evalsets for a in ("-b", str(p))]
    docs = inputs / "decontam" / "docs"
    curate("decontaminate", docs, *benchmarks, "--out", work / "decontam-drop", cwd=inputs)
    curate("decontaminate", docs, *benchmarks, "--action", "cut", "--out", work / "decontam-cut", cwd=inputs)


CASES: dict[str, Callable[[Path, Path], None]] = {
    "demo": case_demo,
    "xml": case_xml,
    "parse": case_parse,
    "near": case_near,
    "decontaminate": case_decontaminate,
}
NEEDS_EVALDATA = {"parse", "near", "decontaminate"}


# The shard stage's corpus and per-shard stats are outputs too (deterministic: no paths or times in them).
HASHED = ("*.parquet", "stats.json", "*.stats.json")


def hashes(work: Path) -> dict[str, str]:
    """SHA-256 of every Parquet and stats file under work (stage outputs and rejected/), by relative path."""
    files = sorted({p for pattern in HASHED for p in work.rglob(pattern)})
    return {
        str(p.relative_to(work)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in files
        if ".scratch" not in p.parts
    }


def main() -> None:
    """Run the cases, print and write the hashes; compare with an earlier run's file."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, default=Path("/tmp/curate-output-hashes"))
    parser.add_argument("--only", default=",".join(CASES), help="cases to run, comma-separated")
    parser.add_argument("--docs", type=int, default=4000, help="documents of the near-dedup corpus")
    parser.add_argument("--pdfs", type=int, default=8, help="evaluation PDFs to parse")
    parser.add_argument("--pages", type=int, default=60, help="evaluation HTML pages to extract")
    parser.add_argument("--save", type=Path, help="write the hashes to this JSON file")
    parser.add_argument("--compare", type=Path, help="compare with the hashes in this JSON file (exit 1)")
    args = parser.parse_args()
    make_inputs(args.root, args.docs, args.pdfs, args.pages)
    inputs, work = args.root / "inputs", args.root / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    env_note = os.environ.get("PYTHONPATH")
    if env_note:
        print(f"note: PYTHONPATH={env_note}")
    for name in args.only.split(","):
        if name in NEEDS_EVALDATA and not EVALDATA.is_dir():
            print(f"{name}: skipped (no {EVALDATA})")
            continue
        t0 = time.perf_counter()
        CASES[name](inputs, work)
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
    found = hashes(work)
    print(f"{len(found)} Parquet and stats files")
    if args.save:
        args.save.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
        print(f"wrote {args.save}")
    if args.compare:
        before = json.loads(args.compare.read_text())
        ran = {k: v for k, v in before.items() if k.split("/")[0] in {p.split("/")[0] for p in found}}
        changed = sorted(k for k in ran.keys() & found.keys() if ran[k] != found[k])
        missing, new = sorted(ran.keys() - found.keys()), sorted(found.keys() - ran.keys())
        for label, names in (("changed", changed), ("missing", missing), ("new", new)):
            for n in names:
                print(f"{label}: {n}")
        same = len(ran.keys() & found.keys()) - len(changed)
        print(f"{same} identical, {len(changed)} changed, {len(missing)} missing, {len(new)} new")
        if changed or missing or new:
            sys.exit(1)


if __name__ == "__main__":
    main()
