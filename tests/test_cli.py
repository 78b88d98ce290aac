"""The command line a user meets: help everywhere, and errors that say what to do (no Ray needed)."""

from __future__ import annotations

import gzip
import json
import os
import pty
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from curate.cli import app
from curate.io import write_parquet
from curate.schema import records_table

from .conftest import GAP_SOURCES, REPO

runner = CliRunner()
COMMANDS = [
    [],
    ["run"],
    ["pdf"],
    ["html"],
    ["filter"],
    ["dedup"],
    ["shard"],
    ["stats"],
    ["sources"],
    ["sources", "list"],
    ["sources", "show"],
    ["sources", "check"],
    ["scrape"],
    ["mix"],
    ["inspect"],
    ["verify"],
    ["pmc"],
    ["pubmed"],
    ["clean"],
    ["quality"],
    ["decontaminate"],
    ["tokenize"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "curate")
def test_every_command_has_help(command: list[str]):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_sources_list_shows_every_source_as_json():
    result = runner.invoke(app, ["sources", "list", "--json", "--sources", str(REPO / "sources.yaml")])
    assert result.exit_code == 0
    rows = json.loads(result.output)
    assert {"nice", "who", "cdc", "wikidoc", "pubmed", "pmc"} <= {s["name"] for s in rows}
    # Meditron's 16 guideline sites and PubMed guidelines, each with a scraper; nothing else has one.
    assert sorted(s["name"] for s in rows if s["discovery"]) == sorted(GAP_SOURCES)


def test_sources_list_table_counts_the_scrapers():
    result = runner.invoke(
        app, ["sources", "list", "--sources", str(REPO / "sources.yaml")], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0
    assert "17 with a scraper" in result.output


def test_sources_show_unknown_source_is_a_clear_error():
    result = runner.invoke(app, ["sources", "show", "nicee", "--sources", str(REPO / "sources.yaml")])
    assert result.exit_code == 2
    assert "unknown source 'nicee'" in result.output


def test_run_missing_pipeline_file(tmp_path: Path):
    result = runner.invoke(app, ["run", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "pipeline file not found" in result.output


def test_run_malformed_pipeline_yaml_names_the_line(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages:\n  - step: html\n    inputs: [unclosed\n")
    result = runner.invoke(app, ["run", str(bad), "--sources", str(REPO / "sources.yaml")])
    assert result.exit_code == 2
    assert "bad.yaml:" in result.output and "invalid YAML" in result.output


def test_single_stage_with_unknown_source_fails_before_starting_ray(tmp_path: Path):
    result = runner.invoke(
        app,
        [
            "html",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            "--source",
            "nowhere",
            "--sources",
            str(REPO / "sources.yaml"),
        ],
    )
    assert result.exit_code == 2
    assert "unknown source 'nowhere'" in result.output


def test_stats_on_a_folder_that_is_not_a_stage(tmp_path: Path):
    result = runner.invoke(app, ["stats", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a curate stage or work directory" in result.output


# -------------------------------------------------------------------------- guard rails, as a user meets them

DEMO_HTML = REPO / "pipelines" / "demo" / "html" / "demo-guidelines"
DEMO_PDF = REPO / "pipelines" / "demo" / "pdf"
WORDS = ["fever", "cough", "sepsis", "lactate", "fluids", "antibiotics", "oxygen", "review", "dose", "adults"]


def _curate(
    *args: str, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess:
    """The `curate` command in a process of its own, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "curate", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def _ids(stage: Path) -> list[str]:
    """Every id a stage wrote, kept and rejected."""
    files = sorted(stage.glob("*.parquet")) + sorted(stage.glob("rejected/*.parquet"))
    return [i for f in files for i in pq.read_table(f, columns=["id"]).column("id").to_pylist()]


def _shards(folder: Path, shards: int, docs: int, seed: int = 0) -> Path:
    """Parquet shards of English-looking documents."""
    rng = random.Random(seed)
    for s in range(shards):
        rows = [
            {"id": f"t:{s}-{n}", "text": " ".join(rng.choices(WORDS, k=60)) + ".", "source": "t"}
            for n in range(docs)
        ]
        write_parquet(records_table(rows), folder / f"part-{s:03d}.parquet")
    return folder


def _filter_on_one_cpu(src: Path, out: Path) -> list[str]:
    """`curate filter` arguments for a run slow enough to watch (one worker)."""
    return ["filter", str(src), "--out", str(out), "--num-cpus", "1"]


def test_html_ids_keep_the_extensions_that_tell_files_apart(tmp_path: Path):
    page = (DEMO_HTML / "sepsis-recognition.html").read_bytes()
    pages = tmp_path / "pages"
    pages.mkdir()
    for name in ("a.html", "a.htm", "a.HTML"):
        (pages / name).write_bytes(page)
    (pages / "a.html.gz").write_bytes(gzip.compress(page))
    # The folder, and one of its files again: each file is read once.
    result = runner.invoke(app, ["html", str(pages), str(pages / "a.htm"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    ids = ["local-html:a", "local-html:a.HTML", "local-html:a.htm", "local-html:a.html.gz"]
    assert sorted(_ids(tmp_path / "o")) == ids
    again = runner.invoke(app, ["html", str(pages), "--out", str(tmp_path / "again")])
    assert again.exit_code == 0 and sorted(_ids(tmp_path / "again")) == ids  # stable across runs


def test_pdf_ids_name_the_input_folder_when_several_are_given(tmp_path: Path):
    for folder, pdf in (("a", "sepsis-review.pdf"), ("b", "asthma-guideline.pdf")):
        (tmp_path / folder).mkdir()
        shutil.copy(DEMO_PDF / pdf, tmp_path / folder / "paper.pdf")
    out = tmp_path / "o"
    result = runner.invoke(app, ["pdf", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(_ids(out)) == ["local-pdf:a/paper", "local-pdf:b/paper"]
    found = runner.invoke(app, ["inspect", str(out), "--id", "local-pdf:a/paper", "--json"])
    assert found.exit_code == 0 and len(found.output.splitlines()) == 1
    assert json.loads(found.output)["url"].endswith("/a/paper.pdf")
    one = runner.invoke(app, ["pdf", str(tmp_path / "a"), "--out", str(tmp_path / "one")])
    assert one.exit_code == 0 and _ids(tmp_path / "one") == ["local-pdf:paper"]  # one folder: no prefix


@pytest.mark.parametrize("holds", ["stage folders", "text files", "nothing"])
@pytest.mark.parametrize("command", ["filter", "shard", "clean"])
def test_a_folder_without_parquet_is_refused_before_any_work(tmp_path: Path, holds: str, command: str):
    folder = tmp_path / "in"
    folder.mkdir()
    if holds == "stage folders":
        _shards(folder / "language", 1, 3)
    elif holds == "text files":
        (folder / "notes.txt").write_text("not a shard")
    out = tmp_path / "out"
    result = runner.invoke(app, [command, str(folder), "--out", str(out)])
    assert result.exit_code == 2
    assert f"no *.parquet in {folder} (is it a stage directory?)" in result.output
    if holds == "stage folders":
        assert "it holds stage folders (language): pass one of them" in result.output
    assert not out.exists()  # nothing written, not even an empty --out
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_verify_does_not_call_a_stage_without_outputs_ok(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    write_parquet(records_table([]), empty / "part-0.parquet")  # a stage that kept nothing
    assert runner.invoke(app, ["shard", str(empty), "--out", str(tmp_path / "s")]).exit_code == 0
    result = runner.invoke(app, ["verify", str(tmp_path / "s")])
    assert result.exit_code == 1
    assert "s: the stage wrote no output files (were its inputs empty?)" in result.output
    assert "ok:" not in result.output


def test_an_empty_out_folder_is_not_left_behind_after_an_error(tmp_path: Path):
    (tmp_path / "pages").mkdir()
    result = runner.invoke(app, ["html", str(tmp_path / "pages"), "--out", str(tmp_path / "new")])
    assert result.exit_code == 2 and "no .html" in result.output
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    ("address", "why"),
    [("127.0.0.1:1", "Connection refused"), ("nosuchhost.invalid:6379", "does not resolve")],
)
def test_an_unreachable_ray_address_is_a_usage_error(tmp_path: Path, address: str, why: str):
    src = _shards(tmp_path / "src", 1, 3)
    run = _curate("filter", str(src), "--out", str(tmp_path / "o"), "--address", address, timeout=60)
    assert run.returncode == 2, run.stderr
    assert f"error: cannot reach Ray at {address}" in run.stderr and why in run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "o").exists()


def test_num_cpus_zero_is_a_usage_error(tmp_path: Path):
    result = runner.invoke(app, ["filter", str(tmp_path), "--out", str(tmp_path / "o"), "--num-cpus", "0"])
    assert result.exit_code == 2
    assert "--num-cpus" in result.output and "greater than or equal to 1" in result.output


def test_a_file_given_for_a_folder_and_a_folder_for_a_file_are_usage_errors(tmp_path: Path):
    src = _shards(tmp_path / "src", 1, 3)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    cases = [
        (["filter", str(src), "--out", str(a_file)], f"--out {a_file}: is a file"),
        (["run", str(REPO / "pipelines" / "demo.yaml"), "--workdir", str(a_file)], "--workdir"),
        (["stats", str(src), "--html", str(tmp_path)], f"--html {tmp_path}: is a folder"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, args
        assert message in result.output, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
    assert a_file.read_text() == "x"


def test_a_pipeline_is_checked_whole_before_any_stage_runs(tmp_path: Path):
    _shards(tmp_path / "docs", 1, 3)
    (tmp_path / "empty").mkdir()
    sources = str(REPO / "sources.yaml")
    for second_input, message in (
        ("nosuchstage", "input 'nosuchstage' is neither a stage before it (first) nor a file or folder"),
        ("empty", "no *.parquet in"),
    ):
        pipeline = tmp_path / "p.yaml"
        pipeline.write_text(
            "name: p\nstages:\n"
            "  - {name: first, step: clean, inputs: [docs]}\n"
            f"  - {{name: second, step: clean, inputs: [{second_input}]}}\n"
        )
        result = runner.invoke(
            app, ["run", str(pipeline), "--workdir", str(tmp_path / "w"), "--sources", sources]
        )
        assert result.exit_code == 2, result.output
        assert message in result.output
        assert not (tmp_path / "w").exists()  # the first stage did not run


def test_without_a_terminal_progress_is_periodic_plain_lines(tmp_path: Path):
    src = _shards(tmp_path / "src", 8, 400)
    run = _curate(*_filter_on_one_cpu(src, tmp_path / "o"), env={"CURATE_PROGRESS_SECONDS": "0.2"})
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("filter: ")]
    assert lines[0].startswith("filter: running (0%), 0/3,200 docs, ETA -, 0/8 tasks")
    assert lines[-1].startswith("filter: done (100%), 3,200/3,200 docs, ") and "8/8 tasks" in lines[-1]
    middle = [line for line in lines[1:-1] if "running" in line and "docs/s, ETA 0:" in line]
    assert middle, lines  # documents done, the rate and the time left while it runs
    assert "Traceback" not in run.stderr and not any("━" in line for line in lines)  # no bar drawn into a log
    # A local run starts no Ray (its 13-21 s start, its token-auth notice): the tasks ran on local workers.
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["nodes"] == {"local": 8}
    assert "Token authentication" not in run.stderr and "ray" not in run.stderr.lower()


def test_in_a_terminal_progress_shows_documents_rate_and_eta(tmp_path: Path):
    src = _shards(tmp_path / "src", 8, 400)
    main, sub = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "120", "LINES": "40"}
    command = [sys.executable, "-m", "curate", *_filter_on_one_cpu(src, tmp_path / "o")]
    proc = subprocess.Popen(command, cwd=REPO, stdin=sub, stdout=sub, stderr=sub, env=env)
    os.close(sub)
    seen = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the command ended and closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(timeout=120) == 0
    os.close(main)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.decode("utf-8", "replace"))
    assert "3,200/3,200 docs" in text and "8/8 tasks" in text
    assert re.search(r"\d+/3,200 docs, [\d,.]+ docs/s, ETA \d:\d\d:\d\d", text), text[-3000:]


def _interrupt(command: list[str], stage: Path) -> subprocess.CompletedProcess:
    """Run command in a process group of its own, and press Ctrl-C (SIGINT to the group) once stage runs."""
    # As from a terminal: a test run started in the background (`&`, nohup) ignores SIGINT, and its children
    # would inherit that.
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not (stage / ".curate-stage.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


@pytest.mark.parametrize("where", ["local workers", "local Ray"])
def test_ctrl_c_stops_cleanly_and_a_rerun_resumes(tmp_path: Path, where: str):
    # Seconds of work on one CPU: the stage still runs when Ctrl-C comes, even on a busy machine.
    src = _shards(tmp_path / "src", 8, 2000)
    out = tmp_path / "o"
    command = [sys.executable, "-m", "curate", *_filter_on_one_cpu(src, out)]
    stopped = _interrupt(command + (["--address", "local"] if where == "local Ray" else []), out)
    assert stopped.returncode == 130, stopped.stderr
    assert "interrupted: rerun the same command to resume" in stopped.stderr
    for noise in ("Traceback", "Aborted", "*** SIG", "Stack trace", "Token authentication"):
        assert noise not in stopped.stderr, stopped.stderr
    assert not (out / "manifest.json").exists()
    rerun = _curate(*command[3:])
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads((out / "manifest.json").read_text())["counts"]["in"] == 16000


def test_the_readme_lists_the_manifest_keys_a_stage_writes(tmp_path: Path):
    src = _shards(tmp_path / "src", 1, 3)
    assert runner.invoke(app, ["clean", str(src), "--out", str(tmp_path / "o")]).exit_code == 0
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    readme = (REPO / "README.md").read_text()
    listed = re.search(r"`manifest\.json` keys: (.*?)\.\n", readme, re.S)
    assert listed, "README: the sentence listing the manifest keys"
    assert sorted(re.findall(r"`(\w+)`", listed.group(1))) == sorted(manifest)


def test_input_folders_of_one_name_get_their_parents_in_ids_and_a_clash_stops_before_work(tmp_path: Path):
    pdf = DEMO_PDF / "sepsis-review.pdf"
    for folder in ("x/a", "y/a", "q/a/b", "r/a/b", "s/b"):
        (tmp_path / folder).mkdir(parents=True)
    for path in ("x/a/paper.pdf", "y/a/paper.pdf", "q/a/b/p.pdf", "r/a/b/p.pdf", "s/b/other.pdf"):
        shutil.copy(pdf, tmp_path / path)
    result = runner.invoke(
        app, ["pdf", str(tmp_path / "x/a"), str(tmp_path / "y/a"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert sorted(_ids(tmp_path / "o")) == ["local-pdf:x/a/paper", "local-pdf:y/a/paper"]
    # q/a is labelled a, r/a/b a/b (s/b is b): both p.pdf would be a/b/p
    clash = [str(tmp_path / f) for f in ("q/a", "r/a/b", "s/b")]
    result = runner.invoke(app, ["pdf", *clash, "--out", str(tmp_path / "c")])
    assert result.exit_code == 2
    assert "would both get the id local-pdf:a/b/p" in result.output and not (tmp_path / "c").exists()
