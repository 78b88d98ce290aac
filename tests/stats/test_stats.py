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
from curate.stats.compute import collect_stats, table_stats, table_stats_and_partial
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
        "nice": {"documents": 2, "characters": 36, "words": 6, "tokens": None, "tokens_approximate": 9},
        "pmc": {"documents": 2, "characters": 5, "words": 3, "tokens": None, "tokens_approximate": 1},
        "who": {"documents": 1, "characters": 9, "words": 2, "tokens": None, "tokens_approximate": 2},
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


def test_word_counts_split_like_python_on_every_space_character() -> None:
    import sys

    from curate.stats.compute import word_counts

    spaces = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]
    texts = [f"a{w}b" for w in spaces] + [f"{w}a" for w in spaces] + [f"b{w}" for w in spaces]
    texts += [f"a{chr(c)}b" for c in range(0x3100)]  # every other character below U+3100 joins words
    texts += ["a\x00b\x08c\x0ed\x1be", "\u00e9", "x" * 5 + " " + "y", "\x1c\x1d a"]
    array = pa.array(texts)
    assert word_counts(array).to_pylist() == [len(t.split()) for t in texts]
    # slices and chunked arrays keep their offsets; large_string works the same
    assert word_counts(array.slice(100, 50)).to_pylist() == [len(t.split()) for t in texts[100:150]]
    chunked = pa.chunked_array([array.slice(0, 7), array.slice(7)])
    assert word_counts(chunked).to_pylist() == [len(t.split()) for t in texts]
    assert word_counts(array.cast(pa.large_string())).to_pylist() == [len(t.split()) for t in texts]


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
    common = {"stage": "filter", "reason": "lang", "title": None}
    assert samples["rejected"]["lang"] == [
        {"id": "nice:x", "detail": "lang=de score=0.98", "source": "nice", "characters": 14, **common}
        | {"text": "text of nice:x"},
        {"id": "who:y", "detail": "lang=es score=0.91", "source": "who", "characters": 13, **common}
        | {"text": "text of who:y"},
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
        manifest("filter", 9, 5, 4, 0, CHARS, drop_reasons={"lang": 4}),
    )
    write_stage(
        root / "dedup",
        [kept_table(DOCS[:4])],
        [rejected_table("dedup", [("pmc:e", "near_duplicate", "cluster pmc:d")])],
        manifest("dedup", 5, 4, 1, 0, CHARS - 5, drop_reasons={"near_duplicate": 1}),
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
    assert "<td>lang 4</td>" in page and "<td>near_duplicate 1</td>" in page  # the funnel's drop reasons
    charts = ("funnel", "sources", "languages", "licences", "redistributable", "drop-reasons", "length-all")
    for chart in (*charts, "length-source:nice", "length-source:pmc"):
        assert f'data-chart="{chart}"' in page, chart
    assert "Tokens (approx.)" in page and "≈" in page  # approximate tokens say so


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


# ------------------------------------------------------------------------------------ shards a trainer reads

PIPELINE_YAML = "name: t\nstages:\n  - {name: dedup, step: dedup}\n  - {name: shard, step: shard}\n"


@pytest.fixture
def shard_run(tmp_path: Path) -> tuple[Path, dict, pa.Table]:
    """The shard stage (in-process) over 300 records inside a work directory with a pipeline.json."""
    from curate.executors import LocalExecutor
    from curate.runner import run_stage
    from curate.shard import ShardStage
    from curate.stage import Input

    work = tmp_path / "work"
    rows = [
        {
            "id": f"src{n % 3}:{n}",
            "source": f"src{n % 3}",
            "license": "CC-BY",
            "title": f"Doc {n}",
            "text": f"Document {n}. " + " ".join(f"w{(n * 7 + k) % 997}" for k in range(40 + n % 50)),
        }
        for n in range(300)
    ]
    table = records_table(rows)
    table = table.append_column("lang", pa.array(["en"] * 300, pa.string()))
    table = table.append_column("dup_cluster", pa.array([f"c{n}" for n in range(300)], pa.string()))
    write_stage(work / "dedup", [table.slice(0, 170), table.slice(170)])
    (work / "pipeline.json").write_text(
        json.dumps({"pipeline": "t", "file": "t.yaml", "stages": ["dedup", "shard"], "yaml": PIPELINE_YAML})
    )
    stage = ShardStage(name="shard", target_size="16KB", row_group_rows=50)
    manifest = run_stage(stage, [Input(str(work / "dedup"))], work / "shard", LocalExecutor())
    return work / "shard", manifest, table


def test_shard_manifest_lets_a_trainer_verify_what_it_reads(shard_run) -> None:
    import hashlib

    shard_dir, manifest, table = shard_run
    on_disk = json.loads((shard_dir / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    outputs = on_disk["outputs"]
    assert len(outputs) > 1  # 16KB target: several shards
    for entry in outputs:
        path = shard_dir / entry["path"]
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert entry["bytes"] == path.stat().st_size
        assert entry["rows"] == pq.ParquetFile(path).metadata.num_rows
        shard_stats = json.loads((shard_dir / f"{path.stem}.stats.json").read_text())
        assert shard_stats["documents"] == entry["rows"]
        assert shard_stats["tokens"] is None and shard_stats["tokens_approximate"] > 0
    for entry in on_disk["stats_files"]:
        data = (shard_dir / entry["path"]).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry["bytes"], entry["sha256"])
    assert {e["path"] for e in on_disk["stats_files"]} >= {"stats.json"}
    assert [f["name"] for f in on_disk["schema_fields"]] == table.column_names
    assert on_disk["schema_fields"][0] == {"name": "id", "type": "string", "nullable": False}
    assert on_disk["pipeline"] == {
        "pipeline": "t",
        "file": "t.yaml",
        "stages": ["dedup", "shard"],
        "yaml": PIPELINE_YAML,
    }
    assert on_disk["versions"]["pyarrow"] == pa.__version__
    characters = sum(len(t) for t in table.column("text").to_pylist())
    assert on_disk["totals"]["documents"] == 300 and on_disk["totals"]["characters"] == characters
    corpus = json.loads((shard_dir / "stats.json").read_text())
    assert (corpus["documents"], corpus["characters"]) == (300, characters)
    assert corpus["words"] == sum(len(t.split()) for t in table.column("text").to_pylist())
    assert set(corpus["by_source"]) == {"src0", "src1", "src2"}


def test_shard_corpus_stats_merge_what_each_shard_task_counted(shard_run) -> None:
    import copy

    from curate.shard import ShardStage
    from curate.stats.compute import _KeptStats

    shard_dir, manifest, _ = shard_run
    listed = {e["path"] for e in manifest["stats_files"]}
    for entry in manifest["outputs"]:
        assert f"{Path(entry['path']).stem}.stats.arrow" in listed
    # Merged, the partials give the figures of reading every shard again (the manifest now exists: apart).
    corpus = json.loads((shard_dir / "stats.json").read_text())
    read = collect_stats(shard_dir)
    assert corpus.pop("manifest") is None and read.pop("manifest")["kept"] == 300
    assert corpus == {k: v for k, v in read.items() if k not in ("path", "sources_file", "tokenizer")}
    # The stage uses them: a partial of other (consistent) word counts moves the corpus's words.
    first = shard_dir / Path(manifest["outputs"][0]["path"]).with_suffix(".stats.arrow").name
    partial = _KeptStats.from_partial(first.read_bytes(), None)
    partial.words += 1000
    first.write_bytes(partial.to_partial())
    stage = ShardStage(name="shard", target_size="16KB", row_group_rows=50)
    stage.finish(shard_dir, copy.deepcopy(manifest))
    assert json.loads((shard_dir / "stats.json").read_text())["words"] == read["words"] + 1000


def test_shard_stats_count_exact_tokens_with_a_tokenizer(shard_run, tmp_path: Path) -> None:
    from curate.executors import LocalExecutor
    from curate.runner import run_stage
    from curate.shard import ShardStage
    from curate.stage import Input

    shard_dir, _, table = shard_run
    texts = table.column("text").to_pylist()
    _train_tokenizer(tmp_path / "tokenizer.json", texts)
    stage = ShardStage(
        name="shard", target_size="16KB", row_group_rows=50, tokenizer=str(tmp_path / "tokenizer.json")
    )
    manifest = run_stage(stage, [Input(str(shard_dir.parent / "dedup"))], tmp_path / "exact", LocalExecutor())
    words = sum(len(t.split()) for t in texts)  # the word-level tokenizer: one token per word
    assert manifest["totals"]["tokens"] == words and manifest["totals"]["tokens_approximate"] != words
    per_shard = [
        json.loads((tmp_path / "exact" / f"{Path(o['path']).stem}.stats.json").read_text())
        for o in manifest["outputs"]
    ]
    assert sum(s["tokens"] for s in per_shard) == words
    assert json.loads((tmp_path / "exact" / "stats.json").read_text())["tokens"] == words


def test_shards_load_with_pyarrow_dataset_and_datasets(shard_run, tmp_path: Path, monkeypatch) -> None:
    import pyarrow.dataset as pads

    shard_dir, manifest, table = shard_run
    files = [str(shard_dir / o["path"]) for o in manifest["outputs"]]
    read = pads.dataset(files, format="parquet").to_table()
    assert read.num_rows == 300
    assert sorted(read.column("id").to_pylist()) == sorted(table.column("id").to_pylist())
    assert read.schema.names == table.column_names

    # Offline: nothing may be fetched; the cache goes to the test's folder.
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import datasets

    loaded = datasets.load_dataset(
        "parquet", data_files=files, split="train", cache_dir=str(tmp_path / "hf-cache")
    )
    assert loaded.num_rows == 300
    assert loaded.column_names == table.column_names
    by_id = {r["id"]: r for r in table.to_pylist()}
    for row in loaded.select(range(0, 300, 37)):
        assert row == by_id[row["id"]]


# ---------------------------------------------------------------------- histograms, clusters, redistributable


def test_length_histogram_and_percentiles_per_source(tmp_path: Path) -> None:
    # a: lengths 0, 5, 15, 15; b: 150, 2500. Bins: [0] [1,10) [10,20) ... [100,200) ... [2000,5000)
    docs = [("a:0", "a", None, None, ""), ("a:1", "a", None, None, "x" * 5)]
    docs += [("a:2", "a", None, None, "y" * 15), ("a:3", "a", None, None, "z" * 15)]
    docs += [("b:0", "b", None, None, "w" * 150), ("b:1", "b", None, None, "v" * 2500)]
    write_stage(tmp_path / "s", [kept_table(docs[:3]), kept_table(docs[3:])])
    stats = collect_stats(tmp_path / "s")
    hist = stats["length_histogram"]
    edges = hist["edges"]
    assert edges[:4] == [1, 10, 20, 50]

    def bin_of(n: int) -> int:
        return sum(1 for e in edges if e <= n)

    expected_a = [0] * (len(edges) + 1)
    for n in (0, 5, 15, 15):
        expected_a[bin_of(n)] += 1
    assert hist["by_source"]["a"] == expected_a
    assert hist["by_source"]["b"][bin_of(150)] == 1 and hist["by_source"]["b"][bin_of(2500)] == 1
    assert hist["all"] == [x + y for x, y in zip(hist["by_source"]["a"], hist["by_source"]["b"], strict=True)]
    assert stats["length_percentiles_by_source"]["a"]["max"] == 15
    assert stats["length_percentiles_by_source"]["a"]["min"] == 0
    assert stats["length_percentiles_by_source"]["b"]["p50"] in (150, 2500)
    assert stats["length_percentiles_by_source"]["b"]["mean"] == 1325.0


def test_many_files_in_threads_equal_one_file(tmp_path: Path) -> None:
    docs = [
        (f"s{n % 4}:{n}", f"s{n % 4}", ["en", "fr", None][n % 3], None, "word " * (n % 37))
        for n in range(400)
    ]
    table = kept_table(docs)
    write_stage(tmp_path / "one", [table])
    write_stage(tmp_path / "many", [table.slice(i, 25) for i in range(0, 400, 25)])
    one, many = collect_stats(tmp_path / "one"), collect_stats(tmp_path / "many")
    for key in ("documents", "characters", "words", "by_source", "by_lang", "length_percentiles"):
        assert one[key] == many[key], key
    assert one["length_histogram"] == many["length_histogram"]
    assert one["length_percentiles_by_source"] == many["length_percentiles_by_source"]
    assert one["samples"]["kept"] == many["samples"]["kept"]  # the first documents, whatever thread ran first


def _write_partials(folder: Path, tables: list[pa.Table], tokenizer: Any = None) -> dict[str, Path]:
    """Each table's partial, as the shard stage writes it beside its shard, by the shard's file name."""
    partials = {}
    for n, table in enumerate(tables):
        partials[f"part-{n:05d}.parquet"] = path = folder / f"part-{n:05d}.stats.arrow"
        path.write_bytes(table_stats_and_partial(table, tokenizer)[1])
    return partials


def test_partials_merge_to_the_stats_of_reading_the_files(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    # Many sources, languages and licences over files that differ in columns (one without lang at all, one
    # with a duplicate cluster column, one empty): every figure must come out as reading the files gives it.
    docs = [
        (
            f"s{n % 23}:{n}",
            f"s{n % 23}",
            ["en", "fr", None][n % 3],
            ["CC-BY", None][n % 2],
            "w\u00a0x " * (n % 41),
        )
        for n in range(600)
    ]
    tables = [kept_table(docs[:200]), kept_table(docs[200:350], lang=False), kept_table(docs[350:])]
    tables[2] = _with_cluster(tables[2], [f"c{n % 7}" for n in range(250)])
    tables.append(kept_table(docs[:0]))
    folder = write_stage(tmp_path / "s", tables)
    _train_tokenizer(tmp_path / "tokenizer.json", [d[4] for d in docs])
    for tokenizer in (None, str(tmp_path / "tokenizer.json")):
        loaded = Tokenizer.from_file(tokenizer) if tokenizer else None
        partials = _write_partials(folder, tables, loaded)
        read = collect_stats(folder, tokenizer=tokenizer)
        merged = collect_stats(folder, tokenizer=tokenizer, partials=partials)
        assert json.dumps(merged, sort_keys=True) == json.dumps(read, sort_keys=True)
        assert len(read["length_histogram"]["by_source"]) == 20 and read["dup_clusters"] is not None
        assert read["by_lang"]["(none)"]["documents"] == 150 + 250 // 3 + 200 // 3 + 1


def test_a_partial_that_disagrees_with_its_file_is_not_used(tmp_path: Path, caplog) -> None:
    tables = [kept_table(DOCS[:2]), kept_table(DOCS[2:])]
    folder = write_stage(tmp_path / "s", tables)
    read = collect_stats(folder)
    partials = _write_partials(folder, tables)
    swapped = {"part-00000.parquet": partials["part-00001.parquet"], "part-00001.parquet": folder / "none"}
    assert collect_stats(folder, partials=swapped) == read  # another file's rows; missing
    partials["part-00000.parquet"].write_bytes(b"not arrow")
    assert collect_stats(folder, partials=partials) == read
    assert "part-00000.stats.arrow unusable" in caplog.text
    # Arrow, with the right rows, but its sums lack the groups: read the file instead.
    partial = pa.ipc.open_file(partials["part-00001.parquet"].read_bytes()).read_all()
    facts = json.loads(partial.schema.metadata[b"curate.stats"])
    del facts["groups"]
    partial = partial.replace_schema_metadata({b"curate.stats": json.dumps(facts)})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, partial.schema) as writer:
        writer.write_table(partial)
    partials["part-00001.parquet"].write_bytes(sink.getvalue().to_pybytes())
    assert collect_stats(folder, partials=partials) == read
    assert "part-00001.stats.arrow unusable (not a stats partial (KeyError" in caplog.text
    # Counted without a tokenizer, where this one has one: its token counts would be missing.
    _train_tokenizer(tmp_path / "tokenizer.json", [d[4] for d in DOCS])
    partials = _write_partials(folder, tables)
    with_tokens = collect_stats(folder, tokenizer=str(tmp_path / "tokenizer.json"), partials=partials)
    assert with_tokens["tokens"] == WORDS


def _with_cluster(table: pa.Table, clusters: list[str]) -> pa.Table:
    return table.add_column(table.num_columns - 3, "dup_cluster", pa.array(clusters, pa.string()))


def test_duplicate_cluster_sizes(tmp_path: Path) -> None:
    kept = kept_table(DOCS).append_column("dup_cluster", pa.array(["A", "B", "C", "D", "E"], pa.string()))
    drops = [(f"x:{n}", "exact_duplicate", "duplicate of nice:a") for n in range(3)]  # cluster A: size 4
    drops += [("y:1", "near_duplicate", "near duplicate of who:c")]  # cluster C: size 2
    drops += [("z:1", "lang", "de")]  # not a duplicate
    rejected = _with_cluster(rejected_table("dedup", drops), ["A", "A", "A", "C", None])
    write_stage(tmp_path / "d", [kept], [rejected])
    clusters = collect_stats(tmp_path / "d")["dup_clusters"]
    assert clusters["clusters"] == 2
    assert clusters["sizes"] == {"2": 1, "4": 1}
    assert clusters["duplicates_removed"] == 4
    assert clusters["documents_in_clusters"] == 6
    assert clusters["largest"][0] == {"stage": "dedup", "dup_cluster": "A", "size": 4, "example": "x:0"}
    # no dup_cluster anywhere: no cluster section at all
    write_stage(tmp_path / "plain", [kept_table(DOCS)])
    assert collect_stats(tmp_path / "plain")["dup_clusters"] is None


def test_redistributable_from_sources_yaml(tmp_path: Path) -> None:
    sources = tmp_path / "sources.yaml"
    entry = "{{title: {0}, homepage: 'https://{0}.example', content: html, license: x, redistributable: {1}}}"
    sources.write_text(
        "sources:\n"
        + f"  nice: {entry.format('nice', 'true')}\n"
        + f"  pmc: {entry.format('pmc', 'false')}\n"
    )
    write_stage(tmp_path / "s", [kept_table(DOCS)])
    stats = collect_stats(tmp_path / "s", sources=sources)
    assert stats["sources_file"] == str(sources)
    assert {k: v["documents"] for k, v in stats["by_redistributable"].items()} == {
        "yes": 2,
        "no": 2,
        "unknown (not in sources.yaml)": 1,
    }
    assert stats["by_redistributable"]["yes"]["characters"] == 36


def test_funnel_characters_and_reasons_equal_manifests(workdir: Path) -> None:
    m = json.loads((workdir / "filter" / "manifest.json").read_text())
    m["drop_reasons"] = {"lang": 4}
    m["characters"] = {"kept": CHARS, "rejected": 57}
    (workdir / "filter" / "manifest.json").write_text(json.dumps(m))
    funnel = {e["stage"]: e for e in collect_stats(workdir)["funnel"]}
    assert funnel["filter"]["drop_reasons"] == {"lang": 4}
    assert funnel["filter"]["characters_in"] == CHARS + 57
    assert funnel["filter"]["characters_rejected"] == 57
    assert funnel["pdf"]["characters_in"] is None  # no manifest


# ------------------------------------------------------------------------------ the demo, as a user sees it


def test_demo_stats_print_the_funnel_of_the_manifests(tmp_path: Path) -> None:
    """`curate stats` on the demo's work directory (run in-process, no Ray): the printed funnel's numbers, and
    the drop reasons under each stage, are those of the stage manifests."""
    import sys

    from typer.testing import CliRunner

    from curate.cli import app
    from curate.executors import LocalExecutor
    from curate.pipeline import load_pipeline, run_pipeline
    from tests.conftest import REPO

    sys.path.insert(0, str(REPO / "pipelines" / "demo"))
    from make_pdfs import make_demo_pdfs

    make_demo_pdfs(REPO / "pipelines" / "demo" / "pdf")
    pipeline, _ = load_pipeline(REPO / "pipelines" / "demo.yaml", REPO / "sources.yaml")
    work = tmp_path / "demo"
    run_pipeline(pipeline, work, LocalExecutor())
    result = CliRunner().invoke(app, ["stats", str(work)])
    assert result.exit_code == 0, result.output
    lines = result.output[result.output.index("Funnel (from stage manifests)") :].splitlines()
    stages = json.loads((work / "pipeline.json").read_text())["stages"]
    kept_chars: dict[str, int] = {}
    for stage in stages:
        m = json.loads((work / stage / "manifest.json").read_text())
        kept_chars[stage] = m["characters"]["kept"]
        row = next(line.split() for line in lines if line.split()[:1] == [stage])
        numbers = [int(x.replace(",", "")) for x in row[1:7]]
        c = m["counts"]
        upstream = [Path(i["path"]).name for i in m["inputs"]]
        if all(name in kept_chars and name != stage for name in upstream):
            chars_in = sum(kept_chars[name] for name in upstream)  # what the stages it reads kept
        else:
            chars_in = m["characters"]["kept"] + m["characters"]["rejected"]  # files: as parsed
        removed = chars_in - m["characters"]["kept"]
        assert numbers == [c["in"], c["kept"], c["rejected"], c["errored"], chars_in, removed], stage
        assert row[7] == "ok"
        start = lines.index(next(line for line in lines if line.split()[:1] == [stage]))
        below = {}
        for line in lines[start + 1 :]:
            parts = line.split()
            if len(parts) != 2 or not line.startswith("   "):
                break
            below[parts[0]] = int(parts[1])
        assert below == m["drop_reasons"], stage
    assert "exact_duplicate" in result.output and "lang" in result.output


def test_funnel_shows_the_characters_clean_cut_and_the_terminal_has_samples(tmp_path: Path) -> None:
    """`curate run` then `curate stats`: clean keeps every document but cuts citation markers, which the
    funnel shows as characters removed; the Samples section shows kept documents and each drop reason's."""
    from typer.testing import CliRunner

    from curate.cli import app
    from curate.io import write_parquet
    from tests.conftest import REPO

    texts = [
        f"Guideline {n} recommends early antibiotics in sepsis [12]. Measure lactate within one hour [3, 4]. "
        "Review the response to fluids and repeat the assessment."
        for n in range(6)
    ]
    rows = [{"id": f"nice:g{n}", "text": t, "source": "nice"} for n, t in enumerate(texts)]
    rows.append({"id": "nice:copy", "text": texts[0], "source": "nice"})  # an exact duplicate
    write_parquet(records_table(rows), tmp_path / "docs" / "part-0.parquet")
    (tmp_path / "p.yaml").write_text(
        "name: p\nstages:\n  - {name: dedup, step: dedup, inputs: [docs]}\n  - {name: clean, step: clean}\n"
    )
    runner = CliRunner()
    work = tmp_path / "work"
    args = ["run", str(tmp_path / "p.yaml"), "--workdir", str(work), "--sources", str(REPO / "sources.yaml")]
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, ["stats", str(work)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output

    def characters(stage: str) -> int:
        return sum(
            len(t) for f in (work / stage).glob("*.parquet") for t in pq.read_table(f)["text"].to_pylist()
        )

    cut = characters("dedup") - characters("clean")
    assert cut == 6 * len(" [12]") + 6 * len(" [3, 4]")  # what clean took out of the documents it kept
    funnel = result.output[result.output.index("Funnel") :].splitlines()
    row = next(line.split() for line in funnel if line.split()[:1] == ["clean"])
    assert [int(x.replace(",", "")) for x in row[1:7]] == [6, 6, 0, 0, characters("dedup"), cut]
    dedup = next(line.split() for line in funnel if line.split()[:1] == ["dedup"])
    assert int(dedup[6].replace(",", "")) == len(texts[0])  # the duplicate's text, dropped
    samples = result.output[result.output.index("Samples (the first 300 characters of each)") :]
    assert "kept  nice:g1  nice" in samples
    assert "Guideline 1 recommends early antibiotics in sepsis." in samples
    assert "exact_duplicate  nice:g0  dedup: " in samples  # the copy's id sorts first: it survived
