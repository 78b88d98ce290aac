"""Operator mistakes and hostile data through the real `curate` command (issue 19): nothing outside a stage's
folder is touched, nothing hangs, no document is lost without a row, no traceback reaches the user."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from curate.cli import app
from curate.io import write_parquet
from curate.schema import records_table

from ..conftest import REPO, small_disk

pytestmark = pytest.mark.timeout(120)  # none of these may hang: each is bounded well below the suite's limit
runner = CliRunner()
SOURCES = REPO / "sources.yaml"
TEXT = "Offer a statin to adults with a ten-year cardiovascular risk of ten percent or more."


def _curate(*args: str, cwd: Path | None = None):
    """Run the command in this process (sharing the test session's Ray where it starts one)."""
    if cwd is None:
        return runner.invoke(app, list(args))
    here = Path.cwd()
    os.chdir(cwd)
    try:
        return runner.invoke(app, list(args))
    finally:
        os.chdir(here)


def _said(result, text: str) -> bool:
    return text in " ".join(result.output.split())


def _tree(folder: Path) -> dict[str, str]:
    """Every file under folder with the SHA-256 of its bytes: what 'nothing was touched' compares."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _shards(folder: Path, n: int = 2) -> Path:
    for s in range(n):
        rows = [
            {"id": f"t:{s}-{i}", "text": f"{TEXT} Case {s}-{i}.", "source": "demo-guidelines"}
            for i in range(3)
        ]
        write_parquet(records_table(rows), folder / f"part-{s}.parquet")
    return folder


def _pipeline(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "p.yaml"
    path.write_text(f"sources: {SOURCES}\n{body}")
    return path


# ------------------------------------------------------------------------------------ names and options


@pytest.mark.parametrize("name", ["..", "../x", "/tmp/elsewhere", '""', "./lang", "'[/b]'", "a/b", ".hidden"])
def test_a_stage_name_that_is_not_a_plain_name_is_refused_before_any_work(tmp_path: Path, name: str):
    home = tmp_path / "home"
    _shards(home / "src")
    (home / "keep.parquet").write_bytes(b"someone else's file")
    yaml = _pipeline(home, f"stages:\n  - {{step: filter, name: {name}, inputs: [src]}}\n")
    before = _tree(tmp_path)
    result = _curate("run", str(yaml), "--workdir", str(home / "work"))
    assert result.exit_code == 2, result.output
    assert _said(result, "is not a plain name") and "Traceback" not in result.output
    assert _tree(tmp_path) == before and not (home / "work").exists()


ALIAS_BOMB = "".join(
    f"{a}: &{a} [{', '.join([f'*{b}'] * 9)}]\n" for b, a in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("  - {step: html, inputs: [src], batch_size: -5}\n", "option 'batch_size' must be at least 1"),
        ("  - {step: html, inputs: [src], batch_size: 0}\n", "option 'batch_size' must be at least 1"),
        (
            "  - {step: shard, inputs: [src], row_group_rows: 0}\n",
            "option 'row_group_rows' must be at least 1",
        ),
        ("  - {step: near_dedup, inputs: [src], num_perm: 0}\n", "option 'num_perm' must be at least 1"),
        ("  - {step: near_dedup, inputs: [src], ngram: 0}\n", "option 'ngram' must be at least 1"),
        ("  - {step: filter, inputs: [src], threshold: abc}\n", "option 'threshold' must be a number"),
        ("  - {step: filter, inputs: [src], threshold: 7}\n", "must be a fraction between 0 and 1"),
        ("  - {step: pdf, inputs: [src], isolate: maybe}\n", "option 'isolate' must be true or false"),
        ("  - {step: filter, inputs: [src], keep: *i}\n", "expands to more than 100,000 values"),
        ("  - {step: filter, name: lang, inputs: [src]}\n  - {step: filter, name: ./lang}\n", "'./lang'"),
    ],
)
def test_bad_option_values_exit_2_before_any_work(tmp_path: Path, body: str, message: str):
    _shards(tmp_path / "src")
    bomb = ALIAS_BOMB.replace("b: &b", "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\nb: &b")
    yaml = _pipeline(tmp_path, (bomb if "*i" in body else "") + f"stages:\n{body}")
    started = time.monotonic()
    result = _curate("run", str(yaml), "--workdir", str(tmp_path / "work"))
    assert result.exit_code == 2, result.output
    assert _said(result, message), result.output
    assert "Traceback" not in result.output and not (tmp_path / "work").exists()
    assert time.monotonic() - started < 30  # the alias bomb is refused, not expanded


def test_a_pipeline_name_that_would_leave_work_is_refused(tmp_path: Path):
    _shards(tmp_path / "src")
    yaml = _pipeline(tmp_path, "name: ../../etc\nstages:\n  - {step: filter, inputs: [src]}\n")
    result = _curate("run", str(yaml), cwd=tmp_path)  # no --workdir: it would be work/<name>
    assert result.exit_code == 2 and _said(result, "pipeline name '../../etc' is not a plain name")


def test_a_work_directory_inside_an_input_folder_is_refused(tmp_path: Path):
    data = _shards(tmp_path / "data")
    yaml = _pipeline(tmp_path, "stages:\n  - {step: filter, name: language, inputs: [data]}\n")
    before = _tree(tmp_path)
    result = _curate("run", str(yaml), "--workdir", str(data / "work"))
    assert result.exit_code == 2 and _said(result, "overlap; put the work directory outside every input")
    assert _tree(tmp_path) == before


# ------------------------------------------------------------------------------------ --out and inputs


def test_out_equal_to_the_input_folder_is_refused_and_deletes_nothing(tmp_path: Path):
    data = _shards(tmp_path / "d")
    before = _tree(tmp_path)
    for out in (data, data / "inside"):
        result = _curate("clean", str(data), "--out", str(out), "--sources", str(SOURCES))
        assert result.exit_code == 2, result.output
        assert _said(result, "overlaps its input") and "Traceback" not in result.output
    assert _tree(tmp_path) == before


def test_out_holding_parquet_curate_did_not_write_is_refused(tmp_path: Path):
    src = _shards(tmp_path / "src")
    out = tmp_path / "out"
    (out / "rejected").mkdir(parents=True)
    write_parquet(
        records_table([{"id": "mine:1", "text": "my own data", "source": "me"}]), out / "mine.parquet"
    )
    before = _tree(tmp_path)
    result = _curate("clean", str(src), "--out", str(out), "--sources", str(SOURCES))
    assert result.exit_code == 2
    assert _said(result, "holds Parquet files that curate did not write here (mine.parquet)")
    assert _tree(tmp_path) == before


def test_a_rerun_with_new_parameters_deletes_only_what_curate_wrote(ray_session, tmp_path: Path):
    src = _shards(tmp_path / "src")
    out = tmp_path / "out"
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "todo.txt").write_text("the operator's notes")
    (out / "README.md").write_text("what this folder is")
    (out / "rejected").mkdir()
    (out / "rejected" / "why.txt").write_text("kept too")
    for threshold in ("0.5", "0.9"):
        result = _curate("filter", str(src), "--out", str(out), "--threshold", threshold)
        assert result.exit_code == 0, result.output
    assert (out / "notes" / "todo.txt").read_text() == "the operator's notes"
    assert (out / "README.md").exists() and (out / "rejected" / "why.txt").exists()
    assert json.loads((out / "manifest.json").read_text())["params"]["threshold"] == 0.9


# ------------------------------------------------------------------------------------ bad values are rows


def _bad_utf8(values: list[bytes]) -> pa.Array:
    raw = pa.array(values, pa.binary())
    return pa.Array.from_buffers(pa.string(), len(values), raw.buffers())


def _hostile_inputs(folder: Path) -> dict[str, str]:
    """Shards with one bad value each; returns id -> expected drop detail."""
    good = {"id": "t:good", "text": TEXT, "source": "demo-guidelines"}
    write_parquet(records_table([good]), folder / "good.parquet")
    for column in ("id", "text", "source"):
        rows = [{**good, "id": f"t:null-{column}-ok"}, {**good, "id": f"t:null-{column}", column: None}]
        pq.write_table(pa.Table.from_pylist(rows), folder / f"null-{column}.parquet")
    table = pa.table({"id": ["t:utf8", "t:utf8-ok"], "text": _bad_utf8([b"caf\xe9 au lait", TEXT.encode()])})
    pq.write_table(table.append_column("source", pa.array(["demo-guidelines"] * 2)), folder / "utf8.parquet")
    pq.write_table(pa.table({"id": [7], "text": [TEXT], "source": ["x"]}), folder / "int-id.parquet")
    (folder / "folder.parquet").mkdir()  # a folder with a shard's name is not a shard
    return {
        "t:null-text": "text is null",
        "t:null-source": "source is null",
        "t:utf8": "text is not valid UTF-8",
        "7": "id is int64, not a string",
    }


def test_null_non_text_and_non_utf8_values_are_rejected_rows_not_stage_failures(ray_session, tmp_path: Path):
    src = tmp_path / "src"
    expected = _hostile_inputs(src)
    out = tmp_path / "clean"
    result = _curate("clean", str(src), "--out", str(out), "--sources", str(SOURCES))
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"in": 10, "kept": 5, "rejected": 5, "errored": 0}
    assert manifest["drop_reasons"] == {"record_invalid": 5}
    rejected = pq.ParquetDataset(sorted(str(p) for p in (out / "rejected").glob("*.parquet"))).read()
    details = dict(
        zip(rejected.column("id").to_pylist(), rejected.column("drop_detail").to_pylist(), strict=True)
    )
    null_id = [i for i in details if i.startswith("invalid:") and i.endswith("null-id.parquet#1")]
    assert len(null_id) == 1 and details.pop(null_id[0]) == "id is null"
    assert details == expected
    by_id = {r["id"]: r for r in rejected.to_pylist()}
    assert by_id["t:utf8"]["text"] == "caf\ufffd au lait"  # kept to be read, invalid bytes shown as U+FFFD
    # Everything downstream reads the outputs: shard, verify, inspect.
    assert _curate("shard", str(out), "--out", str(tmp_path / "shard")).exit_code == 0
    assert _curate("verify", str(out)).exit_code == 0
    shown = _curate("inspect", str(out), "--rejected", "--sample", "10")
    assert shown.exit_code == 0 and "caf\ufffd au lait" in shown.output


def test_the_shard_stage_rejects_non_utf8_text_and_names_a_truncated_input(ray_session, tmp_path: Path):
    src = tmp_path / "src"
    table = pa.table(
        {"id": ["t:bad", "t:ok"], "text": _bad_utf8([b"\xff\xfe", TEXT.encode()]), "source": ["x"] * 2}
    )
    src.mkdir()
    pq.write_table(table, src / "a.parquet")
    write_parquet(records_table([{"id": "t:c", "text": TEXT, "source": "x"}]), src / "c.parquet")
    (src / "b.parquet").write_bytes((src / "c.parquet").read_bytes()[:100])  # truncated
    out = tmp_path / "shard"
    result = _curate("shard", str(src), "--out", str(out))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert _said(result, "b.parquet")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"in": 4, "kept": 2, "rejected": 1, "errored": 1}
    assert [f["inputs"] for f in manifest["failed_tasks"]] == [[str(src / "b.parquet")]]
    kept = pq.ParquetDataset(sorted(str(p) for p in out.glob("*.parquet"))).read()
    assert sorted(kept.column("id").to_pylist()) == ["t:c", "t:ok"]
    kept.validate(full=True)  # valid UTF-8: datasets and inspect can read every row


def test_derived_columns_are_replaced_not_duplicated(ray_session, tmp_path: Path):
    src = tmp_path / "src"
    texts = [
        TEXT,
        "Start antibiotics within one hour when sepsis is suspected.",
        "Measure blood pressure twice.",
    ]
    rows = [{"id": f"t:{i}", "text": t, "source": "demo-guidelines"} for i, t in enumerate(texts)]
    table = records_table(rows).append_column("lang", pa.array([1, 2, 3]))  # the input has its own `lang`
    write_parquet(table, src / "a.parquet")
    yaml = _pipeline(
        tmp_path,
        "stages:\n  - {step: filter, name: first, inputs: [src]}\n  - {step: filter, name: second}\n"
        "  - {step: dedup, name: dedup}\n  - {step: near_dedup, name: near}\n",
    )
    result = _curate("run", str(yaml), "--workdir", str(tmp_path / "work"))
    assert result.exit_code == 0, result.output
    for stage in ("first", "second", "dedup", "near"):
        names = pq.read_schema(tmp_path / "work" / stage / "a.parquet").names
        assert len(names) == len(set(names)), names
    final = pq.read_table(tmp_path / "work" / "near" / "a.parquet")
    assert final.num_rows == 3 and set(final.column("lang").to_pylist()) == {"en"}


# ------------------------------------------------------------------------------------ one writer at a time

HOLD = """
import sys, time
from pathlib import Path
from curate.storage import folder_lock
with folder_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_second_run_on_the_same_work_directory_is_refused_until_the_first_ends(ray_session, tmp_path: Path):
    _shards(tmp_path / "src")
    yaml = _pipeline(tmp_path, "stages:\n  - {step: filter, name: language, inputs: [src]}\n")
    work = tmp_path / "work"
    work.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(work)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        busy = _curate("run", str(yaml), "--workdir", str(work))
        assert busy.exit_code == 2 and "Traceback" not in busy.output
        assert _said(busy, f"is in use by another curate process (pid {holder.pid} on host")
        assert not (work / "language").exists()  # it did nothing
        # A single-stage command on a stage folder of that work directory waits its turn too.
        single = _curate("filter", str(tmp_path / "src"), "--out", str(work / "language"))
        assert single.exit_code == 2 and _said(single, f"pid {holder.pid}")
    finally:
        holder.send_signal(signal.SIGKILL)  # killed, not released: the system drops its lock
        holder.wait(timeout=30)
    result = _curate("run", str(yaml), "--workdir", str(work))
    assert result.exit_code == 0, result.output


# ------------------------------------------------------------------------------------ the terminal

ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b]52;c;Y3VybCBldmlsLnNo\x07\x9b31m\x1b]8;;http://evil/\x1b\\link"


def test_inspect_and_stats_never_send_control_sequences_from_data(tmp_path: Path):
    row = {"id": "t:1", "text": f"Hello {ESCAPES} world", "source": f"demo{ESCAPES}", "title": f"T{ESCAPES}"}
    write_parquet(records_table([row]), tmp_path / "stage" / "a.parquet")
    for args in (["inspect", "--no-pager"], ["inspect", "--json"], ["stats"], ["inspect", "--source", "x"]):
        result = _curate(*args[:1], str(tmp_path / "stage"), *args[1:])
        assert result.exit_code in (0, 1), result.output  # 1: --source x matches nothing (a message)
        assert "\x1b" not in result.output and "\x9b" not in result.output and "\x07" not in result.output
        assert "owned" in result.output  # shown, as text
    shown = _curate("inspect", str(tmp_path / "stage"), "--no-pager")
    assert "\\x1b]0;owned\\x07" in shown.output  # visibly escaped
    assert json.loads(_curate("inspect", str(tmp_path / "stage"), "--json").output)["text"] == row["text"]


# ------------------------------------------------------------------------------------ verify stays inside


def test_verify_never_leaves_the_folder_nor_opens_a_fifo_and_reports_malformed_manifests(tmp_path: Path):
    work = tmp_path / "work"
    entry = {"rows": 1, "bytes": 1, "sha256": "0" * 64}
    manifest = {
        "counts": {"in": 1, "kept": 1, "rejected": 0, "errored": 0},
        "rejected_outputs": [],
        "status": "complete",
    }
    stages = {
        "zero": [{**entry, "path": "../../../../../../../../dev/zero"}],
        "fifo": [{**entry, "path": "queue.parquet"}],
        "link": [{**entry, "path": "zero.parquet"}],
        "nokey": [{"path": "a.parquet"}],
        "notalist": "outputs",
    }
    for name, outputs in stages.items():
        (work / name).mkdir(parents=True)
        (work / name / "manifest.json").write_text(json.dumps({**manifest, "outputs": outputs}))
    os.mkfifo(work / "fifo" / "queue.parquet")
    os.symlink("/dev/zero", work / "link" / "zero.parquet")
    (work / "pipeline.json").write_text(json.dumps({"stages": list(stages)}))
    command = [sys.executable, "-m", "curate", "verify", str(work)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
    output = " ".join(result.stdout.split())
    assert result.returncode == 1 and "Traceback" not in result.stderr + result.stdout, result.stderr
    assert "zero: manifest entry '../../../../../../../../dev/zero' points outside the stage folder" in output
    assert "fifo: queue.parquet is not a regular file" in output
    assert "link: manifest entry 'zero.parquet' points outside the stage folder" in output
    assert "nokey: manifest.json is unreadable or malformed (an output entry lacks 'bytes'" in output
    assert "notalist: manifest.json is unreadable or malformed" in output
    (work / "pipeline.json").write_text(json.dumps({"stages": ["../.."]}))
    escape = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert escape.returncode == 2 and "names stage folder '../..' outside" in " ".join(escape.stderr.split())


# ------------------------------------------------------------------------------------ JSONL for mix


def test_one_bad_jsonl_line_is_one_rejected_row_and_the_file_keeps_its_documents(ray_session, tmp_path: Path):
    lines = [json.dumps({"id": f"r{i}", "text": f"{TEXT} Replay {i}.", "source": "replay"}) for i in range(4)]
    lines.insert(1, '{"id": "lone", "text": "half a pair \\ud800 here", "source": "replay"}')
    lines.insert(3, '{"text": ' + "[" * 100_000 + "]" * 100_000 + "}")  # deeper than Python's stack
    lines.insert(5, '{"id": "cut", "text": "no end')
    lines.insert(6, '["not", "an", "object"]')
    (tmp_path / "replay.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "mix"
    result = _curate(
        "mix", "--out", str(out), "--component", f"replay={tmp_path / 'replay.jsonl'}", "--share", "replay=1"
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"in": 8, "kept": 5, "rejected": 3, "errored": 0}
    kept = pq.ParquetDataset(sorted(str(p) for p in out.glob("*.parquet"))).read()
    assert sorted(kept.column("id").to_pylist()) == [
        "replay:lone",
        "replay:r0",
        "replay:r1",
        "replay:r2",
        "replay:r3",
    ]
    assert "half a pair \ufffd here" in kept.column("text").to_pylist()
    rejected = pq.read_table(next((out / "rejected").glob("*.parquet"))).to_pylist()
    assert sorted((r["drop_reason"], r["id"].rsplit(":", 1)[1]) for r in rejected) == [
        ("jsonl_broken", "4"),
        ("jsonl_broken", "6"),
        ("jsonl_no_text", "7"),
    ]
    assert {r["drop_stage"] for r in rejected} == {"mix"}


# ------------------------------------------------------------------------------------ a full disk


def test_a_full_disk_in_a_global_pass_names_the_folder_and_leaves_no_scratch(ray_session, tmp_path: Path):
    with small_disk(tmp_path / "small", "400k", "the full-disk case") as small:
        words = [hashlib.sha256(str(i).encode()).hexdigest()[:7] for i in range(4000)]
        for s in range(8):  # signatures and band files of these do not fit in 400 KB
            texts = [" ".join(words[(s * 200 + i + k * 13) % 4000] for k in range(300)) for i in range(200)]
            rows = [{"id": f"t:{s}-{i}", "text": t, "source": "x"} for i, t in enumerate(texts)]
            write_parquet(records_table(rows), tmp_path / "src" / f"p{s}.parquet")
        out = small / "near"
        result = _curate("dedup", str(tmp_path / "src"), "--near", "--out", str(out))
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert _said(result, f"no space left while writing {out / '.scratch'}: free some space there")
        time.sleep(1)  # a task still running would write on after the message
        assert not (out / ".scratch").exists() and not list(out.glob("*.parquet"))
