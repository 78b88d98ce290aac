"""MinHash near-duplicate removal: signatures, LSH candidates, clusters, survivors, the stage end to end."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import datasketch
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.dedup.clusters import cluster_labels
from curate.dedup.exact import normalize_text
from curate.dedup.lsh import bucket_pairs
from curate.dedup.minhash import normalized_bytes, shingle_hashes, text_signatures, word_hashes
from curate.dedup.near import NearDedup
from curate.executors import LocalExecutor
from curate.runner import run_stage
from curate.schema import records_table
from curate.stage import Input
from tests.conftest import REPO
from tests.dedup.oracle import plain_jaccard, plain_ngrams, restyled, substituted

WEIRD = [
    "Ünïcödé ß STRASSE — “quoted” ½ ① x_y__z ٣٤ 中文字 e\u0301 \u00a0nb\u2003sp",
    "",
    "___ ...",
    "a\tb\n\nc",
    "\ud800 lone surrogate",
    "Hypertension:  ADULTS,\nover 80!",
    "ﬁbrosis… 10 µg İstanbul ＡＢＣ x² ẞ Å A\u030a \u1100\u1161 \u0f73 \u00b4 ǅ",
    "e\u0301\u0323 \u0301start",
]


def test_fast_normalisation_equals_exact_dedups(evaldata):
    pages = json.loads((evaldata / "html_scrapinghub_aeb" / "ground-truth.json").read_text(encoding="utf-8"))
    jats = [p.read_text(encoding="utf-8") for p in sorted(evaldata.glob("pmc_pdf_jats/**/fulltext.xml"))]
    texts = WEIRD + [v["articleBody"] for v in pages.values()] + jats
    for text in texts:
        assert normalized_bytes(text).decode("utf-8", "surrogatepass") == normalize_text(text)


def test_shingles_are_the_plain_word_5grams_and_signatures_equal_datasketch():
    texts = [
        "Offer a statin to adults with a 10-year cardiovascular risk of 10% or more.",
        "two words",
        "",
        # Repeated 5-grams within and across texts, case, width and punctuation the normaliser ignores.
        "a b c d e f a b c d e f g. A, B; C: D! E F G h",
        "Ａ B c D e F -- Offer a statin to ADULTS with",
    ]
    words, offsets = word_hashes(texts)
    shingles, shingle_offsets = shingle_hashes(words, offsets, 5)
    grams = [plain_ngrams(t) for t in texts]
    assert np.diff(shingle_offsets).tolist() == [len(g) for g in grams] == [11, 1, 0, 17, 8]
    # Two positions share a hash exactly when they hold the same word 5-gram (here and across texts).
    flat = [g for per_text in grams for g in per_text]
    same_hash = shingles[:, None] == shingles[None, :]
    assert (same_hash == np.array([[x == y for y in flat] for x in flat])).all()
    signatures, counts = text_signatures(texts, 5, 128, 7)
    assert counts.tolist() == [len(g) for g in grams]
    for i in range(len(texts)):
        reference = datasketch.MinHash(num_perm=128, seed=7, scheme="affine64", hashfunc=int)
        reference.update_batch(shingles[shingle_offsets[i] : shingle_offsets[i + 1]].tolist())
        assert np.array_equal(reference.hashvalues, signatures[i])
    assert (NearDedup(name="near").bands, NearDedup(name="near").rows) == (16, 8)


def test_signature_estimate_tracks_plain_jaccard():
    rng = np.random.default_rng(2)
    base = _words(rng, 400)
    pairs = [(base, substituted(rng, base, k, f"e{k}")) for k in (0, 8, 16, 30, 50, 79)]
    texts = [" ".join(w) for pair in pairs for w in pair]
    signatures, _ = text_signatures(texts, 5, 1024, 1)
    for n in range(len(pairs)):
        exact = plain_jaccard(texts[2 * n], texts[2 * n + 1])
        estimate = (signatures[2 * n] == signatures[2 * n + 1]).mean()
        # Standard error of a 1024-permutation estimate is at most 0.016: 4 of them is a clear failure.
        assert abs(estimate - exact) < 0.064, (exact, estimate)


def test_bucket_pairs_link_each_bucket_to_its_first_document():
    keys = np.array([5, 9, 5, 5, 7, 9], np.uint64)
    docs = np.array([40, 11, 30, 20, 1, 10], np.int64)
    assert sorted(map(tuple, bucket_pairs(keys, docs).tolist())) == [(10, 11), (20, 30), (20, 40)]
    nodes, labels = cluster_labels(np.array([[1, 2], [2, 3], [7, 8]]))
    assert nodes.tolist() == [1, 2, 3, 7, 8]
    assert labels[0] == labels[1] == labels[2] != labels[3] == labels[4]


# ---------------------------------------------------------------------------------------------- helpers


def _run(tmp_path: Path, shards: list[list[dict]], **params) -> tuple[pa.Table, pa.Table, dict]:
    """Run the stage in-process over shards of rows; kept rows, rejected rows, manifest."""
    folder = tmp_path / "in"
    folder.mkdir(parents=True, exist_ok=True)
    for n, rows in enumerate(shards):
        pq.write_table(records_table(rows), folder / f"part-{n:03d}.parquet")
    stage = NearDedup(name="near", **params)
    out = tmp_path / "out"
    manifest = run_stage(stage, [Input(str(folder))], out, LocalExecutor())
    kept = pa.concat_tables([pq.read_table(p) for p in sorted(out.glob("*.parquet"))])
    rejected_files = sorted((out / "rejected").glob("*.parquet"))
    rejected = pa.concat_tables([pq.read_table(p) for p in rejected_files]) if rejected_files else None
    return kept, rejected, manifest


def _rows(rejected: pa.Table | None) -> dict[str, str]:
    if rejected is None:
        return {}
    return dict(
        zip(rejected.column("id").to_pylist(), rejected.column("drop_detail").to_pylist(), strict=True)
    )


def _words(rng: np.random.Generator, n: int) -> list[str]:
    vocabulary = [f"w{i}" for i in range(5000)]
    return [vocabulary[i] for i in rng.integers(0, len(vocabulary), n)]


def _edit(rng: np.random.Generator, words: list[str], rate: float) -> list[str]:
    """Substitute, delete or insert words at the given rate."""
    out = []
    for w in words:
        r = rng.random()
        if r < rate / 3:
            out.append(f"new{rng.integers(1 << 30)}")
        elif r < 2 * rate / 3:
            continue
        elif r < rate:
            out.extend([w, f"ins{rng.integers(1 << 30)}"])
        else:
            out.append(w)
    return out


# ---------------------------------------------------------------------------------------------- the stage


def test_neardup_smoke_set_pairs_found(evaldata, tmp_path):
    data = evaldata / "neardup_minhash_articles" / "data"
    rows = []
    for line in (data / "articles_1000.train").read_text(encoding="utf-8").splitlines():
        key, _, text = line.partition(" ")
        rows.append({"id": key, "text": text, "source": "news"})
    truth = {tuple(sorted(line.split())) for line in (data / "articles_1000.truth").read_text().splitlines()}
    kept, rejected, manifest = _run(tmp_path, [rows[:500], rows[500:]])
    clusters: dict[str, list[str]] = {}
    for table in (kept, rejected):
        for doc_id, cluster in zip(
            table.column("id").to_pylist(), table.column("dup_cluster").to_pylist(), strict=True
        ):
            clusters.setdefault(cluster, []).append(doc_id)
    found = {tuple(sorted(p)) for m in clusters.values() for p in itertools.combinations(m, 2)}
    recall = len(found & truth) / len(truth)
    precision = len(found & truth) / len(found)
    print(f"smoke set: recall {recall:.3f} precision {precision:.3f} ({len(found)} pairs)")
    assert recall == 1.0 and precision == 1.0
    assert manifest["counts"] == {"in": 1000, "kept": 990, "rejected": 10, "errored": 0}
    assert set(rejected.column("drop_reason").to_pylist()) == {"near_duplicate"}


def test_planted_near_duplicates_by_edit_rate(tmp_path):
    rng = np.random.default_rng(3)
    rows, originals = [], {}
    for n in range(60):
        base = _words(rng, 300)
        rows.append({"id": f"base{n:02d}", "text": " ".join(base), "source": "s"})
        originals[f"base{n:02d}"] = base
    rates = [0.0, 0.005, 0.01, 0.05, 0.1, 0.3]
    for n, base in enumerate(originals.values()):
        rate = rates[n % len(rates)]
        rows.append({"id": f"copy{n:02d}", "text": " ".join(_edit(rng, base, rate)), "source": "s"})
    kept, rejected, _ = _run(tmp_path, [rows[::2], rows[1::2]])
    dropped = _rows(rejected)
    texts = {r["id"]: r["text"] for r in rows}
    for n in range(60):
        a, b = f"base{n:02d}", f"copy{n:02d}"
        similarity = plain_jaccard(texts[a], texts[b])
        is_duplicate = a in dropped or b in dropped
        # Exact verification makes the threshold sharp; LSH recall is near 1 only a little above it.
        if similarity >= 0.85:
            assert is_duplicate, (a, similarity)
        if similarity < 0.8:
            assert not is_duplicate, (a, similarity)
    assert all(detail.startswith("near-duplicate of ") for detail in dropped.values())
    assert kept.num_rows + len(dropped) == len(rows)


def _pairs_at_the_threshold(rng: np.random.Generator) -> tuple[list[dict], dict[str, tuple[str, str, float]]]:
    """Rows of three pairs each just above (0.82), at (0.80) and just below (0.78) a Jaccard of 0.8.

    The copy is restyled (case, width, punctuation), so normalisation must make its words equal.
    """
    rows, pairs = [], {}
    # (S - 5k) / (S + 5k) with S = words - 4 distinct 5-grams and k isolated substitutions.
    for kind, words, k in (("above", 206, 4), ("at", 184, 4), ("below", 206, 5)):
        for n in range(3):
            original = _words(rng, words)
            copy = restyled(substituted(rng, original, k, f"{kind}{n}"))
            a, b = f"{kind}{n}:a", f"{kind}{n}:b"
            rows += [
                {"id": a, "text": " ".join(original), "source": "s"},
                {"id": b, "text": copy, "source": "s"},
            ]
            pairs[kind + str(n)] = (a, b, plain_jaccard(rows[-2]["text"], copy))
    return rows, pairs


def test_exact_verification_decides_at_the_threshold(tmp_path):
    rows, pairs = _pairs_at_the_threshold(np.random.default_rng(13))
    for name, (_, _, similarity) in pairs.items():
        expected = {"above": 182 / 222, "at": 0.8, "below": 177 / 227}[name[:-1]]
        assert similarity == pytest.approx(expected, abs=1e-9), name
    # 32 bands of 4 rows: every pair above 0.7 is an LSH candidate (a miss below 1e-6), so the exact check
    # at the default threshold decides; without it even the pairs below 0.8 go.
    wide = {"bands": 32, "rows": 4}
    _, rejected, manifest = _run(tmp_path / "verified", [rows[::2], rows[1::2]], **wide)
    dropped = _rows(rejected)
    for name, (a, b, similarity) in pairs.items():
        if similarity >= 0.8:
            assert (a in dropped) != (b in dropped), (name, similarity)
            assert dropped.get(a) == f"near-duplicate of {b}" or dropped.get(b) == f"near-duplicate of {a}"
        else:
            assert a not in dropped and b not in dropped, (name, similarity)
    assert len(dropped) == 6 and manifest["counts"]["kept"] == len(rows) - 6
    _, unverified, _ = _run(tmp_path / "unverified", [rows], verify=False, **wide)
    assert len(_rows(unverified)) == 9


def test_survivor_by_priority_then_length_then_id(tmp_path):
    text = " ".join(f"word{i}" for i in range(60))
    rows = [
        {"id": "wiki:a", "text": text + " extra words here", "source": "wiki"},
        {"id": "who:b", "text": text, "source": "who"},
        {"id": "who:a", "text": text, "source": "who"},
        {"id": "cdc:z", "text": text + " more", "source": "cdc"},
    ]
    # A second cluster where priority and length tie: the smallest id survives, wherever it is.
    other = " ".join(f"other{i}" for i in range(60))
    rows += [{"id": f"who:{c}", "text": other, "source": "who"} for c in ("y", "x", "w2", "w1")]
    priority = {"who": 1, "cdc": 1, "wiki": 9}
    kept, rejected, _ = _run(tmp_path, [rows[:3], rows[3:6], rows[6:]], priority=priority)
    assert sorted(kept.column("id").to_pylist()) == ["cdc:z", "who:w1"]  # best priority, longest; smallest id
    expected = {i: "near-duplicate of cdc:z" for i in ("wiki:a", "who:b", "who:a")}
    expected |= {i: "near-duplicate of who:w1" for i in ("who:y", "who:x", "who:w2")}
    assert _rows(rejected) == expected
    assert set(rejected.column("dup_cluster").to_pylist()) == {"cdc:z", "who:w1"}


def test_within_source_keeps_copies_in_other_sources(tmp_path):
    text = " ".join(f"word{i}" for i in range(60))
    rows = [
        {"id": "a:1", "text": text, "source": "a"},
        {"id": "b:1", "text": text, "source": "b"},
        {"id": "b:2", "text": text + " today", "source": "b"},
    ]
    kept, rejected, _ = _run(tmp_path, [rows], within_source=True)
    assert sorted(kept.column("id").to_pylist()) == ["a:1", "b:2"]
    assert _rows(rejected) == {"b:1": "near-duplicate of b:2"}


def test_output_same_for_one_or_many_shards_and_reruns(tmp_path):
    rng = np.random.default_rng(11)
    rows = []
    for n in range(40):
        base = _words(rng, 120)
        rows.append({"id": f"d{n:02d}", "text": " ".join(base), "source": "s"})
        for c in range(n % 3):
            rows.append({"id": f"d{n:02d}c{c}", "text": " ".join(_edit(rng, base, 0.01)), "source": "s"})
    results = []
    for n, shards in enumerate([[rows], [rows[i::4] for i in range(4)], [rows[i::4] for i in range(4)]]):
        kept, rejected, _ = _run(tmp_path / str(n), shards)
        clusters = dict(
            zip(kept.column("id").to_pylist(), kept.column("dup_cluster").to_pylist(), strict=True)
        )
        results.append((clusters, _rows(rejected)))
    assert results[0] == results[1] == results[2]
    assert len(results[0][1]) > 10


def test_bad_input_is_kept_or_rejected_never_raised(tmp_path):
    huge = " ".join(f"token{i}" for i in range(300_000))
    rows = [
        {"id": "empty:1", "text": "", "source": "s"},
        {"id": "empty:2", "text": "", "source": "s"},
        {"id": "punct", "text": "!!! ... ???", "source": "s"},
        {"id": "one:1", "text": "Yes", "source": "s"},
        {"id": "one:2", "text": "yes!", "source": "s"},
        {"id": "huge:1", "text": huge, "source": "s"},
        {"id": "huge:2", "text": huge + " end", "source": "s"},
        {"id": "control", "text": "\x00\x01 \x1b[31m", "source": "s"},
    ]
    kept, rejected, manifest = _run(tmp_path, [rows[:4], rows[4:]])
    # Texts without words are never near-duplicates (exact dedup handles them); equal short ones are.
    assert _rows(rejected) == {"one:1": "near-duplicate of one:2", "huge:1": "near-duplicate of huge:2"}
    assert manifest["counts"]["in"] == len(rows) and manifest["counts"]["errored"] == 0
    # Not even as LSH candidates: without the exact check, wordless texts still never pair up.
    wordless = [r for r in rows if not r["id"].startswith("huge")]
    _, unverified, _ = _run(tmp_path / "unverified", [wordless], verify=False)
    assert _rows(unverified) == {"one:1": "near-duplicate of one:2"}


def test_rerun_after_a_lost_task_gives_identical_files(tmp_path):
    rng = np.random.default_rng(5)
    rows = []
    for n in range(30):
        base = _words(rng, 100)
        rows += [{"id": f"d{n}", "text": " ".join(base), "source": "s"}]
        rows += [{"id": f"d{n}c", "text": " ".join(_edit(rng, base, 0.01)), "source": "s"}]
    shards = [rows[i::3] for i in range(3)]
    _run(tmp_path, shards)
    out = tmp_path / "out"
    before = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.parquet"))}
    # As after a kill during removal: one task's outputs never written; the global pass runs again.
    (out / "part-001.parquet").unlink()
    (out / "rejected" / "part-001.parquet").unlink(missing_ok=True)
    _run(tmp_path, shards)
    assert {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.parquet"))} == before
    assert len(before) > 3 and not (out / ".scratch").exists()  # scratch removed after the pass


def test_pipeline_step_takes_priorities_from_sources_yaml():
    from curate.sources.registry import load_sources
    from curate.steps import make_stage

    sources = load_sources(REPO / "sources.yaml")
    stage = make_stage("near_dedup", "near", {"threshold": 0.7, "within_source": True}, sources)
    assert isinstance(stage, NearDedup) and stage.within_source
    assert stage.priority == {s.name: s.priority for s in sources.values()} and stage.priority
    assert stage.bands * stage.rows <= stage.num_perm and (stage.bands, stage.rows) != (16, 8)


@pytest.mark.parametrize("num_perm", [32, 128])
def test_optimal_bands_equal_datasketchs_optimiser(num_perm: int):
    from datasketch.lsh import _optimal_param

    from curate.dedup.lsh import optimal_bands

    for threshold in (0.3, 0.5, 0.7, 0.8, 0.9):
        for weights in ((0.5, 0.5), (0.05, 0.95)):
            ours = optimal_bands(threshold, num_perm, *weights)
            assert ours == _optimal_param(threshold, num_perm, *weights), (threshold, weights)
