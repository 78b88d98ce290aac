"""Decontamination against medical benchmarks: layouts, matching, drop and cut, PMIDs, report, acceptance."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from curate.cli import app
from curate.decontam.evalsets import item_of, parse_evalsets, read_items
from curate.decontam.ngrams import COMMON_ITEMS, build_index, find_matches, item_hashes
from curate.decontam.stage import DecontaminateStage
from curate.errors import ConfigError
from curate.executors import LocalExecutor
from curate.io import write_parquet
from curate.parse.xml_stages import PubmedStage
from curate.runner import run_stage
from curate.schema import records_table
from curate.stage import Input
from curate.steps import make_stage
from tests.conftest import REPO, load_benchmark

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
    return load_benchmark("decontam")


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
    assert "Oily fish" in items["mmlu"][0].text  # header-less CSV: question and choices
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


def test_index_takes_about_thirteen_bytes_per_ngram():
    texts = [" ".join(f"w{n}x{k}" for k in range(60)) for n in range(2000)]
    index = _index(texts)
    assert len(index.keys) == 2000 * 56
    per_item = index.item_ngrams.nbytes + index.item_words.nbytes + index.item_benchmark.nbytes
    assert 13 * len(index.keys) <= index.nbytes - per_item <= 14 * len(index.keys)  # arrays, then bitmap


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
        path = Path(f"{layout}.jsonl")  # ids are not needed here, only the text a layout gives
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


# ------------------------------------------------------------------------------------------ the step


def _docs() -> list[dict]:
    medqa, mmlu = _item("medqa"), _item("mmlu")
    return [
        {"id": "web:clean", "text": HOST_TEXT, "source": "web"},
        {"id": "web:medqa", "text": f"{HOST[0]}\n\n{medqa.upper()}\n\n{HOST[1]}", "source": "web"},
        {"id": "web:mmlu", "text": mmlu, "source": "web"},  # nothing but the item
    ]


def test_drop_names_benchmark_item_and_ngram_and_accounts_for_every_document(tmp_path: Path):
    manifest = run_stage(
        _stage(tmp_path), [Input(str(_corpus(tmp_path / "in", _docs())))], tmp_path / "o", LocalExecutor()
    )
    assert manifest["counts"] == {"in": 3, "kept": 1, "rejected": 2, "errored": 0}
    rejected = {r["id"]: r for r in _rows(tmp_path / "o" / "rejected")}
    assert {r["drop_reason"] for r in rejected.values()} == {"contaminated"}
    detail = json.loads(rejected["web:medqa"]["drop_detail"])
    assert (
        detail["benchmark"] == "medqa" and detail["item"] == "medqa_test.jsonl:1" and detail["by"] == "ngrams"
    )
    assert len(detail["ngram"].split()) == 5 and detail["ngram"] in " ".join(
        re.findall(r"[^\W_]+", _item("medqa").lower())
    )
    assert rejected["web:medqa"]["text"] == _docs()[1]["text"]  # the whole document, not lost
    report = json.loads((tmp_path / "o" / "decontamination.json").read_text())
    assert report["documents"] == 3 and report["documents_dropped"] == 2
    assert report["benchmarks"]["medqa"]["items"] == 3 and report["benchmarks"]["medqa"]["items_found"] == 1
    assert report["benchmarks"]["mmlu"]["characters_removed"] == len(_item("mmlu"))
    assert report["benchmarks"]["pubmedqa"]["items_found"] == 0
    assert report["examples"]["medqa"][0]["document"] == "web:medqa"
    assert manifest["decontamination"]["documents_contaminated"] == 2


def test_cut_removes_the_stretch_with_its_window_and_keeps_the_rest(tmp_path: Path):
    corpus = [Input(str(_corpus(tmp_path / "in", _docs())))]
    manifest = run_stage(_stage(tmp_path, action="cut", window=0), corpus, tmp_path / "o", LocalExecutor())
    assert manifest["counts"] == {"in": 3, "kept": 2, "rejected": 1, "errored": 0}
    kept = {r["id"]: r for r in _rows(tmp_path / "o")}
    assert kept["web:medqa"]["text"] == f"{HOST[0]}\n\n{HOST[1]}"  # the item's stretch, nothing else
    removed = json.loads(kept["web:medqa"]["meta"])["decontaminate"]
    assert removed == {"characters_removed": len(_item("medqa")), "items": ["medqa:medqa_test.jsonl:1"]}
    assert kept["web:clean"]["text"] == HOST_TEXT
    (dropped,) = _rows(tmp_path / "o" / "rejected")  # an item and nothing else: nothing left to keep
    assert dropped["id"] == "web:mmlu"
    assert json.loads(dropped["drop_detail"])["not_cut"] == "nothing left after the cut"
    # With a window, 20 more characters go on each side, widened to whole words.
    run_stage(_stage(tmp_path, action="cut", window=20), corpus, tmp_path / "w", LocalExecutor())
    wide = {r["id"]: r for r in _rows(tmp_path / "w")}["web:medqa"]
    assert wide["text"] == (
        "Chronic kidney disease is common in older adults and often goes unrecognised"
        "\n\nglomerular filtration rate" + HOST[1].split("filtration rate", 1)[1]
    )
    assert json.loads(wide["meta"])["decontaminate"]["characters_removed"] > len(_item("medqa")) + 40


def _pubmed_xml(path: Path, citations: dict[str, tuple[str, str]]) -> Path:
    parts = "".join(
        f"<PubmedArticle><MedlineCitation><PMID>{pmid}</PMID><Article><Journal><Title>J</Title></Journal>"
        f"<ArticleTitle>{title}</ArticleTitle><Abstract><AbstractText>{abstract}</AbstractText></Abstract>"
        "</Article></MedlineCitation></PubmedArticle>"
        for pmid, (title, abstract) in citations.items()
    )
    path.write_bytes(gzip.compress(f"<PubmedArticleSet>{parts}</PubmedArticleSet>".encode()))
    return path


def test_pubmedqa_items_are_removed_by_pmid_however_their_text_was_formatted(tmp_path: Path):
    """The pubmed reader's records carry meta.pmid: a PubMedQA item's abstract is removed by its PMID even
    when another rewording hides it from the n-grams."""
    (tmp_path / "xml").mkdir()
    _pubmed_xml(
        tmp_path / "xml" / "pubmed26n0001.xml.gz",
        {
            "39000231": (
                "Vitamin D and falls in care homes",
                "In one year, residents who took vitamin D fell a "
                "little less, although that may reflect who was prescribed it.",
            ),
            "39000999": (
                "Knee pain and stairs",
                "Stairs are harder than walking on the flat for painful knees.",
            ),
        },
    )
    stage = PubmedStage(name="pubmed", source="pubmed", licenses={"pubmed": "NLM terms"})
    run_stage(stage, [Input(str(tmp_path / "xml"))], tmp_path / "abstracts", LocalExecutor())
    manifest = run_stage(
        _stage(tmp_path, benchmarks=[str(EVAL / "pubmedqa_test.json")], action="cut"),
        [Input(str(tmp_path / "abstracts"))],
        tmp_path / "o",
        LocalExecutor(),
    )
    assert manifest["counts"]["rejected"] == 1
    (dropped,) = _rows(tmp_path / "o" / "rejected")
    assert dropped["id"] == "pubmed:39000231" and json.loads(dropped["meta"])["pmid"] == "39000231"
    detail = json.loads(dropped["drop_detail"])
    assert (detail["benchmark"], detail["item"], detail["by"], detail["ngram"]) == (
        "pubmedqa",
        "39000231",
        "pmid",
        None,
    )
    report = json.loads((tmp_path / "o" / "decontamination.json").read_text())
    assert report["benchmarks"]["pubmedqa"]["documents_by_pmid"] == 1


def test_decontaminate_command_on_ray_and_its_report_in_curate_stats(ray_session, tmp_path: Path):
    corpus = _corpus(tmp_path / "in", _docs())
    args = ["decontaminate", str(corpus), "-o", str(tmp_path / "o")]
    args += [arg for p in DEMO_FILES for arg in ("-b", str(p))]
    result = runner.invoke(app, args, env={"COLUMNS": "150"})
    assert result.exit_code == 0, result.output
    assert "Decontamination" in result.output and "medqa_test.jsonl:1" in result.output
    shown = runner.invoke(app, ["stats", str(tmp_path / "o"), "--json", "--html", str(tmp_path / "r.html")])
    report = json.loads(shown.output[: shown.output.rindex("}") + 1])["decontamination"]["decontaminate"]
    assert report["documents_contaminated"] == 2 and report["benchmarks"]["mmlu"]["items_found"] == 1
    html = (tmp_path / "r.html").read_text()
    assert "<h2>Decontamination (decontaminate)</h2>" in html and "web:medqa" in html
    text = runner.invoke(app, ["stats", str(tmp_path / "o")], env={"COLUMNS": "150"}).output
    assert "Decontamination (decontaminate): test items found in the corpus" in text


def test_gap_replays_optional_stages_load_when_turned_on(tmp_path: Path):
    """pipelines/gap_replay.yaml: its commented decontaminate (before mix) and tokenize (after shard) stages,
    turned on as its header says, load; their evaluation files in the layouts the header names."""
    from curate.pipeline import load_pipeline
    from tests.fixtures.tokenizer import build_tokenizer

    eval_dir = tmp_path / "data" / "eval"
    files = {
        "medqa/test.jsonl": EVAL / "medqa_test.jsonl",
        "medmcqa/test.json": EVAL / "medmcqa_test.jsonl",  # MedMCQA's .json files hold JSON lines
        "pubmedqa/ori_pqal.json": EVAL / "pubmedqa_test.json",
        "mmlu/clinical_knowledge_test.csv": EVAL / "mmlu_clinical_knowledge_test.csv",
        "mmlu/college_medicine_test.csv": EVAL / "mmlu_clinical_knowledge_test.csv",
        "mmlu/professional_medicine_test.csv": EVAL / "mmlu_clinical_knowledge_test.csv",
    }
    for name, source in files.items():
        (eval_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (eval_dir / name).write_bytes(source.read_bytes())
    tokenizer = build_tokenizer(tmp_path / "tokenizer.json")
    lines = []
    for line in (REPO / "pipelines" / "gap_replay.yaml").read_text().splitlines():
        if line.startswith(("  # - ", "  #   ")):  # a commented stage's YAML, not its prose
            line = "  " + line[4:]
        lines.append(
            line.replace("- near_dedup ", "- decontaminate ").replace(
                "/models/llama-2-7b/tokenizer.json", str(tokenizer)
            )
        )
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "gap.yaml").write_text("\n".join(lines))
    pipeline, _ = load_pipeline(tmp_path / "pipelines" / "gap.yaml", REPO / "sources.yaml")
    steps = [p.stage.step for p in pipeline.stages]
    assert steps[-5:] == ["near_dedup", "decontaminate", "mix", "shard", "tokenize"]
    decontaminate = pipeline.stages[-4]
    assert [b["layout"] for b in decontaminate.stage.benchmarks] == [
        "medqa",
        "medmcqa",
        "pubmedqa",
        "mmlu",
        "mmlu",
        "mmlu",
    ]
    assert pipeline.stages[-3].inputs[0].path == "@decontaminate"
    assert pipeline.stages[-1].stage.eod_token == "</s>"


def test_a_document_cut_into_more_than_ten_pieces_is_dropped(tmp_path: Path):
    """GPT-3's rule: a document holding many items is a copy of the benchmark, not text with a leak."""
    items = [f"Item {n}: " + " ".join(f"alpha{n} beta{n} gamma{n} delta{n}".split() * 3) for n in range(11)]
    lines = [json.dumps({"id": f"q{n}", "text": t}) for n, t in enumerate(items)]
    (tmp_path / "many.jsonl").write_text("\n".join(lines) + "\n")
    spacer = " ".join(["Unrelated clinical text about kidney function and its follow-up."] * 8)
    rows = [{"id": "dump:1", "text": f"\n\n{spacer}\n\n".join(items), "source": "dump"}]
    stage = _stage(tmp_path, benchmarks=[str(tmp_path / "many.jsonl")], action="cut", window=0)
    run_stage(stage, [Input(str(_corpus(tmp_path / "in", rows)))], tmp_path / "o", LocalExecutor())
    (dropped,) = _rows(tmp_path / "o" / "rejected")
    detail = json.loads(dropped["drop_detail"])
    assert detail["not_cut"] == "more than 10 stretches to cut" and detail["more_items"] == 10
