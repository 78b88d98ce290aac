"""Conformance of the JATS, PMC and PubMed readers: one small file per construct (tests/fixtures/xml), written
from the JATS 1.0-1.3 / NLM 2.3 tag libraries and the PubMed DTDs, each with the text a reader expects; the
input layouts (bulk tarballs, folders, article sets, every MEDLINE era) with the runner's accounting; hostile
inputs (damage, bombs, deep nesting, entities)."""

from __future__ import annotations

import gzip
import json
import re
import time
import tracemalloc
import zlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from curate.cli import app
from curate.executors import LocalExecutor
from curate.parse.jats import parse_jats, read_jats_file
from curate.parse.pubmed import Deleted, iter_pubmed
from curate.parse.xml_stages import PmcStage, PubmedStage
from curate.runner import run_stage
from curate.schema import Rejection
from curate.stage import Input
from curate.stats.compute import collect_stats
from tests.conftest import REPO, load_benchmark
from tests.parse.tarballs import write_tar

FIXTURES = REPO / "tests" / "fixtures" / "xml"
JATS = FIXTURES / "jats"
PUBMED = FIXTURES / "pubmed"
runner = CliRunner()


def _jats(name: str, **options: bool):
    return parse_jats((JATS / name).read_bytes(), **options)


def _blocks(name: str, **options: bool) -> list[str]:
    return _jats(name, **options).text.split("\n\n")


def _rows(folder: Path) -> list[dict]:
    files = sorted(str(p) for p in folder.glob("*.parquet"))
    return pq.ParquetDataset(files).read().to_pylist() if files else []


def _run(stage, path: Path, out: Path) -> tuple[dict, list[dict], list[dict]]:
    manifest = run_stage(stage, [Input(str(path))], out, LocalExecutor())
    return manifest, _rows(out), _rows(out / "rejected")


# ------------------------------------------------------------------------------------------ JATS text


def test_lists_at_every_depth_and_paragraphs_of_an_item_apart() -> None:
    blocks = _blocks("jats13_lists.xml")
    start = blocks.index("The checklist had three parts:")
    assert (
        blocks[start : start + 18]
        == [
            "The checklist had three parts:",
            "- Identify the patient at the bedside.",
            "  - Ask the patient to state their full name.",  # a list directly inside a list item
            "  - Compare the wristband with the request form.",
            "    - Date of birth must match exactly.",
            "    - Hospital number must match exactly.",
            # Two paragraphs of one item: apart, not glued.
            "- Check the unit before hanging it. Record the unit number in the chart.",
            "- Observe the patient for fifteen minutes",
            "  - and record the pulse every five minutes,",  # a list inside a paragraph of an item
            "  - and stop at the first sign of a reaction.",
            "Terms used in the checklist are defined below.",
            "- Bedside check: The final identity check made next to the patient.",
            "- Unit: One bag of a blood component.",
            "Reactions were rare:",  # a list inside a paragraph stands where it is
            "- fever in four patients;",
            "- rash in two patients.",
            "No patient needed intensive care.",
        ][: len(blocks) - start]
        or blocks
    )


def test_boxes_stand_where_they_are_inside_paragraphs_and_captions() -> None:
    blocks = _blocks("jats12_boxes.xml")
    order = [
        "Sepsis remains a leading cause of death in hospitals worldwide.",
        "### Box 1: Key messages",
        "- Early antibiotics save lives in septic shock.",
        "Screening tools differ in sensitivity.",
        "### Box 2: The qSOFA score",  # a box inside a paragraph splits it where it stands
        "One point each for a respiratory rate of 22 or more, altered mentation and a systolic pressure of "
        "100 or less.",
        "A score of two or more identifies patients at risk of a poor outcome.",
        "### Case vignette",  # a box whose only text is its caption
        "A 67-year-old man presented with fever and confusion after a urinary tract infection.",
        "### Research agenda",
        "### Open questions",
        "Which biomarker should trigger antibiotics remains unknown.",
        # A box in the floats group, after the body.
        "Septic shock is sepsis with vasopressors needed to keep the mean pressure at 65 or more.",
    ]
    positions = [blocks.index(b) for b in order]
    assert positions == sorted(positions)


def test_appendices_are_read_and_back_matter_is_counted_not_read() -> None:
    doc = _jats("jats11_appendix.xml")
    blocks = doc.text.split("\n\n")
    tail = blocks[blocks.index("## Appendices") :]
    assert tail == [
        "## Appendices",
        "### Appendix 1: Exercise protocol",
        "Each session began with ten minutes of walking at an easy pace.",
        "### Safety rules",  # a box inside an appendix
        "Sessions stopped when the heart rate exceeded eighty-five percent of the predicted maximum.",
        "### Progression",
        "Resistance rose by one level every second week when tolerated.",
        "### Appendix 2",  # an appendix with a label and no title
        "The questionnaire asked about sleep, mood and pain on a scale from zero to ten.",
    ]
    for absent in ("We thank the participants", "Funding came", "Data are available", "Exercise and sleep",
                   "Correspondence to"):  # fmt: skip
        assert absent not in doc.text
    dropped = doc.meta["dropped"]
    assert set(dropped) == {"author_notes", "back_matter", "footnotes", "references"}
    assert dropped["back_matter"] == len("We thank the participants and the trial steering committee.") + len(
        "Data are available on reasonable request."
    )


def test_formulas_keep_a_linear_form() -> None:
    doc = _jats("jats10_formulas.xml")
    blocks = doc.text.split("\n\n")
    assert "Peak oxygen uptake (V̇O2max) fell after bed rest." in blocks  # MathML: accent over V, subscripts
    assert (
        "The glass transition coefficient ($\\alpha$) value was measured twice." in blocks
    )  # TeX, unwrapped
    assert "Hyperpolarized 3He/129Xe MRI showed ventilation defects." in blocks  # prescripts first
    assert "Differences were significant at p < 0.05 in both groups." in blocks
    assert (
        "The dose was computed as $$D = \\frac{W}{70} \\times 10$$ where W is the body weight in kilograms."
        in blocks
    )
    assert "E = mc2" in blocks  # a display formula between paragraphs is a block of its own
    assert "All solutions used water (H2O) that was deionised." in blocks  # a formula of plain text
    assert "The constant was taken from the literature." in blocks  # an image-only formula: counted
    assert doc.meta["formulas_without_text"] == 1
    assert "(1)" not in doc.text and "usepackage" not in doc.text and "documentclass" not in doc.text


def test_tables_and_captions_only_by_option_with_cells_and_paragraphs_apart() -> None:
    plain = _jats("jats_tables_captions.xml")
    for absent in ("Major sample swaps", "Coverage", "Lung", "Problems found"):
        assert absent not in plain.text
    assert plain.meta["dropped"]["tables"] > 0 and plain.meta["dropped"]["figures"] > 0
    blocks = _blocks("jats_tables_captions.xml", tables=True, captions=True)
    assert "Table 1: Problems found Counts per check." in blocks
    assert "| Genotype concordance | Major sample swaps A subset of tumour-normal pairs |" in "\n".join(
        blocks
    )
    assert "| Solvent ratio | acetone 4:1 |" in "\n".join(blocks)  # <break/> and two <p> in cells
    assert "Swaps were confirmed by a second assay." in blocks  # the table's footnote, with the table
    # A figure group: its own caption and each figure's, all of them.
    for caption in ("Coverage of the cohort", "Figure 1A: Coverage by sample.",
                    "Figure 1B: Coverage by gene. Genes are sorted by length.", "Figure 1C: Duplicates",
                    "Table 2: Samples by site"):  # fmt: skip
        assert caption in blocks, caption
    assert "| Lung | 120 |" in "\n".join(blocks)  # a table in the floats group
    captions_only = _jats("jats_tables_captions.xml", captions=True).text
    assert "Figure 1B: Coverage by gene." in captions_only and "| Lung |" not in captions_only


def test_nlm_2_3_article() -> None:
    doc = _jats("nlm23_journal.xml")
    blocks = doc.text.split("\n\n")
    assert blocks[:7] == [
        "# Hand washing on two wards: a before-and-after study",
        "## Abstract",
        "### Background",
        "Hand hygiene compliance was low on both wards.",
        "### Results",
        "Compliance rose from 40% to 75% after the campaign.",
        "## Methods",
    ]
    assert "- Posters at every sink, with" in blocks and "  - a picture of the six steps" in blocks
    assert "### Hypothesis 1: Feedback matters" in blocks  # a statement: label and title
    assert "We wash our hands because the numbers are on the wall." in blocks and "A ward nurse" in blocks
    # The TOC abstract, the sub-article and the response are not the article's reading text.
    for absent in ("A campaign that worked", "commentary text", "authors reply"):
        assert absent not in doc.text
    assert doc.meta["dropped"]["sub_articles"] > 0
    assert (doc.meta["pmid"], doc.meta["pmcid"], doc.meta["year"]) == ("17000006", "PMC1000006", 2008)
    # NLM 2.3 keeps the copyright statement in article-meta; here it names the licence.
    assert doc.meta["license"] == "http://creativecommons.org/licenses/by/2.0"
    assert doc.meta["license_source"] == "copyright-statement" and doc.meta["redistributable"] is True


def test_entities_are_resolved_safely_and_none_is_left_literal() -> None:
    doc = _jats("jats_entities.xml")
    assert doc.title == "Results of the HEART-2 trial"  # declared in the internal DTD subset
    assert "Patients took metformin 500\xa0mg twice daily for 12–16 weeks." in doc.text  # markup, nbsp, ndash
    assert "The effect size was β\xa0=\xa00.4 with no entity left behind." in doc.text
    assert "Costs fell by €200 & waiting times by 3\u2009days." in doc.text
    assert not re.search(r"&\w+;", doc.text)
    assert doc.meta["unresolved_entities"] == {"madeup": 1}


def test_entity_without_doctype_is_not_left_literal() -> None:
    data = b"<article><front><article-meta><title-group><article-title>A &alpha; and &x; test</article-title>"
    data += b"</title-group></article-meta></front><body><p>Text &mdash; more.</p></body></article>"
    doc = parse_jats(data)
    assert doc.title == "A α and test" and "Text — more." in doc.text
    assert doc.meta["unresolved_entities"] == {"x": 1}


def test_billion_laughs_is_refused_quickly() -> None:
    lol = '<!ENTITY lol0 "lollollollollollollollollollol">' + "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    )
    data = f'<?xml version="1.0"?><!DOCTYPE article [{lol}]><article><body><p>&lol9;</p></body></article>'
    start = time.perf_counter()
    with pytest.raises(Rejection) as caught:
        parse_jats(data.encode())
    # libxml2 refuses the declarations, or the reader's own budget stops the expansion.
    assert caught.value.reason == "xml_broken" and re.search("amplification|expand", caught.value.detail)
    assert time.perf_counter() - start < 5


def test_namespaced_jats_and_mathml() -> None:
    doc = _jats("jats_namespaced.xml")
    assert "The ratio a + b stayed constant (see the data)." in doc.text
    assert doc.meta["pmcid"] == "PMC1000008"
    assert doc.meta["license"] == "https://creativecommons.org/publicdomain/zero/1.0/"
    assert doc.meta["redistributable"] is True


def test_quotes_speech_verse_code_questions_and_abstracts() -> None:
    doc = _jats("jats_quotes_speech.xml")
    blocks = doc.text.split("\n\n")
    assert blocks[1:5] == [
        "## Abstract",
        "We interviewed twenty patients about their care.",
        "## eLife digest",
        "Patients told us what mattered to them.",
    ]
    for block in ("The nurse explained everything twice.", "I never felt rushed.", "Patient 4",
                  "Interviewer: What would you change?", "Patient 7: Shorter waits. Nothing else.",
                  "The corridor is long,\nthe chairs are hard.", "score = sum(items)\nprint(score)",
                  "Did you understand your discharge letter?", "Mostly, yes.",
                  "Outpatient Clinic, 1 Main Street"):  # fmt: skip
        assert block in blocks, block
    assert "drawing of a clinic" not in doc.text and "Nous avons" not in doc.text
    assert doc.meta["dropped"]["other_abstracts"] > 0


@pytest.mark.parametrize(
    ("fixture", "license", "source", "redistributable"),
    [
        ("jats13_lists.xml", "https://creativecommons.org/licenses/by/4.0/", "license", True),
        (
            "jats11_appendix.xml",
            "https://creativecommons.org/licenses/by/4.0/",
            "license",
            True,
        ),  # URL in text
        ("jats12_boxes.xml", "© 2021 The Authors. All rights reserved.", "copyright-statement", False),
        ("jats10_formulas.xml", None, None, False),
    ],
)
def test_licence_is_the_articles_own(
    fixture: str, license: str | None, source: str | None, redistributable: bool
):
    meta = _jats(fixture).meta
    assert meta["license"] == license
    assert meta.get("license_source") == source
    assert meta["redistributable"] is redistributable


def test_no_glued_words_at_block_edges() -> None:
    """Wherever two block elements meet (paragraphs, items, cells, captions), their words stay apart."""
    from lxml import etree

    from curate.parse.jats import JatsOptions

    blockish = {
        "p",
        "td",
        "th",
        "title",
        "list-item",
        "verse-line",
        "term",
        "def",
        "attrib",
        "speaker",
        "caption",
    }
    everything = JatsOptions(references=True, tables=True, captions=True)
    for path in sorted(JATS.glob("*.xml")):
        data = path.read_bytes()
        text = "\n\n".join(d.text for d in read_jats_file(data, everything) if hasattr(d, "text"))
        words = set(re.findall(r"\w+", text))
        root = etree.fromstring(
            data, etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True)
        )
        for parent in root.iter():
            children = [c for c in parent if isinstance(c.tag, str) and c.tag.rpartition("}")[2] in blockish]
            for a, b in zip(children, children[1:], strict=False):
                left, right = (
                    re.findall(r"\w+", "".join(a.itertext())),
                    re.findall(r"\w+", "".join(b.itertext())),
                )
                if left and right:
                    assert left[-1] + right[0] not in words, (path.name, left[-1], right[0])


@pytest.mark.parametrize(
    ("opening", "closing", "depth", "says"),
    [
        (b"<list><list-item>", b"</list-item></list>", 1000, "excessive depth"),  # 2,000 elements deep
        (b"<sec><title>t</title><p>p</p>", b"</sec>", 200, "nested too deeply"),  # parsed, too deep to walk
    ],
)
def test_deep_nesting_is_a_rejection_not_a_crash(
    opening: bytes, closing: bytes, depth: int, says: str
) -> None:
    data = b"<article><body>" + opening * depth + b"x" + closing * depth + b"</body></article>"
    with pytest.raises(Rejection) as caught:
        parse_jats(data)
    assert caught.value.reason == "xml_broken" and says in caught.value.detail.lower()


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ((PUBMED / "medline16_set.xml").read_bytes(), "curate pubmed"),
        (b"<html><body><p>a page</p></body></html>", "curate html"),
        (b"<pmc-articleset><error>The following PMCID is not available: 123</error></pmc-articleset>", "123"),
    ],
)
def test_a_file_that_is_not_an_article_says_what_it_is(data: bytes, says: str) -> None:
    with pytest.raises(Rejection) as caught:
        parse_jats(data)
    assert caught.value.reason == "xml_not_jats" and says in caught.value.detail


def _presence_scorer():
    return load_benchmark("xml_fidelity").score_jats


def test_paragraph_presence_on_the_conformance_corpus() -> None:
    result = _presence_scorer()(sorted(JATS.glob("*.xml")))
    assert set(result["by_kind"]) == {"prose", "list", "box", "appendix"}
    for kind, score in result["by_kind"].items():
        assert score["share"] >= 0.99, (kind, result["missed"])


def test_paragraph_presence_on_pmc_articles(evaldata: Path) -> None:
    result = _presence_scorer()(sorted((evaldata / "pmc_pdf_jats").rglob("fulltext.xml")))
    assert result["by_kind"]["prose"]["paragraphs"] > 1000
    for kind, score in result["by_kind"].items():
        assert score["share"] >= 0.99, (kind, result["missed"])


def _article(body: str) -> bytes:
    """A minimal JATS 1.3 article around the body given."""
    return (
        '<article xmlns:xlink="http://www.w3.org/1999/xlink" article-type="research-article"><front>'
        "<article-meta><title-group><article-title>Probe</article-title></title-group></article-meta></front>"
        f"<body>{body}</body></article>"
    ).encode()


def test_index_terms_are_not_read_into_the_sentence() -> None:
    # JATS 1.2+ <index-term> (and its range end) marks a word for a back-of-book index: never printed.
    body = (
        "<p>Blood pressure<index-term><term>hypertension</term>"
        "<index-term><term>treatment</term></index-term><see>BP</see></index-term>"
        ' rose after <italic>salt</italic> loading.<index-term-range-end rid="i1"/></p>'
        "<sec><title>Salt<index-term><term>sodium</term></index-term> intake</title><p>Low.</p></sec>"
    )
    blocks = parse_jats(_article(body)).text.split("\n\n")
    assert "Blood pressure rose after salt loading." in blocks
    assert "## Salt intake" in blocks
    assert not {"hypertension", "treatment", "BP", "sodium"} & set(re.findall(r"\w+", "\n".join(blocks)))


def test_an_abbreviations_expansion_does_not_split_its_paragraph() -> None:
    # <abbrev><def> holds the expansion for tooltips and indexes; the sentence around it stays one paragraph.
    body = '<p>Levels of <abbrev alt="ATP">ATP<def><p>adenosine triphosphate</p></def></abbrev> fell.</p>'
    assert parse_jats(_article(body)).text.split("\n\n")[1:] == ["Levels of ATP fell."]
    # Nor is it read into a title.
    body = "<sec><title>Salt and <abbrev>BP<def><p>blood pressure</p></def></abbrev></title><p>Low.</p></sec>"
    assert parse_jats(_article(body)).text.split("\n\n")[1:] == ["## Salt and BP", "Low."]


def test_titles_and_attributions_of_quotes_and_verse_are_read() -> None:
    body = (
        "<sec><title>Interviews</title><p>Before.</p>"
        "<disp-quote><label>Extract 1</label><title>A patient's view</title><p>I was scared.</p>"
        "<attrib>Patient 3</attrib></disp-quote>"
        "<verse-group><title>Ward song</title><verse-line>The night is long,</verse-line>"
        "<verse-group><title>Refrain</title><verse-line>we wait for dawn.</verse-line></verse-group>"
        "<attrib>A night nurse</attrib></verse-group><p>After.</p></sec>"
    )
    assert parse_jats(_article(body)).text.split("\n\n")[1:] == [
        "## Interviews",
        "Before.",
        "### Extract 1: A patient's view",
        "I was scared.",
        "Patient 3",
        "### Ward song",
        "The night is long,",
        "### Refrain",  # a verse group inside a verse group: its title where it stands
        "we wait for dawn.",
        "A night nurse",
        "After.",
    ]


def test_invisible_mathml_operators_are_not_left_in_the_text() -> None:
    # Function application, invisible times, separator and plus (U+2061-2064) mark meaning, not print.
    def formula(*tokens: str) -> str:
        return f"<inline-formula><mml:math>{''.join(tokens)}</mml:math></inline-formula>"

    body = (
        '<p xmlns:mml="http://www.w3.org/1998/Math/MathML">The model '
        + formula("<mml:mi>sin</mml:mi><mml:mo>&#x2061;</mml:mo><mml:mi>x</mml:mi>")
        + " and "
        + formula(
            "<mml:mi>f</mml:mi><mml:mo>&ApplyFunction;</mml:mo><mml:mo>(</mml:mo><mml:mi>t</mml:mi>"
            "<mml:mo>)</mml:mo><mml:mo>=</mml:mo><mml:mn>2</mml:mn><mml:mo>&#x2062;</mml:mo><mml:mi>t</mml:mi>"
        )
        + " used "
        + formula("<mml:msub><mml:mi>a</mml:mi><mml:mrow><mml:mi>i</mml:mi><mml:mo>&#x2063;</mml:mo>"
                  "<mml:mi>j</mml:mi></mml:mrow></mml:msub>")
        + ".</p>"
    )  # fmt: skip
    text = parse_jats(_article(body)).text
    assert "The model sin x and f(t) = 2t used aij." in text
    assert not re.search("[\u2061-\u2064]", text)
    # An invisible times inside a token, and a function applied to a bracket.
    body = (
        '<p xmlns:mml="http://www.w3.org/1998/Math/MathML">See '
        + formula("<mml:mi>a</mml:mi><mml:mi>&#x2062;</mml:mi><mml:mi>b</mml:mi>")
        + " and "
        + formula(
            "<mml:mi>f</mml:mi><mml:mo>&#x2061;</mml:mo><mml:mo>[</mml:mo><mml:mi>x</mml:mi><mml:mo>]</mml:mo>"
        )
        + ".</p>"
    )
    assert "See ab and f[x]." in parse_jats(_article(body)).text


# ------------------------------------------------------------------------------------------ PMC layouts


def _articles() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(JATS.glob("jats1*.xml"))}


def test_bulk_tarball_many_articles_in_one_folder(tmp_path: Path) -> None:
    articles = _articles()  # four articles, PMC1000001 to PMC1000004
    members = {f"PMC000xxxxxx/PMC{n}.xml": data for n, data in enumerate(articles.values())}
    members["PMC000xxxxxx/PMC999.xml"] = (PUBMED / "medline05_set.xml").read_bytes()  # not an article
    (tmp_path / "in").mkdir()
    tarball = write_tar(tmp_path / "in" / "oa_comm_xml.PMC000xxxxxx.baseline.2024-06-18.tar.gz", members)
    manifest, kept, rejected = _run(PmcStage(name="pmc"), tarball.parent, tmp_path / "out")
    assert manifest["counts"] == {"in": 5, "kept": 4, "rejected": 1, "errored": 0}
    assert sorted(r["id"] for r in kept) == [
        "pmc:PMC1000001",
        "pmc:PMC1000002",
        "pmc:PMC1000003",
        "pmc:PMC1000004",
    ]
    assert all(r["url"].startswith(tarball.resolve().as_uri() + "#PMC000xxxxxx/PMC") for r in kept)
    [row] = rejected
    assert row["drop_reason"] == "xml_not_jats" and "MedlineCitationSet" in row["drop_detail"]
    assert row["id"] == "pmc:oa_comm_xml.PMC000xxxxxx.baseline.2024-06-18/PMC000xxxxxx/PMC999"


def test_plain_folder_of_articles_and_an_article_set(tmp_path: Path) -> None:
    folder = tmp_path / "articles"
    folder.mkdir()
    for name, data in _articles().items():
        (folder / name.replace("jats1", "a").replace(".xml", ".nxml" if "0" in name else ".xml")).write_bytes(
            data
        )
    (folder / "set.xml").write_bytes((JATS / "pmc_articleset.xml").read_bytes())
    manifest, kept, rejected = _run(PmcStage(name="pmc"), folder, tmp_path / "out")
    assert manifest["counts"] == {"in": 6, "kept": 6, "rejected": 0, "errored": 0}
    titles = {r["id"]: r["title"] for r in kept}
    assert titles["pmc:PMC1000010"] == "First article of the set"
    assert titles["pmc:PMC1000011"] == "Second article of the set"
    assert len(set(titles)) == 6


def test_licence_is_never_the_source_default(tmp_path: Path) -> None:
    folder = tmp_path / "articles"
    folder.mkdir()
    for name in ("jats13_lists.xml", "jats12_boxes.xml", "jats10_formulas.xml"):
        (folder / name).write_bytes((JATS / name).read_bytes())
    stage = PmcStage(name="pmc", licenses={"pmc": "CC BY (the source's default)"})
    _, kept, _ = _run(stage, folder, tmp_path / "out")
    licences = {r["id"]: (r["license"], json.loads(r["meta"])["redistributable"]) for r in kept}
    assert licences == {
        "pmc:PMC1000001": ("https://creativecommons.org/licenses/by/4.0/", True),
        "pmc:PMC1000002": ("© 2021 The Authors. All rights reserved.", False),
        "pmc:PMC1000004": (None, False),
    }
    stats = collect_stats(tmp_path / "out")
    assert stats["without_license"] == 1
    shown = runner.invoke(app, ["stats", str(tmp_path / "out")], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and re.search(r"Without a known licence\W+1\b", shown.output), shown.output


def test_one_pmcid_in_two_inputs_is_kept_once(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    article = (JATS / "jats13_lists.xml").read_bytes()
    revised = article.replace(b"Lists at every depth", b"Lists at every depth (revised)")
    write_tar(
        inputs / "oa_comm_xml.PMC001xxxxxx.baseline.2024-06-18.tar.gz",
        {"PMC001xxxxxx/PMC1000001.xml": article},
    )
    write_tar(inputs / "oa_comm_xml.incr.2024-07-01.tar.gz", {"PMC001xxxxxx/PMC1000001.xml": revised})
    # One task per tarball: the index pass, not the task, must find the pair.
    manifest, kept, rejected = _run(PmcStage(name="pmc", batch_size=1), inputs, tmp_path / "out")
    assert manifest["counts"] == {"in": 2, "kept": 1, "rejected": 1, "errored": 0}
    assert [(r["id"], r["title"]) for r in kept] == [("pmc:PMC1000001", "Lists at every depth (revised)")]
    assert rejected[0]["drop_reason"] == "duplicate_id"
    assert "oa_comm_xml.incr.2024-07-01.tar.gz" in rejected[0]["drop_detail"]


def test_pdfs_beside_several_articles_are_rows_not_parsed(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name, data in list(_articles().items())[:2]:
        (folder / name).write_bytes(data)
    (folder / "scan.pdf").write_bytes(b"%PDF-1.4 not parsed")
    manifest, kept, rejected = _run(PmcStage(name="pmc"), folder, tmp_path / "out")
    assert manifest["counts"] == {"in": 3, "kept": 2, "rejected": 1, "errored": 0}
    assert rejected[0]["drop_reason"] == "pmc_pdf_skipped"


def test_curate_pmc_command_accounts_for_every_article(ray_session, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    members = {f"PMC000xxxxxx/PMC{n}.xml": data for n, data in enumerate(_articles().values())}
    members["PMC000xxxxxx/set.xml"] = (JATS / "pmc_articleset.xml").read_bytes()
    write_tar(tmp_path / "in" / "oa_comm_xml.PMC000xxxxxx.baseline.2024-06-18.tar.gz", members)
    result = runner.invoke(app, ["pmc", str(tmp_path / "in"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"] == {"in": 6, "kept": 6, "rejected": 0, "errored": 0}


# ----------------------------------------------------------------------------------------------- PubMed


def test_pubmed_current_era() -> None:
    items = list(iter_pubmed(PUBMED / "pubmed25_set.xml"))
    article, book, deletion = items
    assert article.title == "Bed rest lowers peak oxygen uptake in older adults."
    assert article.abstract == (
        "## Background\n\nPeak oxygen uptake (V̇O2max) predicts survival.\n\n"
        "## Methods\n\nTwelve adults stayed in bed for 14\xa0days; lung ventilation was imaged with "
        "3He/129Xe MRI.\n\n## Results\n\nUptake fell by 12% (P < 0.01); CO2 output did not change."
    )
    assert (article.doi, article.pmcid, article.year, article.copyright) == (
        "10.9999/jcm.40000001", "PMC9000001", 2024, "© 2024 The Authors."
    )  # fmt: skip
    assert "older study of bed rest" not in article.text  # the reference list is not the abstract
    assert (book.pmid, book.title, book.journal, book.year) == (
        "40000002", "Hand hygiene", "Handbook of Conformance Nursing", 2023
    )  # fmt: skip
    assert deletion == Deleted(["39999998", "39999999"])


def test_medline_before_2017_bare_citations() -> None:
    first, second, deletion = iter_pubmed(PUBMED / "medline16_set.xml")
    assert (first.pmid, first.title, first.doi, first.pmcid, first.year) == (
        "26000001", "Compression stockings after stroke.", "10.9999/ac.26000001", "PMC4000001", 2015
    )  # fmt: skip
    assert first.abstract == "Thigh-length stockings reduced deep vein thrombosis after stroke."
    assert (second.title, second.abstract, second.year, second.other_abstracts) == (
        "[Walking aids in the elderly].", "", 2014, 1
    )  # fmt: skip
    assert deletion == Deleted(["25999999"])
    [old] = iter_pubmed(PUBMED / "medline05_set.xml")
    assert (old.pmid, old.year, old.abstract) == (
        "15000001",
        1998,
        "Daily iron halved the rate of anaemia at term.",
    )


def test_efetch_output_with_indentation() -> None:
    [record] = iter_pubmed(PUBMED / "efetch_pretty.xml")
    assert record.abstract.startswith(
        "## Background\n\nIn mild asthma, an inhaled glucocorticoid with a fast-acting"
    )
    assert "β2-agonist may replace daily treatment." in record.abstract


def _pubmed_gz(path: Path, body: bytes) -> Path:
    path.write_bytes(
        gzip.compress(b'<?xml version="1.0"?>\n<PubmedArticleSet>\n' + body + b"</PubmedArticleSet>\n")
    )
    return path


def _cit(pmid: int, abstract: str = "A long enough abstract of a study.") -> bytes:
    return (
        f"<PubmedArticle><MedlineCitation><PMID>{pmid}</PMID><Article><ArticleTitle>Title {pmid}"
        f"</ArticleTitle><Abstract><AbstractText>{abstract}</AbstractText></Abstract></Article>"
        "</MedlineCitation></PubmedArticle>\n"
    ).encode()


def test_bad_byte_in_one_citation_loses_only_that_citation(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    damaged = b"".join(_cit(n) for n in range(1, 6)).replace(b"Title 2", b"Title \xff2")
    _pubmed_gz(folder / "pubmed26n0001.xml.gz", damaged)
    _pubmed_gz(folder / "pubmed26n0002.xml.gz", b"".join(_cit(n) for n in range(6, 10)))
    manifest, kept, rejected = _run(PubmedStage(name="pubmed"), folder, tmp_path / "out")
    assert manifest["counts"] == {"in": 9, "kept": 8, "rejected": 1, "errored": 0}
    assert sorted(int(r["id"].split(":")[1]) for r in kept) == [1, 3, 4, 5, 6, 7, 8, 9]
    assert rejected[0]["drop_reason"] == "xml_broken" and "PMID 2" in rejected[0]["drop_detail"]


def test_a_cut_end_tag_resumes_at_the_next_citation(tmp_path: Path) -> None:
    body = _cit(1) + _cit(2).replace(b"</PubmedArticle>", b"</PubmedArtic") + _cit(3)
    items = list(iter_pubmed(_pubmed_gz(tmp_path / "cut.xml.gz", body)))
    assert [type(i).__name__ for i in items] == ["PubmedRecord", "Broken", "PubmedRecord"]
    assert items[1].pmid == "2" and items[2].pmid == "3"


def test_file_cut_inside_a_valid_gzip_keeps_the_citations_before(tmp_path: Path) -> None:
    xml = b'<?xml version="1.0"?>\n<PubmedArticleSet>\n' + b"".join(_cit(n) for n in range(1, 4))
    cut = tmp_path / "in" / "pubmed26n0003.xml.gz"
    cut.parent.mkdir()
    cut.write_bytes(gzip.compress(xml[:-40]))  # a whole gzip of a cut file
    manifest, kept, rejected = _run(PubmedStage(name="pubmed"), cut.parent, tmp_path / "out")
    assert sorted(r["id"] for r in kept) == ["pubmed:1", "pubmed:2"]
    assert [(r["id"], r["drop_reason"]) for r in rejected] == [("pubmed:pubmed26n0003", "pubmed_truncated")]
    assert manifest["counts"]["in"] == 3


def test_huge_titles_are_skipped_with_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.xml.gz"
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [deflate.compress(b'<?xml version="1.0"?>\n<PubmedArticleSet>\n' + _cit(1))]
    for pmid in (2, 3):  # two titles of 24 MB each, over the 16 MB a citation may hold
        parts.append(
            deflate.compress(
                f"<PubmedArticle><MedlineCitation><PMID>{pmid}</PMID><Article><ArticleTitle>".encode()
            )
        )
        parts.extend(deflate.compress(b"A" * (1 << 20)) for _ in range(24))
        parts.append(deflate.compress(b"</ArticleTitle></Article></MedlineCitation></PubmedArticle>\n"))
    parts.append(deflate.compress(_cit(4) + b"</PubmedArticleSet>\n") + deflate.flush())
    path.write_bytes(b"".join(parts))
    assert path.stat().st_size < 200_000
    tracemalloc.start()
    try:
        items = list(iter_pubmed(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [(type(i).__name__, i.pmid) for i in items] == [
        ("PubmedRecord", "1"), ("Broken", "2"), ("Broken", "3"), ("PubmedRecord", "4")
    ]  # fmt: skip
    assert items[1].reason == "pubmed_too_large"
    assert peak < 80_000_000


def test_pubmed_entities_and_a_file_that_is_not_pubmed(tmp_path: Path) -> None:
    head = '<?xml version="1.0"?><!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD x//EN" "x.dtd" '
    head += '[<!ENTITY t "TRIAL">]>'
    path = tmp_path / "e.xml"
    path.write_text(
        head + "<PubmedArticleSet>" + _cit(5, "The &t; &beta; &zzz; arm.").decode() + "</PubmedArticleSet>"
    )
    [record] = iter_pubmed(path)
    assert record.abstract == "The TRIAL β arm." and record.meta["unresolved_entities"] == {"zzz": 1}
    with pytest.raises(Rejection) as caught:
        list(iter_pubmed(JATS / "jats13_lists.xml"))
    assert caught.value.reason == "xml_not_pubmed" and "curate pmc" in caught.value.detail


def test_curate_pubmed_command_reads_every_era(ray_session, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for path in sorted(PUBMED.glob("*.xml")):
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "zz_not_pubmed.xml").write_bytes((JATS / "jats13_lists.xml").read_bytes())
    result = runner.invoke(app, ["pubmed", str(folder), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    # 6 citations (one without an abstract), 3 deletions of PMIDs no input holds, 1 file that is not PubMed.
    assert manifest["counts"] == {"in": 10, "kept": 5, "rejected": 5, "errored": 0}
    reasons = manifest["drop_reasons"]
    assert reasons == {"pubmed_deleted": 3, "pubmed_no_abstract": 1, "xml_not_pubmed": 1}
    kept = {r["id"] for r in _rows(tmp_path / "out")}
    assert kept == {
        "pubmed:40000001",
        "pubmed:40000002",
        "pubmed:26000001",
        "pubmed:15000001",
        "pubmed:29000001",
    }


def test_an_english_other_abstract_is_the_abstract_of_a_citation_without_one(tmp_path: Path) -> None:
    # Older citations from partner databases (PIP, KIE, NASA) hold their only English abstract in
    # <OtherAbstract>; Language defaults to "eng" in the DTD. A translation stays out, and so does any other
    # abstract of a citation that has its own.
    def citation(pmid: int, abstract: str, others: str) -> str:
        return (
            f"<PubmedArticle><MedlineCitation><PMID>{pmid}</PMID><Article><ArticleTitle>Title {pmid}"
            f"</ArticleTitle>{abstract}</Article>{others}</MedlineCitation></PubmedArticle>"
        )

    pip = '<OtherAbstract Type="PIP" Language="eng"><AbstractText>Pregnancy records were compared.'
    pip += "</AbstractText></OtherAbstract>"
    german = '<OtherAbstract Type="Publisher" Language="ger"><AbstractText>Gehhilfen.</AbstractText>'
    german += "</OtherAbstract>"
    kie = '<OtherAbstract Type="KIE"><AbstractText Label="ISSUE">Consent was debated.</AbstractText>'
    kie += "</OtherAbstract>"
    own = "<Abstract><AbstractText>The trial's own abstract.</AbstractText></Abstract>"
    path = tmp_path / "other.xml"
    path.write_text(
        "<PubmedArticleSet>"
        + citation(1, "", german + pip)
        + citation(2, "", kie)
        + citation(3, "", german)
        + citation(4, own, pip)
        + "</PubmedArticleSet>"
    )
    records = list(iter_pubmed(path))
    assert [(r.abstract, r.other_abstracts) for r in records] == [
        ("Pregnancy records were compared.", 1),
        ("## Issue\n\nConsent was debated.", 0),
        ("", 1),
        ("The trial's own abstract.", 1),
    ]
