"""Documents per second per core of language ID, clean-up and each quality heuristic, against datatrove.

Corpus: real documents from ../shared/evaldata (25 PMC papers parsed with PyMuPDF and cleaned, and the health
and article pages of the HTML sets extracted with trafilatura), repeated to --docs documents.

Anchors, in the same run and the same process (one core):
- language: datatrove's own `LanguageFilter` (backend ft176) with its model object pointed at the same
  lid.176.ftz file (it would otherwise download lid.176.bin); it predicts on the whole text at once.
- each heuristic: datatrove's filter object called on `Document`s, with the same thresholds and the same regex
  word tokenizer (datatrove's English tokenizer is spaCy, which is not installed here).
- all filters: datatrove's `LocalPipelineExecutor` (1 task, 1 worker) running LanguageFilter and the four
  heuristics over the documents, against curate's language and quality stages' `apply` on an Arrow table.

    .venv/bin/python benchmarks/filter_throughput.py [--docs 2000] [--repeat 3] [--out benchmarks/results]

Prints a table and writes filter_throughput.json. Best of --repeat timings.
"""

from __future__ import annotations

import argparse
import csv
import gzip
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
from curate.filter.language import LanguageFilter, lid_model_path  # noqa: E402
from curate.filter.quality import FILTER_ORDER, QualityFilter, build_filters  # noqa: E402
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


def best_of(repeat: int, fn) -> float:
    """The fastest of `repeat` runs of fn(), in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


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
        curate_s = best_of(args.repeat, curate_fn)
        anchor_s = best_of(args.repeat, anchor_fn) if anchor_fn else None
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
    curate_kept = curate_lang.apply(table, task)[0].num_rows
    dt_kept = sum(bool(dt_lang.filter(Document(text=t, id=""))) for t in texts)
    add(
        "language",
        lambda: curate_lang.apply(table, task),
        lambda: [dt_lang.filter(Document(text=t, id="")) for t in texts],
        "datatrove LanguageFilter",
        f"kept {curate_kept} vs {dt_kept}",
    )

    # Clean-up has no datatrove counterpart.
    add("clean", lambda: CleanStage(name="clean").apply(table, task), None, "none")

    # Each heuristic alone, curate's stage against datatrove's filter object with the same settings.
    for name in FILTER_ORDER:
        only = {other: None for other in FILTER_ORDER if other != name}
        stage = QualityFilter(name="quality", **only)
        dt_filter = build_filters("guidelines", only)[name]
        kept = stage.apply(table, task)[0].num_rows

        def dt_run(f=dt_filter):
            return [f.filter(Document(text=t, id="")) for t in texts]

        dt_kept = sum(v is True or (isinstance(v, tuple) and v[0]) for v in dt_run())
        add(
            name,
            lambda s=stage: s.apply(table, task),
            dt_run,
            "datatrove filter object",
            f"kept {kept} vs {dt_kept}",
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
        "rows": rows,
    }
    write_results("filter_throughput", result, args.out)


if __name__ == "__main__":
    main()
