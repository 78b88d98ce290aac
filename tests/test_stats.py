"""Stats over hand-built stage and work directories: the numbers a user would check, and the reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from curate.schema import RECORD_SCHEMA, records_table, rejected_schema, with_drop
from curate.stats.compute import collect_stats, table_stats
from curate.stats.report import print_stats, write_html

# (id, source, lang, license, text): characters and words worked out by hand below.
DOCS = [
    ("nice:a", "nice", "en", "OGL", "Hello world"),  # 11 chars, 2 words
    ("nice:b", "nice", "en", "OGL", "  Chest pain\n\nand  fever "),  # 25 chars, 4 words
    ("who:c", "who", "fr", None, "café über"),  # 9 chars, 2 words
    ("pmc:d", "pmc", None, "CC-BY", ""),  # 0 chars, 0 words
    ("pmc:e", "pmc", "en", "CC-BY", "a\u00a0b\u2003c"),  # 5 chars, 3 words (Unicode spaces split words)
]
CHARS = 11 + 25 + 9 + 0 + 5
WORDS = 2 + 4 + 2 + 0 + 3


def kept_table(docs: list[tuple], *, lang: bool = True, titles: dict[str, str] | None = None) -> pa.Table:
    rows = [
        {"id": i, "source": s, "license": lic, "text": t, "title": (titles or {}).get(i, f"Title {i}")}
        for i, s, _, lic, t in docs
    ]
    table = records_table(rows)
    if lang:
        table = table.append_column("lang", pa.array([la for _, _, la, _, _ in docs], pa.string()))
        table = table.append_column("lang_score", pa.array([0.9] * len(docs), pa.float64()))
    return table


def rejected_table(stage: str, drops: list[tuple[str, str, str | None]]) -> pa.Table:
    """Rejected rows from (id, reason, detail)."""
    rows = [{"id": i, "source": i.split(":")[0], "text": f"text of {i}"} for i, _, _ in drops]
    table = with_drop(records_table(rows), stage, [r for _, r, _ in drops], [d for _, _, d in drops])
    assert table.schema.names == rejected_schema(RECORD_SCHEMA).names
    return table


def manifest(stage: str, n_in: int, kept: int, rejected: int, errored: int, chars: int, **extra: Any) -> dict:
    return {
        "stage": stage,
        "step": stage,
        "status": "complete",
        "counts": {"in": n_in, "kept": kept, "rejected": rejected, "errored": errored},
        "characters": {"kept": chars, "rejected": 0},
        "drop_reasons": {},
        "outputs": [],
        "params": {},
        "versions": {},
        "wall_seconds": 0.5,
        **extra,
    }


def write_stage(
    path: Path,
    kept: list[pa.Table],
    rejected: list[pa.Table] = (),  # type: ignore[assignment]
    manifest_obj: dict | None = None,
) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for n, table in enumerate(kept):
        pq.write_table(table, path / f"part-{n:05d}.parquet")
    if rejected:
        (path / "rejected").mkdir()
        for n, table in enumerate(rejected):
            pq.write_table(table, path / "rejected" / f"part-{n:05d}.parquet")
    if manifest_obj is not None:
        (path / "manifest.json").write_text(json.dumps(manifest_obj))
    return path


@pytest.fixture
def filter_dir(tmp_path: Path) -> Path:
    drops = [
        ("nice:x", "lang", "lang=de score=0.98"),
        ("who:y", "lang", "lang=es score=0.91"),
        ("pmc:z", "gopher_repetition", "dup_line_frac=0.4"),
        ("pmc:w", "error", "UnicodeDecodeError: bad byte"),
    ]
    return write_stage(
        tmp_path / "filter",
        [kept_table(DOCS[:2]), kept_table(DOCS[2:])],  # two shards: totals must add up across files
        [rejected_table("filter", drops[:2]), rejected_table("filter", drops[2:])],
        manifest("filter", 9, 5, 3, 1, CHARS),
    )


# ---------------------------------------------------------------------------------------------- stage dir


def test_stage_dir_counts(filter_dir: Path) -> None:
    stats = collect_stats(filter_dir)
    assert stats["kind"] == "stage"
    assert stats["path"] == str(filter_dir)
    assert stats["stage"] == "filter"
    assert stats["documents"] == 5
    assert stats["characters"] == CHARS
    assert stats["words"] == WORDS
    assert stats["bytes"] == sum(f.stat().st_size for f in filter_dir.glob("*.parquet"))
    assert stats["tokens"] is None
    assert stats["tokens_approximate"] == round(CHARS / 4)
    assert "approximate" in stats["tokens_approximate_rule"]
    assert stats["by_source"] == {
        "nice": {"documents": 2, "characters": 36, "words": 6},
        "pmc": {"documents": 2, "characters": 5, "words": 3},
        "who": {"documents": 1, "characters": 9, "words": 2},
    }
    assert {k: v["documents"] for k, v in stats["by_lang"].items()} == {"en": 3, "fr": 1, "(none)": 1}
    assert {k: v["documents"] for k, v in stats["by_license"].items()} == {"OGL": 2, "CC-BY": 2, "(none)": 1}
    assert stats["rejected"] == {"lang": 2, "gopher_repetition": 1}
    # characters removed per reason: "text of nice:x" + "text of who:y"; "text of pmc:z"
    assert stats["rejected_characters"] == {"lang": 14 + 13, "gopher_repetition": 13}
    assert stats["errored"] == 1
    assert stats["warnings"] == []
    assert stats["manifest"]["kept"] == 5
    json.dumps(stats, sort_keys=True)  # the CLI's --json, and stats.json written key-sorted


def test_words_match_python_split() -> None:
    texts = ["", " ", "one", "  two words  ", "tab\tand\nnewline", "x\u3000y\u00a0z", "ünïcödé wörds"]
    docs = [(f"s:{n}", "s", None, None, t) for n, t in enumerate(texts)]
    stats = table_stats(kept_table(docs, lang=False))
    assert stats["words"] == sum(len(t.split()) for t in texts)
    assert stats["characters"] == sum(len(t) for t in texts)
    assert stats["text_bytes"] == sum(len(t.encode()) for t in texts)
    assert "by_lang" not in stats  # no lang column, no language table


def test_percentiles(tmp_path: Path) -> None:
    # Lengths 0..100 in two shards: the q-th percentile is exactly 100*q characters.
    docs = [(f"s:{n}", "s", "en", None, "x" * n) for n in range(101)]
    write_stage(tmp_path / "s", [kept_table(docs[:40]), kept_table(docs[40:])])
    p = collect_stats(tmp_path / "s")["length_percentiles"]
    assert {k: p[k] for k in ("p5", "p25", "p50", "p75", "p95", "max")} == {
        "p5": 5,
        "p25": 25,
        "p50": 50,
        "p75": 75,
        "p95": 95,
        "max": 100,
    }
    assert p["min"] == 0
    assert collect_stats(tmp_path / "s")["manifest"] is None  # no manifest.json here
    assert p["mean"] == 50.0


def test_samples(filter_dir: Path) -> None:
    long_text = "word " * 200
    big = kept_table([("big:1", "big", "en", None, long_text)] * 4)
    pq.write_table(big, filter_dir / "part-00099.parquet")  # sorts last: samples come from the first shards
    samples = collect_stats(filter_dir)["samples"]
    assert [s["id"] for s in samples["kept"]] == ["nice:a", "nice:b", "who:c"]
    assert samples["kept"][0] == {
        "id": "nice:a",
        "title": "Title nice:a",
        "source": "nice",
        "characters": 11,
        "text": "Hello world",
    }
    assert set(samples["rejected"]) == {"lang", "gopher_repetition", "error"}
    assert samples["rejected"]["lang"] == [
        {"id": "nice:x", "stage": "filter", "reason": "lang", "detail": "lang=de score=0.98", "title": None},
        {"id": "who:y", "stage": "filter", "reason": "lang", "detail": "lang=es score=0.91", "title": None},
    ]


def test_samples_are_small(tmp_path: Path) -> None:
    docs = [(f"s:{n}", "s", "en", None, "y" * 1000) for n in range(10)]
    drops = [(f"s:r{n}", "short", "too short") for n in range(10)]
    write_stage(tmp_path / "s", [kept_table(docs)], [rejected_table("filter", drops)])
    samples = collect_stats(tmp_path / "s")["samples"]
    assert len(samples["kept"]) == 3
    assert all(len(s["text"]) == 300 and s["characters"] == 1000 for s in samples["kept"])
    assert len(samples["rejected"]["short"]) == 3


def test_all_rejected_stage_without_kept_shards(tmp_path: Path) -> None:
    stage = write_stage(
        tmp_path / "s", [], [rejected_table("filter", [("a:1", "lang", None)])], manifest("s", 1, 0, 1, 0, 0)
    )
    stats = collect_stats(stage)
    assert (stats["documents"], stats["characters"], stats["bytes"]) == (0, 0, 0)
    assert stats["length_percentiles"]["p50"] is None
    assert stats["manifest"]["status"] == "complete"
    assert stats["rejected"] == {"lang": 1}
    json.dumps(stats)
    write_html(stats, tmp_path / "r.html")


def test_manifest_disagreement_is_a_warning(filter_dir: Path) -> None:
    m = json.loads((filter_dir / "manifest.json").read_text())
    m["counts"]["errored"] = 3  # e.g. a task that failed whole and wrote no rejected rows
    (filter_dir / "manifest.json").write_text(json.dumps(m))
    stats = collect_stats(filter_dir)
    assert stats["errored"] == 1
    assert stats["warnings"] == ["stage 'filter': manifest says errored=3, files hold 1"]


def test_table_stats_is_json_with_sorted_keys() -> None:
    stats = table_stats(kept_table(DOCS))
    assert (stats["documents"], stats["characters"], stats["words"]) == (5, CHARS, WORDS)
    assert stats["by_license"]["(none)"]["documents"] == 1
    json.dumps(stats, sort_keys=True)  # the shard stage writes it this way; a None key would fail here


# ---------------------------------------------------------------------------------------------- work dir


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    root = tmp_path / "run"
    html_docs = [(f"nice:{n}", "nice", None, "OGL", f"page {n} text") for n in range(6)]
    pdf_docs = [(f"pmc:{n}", "pmc", None, "CC-BY", f"article {n}") for n in range(3)]
    write_stage(
        root / "html",
        [kept_table(html_docs, lang=False)],
        [rejected_table("html", [("nice:bad", "error", "lxml failed")])],
        manifest("html", 7, 6, 0, 1, 66),
    )
    # pdf ran but has no manifest (killed before it finished)
    write_stage(
        root / "pdf",
        [kept_table(pdf_docs, lang=False)],
        [rejected_table("pdf", [("pmc:enc", "pdf_encrypted", None)])],
    )
    write_stage(
        root / "filter",
        [kept_table(DOCS)],
        [rejected_table("filter", [(f"nice:{n}", "lang", "de") for n in range(4)])],
        manifest("filter", 9, 5, 4, 0, CHARS),
    )
    write_stage(
        root / "dedup",
        [kept_table(DOCS[:4])],
        [rejected_table("dedup", [("pmc:e", "near_duplicate", "cluster pmc:d")])],
        manifest("dedup", 5, 4, 1, 0, CHARS - 5),
    )
    write_stage(root / "shard", [kept_table(DOCS[:4])], [], manifest("shard", 4, 4, 0, 0, CHARS - 5))
    (root / "pipeline.json").write_text(
        json.dumps({"pipeline": "demo", "stages": ["html", "pdf", "filter", "dedup", "shard"]})
    )
    return root


def test_workdir(workdir: Path) -> None:
    stats = collect_stats(workdir)
    assert stats["kind"] == "workdir"
    assert stats["pipeline"] == "demo"
    assert stats["stage"] == "shard"
    # top-level numbers are the final stage's kept shards
    assert (stats["documents"], stats["characters"], stats["words"]) == (4, CHARS - 5, WORDS - 3)
    assert stats["bytes"] == (workdir / "shard" / "part-00000.parquet").stat().st_size
    assert set(stats["by_source"]) == {"nice", "who", "pmc"}
    # rejected over all stages, errors apart
    assert stats["rejected"] == {"lang": 4, "near_duplicate": 1, "pdf_encrypted": 1}
    assert stats["errored"] == 1
    assert stats["rejected_by_stage"] == {
        "html": {"error": 1},
        "pdf": {"pdf_encrypted": 1},
        "filter": {"lang": 4},
        "dedup": {"near_duplicate": 1},
    }
    assert set(stats["samples"]["rejected"]) == {"error", "pdf_encrypted", "lang", "near_duplicate"}
    assert stats["samples"]["rejected"]["pdf_encrypted"][0]["stage"] == "pdf"
    json.dumps(stats, sort_keys=True)


def test_funnel_equals_manifests(workdir: Path) -> None:
    funnel = collect_stats(workdir)["funnel"]
    assert [e["stage"] for e in funnel] == ["html", "pdf", "filter", "dedup", "shard"]
    for entry in funnel:
        path = workdir / entry["stage"] / "manifest.json"
        if not path.exists():
            assert entry["status"] == "missing manifest"
            assert entry["in"] is None and entry["kept"] is None
            continue
        m = json.loads(path.read_text())
        assert entry["status"] == m["status"]
        assert {k: entry[k] for k in ("in", "kept", "rejected", "errored")} == m["counts"]
        assert entry["characters_kept"] == m["characters"]["kept"]
    assert funnel[1]["status"] == "missing manifest"


def test_workdir_missing_stage_directory(workdir: Path) -> None:
    pipeline = {"pipeline": "demo", "stages": ["html", "ghost", "shard"]}
    (workdir / "pipeline.json").write_text(json.dumps(pipeline))
    stats = collect_stats(workdir)
    ghost = stats["funnel"][1]
    assert ghost["status"] == "missing manifest" and "does not exist" in ghost["detail"]
    assert any("ghost" in w for w in stats["warnings"])


def test_bad_pipeline_json(tmp_path: Path) -> None:
    (tmp_path / "pipeline.json").write_text('{"pipeline": "x"}')
    with pytest.raises(ValueError, match="'stages' list"):
        collect_stats(tmp_path)


# ----------------------------------------------------------------------------------------------- errors


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ValueError, match="does not exist") as e:
        collect_stats(missing)
    assert str(missing) in str(e.value)


def test_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError) as e:
        collect_stats(tmp_path)
    message = str(e.value)
    assert str(tmp_path) in message
    assert "not a curate stage or work directory: no *.parquet, rejected/ or manifest.json found" in message


def test_file_instead_of_directory(filter_dir: Path) -> None:
    shard = filter_dir / "part-00000.parquet"
    with pytest.raises(ValueError, match="not a directory") as e:
        collect_stats(shard)
    assert str(shard) in str(e.value)


def _train_tokenizer(path: Path, texts: list[str]) -> None:
    """A word-level tokenizer built from the test's own texts (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["[UNK]"]))
    tokenizer.save(str(path))


def test_tokenizer_counts_real_tokens(filter_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tokenizer file not found"):
        collect_stats(filter_dir, tokenizer=str(tmp_path / "tokenizer.json"))
    _train_tokenizer(tmp_path / "tokenizer.json", [d[4] for d in DOCS])
    stats = collect_stats(filter_dir, tokenizer=str(tmp_path / "tokenizer.json"))
    assert stats["tokens"] == WORDS  # whitespace word-level: one token per word
    assert stats["tokenizer"] == str(tmp_path / "tokenizer.json")


# ---------------------------------------------------------------------------------------------- reports


def test_html_report(workdir: Path, tmp_path: Path) -> None:
    shard = workdir / "shard" / "part-00000.parquet"
    titles = {"nice:a": "<script>alert('x')</script> & co"}
    pq.write_table(kept_table(DOCS[:4], titles=titles), shard)
    stats = collect_stats(workdir)
    out = tmp_path / "report" / "stats.html"
    write_html(stats, out)
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") >= 5  # funnel, sources, languages, licences, drop reasons, lengths
    assert "<script" not in page  # nothing executable, and the title's tag is escaped
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in page
    # self-contained: no external stylesheets, scripts, images or fonts
    assert "<link" not in page and "src=" not in page and "url(" not in page
    assert "https://" not in page
    for text in ("Funnel", "missing manifest", "near_duplicate", "pdf_encrypted", "Language mix", "p95"):
        assert text in page
    assert "Sample of kept documents" in page and "nice:a" in page and "lxml failed" in page


def test_html_escapes_every_data_string(tmp_path: Path) -> None:
    evil = '<b onmouseover="x">'
    docs = [(f"{evil}:1", evil, evil, evil, "text")]
    write_stage(tmp_path / "s", [kept_table(docs, titles={f"{evil}:1": evil})], [rejected_table("f", [])])
    rejected = rejected_table("f", [("s:1", evil, evil)])
    pq.write_table(rejected, tmp_path / "s" / "rejected" / "part-00001.parquet")
    stats = collect_stats(tmp_path / "s")
    write_html(stats, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<b " not in page
    assert "&lt;b onmouseover=&quot;x&quot;&gt;" in page


def test_print_stats(workdir: Path) -> None:
    console = Console(record=True, width=160, color_system=None)
    print_stats(collect_stats(workdir), console)
    text = console.export_text()
    for expected in (
        "Summary",
        "Documents",
        "Tokens (approximate: characters / 4)",
        "Documents by source",
        "Documents by language",
        "Document length",
        "Dropped documents by reason",
        "near_duplicate",
        "Funnel",
        "missing manifest",
        "dedup",
    ):
        assert expected in text, expected


def test_print_stats_does_not_read_markup_in_data(tmp_path: Path) -> None:
    write_stage(tmp_path / "s", [kept_table([("x:1", "[bold]src[/bold]", "en", None, "hi")])])
    console = Console(record=True, width=160, color_system=None)
    print_stats(collect_stats(tmp_path / "s"), console)
    assert "[bold]src[/bold]" in console.export_text()


def test_reports_accept_stats_read_back_from_json(filter_dir: Path, tmp_path: Path) -> None:
    stats = json.loads(json.dumps(collect_stats(filter_dir), sort_keys=True))
    console = Console(record=True, width=160, color_system=None)
    print_stats(stats, console)
    write_html(stats, tmp_path / "r.html")
    assert "Documents by source" in console.export_text()
