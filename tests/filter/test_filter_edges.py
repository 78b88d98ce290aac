"""Filter rules at their limits: a document just inside each limit is kept, one just outside is dropped."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from curate.filter.clean import clean_text
from curate.filter.language import CHUNK_CHARS, LanguageFilter, sample_chunks
from curate.filter.quality import QualityFilter
from curate.schema import records_table
from curate.stage import Task

ENGLISH = (
    "Offer a statin to adults with a 10-year cardiovascular risk of 10% or more. Measure the full lipid "
    "profile before starting treatment and review the response after three months."
)
GERMAN = (
    "Bei Erwachsenen mit einem hohen Risiko für Herz-Kreislauf-Erkrankungen sollte ein Statin angeboten "
    "werden. Die Blutfette werden vor Beginn der Behandlung bestimmt und nach drei Monaten kontrolliert."
)


def _apply(stage, texts: list[str]) -> tuple[pa.Table, pa.Table]:
    table = records_table([{"id": f"d:{i}", "text": t, "source": "s"} for i, t in enumerate(texts)])
    kept, rejected = stage.apply(table, Task("t", ()))
    assert kept.num_rows + rejected.num_rows == len(texts)
    return kept, rejected


def _dropped(stage, texts: list[str]) -> dict[int, str]:
    """Index of each dropped text -> its drop_detail."""
    _, rejected = _apply(stage, texts)
    return {
        int(i[2:]): d
        for i, d in zip(rejected["id"].to_pylist(), rejected["drop_detail"].to_pylist(), strict=True)
    }


# ------------------------------------------------------------------------------------------------ language


def test_a_confident_other_language_is_dropped_and_english_kept():
    kept, rejected = _apply(LanguageFilter(name="language"), [ENGLISH * 3, GERMAN * 3])
    assert kept.column("id").to_pylist() == ["d:0"]
    assert rejected.column("drop_reason").to_pylist() == ["lang"]
    assert rejected.column("lang_score")[0].as_py() > 0.9  # dropped for its language, not its score
    assert rejected.column("drop_detail")[0].as_py().startswith("de ")


def test_short_paragraphs_are_merged_into_chunks_long_enough_to_identify():
    items = [f"- Dose {n}: {n * 5} mg." for n in range(60)] + ["# Renal impairment", ENGLISH]
    chunks = sample_chunks("\n\n".join(items))
    assert all(len(c) >= CHUNK_CHARS for c in chunks[:-1]) and len(chunks) < len(items) / 5
    assert chunks[0].startswith("- Dose 0: 0 mg. - Dose 1: 5 mg.") and chunks[-1].endswith("three months.")


# ------------------------------------------------------------------------------------------------ quality


def _prose(rng: np.random.Generator, sentences: int, word_length: int, bullet: str = "") -> list[str]:
    """Sentences of made-up words of one length (no repeated n-grams), six stop words each."""
    letters = list("abcdefghiklmnoprstuvy")
    lines = []
    for _ in range(sentences):
        w = ["".join(rng.choice(letters, word_length)) for _ in range(6)]
        lines.append(f"{bullet}The {w[0]} of {w[1]} {w[2]} with {w[3]} and {w[4]} to {w[5]}.")
    return lines


def test_mean_word_length_up_to_12_is_kept():
    rng = np.random.default_rng(1)
    # 6 words of length L and 5 stop words of 14 letters in all: a mean of (6 L + 14) / 11.
    inside = " ".join(_prose(rng, 10, 19))  # 11.64
    outside = " ".join(_prose(rng, 10, 20))  # 12.18
    assert _dropped(QualityFilter(name="quality"), [inside, outside]) == {
        1: "gopher_above_avg_threshold 12.18 (limit 12)"
    }


def test_bullet_lines_up_to_95_percent_are_kept():
    rng = np.random.default_rng(2)
    inside = "\n".join(_prose(rng, 28, 7, "- ") + _prose(rng, 2, 7))  # 28 of 30 lines: 0.933
    outside = "\n".join(_prose(rng, 29, 7, "- ") + _prose(rng, 1, 7))  # 0.967
    assert _dropped(QualityFilter(name="quality"), [inside, outside]) == {
        1: "gopher_too_many_bullets 0.9667 (limit 0.95)"
    }


def test_heading_marks_are_not_counted_as_symbols():
    rng = np.random.default_rng(3)
    heads = ["".join(rng.choice(list("abcdefghik"), 8)) for _ in range(12)]
    text = "\n\n".join(f"## {h.title()}\n\n{line}" for h, line in zip(heads, _prose(rng, 12, 7), strict=True))
    # 24 '#' in 156 words: over Gopher's 0.1 symbols a word, were our heading marks counted.
    assert text.count("#") / len(text.split()) > 0.15
    assert _dropped(QualityFilter(name="quality"), [text]) == {}


# ------------------------------------------------------------------------------------------------ clean

BODY = "Offer metformin as first-line treatment and review the dose after three months of treatment."
ENTRY = "Smith J, Jones A. Metformin in adults. N Engl J Med. 2019;380(2):123-30."


def test_one_or_two_reference_like_lines_in_the_body_stay():
    for run in (1, 2):
        text = "\n\n".join([BODY, *[ENTRY] * run, BODY])
        assert clean_text(text)[0] == text, run
    three = "\n\n".join([BODY, *[ENTRY] * 3, BODY])
    assert clean_text(three)[0] == f"{BODY}\n\n{BODY}"


def test_a_long_line_mentioning_cookies_or_copyright_is_content():
    long = (
        "Parents often ask whether the cookies, sweets and fizzy drinks that children accept at parties "
        "harm their teeth; we use the advice below. " * 4
    ).strip()
    assert len(long) > 400
    assert clean_text(f"{BODY}\n\n{long}")[0] == f"{BODY}\n\n{long}"
    assert clean_text(f"{BODY}\n\nWe use cookies. Accept all cookies")[0] == BODY


def test_a_short_line_twice_is_content_three_times_chrome():
    twice = f"See the dosing table\n\n{BODY}\n\nSee the dosing table\n\n{BODY}"
    assert clean_text(twice)[0] == twice
    thrice = twice + "\n\nSee the dosing table"
    assert clean_text(thrice)[0] == f"See the dosing table\n\n{BODY}\n\n{BODY}"


def test_a_bracketed_year_is_not_a_citation_marker():
    cleaned, removed = clean_text("The guideline [2018] replaced the earlier one [12], see [a].")
    assert cleaned == "The guideline [2018] replaced the earlier one, see [a]."
    assert removed == {"citation_markers": {"lines": 1, "chars": 5}}
