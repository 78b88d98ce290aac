"""Pure stage functions, without Ray: language ID, exact-duplicate keys and survivors, shard planning."""

from __future__ import annotations

import pyarrow as pa
import pytest

from curate.dedup.exact import choose_survivors, duplicate_keys, normalize_text, text_hash
from curate.filter.language import LanguageFilter, identify_languages
from curate.schema import RECORD_COLUMNS, clean_str, conform, records_table
from curate.shard import plan_slices
from curate.stage import Task
from curate.units import parse_size


def test_language_ids_real_text():
    found = identify_languages(
        [
            "Offer a statin to adults with a 10-year cardiovascular risk of 10% or more.",
            "Bei Erwachsenen mit Bluthochdruck wird zunächst eine Änderung des Lebensstils empfohlen.",
            "Les patients atteints de diabète doivent être suivis tous les trois mois.",
        ]
    )
    assert [lang for lang, _ in found] == ["en", "de", "fr"]
    assert all(score > 0.8 for _, score in found)


def test_language_filter_bad_input_gets_a_reason_never_an_exception():
    texts = ["", "   \n\t ", "!!! ??? ...", "\x00\x01\x02 \x1b[31m", "ℵ∞∑", "a" * 5_000_000 + "\n", "x" * 10]
    table = records_table([{"id": f"b:{i}", "text": t, "source": "s"} for i, t in enumerate(texts)])
    kept, rejected = LanguageFilter(name="filter").apply(table, Task("t", ()))
    assert kept.num_rows + rejected.num_rows == len(texts)
    reasons = dict(
        zip(rejected.column("id").to_pylist(), rejected.column("drop_reason").to_pylist(), strict=True)
    )
    assert reasons["b:0"] == "empty" and reasons["b:1"] == "empty"
    assert set(reasons.values()) <= {"empty", "lang"}


def test_normalisation_ignores_case_punctuation_and_spacing():
    assert normalize_text("Hypertension:  ADULTS,\nover 80!") == "hypertension adults over 80"
    assert text_hash("ﬁrst line") == text_hash("FIRST   line.")  # NFKC folds the ligature
    assert text_hash("first line") != text_hash("first lines")


def test_survivor_is_best_priority_then_longest_then_smallest_id():
    table = records_table(
        [
            {"id": "w:1", "text": "Same text here.", "source": "wiki"},
            {"id": "g:1", "text": "same TEXT here", "source": "guide"},
            {"id": "w:2", "text": "Other text.", "source": "wiki"},
            {"id": "w:0", "text": "other text", "source": "wiki"},
            {"id": "w:0", "text": "Unique.", "source": "wiki"},
        ]
    )
    keys = duplicate_keys(table, {"guide": 1, "wiki": 2})
    assert choose_survivors(keys) == {(0, 0): "g:1", (0, 3): "w:2"}
    # w:2 ("Other text.") is longer than w:0 ("other text"), so it survives; a repeated id is dropped once.


def test_conform_orders_record_columns_and_keeps_extras():
    table = pa.table({"lang": ["en"], "text": ["t"], "id": ["a"], "source": ["s"]})
    out = conform(table)
    assert out.column_names == RECORD_COLUMNS + ["lang"]
    with pytest.raises(ValueError, match="required column 'text'"):
        conform(pa.table({"id": ["a"], "source": ["s"]}))


def test_clean_str_replaces_lone_surrogates():
    assert clean_str("a\ud800b") == "a\ufffdb"
    records_table([{"id": "x", "text": clean_str("bad \udcff byte"), "source": "s"}])  # storable


def test_parse_size_units():
    assert parse_size("256MB") == 256_000_000
    assert parse_size("1GiB") == 2**30
    assert parse_size("1.5 GB") == 1_500_000_000
    assert parse_size(42) == 42
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")


def test_plan_slices_covers_every_row_once_in_order():
    files = [("a", 10, 1000), ("b", 7, 700), ("c", 3, 3000)]
    shards = plan_slices(files, 450)
    flat = [(p, o + i) for shard in shards for p, o, n in shard for i in range(n)]
    assert flat == [(p, i) for p, rows, _ in files for i in range(rows)]
    sizes = [sum(n * {"a": 100, "b": 100, "c": 1000}[p] for p, _, n in shard) for shard in shards]
    assert all(size >= 450 for size in sizes[:-1])
    assert max(sizes) < 450 + 1000  # never more than one row past the target
