"""The tokenize step: Megatron-LM MMap indexed datasets that round-trip, match Megatron's own files, and count
the tokens shard and mix count."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from curate.cli import app
from curate.errors import ConfigError
from curate.executors import LocalExecutor
from curate.io import write_parquet
from curate.runner import run_stage
from curate.schema import records_table
from curate.shard import ShardStage
from curate.stage import Input
from curate.steps import make_stage
from curate.tokens import cached_tokenizer
from curate.train import megatron
from curate.train.tokenize import TokenizeStage
from tests.conftest import REPO
from tests.fixtures.tokenizer import build_tokenizer

runner = CliRunner()
GOLDEN = REPO / "tests" / "fixtures" / "megatron"
DTYPES = {
    1: np.uint8,
    2: np.int8,
    3: np.int16,
    4: np.int32,
    5: np.int64,
    6: np.float64,
    7: np.float32,
    8: np.uint16,
}
TEXTS = [
    "# Sepsis\n\nThink about sepsis in anyone with signs of infection.",
    "",  # an empty document is its end-of-document token alone
    "Offer amoxicillin 500 mg three times a day for 5 days; ünïcödé ✓ and emoji 🩺 round-trip too.",
    "Measure blood pressure in both arms at the first visit.\n\n- Record the lower reading.",
]


def read_documented(prefix: Path) -> dict:
    """A reader of the documented layout, independent of curate.train: header, then the three arrays."""
    idx = (prefix.with_suffix(".idx")).read_bytes()
    magic, version, code, sequences, documents = struct.unpack("<9sQBQQ", idx[:34])
    assert (magic, version) == (b"MMIDIDX\x00\x00", 1)
    at = 34
    sizes = np.frombuffer(idx, "<i4", sequences, at)
    pointers = np.frombuffer(idx, "<i8", sequences, at + 4 * sequences)
    doc_idx = np.frombuffer(idx, "<i8", documents, at + 12 * sequences)
    assert len(idx) == at + 12 * sequences + 8 * documents
    dtype = np.dtype(DTYPES[code])
    data = np.frombuffer(prefix.with_suffix(".bin").read_bytes(), dtype)
    assert data.nbytes == sizes.sum() * dtype.itemsize
    seqs = [data[p // dtype.itemsize : p // dtype.itemsize + n] for p, n in zip(pointers, sizes, strict=True)]
    return {"dtype": dtype, "sizes": sizes, "pointers": pointers, "documents": doc_idx, "sequences": seqs}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tokenizer(tmp_path_factory.mktemp("tokenizer") / "tokenizer.json")


def _shards(folder: Path, names: dict[str, list[str]]) -> Path:
    for name, texts in names.items():
        rows = [{"id": f"t:{name}:{n}", "text": t, "source": "t"} for n, t in enumerate(texts)]
        write_parquet(records_table(rows), folder / f"{name}.parquet")
    return folder


# ------------------------------------------------------------------------------------------ the format


@pytest.mark.parametrize("name", ["uint16-a", "uint16-b", "int32"])
def test_writer_is_byte_for_byte_megatrons_own_builder(name: str):
    """tests/fixtures/megatron/ holds Megatron-core's IndexedDatasetBuilder output (make_golden.py)."""
    golden = read_documented(GOLDEN / name)
    lengths = golden["sizes"]
    assert megatron.index_bytes(lengths, golden["dtype"]) == (GOLDEN / f"{name}.idx").read_bytes()
    tokens = np.concatenate(golden["sequences"]).astype(golden["dtype"])
    assert tokens.tobytes() == (GOLDEN / f"{name}.bin").read_bytes()
    index = megatron.read_index(GOLDEN / f"{name}.idx")
    assert [s.tolist() for s in megatron.read_tokens(GOLDEN / name, index)] == [
        s.tolist() for s in golden["sequences"]
    ]


def test_merge_is_byte_for_byte_megatrons_add_index(tmp_path: Path):
    made = megatron.merge([str(GOLDEN / "uint16-a"), str(GOLDEN / "uint16-b")], str(tmp_path / "m"))
    assert (tmp_path / "m.bin").read_bytes() == (GOLDEN / "merged.bin").read_bytes()
    assert (tmp_path / "m.idx").read_bytes() == (GOLDEN / "merged.idx").read_bytes()
    assert made["documents"] == 5 and made["tokens_with_eod"] == 15
    with pytest.raises(megatron.FormatError, match="different token dtypes"):
        megatron.merge([str(GOLDEN / "uint16-a"), str(GOLDEN / "int32")], str(tmp_path / "x"))
    (tmp_path / "bad.idx").write_bytes(b"MMIDIDX\x00\x00" + bytes(30))
    with pytest.raises(megatron.FormatError, match="not a Megatron MMap index"):
        megatron.read_index(tmp_path / "bad.idx")


def test_dtype_follows_the_vocabulary_as_megatron_does():
    assert megatron.token_dtype(32_000) == np.uint16 and megatron.token_dtype(65_499) == np.uint16
    assert megatron.token_dtype(65_500) == np.int32 and megatron.token_dtype(128_256) == np.int32


# ------------------------------------------------------------------------------------------ the step


def test_tokenized_shards_round_trip_and_count_what_shard_counts(tmp_path: Path, tokenizer: Path):
    """Decode every document back to its text; sizes and document indices match; the token counts equal
    those the shard stage reports with the same tokenizer (and mix's, which counts the same way)."""
    _shards(tmp_path / "in", {"a": TEXTS, "b": TEXTS[::-1] * 3})
    shard = ShardStage(name="shard", target_size="600B", tokenizer=str(tokenizer))
    shards = run_stage(shard, [Input(str(tmp_path / "in"))], tmp_path / "shard", LocalExecutor())
    assert len(shards["outputs"]) > 1
    stage = TokenizeStage(name="tokenize", tokenizer=str(tokenizer))
    manifest = run_stage(stage, [Input(str(tmp_path / "shard"))], tmp_path / "tok", LocalExecutor())
    report = json.loads((tmp_path / "tok" / "tokenize.json").read_text())
    assert report["tokens"] == shards["totals"]["tokens"] == manifest["tokenize"]["tokens"]
    assert report["eod_token"] == "</s>" and report["dtype"] == "uint16"
    decoder = cached_tokenizer(*[str(tokenizer), stage.tokenizer_sha256])
    all_rows, all_sequences = [], []
    for output in manifest["outputs"]:
        name = Path(output["path"]).stem
        rows = pq.read_table(tmp_path / "tok" / output["path"]).to_pylist()
        found = read_documented(tmp_path / "tok" / name)
        assert found["documents"].tolist() == list(range(len(rows) + 1))  # one sequence per document
        assert found["sizes"].tolist() == [r["token_count"] + 1 for r in rows]
        for row, seq in zip(rows, found["sequences"], strict=True):
            assert seq[-1] == report["eod_id"]
            assert decoder.decode(seq[:-1].tolist(), skip_special_tokens=False) == row["text"]
        all_rows += rows
        all_sequences += [s.tolist() for s in found["sequences"]]
    merged = read_documented(tmp_path / "tok" / "train")  # the shards in name order, as one dataset
    assert [s.tolist() for s in merged["sequences"]] == all_sequences
    assert merged["documents"].tolist() == list(range(len(all_rows) + 1))
    assert (
        report["datasets"]["train"]["documents"]
        == len(all_rows)
        == sum(r["token_count"] >= 0 for r in all_rows)
    )
    # A rerun changes nothing and does not merge again.
    before = (tmp_path / "tok" / "train.bin").stat().st_mtime_ns
    again = run_stage(stage, [Input(str(tmp_path / "shard"))], tmp_path / "tok", LocalExecutor())
    assert again["tasks"]["run"] == 0 and (tmp_path / "tok" / "train.bin").stat().st_mtime_ns == before


def test_validation_shards_make_their_own_dataset(tmp_path: Path, tokenizer: Path):
    _shards(tmp_path / "in", {"shard-00000": TEXTS, "validation-shard-00000": TEXTS[:2]})
    stage = TokenizeStage(name="tokenize", tokenizer=str(tokenizer))
    run_stage(stage, [Input(str(tmp_path / "in"))], tmp_path / "tok", LocalExecutor())
    assert len(read_documented(tmp_path / "tok" / "train")["sizes"]) == 4
    assert len(read_documented(tmp_path / "tok" / "validation")["sizes"]) == 2


@pytest.mark.optional("megatron-core needs torch, not in `make install`; `make megatron-check` runs it")
def test_megatron_core_reads_the_datasets(tmp_path: Path, tokenizer: Path):
    """Megatron-core's own IndexedDataset (needs torch: `make megatron-check` installs both)."""
    indexed = pytest.importorskip(
        "megatron.core.datasets.indexed_dataset",
        reason="megatron-core is not installed (needs torch): `make megatron-check` installs both, runs this",
    )
    _shards(tmp_path / "in", {"a": TEXTS, "b": TEXTS[1:]})
    stage = TokenizeStage(name="tokenize", tokenizer=str(tokenizer))
    run_stage(stage, [Input(str(tmp_path / "in"))], tmp_path / "tok", LocalExecutor())
    for prefix in ("a", "b", "train"):
        ours = read_documented(tmp_path / "tok" / prefix)
        theirs = indexed.IndexedDataset(str(tmp_path / "tok" / prefix))
        assert len(theirs) == len(ours["sizes"])
        assert theirs.document_indices.tolist() == ours["documents"].tolist()
        assert [theirs[i].tolist() for i in range(len(theirs))] == [s.tolist() for s in ours["sequences"]]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"tokenizer": None}, "tokenize needs a tokenizer"),
        ({"tokenizer": "missing.json"}, "tokenizer file not found"),
        ({"eod_token": "<nope>"}, "eod_token '<nope>' is not in the tokenizer's vocabulary"),
    ],
)
def test_options_are_checked_when_the_pipeline_loads(tokenizer: Path, params: dict, message: str):
    params = {"tokenizer": str(tokenizer), **params}
    with pytest.raises(ConfigError, match=message):
        make_stage("tokenize", "tokenize", params, {})


def test_tokenize_command(ray_session, tmp_path: Path, tokenizer: Path):
    _shards(tmp_path / "in", {"a": TEXTS})
    out = tmp_path / "tok"
    result = runner.invoke(
        app, ["tokenize", str(tmp_path / "in"), "-o", str(out), "--tokenizer", str(tokenizer)]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.idx")) == ["a.idx", "train.idx"]
    bad = runner.invoke(app, ["tokenize", str(tmp_path / "in"), "-o", str(out), "--tokenizer", "nope.json"])
    assert bad.exit_code == 2 and "tokenizer file not found" in bad.output
