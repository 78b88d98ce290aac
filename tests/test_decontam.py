"""Decontamination against medical benchmarks: layouts, matching, drop and cut, PMIDs, report, acceptance."""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from curate.cli import app
from curate.decontam.evalsets import parse_evalsets, read_items
from curate.decontam.ngrams import COMMON_ITEMS, build_index, find_matches, item_hashes
from curate.decontam.stage import DecontaminateStage
from curate.io import write_parquet
from curate.pipeline import make_stage
from curate.schema import records_table
from curate.sources.registry import ConfigError

from .conftest import REPO

runner = CliRunner()
EVAL = REPO / "pipelines" / "demo" / "eval"
DEMO_FILES = sorted(p for p in EVAL.iterdir() if p.suffix != ".md")
HOST = [
    "Chronic kidney disease is common in older adults and often goes unrecognised until late stages.",
    "Measure the estimated glomerular filtration rate and the urine albumin to creatinine ratio at least "
    "once a year in people with diabetes or hypertension, and more often when results change.",
    "Refer people with a rapid decline in kidney function to a nephrologist for further assessment.",
]
HOST_TEXT = "\n\n".join(HOST)


def _bench():
    """benchmarks/decontam.py: its item maker and planting (the same code the benchmark measures)."""
    spec = importlib.util.spec_from_file_location("bench_decontam", REPO / "benchmarks" / "decontam.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_decontam"] = module
    spec.loader.exec_module(module)
    return module


def _index(texts: list[str], ngram: int = 5):
    return build_index(
        [item_hashes(texts, ngram)],
        [f"i{n}" for n in range(len(texts))],
        np.zeros(len(texts), np.int16),
        ["b"],
        {},
        ngram,
    )


def _stage(tmp_path: Path, **params) -> DecontaminateStage:
    params.setdefault("benchmarks", [str(p) for p in DEMO_FILES])
    return DecontaminateStage(name="decontaminate", **params)


def _corpus(folder: Path, rows: list[dict]) -> Path:
    write_parquet(records_table(rows), folder / "part-0.parquet")
    return folder


def _rows(folder: Path) -> list[dict]:
    files = sorted(str(p) for p in folder.glob("*.parquet"))
    return pq.ParquetDataset(files).read().to_pylist() if files else []


def _item(name: str, n: int = 0) -> str:
    evalset = next(e for e in parse_evalsets([str(p) for p in DEMO_FILES]) if e.name == name)
    return list(read_items(evalset))[n].text


# ------------------------------------------------------------------------------------------ layouts


def test_each_public_layout_is_read_and_detected():
    sets = {e.name: e for e in parse_evalsets([str(p) for p in DEMO_FILES])}
    assert {e.layout for e in sets.values()} == {"medqa", "medmcqa", "pubmedqa", "mmlu", "text"}
    items = {name: list(read_items(e)) for name, e in sets.items()}
    assert [i.id for i in items["medmcqa"]] == ["demo-mcq-0001", "demo-mcq-0002", "demo-mcq-0003"]
    assert [(i.id, i.pmid) for i in items["pubmedqa"]] == [("39000117", "39000117"), ("39000231", "39000231")]
    assert items["medqa"][0].id == "medqa_test.jsonl:1"  # no id field: file and line
    assert "Ambulatory blood pressure monitoring" in items["medqa"][0].text  # options are part of the item
    assert "Ampulla of the fallopian tube" in items["medmcqa"][2].text
    assert "Before starting and every three months during use" in items["mmlu"][0].text  # header-less CSV
    assert "reduced readmissions" in items["pubmedqa"][0].text  # the long answer too
    assert items["held_out"][1].id == "held-out-gout"


def test_other_spellings_of_the_layouts(tmp_path: Path):
    """bigbio's MedQA options, the Hugging Face PubMedQA and MMLU (Parquet) records, a CSV with a header."""
    (tmp_path / "medqa.jsonl").write_text(
        json.dumps({"question": "Which drug?", "options": [{"key": "A", "value": "Aspirin"}]}) + "\n"
    )
    hf = {
        "pubid": 123,
        "question": "Does it?",
        "context": {"contexts": ["Yes it does."]},
        "long_answer": "Yes.",
    }
    (tmp_path / "pqa.jsonl.gz").write_bytes(gzip.compress((json.dumps(hf) + "\n").encode()))
    pq.write_table(
        pa.table(
            {"question": ["What is it?"], "subject": ["anatomy"], "choices": [["x", "y"]], "answer": [0]}
        ),
        tmp_path / "mmlu.parquet",
    )
    (tmp_path / "mcq.csv").write_text(
        "id,question,opa,opb,opc,opd\nq1,Which nerve?,Ulnar,Radial,Median,Axillary\n"
    )
    found = {
        e.name: list(read_items(e)) for e in parse_evalsets([str(p) for p in sorted(tmp_path.iterdir())])
    }
    assert found["medqa"][0].text == "Which drug?\nAspirin"
    assert (found["pubmedqa"][0].id, found["pubmedqa"][0].pmid) == ("123", "123")
    assert found["pubmedqa"][0].text == "Does it?\nYes it does.\nYes."
    assert (found["mmlu"][0].id, found["mmlu"][0].text) == ("anatomy:0", "What is it?\nx\ny")
    assert found["medmcqa"][0].text == "Which nerve?\nUlnar\nRadial\nMedian\nAxillary"


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        ('{"prompt": "x"}\n', "a.jsonl", "cannot tell its layout from its fields (prompt); set layout"),
        ('{"question": "q", "opa": "a"}\n{"opa": "b"}\n', "b.jsonl", "b.jsonl: record 2: no 'question'"),
        ("not json\n", "c.jsonl", "c.jsonl: line 1 is not JSON"),
        ('{"QUESTION": "q", "CONTEXTS": []}\n', "d.jsonl", "no PMID"),
        ("a,b\n1,2\n", "e.csv", "a CSV needs a header naming its fields"),
    ],
)
def test_a_bad_evaluation_file_stops_the_command_before_any_work(tmp_path, content, name, message):
    (tmp_path / name).write_text(content)
    _corpus(tmp_path / "in", [{"id": "a:1", "text": "x", "source": "a"}])
    result = runner.invoke(
        app, ["decontaminate", str(tmp_path / "in"), "-o", str(tmp_path / "o"), "-b", str(tmp_path / name)]
    )
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "o").exists()  # before any work, Ray not even started


def test_options_are_checked_when_the_pipeline_loads(tmp_path: Path):
    for params, message in [
        ({"action": "delete"}, "action must be one of drop, cut"),
        ({"min_share": 1.5}, "min_share must be a fraction"),
        ({"benchmarks": []}, "give at least one evaluation file"),
        ({"benchmarks": [{"path": str(DEMO_FILES[0]), "layout": "medqa2"}]}, "unknown layout 'medqa2'"),
    ]:
        with pytest.raises(ConfigError, match=message):
            make_stage("decontaminate", "d", {"benchmarks": [str(DEMO_FILES[0])], **params}, {})


# ------------------------------------------------------------------------------------------ matching


def test_planted_items_are_found_however_they_are_written():
    bench = _bench()
    rng = np.random.default_rng(3)
    vocab = np.array(sorted(set(" ".join(HOST).split())))
    items = [_item("medqa"), _item("medmcqa"), _item("pubmedqa"), _item("mmlu"), _item("held_out")]
    index = _index(items)
    for variant in bench.VARIANTS:
        docs = [bench.plant(HOST_TEXT, item, variant, rng, vocab) for item in items]
        found = {(m.doc, m.item) for m in find_matches(docs, index, 0.2, 3)}
        assert found == {(n, n) for n in range(len(items))}, variant
    assert find_matches([HOST_TEXT], index, 0.2, 3) == []


def test_shared_phrases_are_not_an_item_but_any_13_gram_is_gpt3s_rule():
    item = _item("medqa", 1)  # a thyroid vignette
    phrase = "There is a fine tremor of the outstretched hands and a diffuse goitre."  # 9 words of it
    doc = f"{HOST_TEXT}\n\n{phrase}"
    assert find_matches([doc], _index([item]), 0.2, 3) == []  # a few of its 5-grams: not the item
    gpt3 = _index([item], ngram=13)
    assert find_matches([doc], gpt3, 0.0, 1) == []  # no 13 words in a row
    sentence = (
        "Her pulse is 112/min and irregularly irregular. There is a fine tremor of the outstretched hands"
    )
    (match,) = find_matches([f"{HOST_TEXT}\n\n{sentence}"], gpt3, 0.0, 1)
    assert match.found == 5  # 17 words (112/min is two): five 13-grams


def test_templates_and_short_items_are_counted_not_matched():
    template = "Which of the following is the most likely diagnosis in this patient with a new rash"
    items = [
        f"Case {n}: {' '.join(f'w{n}x{k}' for k in range(8))}. {template}" for n in range(COMMON_ITEMS + 1)
    ]
    index = _index([*items, "Too short an item"])
    assert index.item_ngrams[-1] == 0  # fewer words than n: nothing to match
    assert all(0 < k < 15 for k in index.item_ngrams[:-1])  # the template's n-grams are not counted
    assert find_matches([f"{HOST_TEXT} {template}"], index, 0.0, 1) == []  # nor matched
    assert find_matches([items[4]], index, 0.2, 3)[0].item == 4


def test_index_takes_twelve_bytes_per_ngram():
    texts = [" ".join(f"w{n}x{k}" for k in range(60)) for n in range(2000)]
    index = _index(texts)
    assert len(index.keys) == 2000 * 56
    per_item = index.item_ngrams.nbytes + index.item_words.nbytes + index.item_benchmark.nbytes
    assert index.nbytes - per_item == 12 * len(index.keys)


def test_acceptance_planted_recall_and_no_false_positives_on_clean_articles(evaldata):
    """Verbatim, re-spaced and re-cased items all found, >= 95% with 1-2 edits per 13 words, none of 10,000
    clean medical documents flagged (20,000 items; benchmarks/decontam.py runs 100,000)."""
    bench = _bench()
    rng = np.random.default_rng(7)
    clean_articles, item_articles = bench.split_articles(bench.medical_articles())
    maker = bench.ItemMaker(bench.sentences_of(item_articles), rng)
    records = bench.make_items(maker, 20_000)
    texts = []
    for layout, rows in records.items():
        path = Path(f"/tmp/unused.{layout}")  # ids are not needed here, only the text a layout gives
        from curate.decontam.evalsets import item_of

        texts += [item_of(r, layout, layout, path, str(n)).text for n, r in enumerate(rows)]
    index = build_index(
        [item_hashes(texts[s : s + 5000], 5) for s in range(0, len(texts), 5000)],
        [str(n) for n in range(len(texts))],
        np.zeros(len(texts), np.int16),
        ["b"],
        {},
        5,
    )
    clean = bench.clean_documents(clean_articles, 10_000, rng)
    flagged = [
        m for s in range(0, len(clean), 1000) for m in find_matches(clean[s : s + 1000], index, 0.2, 3)
    ]
    assert flagged == []
    hosts = bench.clean_documents(clean_articles, 400, rng)
    picks = rng.choice(len(texts), size=len(hosts), replace=False)
    for variant in bench.VARIANTS:
        docs = [
            bench.plant(h, texts[i], variant, rng, maker.vocab) for h, i in zip(hosts, picks, strict=True)
        ]
        found = {(m.doc, m.item) for m in find_matches(docs, index, 0.2, 3)}
        recall = sum((n, int(i)) in found for n, i in enumerate(picks)) / len(picks)
        assert recall >= (0.95 if variant == "edited" else 1.0), (variant, recall)
