"""`curate dedup --near` as a user runs it (a subprocess with its own local Ray): the index, and a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.schema import records_table
from tests.conftest import REPO

VOCABULARY = [f"w{i}" for i in range(5000)]


def _corpus(folder: Path, prefix: str, shards: int, per_shard: int, seed: int, copies_of=None) -> list[str]:
    """Shards of random texts, a fifth of them shortened copies (of each other, or of copies_of's texts)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    texts: list[str] = []
    for shard in range(shards):
        rows = []
        for n in range(per_shard):
            if rng.random() < 0.2 and (copies_of or texts):
                words = rng.choice(copies_of or texts).split()
                del words[int(rng.integers(len(words)))]
                text = " ".join(words)
            else:
                text = " ".join(VOCABULARY[i] for i in rng.integers(0, len(VOCABULARY), 120))
                texts.append(text)
            rows.append({"id": f"{prefix}:{shard}-{n}", "text": text, "source": "who"})
        pq.write_table(records_table(rows), folder / f"part-{shard}.parquet")
    return texts


SOURCES = """sources:
  who:
    title: WHO
    homepage: null
    allowed_domains: []
    content: html
    license: test
    redistributable: false
    priority: 10
"""


def _command(out: Path, *args: str) -> list[str]:
    """`curate dedup ... --near` with a sources.yaml of its own next to the output folder."""
    sources = out.parent / "sources.yaml"
    sources.write_text(SOURCES)
    return [sys.executable, "-m", "curate", "dedup", *args, "-o", str(out), "--near", "--num-cpus", "1"] + [
        "--sources",
        str(sources),
    ]


def _curate(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(_command(out, *args), cwd=REPO, capture_output=True, text=True, timeout=300)


def _table(folder: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in sorted(folder.glob("*.parquet"))])


def _outputs(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.parquet"))}


def _index_content(index: Path) -> dict[str, bytes]:
    """The index's files, named within their generation (generation folders are named by output folder)."""
    live = [g["folder"] for g in json.loads((index / "index.json").read_text())["generations"]]
    return {
        f"{n}/{p.relative_to(index / 'gens' / folder)}": p.read_bytes()
        for n, folder in enumerate(live)
        for p in sorted((index / "gens" / folder).rglob("*.parquet"))
    }


def test_cli_builds_queries_and_extends_an_index(tmp_path: Path):
    first = _corpus(tmp_path / "a", "a", 2, 100, seed=1)
    _corpus(tmp_path / "b", "b", 2, 100, seed=2, copies_of=first)
    index = tmp_path / "index"
    built = _curate(tmp_path / "out-a", str(tmp_path / "a"), "--write-index", str(index))
    assert built.returncode == 0, built.stderr
    survivors = _table(tmp_path / "out-a")
    texts = dict(zip(survivors.column("text").to_pylist(), survivors.column("id").to_pylist(), strict=True))
    args = ["--against", str(index), "--write-index", str(index)]
    queried = _curate(tmp_path / "out-b", str(tmp_path / "b"), *args)
    assert queried.returncode == 0, queried.stderr
    rejected = _table(tmp_path / "out-b" / "rejected")
    assert set(rejected.column("drop_reason").to_pylist()) == {"near_duplicate"}
    # Every copy of an A text is gone, citing the A survivor it was made from.
    b_rows = _table(tmp_path / "b")
    dropped = dict(
        zip(rejected.column("id").to_pylist(), rejected.column("dup_cluster").to_pylist(), strict=True)
    )
    copies = 0
    for doc_id, text in zip(b_rows.column("id").to_pylist(), b_rows.column("text").to_pylist(), strict=True):
        source = next((texts[t] for t in texts if len(t.split()) == 120 and _is_copy(text, t)), None)
        if source:
            copies += 1
            assert dropped[doc_id] == source
    assert copies > 10
    generations = json.loads((index / "index.json").read_text())["generations"]
    assert [g["documents"] for g in generations] == [survivors.num_rows, _table(tmp_path / "out-b").num_rows]
    wrong = _curate(tmp_path / "x", str(tmp_path / "b"), "--against", str(index), "--threshold", "0.7")
    assert wrong.returncode == 2 and "was built with" in wrong.stderr


def _is_copy(text: str, original: str) -> bool:
    """Whether text is original with one word deleted."""
    a, b = text.split(), original.split()
    return len(a) == len(b) - 1 and any(a == b[:i] + b[i + 1 :] for i in range(len(b)))


def test_kill_during_the_global_pass_then_rerun_gives_identical_output(tmp_path: Path):
    _corpus(tmp_path / "in", "d", 6, 1500, seed=3)
    reference = _curate(tmp_path / "ref", str(tmp_path / "in"), "--write-index", str(tmp_path / "ref-index"))
    assert reference.returncode == 0, reference.stderr
    out, index = tmp_path / "killed", tmp_path / "killed-index"
    command = _command(out, str(tmp_path / "in"), "--write-index", str(index))
    # A session of its own, so that the kill reaches the driver and the Ray processes it started, only those.
    driver = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 240
    while not (out / ".scratch" / "bands").exists() and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    in_prepare = (out / ".scratch" / "bands").exists() and driver.poll() is None
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=60)
    assert in_prepare, "the run finished before it could be killed in its global pass"
    assert not (out / "manifest.json").exists()
    rerun = _curate(out, str(tmp_path / "in"), "--write-index", str(index))
    assert rerun.returncode == 0, rerun.stderr
    assert _outputs(out) == _outputs(tmp_path / "ref") and len(_outputs(out)) == 12
    assert _index_content(index) == _index_content(tmp_path / "ref-index")
    assert not (out / ".scratch").exists() and not list(index.glob("pending/*"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["rejected"] > 1000 and manifest["counts"]["errored"] == 0
