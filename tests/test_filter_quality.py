"""datatrove's quality heuristics with medical defaults: no false drops on papers and guidelines."""

from __future__ import annotations

import csv
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.filter.clean import clean_text
from curate.filter.quality import TOKENIZER, QualityFilter, build_filters, judge
from curate.parse.html import extract_html
from curate.parse.pdf import parse_pdf
from curate.pipeline import load_pipeline, make_stage, run_pipeline
from curate.runner import LocalExecutor
from curate.schema import Rejection, records_table
from curate.sources.registry import ConfigError
from curate.stage import Task

from .conftest import REPO

DEMO_HTML = REPO / "pipelines" / "demo" / "html"
PROSE = (
    "Adults with suspected sepsis should be assessed within one hour of arrival. The team should measure "
    "lactate, take blood cultures and give broad-spectrum antibiotics when the risk is high. "
)


def _table(texts: list[str]) -> pa.Table:
    return records_table([{"id": f"d:{i}", "text": t, "source": "s"} for i, t in enumerate(texts)])


def _verdicts(stage: QualityFilter, texts: list[str]) -> dict[int, tuple[str, str]]:
    kept, rejected = stage.apply(_table(texts), Task("t", ()))
    assert kept.num_rows + rejected.num_rows == len(texts)
    rows = rejected.select(["id", "drop_reason", "drop_detail"]).to_pylist()
    return {int(r["id"][2:]): (r["drop_reason"], r["drop_detail"]) for r in rows}


@pytest.fixture(scope="module")
def pmc_texts(evaldata) -> dict[str, str]:
    root = evaldata / "pmc_pdf_jats"
    rows = list(csv.DictReader((root / "index.csv").open()))
    return {r["pmcid"]: parse_pdf(root / r["pdf"]).text for r in rows}


def _demo_pages() -> dict[str, str]:
    """The demo's English pages (its German page is for the language filter; these heuristics are English)."""
    pages = {}
    for path in sorted(DEMO_HTML.rglob("*.html")):
        try:
            pages[path.stem] = extract_html(path.read_bytes()).text
        except Rejection:  # the demo's stub and fake HTML: the html stage rejects them before any filter
            continue
    return {k: v for k, v in pages.items() if k != "bluthochdruck"}


def test_default_filters_drop_no_pmc_paper(pmc_texts):
    assert len(pmc_texts) == 25
    for profile in ("papers", "guidelines"):
        stage = QualityFilter(name="quality", profile=profile)
        cleaned = [clean_text(t)[0] for t in pmc_texts.values()]
        assert _verdicts(stage, cleaned) == {}, profile


def test_datatrove_web_defaults_would_drop_many_papers(pmc_texts):
    """Why the medical defaults exist: datatrove's own thresholds reject papers for their numbers."""
    dropped = _verdicts(QualityFilter(name="quality", profile="web"), list(pmc_texts.values()))
    assert len(dropped) >= 10
    assert sum("gopher_below_alpha_threshold" in detail for _, detail in dropped.values()) >= 10


def test_default_filters_drop_no_demo_guideline_page():
    pages = _demo_pages()
    assert {"hypertension-in-adults", "sepsis-recognition", "anaphylaxis"} <= set(pages)
    texts = [clean_text(t)[0] for t in pages.values()]
    assert _verdicts(QualityFilter(name="quality"), texts) == {}
    assert _verdicts(QualityFilter(name="quality"), list(pages.values())) == {}  # uncleaned too


def test_each_filter_has_its_reason_and_signal_value():
    stage = QualityFilter(name="quality")
    texts = [
        "Too short to be a document.",
        "\n".join(
            f"Loading item {i} of the list of all the results in the current search and more..."
            for i in range(60)
        )
        + "\n",
        "\n\n".join([PROSE * 2] * 6),  # the same paragraph six times: 5 of 6 are repeats
    ]
    verdicts = _verdicts(stage, texts)
    assert verdicts[0][0] == "gopher_quality" and verdicts[0][1].startswith("gopher_short_doc 6 (limit 50)")
    assert verdicts[1] == ("gopher_quality", "gopher_too_many_end_ellipsis 1 (limit 0.3)")
    assert verdicts[2][0] == "gopher_repetition" and verdicts[2][1].startswith(
        "dup_para_frac 0.8333 (limit 0.3)"
    )


def test_thresholds_come_from_yaml_and_none_disables_a_filter():
    text = "\n\n".join([PROSE * 2] * 6)
    stage = make_stage("quality", "q", {"gopher_repetition": None, "c4": {"min_num_sentences": 100}}, {})
    assert _verdicts(stage, [text])[0] == ("c4", "too_few_sentences 24 (limit 100)")
    # The count in the detail is the one datatrove's filter decides on: 24 sentences pass a minimum of 24.
    options = {"gopher_repetition": None, "fineweb_quality": None, "c4": {"min_num_sentences": 24}}
    at_limit = make_stage("quality", "q", options, {})
    assert _verdicts(at_limit, [text]) == {}
    off = make_stage("quality", "q", {"gopher_repetition": None, "c4": None, "fineweb_quality": None}, {})
    assert _verdicts(off, [text]) == {}
    with pytest.raises(ConfigError, match="unknown quality profile"):
        make_stage("quality", "q", {"profile": "nope"}, {})
    with pytest.raises(ConfigError, match="max_words"):
        make_stage("quality", "q", {"gopher_quality": {"max_words": 5}}, {})


def test_bad_input_gets_a_clear_reason_never_an_exception():
    filters = build_filters("guidelines", {})
    cases = {
        "": "empty",
        "  \n\t \n": "empty",
        "!!! ??? ... --- ***": "empty",
        "\x00\x01\x02\x1b\x7f": "empty",
        "\ud800 \udfff": "empty",
        "ᚠᚢᚦᚨᚱᚲ ᚷᚹᚺᚾ ᛁᛃᛇᛈ": "gopher_quality",  # letters, but three words
        "Take one tablet with the evening meal.\n" * 1_400_000: "quality_too_long",  # 53 MB, one line
        "Take one tablet with the evening meal.\n" * 20_000: "gopher_repetition",
    }
    for text, reason in cases.items():
        verdict = judge(text, filters, 10_000_000)
        assert verdict is not None and verdict[0] == reason, text[:40]
        assert verdict[1]


def test_word_tokenizer_keeps_numbers_units_and_dot_leaders_whole():
    assert TOKENIZER.word_tokenize("Give 0.5 mg/kg (max 20 mg) ...... daily.") == [
        "Give", "0.5", "mg/kg", "(", "max", "20", "mg", ")", "......", "daily", ".",
    ]  # fmt: skip


def test_filter_steps_run_from_pipeline_yaml(tmp_path):
    """language -> clean -> quality on the demo pages, in-process: every drop has a reason and a detail."""
    (tmp_path / "p.yaml").write_text(
        f"""
name: filters
stages:
  - {{name: pages, step: html, inputs: [{{path: {DEMO_HTML}, source: demo-guidelines}}]}}
  - {{name: language, step: filter, keep: [en]}}
  - {{name: clean, step: clean}}
  - name: quality
    step: quality
    profile: guidelines
    gopher_quality: {{min_doc_words: 600}}
"""
    )
    pipeline, _ = load_pipeline(tmp_path / "p.yaml", REPO / "sources.yaml")
    manifests = run_pipeline(pipeline, tmp_path / "work", LocalExecutor())
    counts = {m["stage"]: m["counts"] for m in manifests}
    assert counts["clean"]["in"] == counts["language"]["kept"] == counts["clean"]["kept"]
    rejected = pq.read_table(
        sorted((tmp_path / "work" / "quality" / "rejected").glob("*.parquet"))
    ).to_pylist()
    # Only the short pages fall under the raised word minimum, each with its word count.
    assert rejected and all(r["drop_reason"] == "gopher_quality" for r in rejected)
    assert all(re.fullmatch(r"gopher_short_doc \d+ \(limit 600\)", r["drop_detail"]) for r in rejected)
    assert counts["quality"]["kept"] + len(rejected) == counts["quality"]["in"]
