"""Line-level medical clean-up: what each rule removes, what it must leave, and the record in meta."""

from __future__ import annotations

import json

from curate.filter.clean import CleanStage, clean_text
from curate.parse.html import extract_html
from curate.schema import records_table
from curate.stage import Task
from tests.conftest import REPO

BODY = (
    "Offer metformin 500 mg twice daily as first-line treatment [12], increasing to 2 g a day if tolerated "
    "[3, 4]. Smith et al. (2019; 12:34-56) found fewer events, see Table 2 [a]."
)
REFERENCES = [
    "# References",
    "1. Smith J, Jones A. Metformin in adults. N Engl J Med. 2019;380(2):123-30. doi:10.1056/NEJM1",
    "2. Brown K, et al. Dosing in renal impairment. Lancet 2020; 395: 1-9.",
    "3. Lee C, Park D. Long-term outcomes. BMJ. 2018;360:k1. PMID: 29000000",
]
BOILERPLATE = [
    "© 2024 National Institute for Health and Care Excellence. All rights reserved.",
    "This article is licensed under a Creative Commons Attribution 4.0 International License.",
    "This page was last reviewed: 12 March 2024",
    "We use cookies to improve your experience. Accept all cookies",
    "Back to top",
    ". . . . . . . . . . . . . . .",
]


def test_each_rule_removes_its_lines_and_counts_them():
    nav = ["Share on Facebook"] * 3
    text = "\n\n".join(["# Type 2 diabetes", BODY, *BOILERPLATE, *nav, *REFERENCES])
    cleaned, removed = clean_text(text)
    assert cleaned == (
        "# Type 2 diabetes\n\nOffer metformin 500 mg twice daily as first-line treatment, increasing to "
        "2 g a day if tolerated. Smith et al. (2019; 12:34-56) found fewer events, see Table 2 [a].\n\n"
        "Share on Facebook"
    )
    assert {rule: v["lines"] for rule, v in removed.items()} == {
        "citation_markers": 2,
        "copyright": 2,
        "last_reviewed": 1,
        "cookies": 1,
        "navigation": 1,
        "no_words": 1,
        "repeated_line": 2,
        "reference_list": 4,
    }
    assert removed["citation_markers"]["chars"] == len(" [12]") + len(" [3, 4]")


def test_body_text_that_cites_authors_and_years_is_kept():
    lines = [
        "Several studies (Verma et al., 2016; Vieira & Simon, 2000) reported genetic variability.",
        "Smith, Jones and Lee (2019) measured outcomes in 2,000 adults over 5 years.",
        "Cookies and sweets should be limited in children with type 1 diabetes, as in previous years.",
        "Dose: 5 mg",
        "Dose: 5 mg",
        "Dose: 5 mg",
    ]
    cleaned, removed = clean_text("\n".join(lines))
    assert cleaned == "\n".join(lines) and removed == {}


def test_stage_records_removals_in_meta_and_drops_what_is_left_empty():
    rows = [
        {"id": "a", "text": BODY, "source": "s", "meta": json.dumps({"pages": 3})},
        {"id": "b", "text": "\n\n".join(BOILERPLATE), "source": "s", "meta": None},
        {"id": "c", "text": "Plain sentence without anything to remove.", "source": "s", "meta": "{}"},
        {"id": "d", "text": "", "source": "s", "meta": "not json"},
    ]
    kept, rejected = CleanStage(name="clean").apply(records_table(rows), Task("t", ()))
    metas = dict(zip(kept.column("id").to_pylist(), kept.column("meta").to_pylist(), strict=True))
    assert json.loads(metas["a"]) == {
        "clean": {"chars_removed": 12, "rules": {"citation_markers": {"chars": 12, "lines": 2}}},
        "pages": 3,
    }
    assert metas["a"] == json.dumps(json.loads(metas["a"]), sort_keys=True, ensure_ascii=False)
    assert metas["c"] == "{}"
    dropped = rejected.select(["id", "drop_reason", "text"]).to_pylist()
    assert [(r["id"], r["drop_reason"]) for r in dropped] == [("b", "clean_empty"), ("d", "clean_empty")]
    assert dropped[0]["text"].startswith("©")  # rejected rows keep the text that came in


def test_demo_guideline_pages_lose_nothing():
    for path in sorted((REPO / "pipelines" / "demo" / "html" / "demo-guidelines").glob("*.html")):
        text = extract_html(path.read_bytes()).text
        assert clean_text(text) == (text, {}), path.name


def test_numeric_citation_forms_go_and_real_numbers_stay():
    cited = (
        "Tulsi is worshipped in most Indian homes.1-3 It grows everywhere. Several plants,4,5 and herbs were "
        "used before (35). Others agree (3, 4) and (5-7); treatment lasted 12 weeks.12 Patients improved."
    )
    cleaned, removed = clean_text(cited)
    assert cleaned == (
        "Tulsi is worshipped in most Indian homes. It grows everywhere. Several plants, and herbs were used "
        "before. Others agree and; treatment lasted 12 weeks. Patients improved."
    )
    assert removed["citation_markers"]["lines"] == 6
    numbers = [
        "In 2019 (2019) the dose was 500 mg (n = 35) twice daily, p < 0.05, in 1,000 adults aged 40-65.",
        "See Fig.2 and Table (2); the steps are (1) wash, (2) dry and (3) store at 4 °C for 2.5 h.",
        "IL-6 and COVID-19 rose; p53 and CD4 counts, log10 values, vitamin B12 and H2O. The mean was 1.5.",
        "Smith et al. (2019; 12:34-56) found fewer events in stage (3) and type (2) disease on day (3).",
    ]
    assert clean_text("\n".join(numbers)) == ("\n".join(numbers), {})
