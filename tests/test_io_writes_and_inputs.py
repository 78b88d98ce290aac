"""Writes are atomic (a failed or killed write leaves no file under its final name, nor a temporary one),
inputs are the *.parquet files of a folder, and a manifest's checksum covers the whole file."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from curate.cli import app
from curate.dedup.exact import ExactDedup
from curate.executors import LocalExecutor
from curate.filter.language import LanguageFilter
from curate.io import write_bytes, write_parquet
from curate.parse.stages import HtmlStage
from curate.runner import run_stage
from curate.schema import records_table
from curate.stage import Input
from curate.verify import verify

from .conftest import REPO

TEXT = "Offer a statin to adults with a ten-year cardiovascular risk of ten percent or more."

FAILS_TO_WRITE = """
import os, resource, signal, sys
import pyarrow as pa
from curate.io import write_bytes, write_parquet
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))
blob = os.urandom(3_000_000)
for name, write in (("t.parquet", lambda p: write_parquet(pa.table({"b": [blob]}), p)),
                    ("t.json", lambda p: write_bytes(blob, p))):
    try:
        write(os.path.join(sys.argv[1], name))
    except OSError as exc:
        print(name, "failed, too large:", "File too large" in str(exc), flush=True)
"""


def test_a_write_that_fails_leaves_no_file_behind(tmp_path: Path):
    """A write that fails (here: past the file-size limit) leaves no partial file and no temporary one."""
    folder = tmp_path / "out"
    folder.mkdir()
    run = subprocess.run(
        [sys.executable, "-c", FAILS_TO_WRITE, str(folder)], cwd=REPO, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("too large: True") == 2, run.stdout
    assert sorted(p.name for p in folder.iterdir()) == []


def test_a_write_whose_rename_fails_leaves_no_temporary_file(tmp_path: Path):
    """The final name is taken by a folder (an operator's): the write fails there, after the temporary file
    was complete, and that file goes too."""
    table = records_table([{"id": "t:1", "text": TEXT, "source": "x"}])
    for name, write in (
        ("t.parquet", lambda p: write_parquet(table, p)),
        ("t.json", lambda p: write_bytes(b"{}", p)),
    ):
        (tmp_path / name).mkdir()
        with pytest.raises(IsADirectoryError):
            write(tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.json", "t.parquet"]
    assert [list((tmp_path / name).iterdir()) for name in ("t.json", "t.parquet")] == [[], []]


KILLABLE = """
import os, sys
from curate.io import write_bytes
blob = os.urandom(30_000_000)
print(len(blob), flush=True)
for n in range(1000):  # one name rewritten: a file is always there, and at most one temporary one
    write_bytes(blob, f"{sys.argv[1]}/manifest.json")
"""


def test_a_json_write_killed_midway_never_leaves_a_file_under_its_final_name(tmp_path: Path):
    for attempt in range(5):
        folder = tmp_path / f"try-{attempt}"
        folder.mkdir()
        writer = subprocess.Popen(
            [sys.executable, "-c", KILLABLE, str(folder)], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        size = int(writer.stdout.readline())
        time.sleep(0.3 + 0.1 * attempt)
        assert writer.poll() is None, "the writer finished before it could be killed"
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        for f in folder.glob("*.json"):
            assert f.stat().st_size == size, f"{f.name} is a partial write"
        if any(folder.glob(".*.tmp-*")):
            return  # the kill hit a write: its partial file has a temporary name
    raise AssertionError("no kill landed inside a write in 5 attempts")


def test_writers_of_one_path_at_once_each_leave_a_whole_file(tmp_path: Path):
    """Two writers of the same file (a retried task while its first attempt still runs): whichever wins,
    the file is one of them, whole, and neither fails."""
    path = tmp_path / "shard.parquet"
    tables = [pa.table({"n": pa.array([i] * 300_000, pa.int64())}) for i in range(2)]
    errors: list[BaseException] = []

    def write(i: int) -> None:
        for _ in range(15):
            try:
                write_parquet(tables[i], path)
                write_bytes(bytes([i]) * 2_000_000, tmp_path / "side.bin")
            except Exception as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert pq.read_table(path) in tables
    assert (tmp_path / "side.bin").read_bytes() in (b"\0" * 2_000_000, b"\1" * 2_000_000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard.parquet", "side.bin"]


def test_a_folder_named_like_a_shard_is_not_read_as_one(tmp_path: Path):
    src = tmp_path / "src"
    write_parquet(records_table([{"id": "t:1", "text": TEXT, "source": "x"}]), src / "part-0.parquet")
    (src / "notes.parquet").mkdir()
    (src / "notes.parquet" / "readme.txt").write_text("not a shard")
    manifest = run_stage(
        LanguageFilter(name="language"), [Input(str(src))], tmp_path / "out", LocalExecutor()
    )
    assert manifest["status"] == "complete" and manifest["tasks"]["total"] == 1
    assert manifest["counts"] == {"in": 1, "kept": 1, "rejected": 0, "errored": 0}


def test_an_input_folder_whose_name_is_not_utf8_is_read_and_named_in_the_manifest(tmp_path: Path):
    """Linux file names are bytes: a folder named in Latin-1 (caf\\xe9) is read, and the manifest names it."""
    src = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9"))
    src.mkdir()
    shutil.copy(REPO / "tests" / "scrape" / "site" / "example.test" / "articles" / "asthma.html", src)
    stage = HtmlStage(name="html", source="local-html", licenses={"local-html": None})
    manifest = run_stage(stage, [Input(str(src))], tmp_path / "out", LocalExecutor())
    assert manifest["counts"] == {"in": 1, "kept": 1, "rejected": 0, "errored": 0}
    written = json.loads((tmp_path / "out" / "manifest.json").read_text(encoding="utf-8"))
    assert [i["path"] for i in written["inputs"]] == [str(src)]
    assert verify(tmp_path / "out")[1] == []


def test_an_input_that_does_not_exist_is_a_usage_error(tmp_path: Path):
    result = CliRunner().invoke(app, ["filter", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "input not found" in result.output and "nowhere" in result.output
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_a_byte_flipped_past_the_first_mebibyte_of_an_output_is_found(tmp_path: Path):
    """The manifest's SHA-256 covers the whole file, not its first chunk: verify reports a flip near the end
    of a 2 MB output, and a rerun recomputes it."""
    rng = random.Random(5)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = lambda: " ".join("".join(rng.choices(letters, k=7)) for _ in range(6000))  # noqa: E731
    rows = [{"id": f"big:{i}", "text": words(), "source": "x"} for i in range(60)]
    src, out = tmp_path / "src", tmp_path / "out"
    write_parquet(records_table(rows), src / "part-0.parquet")
    run_stage(ExactDedup(name="dedup"), [Input(str(src))], out, LocalExecutor())
    kept = out / "part-0.parquet"
    intact = kept.read_bytes()
    meta = pq.ParquetFile(kept).metadata
    chunk = meta.row_group(0).column(meta.schema.to_arrow_schema().get_field_index("text"))
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    flip = start + chunk.total_compressed_size - 3
    assert flip > 1 << 20 and len(intact) > flip
    data = bytearray(intact)
    data[flip] ^= 0x01
    kept.write_bytes(bytes(data))
    assert verify(out)[1] == [f"{out.name}: part-0.parquet checksum differs from the manifest (corrupted)"]
    again = run_stage(ExactDedup(name="dedup"), [Input(str(src))], out, LocalExecutor())
    assert again["tasks"]["run"] == 1 and kept.read_bytes() == intact
