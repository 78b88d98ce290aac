"""Documents per second per core of language ID, clean-up and each quality heuristic, against datatrove.

Corpus: real documents from ../shared/evaldata (25 PMC papers parsed with PyMuPDF and cleaned, and the health
and article pages of the HTML sets extracted with trafilatura), repeated to --docs documents.

Anchors, in the same run and the same process (one core):
- language: datatrove's own `LanguageFilter` (backend ft176) with its model object pointed at the same
  lid.176.ftz file (it would otherwise download lid.176.bin); it predicts on the whole text at once.
- each heuristic: datatrove's filter object called on `Document`s, with the same thresholds and the same regex
  word tokenizer (datatrove's English tokenizer is spaCy, which is not installed here), given the texts as
  curate's stage prepares them (heading marks dropped; the preparation is not timed for the anchor), so that
  the verdicts compare document for document.
- all filters: datatrove's `LocalPipelineExecutor` (1 task, 1 worker) running LanguageFilter and the four
  heuristics over the documents, against curate's language and quality stages' `apply` on an Arrow table.

    .venv/bin/python benchmarks/filter_throughput.py [--docs 2000] [--repeat 3] [--out benchmarks/results]

Prints a table and writes filter_throughput.json. Best of --repeat timings, curate's and the anchor's in turn.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from _results import write_results

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from datatrove.data import Document  # noqa: E402
from datatrove.executor import LocalPipelineExecutor  # noqa: E402
from datatrove.pipeline.filters import LanguageFilter as DatatroveLanguageFilter  # noqa: E402

from curate.filter.clean import CleanStage  # noqa: E402
from curate.filter.language import LanguageFilter, identify_language_mix, lid_model_path  # noqa: E402
from curate.filter.quality import FILTER_ORDER, QualityFilter, build_filters, prepare_text  # noqa: E402
from curate.parse.html import extract_html  # noqa: E402
from curate.parse.pdf import parse_pdf  # noqa: E402
from curate.schema import Rejection, records_table  # noqa: E402
from curate.stage import Task  # noqa: E402

EVALDATA = REPO.parent / "shared" / "evaldata"


def load_corpus() -> list[str]:
    """Texts of real medical papers and web pages, as curate's parsers produce them."""
    if not EVALDATA.is_dir():
        sys.exit(f"evaluation data not found at {EVALDATA}")
    texts = []
    pmc = EVALDATA / "pmc_pdf_jats"
    for row in csv.DictReader((pmc / "index.csv").open()):
        texts.append(parse_pdf(pmc / row["pdf"]).text)
    pages = sorted((EVALDATA / "html_wcxb").rglob("*.html*")) + sorted(
        (EVALDATA / "html_trafilatura_eval").rglob("*.html")
    )
    pages += sorted((EVALDATA / "html_scrapinghub_aeb").rglob("*.html.gz"))
    for page in pages:
        raw = page.read_bytes()
        try:
            texts.append(extract_html(gzip.decompress(raw) if page.suffix == ".gz" else raw).text)
        except Rejection:
            continue
    return texts


def best_of(repeat: int, *fns) -> list[float]:
    """The fastest of `repeat` runs of each fn(), in seconds; the functions take turns, so that a change in
    the machine's load during the run weighs on all of them alike."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, runs in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - start)
    return [min(runs) for runs in times]


def datatrove_language_filter() -> DatatroveLanguageFilter:
    """datatrove's language filter, its model file resolved to our lid.176.ftz instead of downloaded."""
    import datatrove.utils.lid

    # datatrove fetches lid.176.bin from the network on first use; nothing is downloaded here.
    datatrove.utils.lid.cached_asset_path_or_download = lambda *args, **kwargs: str(lid_model_path())
    return DatatroveLanguageFilter(languages=["en"], language_threshold=0.65)


def run_datatrove_pipeline(texts: list[str], steps: list) -> None:
    """datatrove's LocalPipelineExecutor over the documents, one task, one worker."""
    docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
    with tempfile.TemporaryDirectory() as logs:
        LocalPipelineExecutor(
            pipeline=[docs, *steps], tasks=1, workers=1, logging_dir=logs, skip_completed=False
        ).run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()

    from loguru import logger

    logger.remove()  # datatrove logs every step; keep the table readable

    base = load_corpus()
    texts = (base * (args.docs // len(base) + 1))[: args.docs]
    chars = sum(map(len, texts))
    table = records_table([{"id": f"b:{i}", "text": t, "source": "bench"} for i, t in enumerate(texts)])
    task = Task("bench", ())
    rows = []

    def add(name: str, curate_fn, anchor_fn, anchor_name: str, agree=None) -> None:
        curate_s, *anchor = best_of(args.repeat, curate_fn, *([anchor_fn] if anchor_fn else []))
        anchor_s = anchor[0] if anchor else None
        rows.append(
            {
                "filter": name,
                "curate_docs_per_s": len(texts) / curate_s,
                "anchor": anchor_name,
                "anchor_docs_per_s": len(texts) / anchor_s if anchor_s else None,
                "ratio": anchor_s / curate_s if anchor_s else None,
                "same_verdicts": agree,
            }
        )

    # Language ID.
    curate_lang = LanguageFilter(name="language")
    dt_lang = datatrove_language_filter()
    kept_ids = set(curate_lang.apply(table, task)[0].column("id").to_pylist())
    dt_kept = sum(bool(dt_lang.filter(Document(text=t, id=""))) for t in texts)
    # The filter reads only some chunks of a long document when the verdict is not in doubt: compare with
    # the verdicts that every chunk gives.
    every_chunk = identify_language_mix(texts)
    full_kept = {
        f"b:{i}"
        for i, (lang, score, _) in enumerate(every_chunk)
        if lang in curate_lang.keep and score >= curate_lang.threshold
    }
    add(
        "language",
        lambda: curate_lang.apply(table, task),
        lambda: [dt_lang.filter(Document(text=t, id="")) for t in texts],
        "datatrove LanguageFilter",
        f"kept {len(kept_ids)} vs {dt_kept}; {len(kept_ids ^ full_kept)} differ from reading every chunk",
    )

    # Clean-up has no datatrove counterpart.
    add("clean", lambda: CleanStage(name="clean").apply(table, task), None, "none")

    # Each heuristic alone, curate's stage against datatrove's filter object with the same settings.
    prepared = [prepare_text(t) for t in texts]
    for name in FILTER_ORDER:
        only = {other: None for other in FILTER_ORDER if other != name}
        stage = QualityFilter(name="quality", **only)
        dt_filter = build_filters("guidelines", only)[name]
        kept = stage.apply(table, task)[0].column("id").to_pylist()

        def dt_run(f=dt_filter):
            return [f.filter(Document(text=t, id="")) for t in prepared]

        dt_kept = [f"b:{i}" for i, v in enumerate(dt_run()) if v is True]
        add(
            name,
            lambda s=stage: s.apply(table, task),
            dt_run,
            "datatrove filter object",
            f"kept {len(kept)} vs {len(dt_kept)}; {len(set(kept) ^ set(dt_kept))} documents differ",
        )

    # Everything together: curate's two stages against datatrove's executor running the same five filters.
    quality = QualityFilter(name="quality")
    add(
        "language + 4 heuristics",
        lambda: quality.apply(curate_lang.apply(table, task)[0], task),
        lambda: run_datatrove_pipeline(
            texts, [datatrove_language_filter(), *build_filters("guidelines", {}).values()]
        ),
        "datatrove LocalPipelineExecutor",
    )

    print(
        f"{len(texts)} documents ({len(base)} distinct, {chars / len(texts):,.0f} characters each on average)"
    )
    print(f"{'filter':<26}{'curate docs/s':>15}{'anchor docs/s':>15}{'curate/anchor':>15}  anchor; verdicts")
    for r in rows:
        anchor = f"{r['anchor_docs_per_s']:>15,.0f}" if r["anchor_docs_per_s"] else f"{'-':>15}"
        ratio = f"{r['ratio']:>14.2f}x" if r["ratio"] else f"{'-':>15}"
        print(
            f"{r['filter']:<26}{r['curate_docs_per_s']:>15,.0f}{anchor}{ratio}  {r['anchor']}; "
            f"{r['same_verdicts'] or ''}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "filter_throughput",
        "docs": len(texts),
        "distinct_docs": len(base),
        "mean_chars": chars / len(texts),
        "repeat": args.repeat,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "rows": rows,
    }
    write_results("filter_throughput", result, args.out)


if __name__ == "__main__":
    main()
