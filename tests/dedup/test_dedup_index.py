"""Incremental near-dedup: a new corpus against an index of earlier survivors, extending it, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.dedup import clusters, lsh
from curate.dedup.near import NearDedup
from curate.executors import LocalExecutor
from curate.runner import run_stage
from curate.schema import records_table
from curate.stage import Input
from tests.dedup.oracle import plain_jaccard, restyled, substituted

VOCABULARY = [f"w{i}" for i in range(5000)]


def _text(rng: np.random.Generator, n: int = 150) -> str:
    return " ".join(VOCABULARY[i] for i in rng.integers(0, len(VOCABULARY), n))


def _edit(rng: np.random.Generator, text: str, deletions: int = 2) -> str:
    """Delete a few words: Jaccard about 0.9 on 5-grams, and the copy is shorter than its original."""
    words = text.split()
    for i in sorted(rng.choice(len(words), deletions, replace=False), reverse=True):
        del words[i]
    return " ".join(words)


def _write(folder: Path, rows: list[dict], shards: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(shards):
        pq.write_table(records_table(rows[n::shards]), folder / f"part-{n:03d}.parquet")
    return folder


def _run(corpus: Path, out: Path, **params) -> dict:
    return run_stage(NearDedup(name="near", **params), [Input(str(corpus))], out, LocalExecutor())


def _table(folder: Path) -> pa.Table | None:
    files = sorted(folder.glob("*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]) if files else None


def _rejected(out: Path) -> dict[str, tuple[str, str, str]]:
    """id -> (drop_reason, dup_cluster, drop_detail) of a stage's rejected rows."""
    table = _table(out / "rejected")
    if table is None:
        return {}
    columns = [table.column(c).to_pylist() for c in ("id", "drop_reason", "dup_cluster", "drop_detail")]
    return {i: (r, c, d) for i, r, c, d in zip(*columns, strict=True)}


def _bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.parquet"))}


@pytest.fixture
def corpora(tmp_path: Path) -> dict[str, Path]:
    """Three batches: A (with internal copies), B (copies of A, of A's removed copies, its own copies), C."""
    rng = np.random.default_rng(7)
    a = [{"id": f"a:{n:02d}", "text": _text(rng), "source": "who"} for n in range(30)]
    a += [{"id": f"a:{n:02d}x", "text": _edit(rng, a[n]["text"]), "source": "wikidoc"} for n in range(5)]
    b = [{"id": f"b:{n:02d}", "text": _text(rng), "source": "cdc"} for n in range(20)]
    b += [{"id": f"b:copy{n:02d}", "text": _edit(rng, a[n]["text"]), "source": "cdc"} for n in range(10, 16)]
    b += [{"id": f"b:{n:02d}y", "text": _edit(rng, b[n]["text"]), "source": "cdc"} for n in range(3)]
    c = [{"id": f"c:copy{n:02d}", "text": _edit(rng, b[n]["text"]), "source": "who"} for n in range(5, 9)]
    c += [{"id": f"c:copy{n:02d}a", "text": _edit(rng, a[n]["text"]), "source": "who"} for n in range(20, 22)]
    c += [{"id": f"c:{n:02d}", "text": _text(rng), "source": "who"} for n in range(4)]
    return {name: _write(tmp_path / name, rows) for name, rows in (("a", a), ("b", b), ("c", c))}


def test_new_documents_that_duplicate_the_index_are_removed_and_the_index_grows(corpora, tmp_path: Path):
    index = tmp_path / "index"
    first = _run(corpora["a"], tmp_path / "out-a", write_index=str(index))
    assert first["counts"] == {"in": 35, "kept": 30, "rejected": 5, "errored": 0}
    built = json.loads((index / "index.json").read_text())
    assert [g["documents"] for g in built["generations"]] == [30]
    assert built["params"]["bands"] == 16 and built["params"]["num_perm"] == 128

    second = _run(corpora["b"], tmp_path / "out-b", against=str(index), write_index=str(index))
    rejected = _rejected(tmp_path / "out-b")
    # Copies of indexed documents go first, citing the indexed id; then B's own copies, citing B's survivor.
    expected = {f"b:copy{n:02d}": f"a:{n:02d}" for n in range(10, 16)}
    expected |= {f"b:{n:02d}y": f"b:{n:02d}" for n in range(3)}
    assert {i: c for i, (_, c, _) in rejected.items()} == expected
    assert {r for r, _, _ in rejected.values()} == {"near_duplicate"}
    assert rejected["b:copy10"][2] == "near-duplicate of a:10 (indexed)"
    assert rejected["b:00y"][2] == "near-duplicate of b:00"
    assert second["counts"] == {"in": 29, "kept": 20, "rejected": 9, "errored": 0}
    grown = json.loads((index / "index.json").read_text())
    assert [g["documents"] for g in grown["generations"]] == [30, 20]

    # A third batch meets both generations: copies of B's and of A's survivors go, its new texts stay.
    third = _run(corpora["c"], tmp_path / "out-c", against=str(index))
    rejected = _rejected(tmp_path / "out-c")
    expected = {f"c:copy{n:02d}": f"b:{n:02d}" for n in range(5, 9)}
    expected |= {f"c:copy{n:02d}a": f"a:{n:02d}" for n in range(20, 22)}
    assert {i: c for i, (_, c, _) in rejected.items()} == expected
    assert third["counts"]["kept"] == 4
    assert json.loads((index / "index.json").read_text()) == grown  # --against alone never writes


def test_rerun_and_repeat_are_deterministic_and_never_add_twice(corpora, tmp_path: Path):
    index = tmp_path / "index"
    _run(corpora["a"], tmp_path / "out-a", write_index=str(index))
    _run(corpora["b"], tmp_path / "out-b", against=str(index), write_index=str(index))
    outputs, index_files = _bytes(tmp_path / "out-b"), _bytes(index)
    listing = (index / "index.json").read_bytes()
    # A recomputed task reruns the global pass: its own earlier survivors are not its duplicates.
    (tmp_path / "out-b" / "part-001.parquet").unlink()
    _run(corpora["b"], tmp_path / "out-b", against=str(index), write_index=str(index))
    assert _bytes(tmp_path / "out-b") == outputs
    assert _bytes(index) == index_files and (index / "index.json").read_bytes() == listing
    # The same query twice, into two folders, gives the same bytes.
    _run(corpora["c"], tmp_path / "c1", against=str(index))
    _run(corpora["c"], tmp_path / "c2", against=str(index))
    assert _bytes(tmp_path / "c1") == _bytes(tmp_path / "c2") and _rejected(tmp_path / "c1")


def test_key_ranges_and_pair_chunks_give_the_same_output(corpora, tmp_path: Path, monkeypatch):
    index = tmp_path / "index"
    _run(corpora["a"], tmp_path / "out-a", write_index=str(index))
    _run(corpora["b"], tmp_path / "whole", against=str(index))
    monkeypatch.setattr(lsh, "PARTITION_DOCS", 7)  # about 10 key ranges per band
    monkeypatch.setattr(clusters, "VERIFY_CHUNK", 2)  # pairs verified two at a time
    _run(corpora["b"], tmp_path / "parts", against=str(index))
    assert _bytes(tmp_path / "whole") == _bytes(tmp_path / "parts") and _rejected(tmp_path / "parts")


def test_an_index_built_with_other_parameters_is_refused(corpora, tmp_path: Path):
    index = tmp_path / "index"
    _run(corpora["a"], tmp_path / "out-a", write_index=str(index))
    with pytest.raises(ValueError, match="was built with"):
        _run(corpora["b"], tmp_path / "out-b", against=str(index), threshold=0.7)
    with pytest.raises(FileNotFoundError, match="not a near-duplicate index"):
        _run(corpora["b"], tmp_path / "out-c", against=str(tmp_path / "nothing"))


def test_an_index_match_needs_the_threshold(tmp_path: Path):
    """Copies of indexed documents at plain Jaccard 0.82 go; copies at 0.78 stay."""
    rng = np.random.default_rng(21)
    originals = [[VOCABULARY[i] for i in rng.integers(0, len(VOCABULARY), 206)] for _ in range(6)]
    a = [{"id": f"a:{n}", "text": " ".join(w), "source": "who"} for n, w in enumerate(originals)]
    # 4 isolated substitutions in 202 5-grams: 182/222 = 0.82; 5: 177/227 = 0.78.
    b = [
        {"id": f"b:{n}", "text": restyled(substituted(rng, w, 4 if n < 3 else 5, f"b{n}")), "source": "cdc"}
        for n, w in enumerate(originals)
    ]
    b += [{"id": "b:new", "text": _text(rng, 206), "source": "cdc"}]
    similarity = [plain_jaccard(x["text"], y["text"]) for x, y in zip(a, b, strict=False)]
    assert [round(j, 2) for j in similarity] == [0.82] * 3 + [0.78] * 3
    # Index matches are decided on signatures: 4096 permutations make the estimate's standard error 0.006,
    # so the threshold (0.8), not the estimate's noise, separates the two groups. 64 bands of 8 rows make
    # every copy a band match, as the run without verification shows.
    params = {"num_perm": 4096, "bands": 64, "rows": 8}
    index = tmp_path / "index"
    _run(_write(tmp_path / "a", a), tmp_path / "out-a", write_index=str(index), **params)
    corpus = _write(tmp_path / "b", b)
    _run(corpus, tmp_path / "out-b", against=str(index), **params)
    assert {i: c for i, (_, c, _) in _rejected(tmp_path / "out-b").items()} == {
        f"b:{n}": f"a:{n}" for n in range(3)
    }
    _run(corpus, tmp_path / "unverified", against=str(index), verify=False, **params)
    assert sorted(_rejected(tmp_path / "unverified")) == [f"b:{n}" for n in range(6)]


def test_a_copy_of_two_indexed_documents_cites_the_more_similar(tmp_path: Path):
    """A new document near two indexed ones (plain Jaccard 0.86 and 0.91; 0.78 between the two, so both are
    in the index) is removed citing the more similar."""
    rng = np.random.default_rng(11)
    words = [VOCABULARY[i] for i in rng.integers(0, len(VOCABULARY), 206)]

    def changed(positions: tuple[int, ...]) -> str:
        return " ".join(f"new{i}" if i in positions else w for i, w in enumerate(words))

    a = [
        {"id": "a:far", "text": changed((20, 60, 100)), "source": "who"},
        {"id": "a:near", "text": changed((140, 180)), "source": "who"},
    ]
    copy = " ".join(words)
    similarity = [plain_jaccard(copy, d["text"]) for d in a] + [plain_jaccard(a[0]["text"], a[1]["text"])]
    assert [round(j, 2) for j in similarity] == [0.86, 0.91, 0.78]
    params = {"num_perm": 4096, "bands": 64, "rows": 8}  # estimates within 0.02 of the plain Jaccard
    index = tmp_path / "index"
    first = _run(_write(tmp_path / "a", a, shards=1), tmp_path / "out-a", write_index=str(index), **params)
    assert first["counts"]["kept"] == 2
    b = [{"id": "b:copy", "text": copy, "source": "cdc"}]
    _run(_write(tmp_path / "b", b, shards=1), tmp_path / "out-b", against=str(index), **params)
    assert _rejected(tmp_path / "out-b")["b:copy"][2] == "near-duplicate of a:near (indexed)"


def test_copies_of_one_indexed_document_all_go_citing_it(tmp_path: Path):
    """Two new copies of an indexed document duplicate each other too; both go, and both cite the index."""
    rng = np.random.default_rng(5)
    a = [{"id": f"a:{n}", "text": _text(rng), "source": "who"} for n in range(3)]
    b = [{"id": f"b:copy{n}", "text": _edit(rng, a[0]["text"], 1), "source": "cdc"} for n in range(2)]
    b += [{"id": "b:new", "text": _text(rng), "source": "cdc"}]
    index = tmp_path / "index"
    _run(_write(tmp_path / "a", a), tmp_path / "out-a", write_index=str(index))
    second = _run(_write(tmp_path / "b", b), tmp_path / "out-b", against=str(index))
    rejected = _rejected(tmp_path / "out-b")
    assert {i: d for i, (_, _, d) in rejected.items()} == {
        "b:copy0": "near-duplicate of a:0 (indexed)",
        "b:copy1": "near-duplicate of a:0 (indexed)",
    }
    assert second["counts"]["kept"] == 1


def test_rerunning_an_output_replaces_its_generation(tmp_path: Path):
    """A changed batch run again into the same output replaces what that output added to the index."""
    rng = np.random.default_rng(9)
    rows = [{"id": f"a:{n}", "text": _text(rng), "source": "who"} for n in range(4)]
    index = tmp_path / "index"
    _run(_write(tmp_path / "a", rows), tmp_path / "out-a", write_index=str(index))
    rows += [{"id": "a:late", "text": _text(rng), "source": "who"}]
    _run(_write(tmp_path / "a", rows), tmp_path / "out-a", write_index=str(index))
    listing = json.loads((index / "index.json").read_text())
    assert [g["documents"] for g in listing["generations"]] == [5]
    assert len(list((index / "gens").iterdir())) == 1
