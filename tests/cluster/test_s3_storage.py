"""A work directory on S3: moto's S3 server on 127.0.0.1 stands in for the object store (no network)."""

from __future__ import annotations

import gzip
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from moto.server import ThreadedMotoServer

from curate import storage
from curate.dedup.near import NearDedup
from curate.executors import LocalExecutor
from curate.io import read_json, read_parquet, write_bytes
from curate.mix.stage import MixStage
from curate.pipeline import load_pipeline, run_pipeline
from curate.runner import read_manifest, run_stage
from curate.stage import Input
from curate.stats.compute import collect_stats
from curate.storage import StoragePath
from curate.verify import verify

from ..conftest import REPO

logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request

BUCKET = "curate-test"
# The demo's parse, filter and dedup stages, then near_dedup (whose global pass keeps its scratch files on
# local disk when the output is on S3), a mix by source tag with a validation split (its global pass runs
# on the workers too), and shard (per-shard and corpus stats files, validation shards of their own).
PIPELINE = """
name: s3demo
stages:
  - name: guidelines
    step: html
    inputs:
      - {{path: {demo}/html/demo-guidelines, source: demo-guidelines}}
      - {{path: {demo}/html/demo-wiki, source: demo-wiki}}
  - {{name: papers, step: pdf, source: demo-papers, inputs: [{demo}/pdf]}}
  - {{name: language, step: filter, inputs: [guidelines, papers], keep: [en], threshold: 0.65}}
  - {{name: dedup, step: dedup}}
  - {{name: near, step: near_dedup}}
  - name: mix
    step: mix
    seed: 3
    validation: 0.2
    components:
      guidelines: {{share: 0.6, sources: [demo-guidelines, demo-wiki]}}
      papers: {{share: 0.4, sources: [demo-papers]}}
  - {{name: shard, step: shard, target_size: 8KB, row_group_rows: 4}}
"""
STAGES = ["guidelines", "papers", "language", "dedup", "near", "mix", "shard"]
# Corpus stats that name where they were computed (the rest must match the local run's).
WHERE = ("path", "sources_file")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    """An S3 server on loopback with one bucket; yields the environment that points curate at it."""
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",  # never look for instance credentials on the network
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    storage._filesystem.cache_clear()
    try:
        bucket_maker = pafs.S3FileSystem(
            endpoint_override=f"127.0.0.1:{port}",
            scheme="http",
            region="us-east-1",
            allow_bucket_creation=True,
        )
        bucket_maker.create_dir(BUCKET)
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        storage._filesystem.cache_clear()
        server.stop()


@pytest.fixture(scope="module")
def pipeline_file(tmp_path_factory) -> Path:
    sys.path.insert(0, str(REPO / "pipelines" / "demo"))
    from make_pdfs import make_demo_pdfs

    make_demo_pdfs(REPO / "pipelines" / "demo" / "pdf")
    path = tmp_path_factory.mktemp("pipeline") / "s3demo.yaml"
    path.write_text(PIPELINE.format(demo=REPO / "pipelines" / "demo"))
    return path


@pytest.fixture(scope="module")
def local_workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("local")


@pytest.fixture(scope="module")
def local_run(pipeline_file: Path, local_workdir: Path) -> dict[str, dict]:
    """The same pipeline into a local folder, to compare with."""
    pipeline, _ = load_pipeline(pipeline_file, REPO / "sources.yaml")
    return {m["stage"]: m for m in run_pipeline(pipeline, local_workdir, LocalExecutor())}


def _outputs(manifest: dict) -> list[tuple[str, str]]:
    return sorted((o["path"], o["sha256"]) for o in manifest["outputs"] + manifest["rejected_outputs"])


def _side_files(manifest: dict) -> list[tuple[str, str]]:
    """The shard stage's per-shard stats files with their SHA-256 (stats.json names its folder, so not it)."""
    return sorted((f["path"], f["sha256"]) for f in manifest["stats_files"] if f["path"] != "stats.json")


def _without_where(stats: dict) -> dict:
    """Stats less what differs between any two runs: where they were computed, and stage times."""
    found = {k: v for k, v in stats.items() if k not in WHERE}
    if "funnel" in found:
        found["funnel"] = [{k: v for k, v in e.items() if k != "wall_seconds"} for e in found["funnel"]]
    return found


def _keys(prefix: str) -> list[str]:
    root = StoragePath(f"s3://{BUCKET}/{prefix}")
    selector = pafs.FileSelector(root.fs_path, recursive=True, allow_not_found=True)
    return sorted(i.path for i in root.filesystem.get_file_info(selector) if i.type == pafs.FileType.File)


def test_pipeline_writes_its_work_directory_to_s3(
    s3, pipeline_file: Path, local_run: dict, local_workdir: Path
):
    pipeline, _ = load_pipeline(pipeline_file, REPO / "sources.yaml")
    uri = f"s3://{BUCKET}/inproc"
    manifests = {m["stage"]: m for m in run_pipeline(pipeline, uri, LocalExecutor())}
    assert list(manifests) == STAGES
    for stage in STAGES:
        assert manifests[stage]["counts"] == local_run[stage]["counts"], stage
        assert _outputs(manifests[stage]) == _outputs(local_run[stage]), stage  # the same bytes
        written = json.loads(json.dumps(manifests[stage]))  # as JSON has it: lists for tuples
        assert read_manifest(f"{uri}/{stage}") == written  # written to the bucket
    keys = _keys("inproc")
    assert f"{BUCKET}/inproc/pipeline.json" in keys

    # mix: its report in the bucket, the same shares as on a disk.
    assert read_json(f"{uri}/mix/mix.json") == read_json(local_workdir / "mix" / "mix.json")
    assert manifests["mix"]["mix"] == local_run["mix"]["mix"]
    assert set(manifests["mix"]["drop_reasons"]) <= {"not_sampled"}  # near's JSON files are no documents
    # shard: train and validation shards, per-shard stats files with the same bytes, the same corpus stats.
    shard = manifests["shard"]
    names = [o["path"] for o in shard["outputs"]]
    assert len([n for n in names if n.startswith("shard-")]) > 1
    assert [n for n in names if n.startswith("validation-shard-")]
    # Two per shard: its stats, and the partial that stats.json is merged from.
    assert _side_files(shard) == _side_files(local_run["shard"]) and len(_side_files(shard)) == 2 * len(names)
    assert shard["totals"] == local_run["shard"]["totals"] and shard["schema_fields"]
    assert f"{BUCKET}/inproc/shard/stats.json" in keys
    local_stats = read_json(local_workdir / "shard" / "stats.json")
    assert _without_where(read_json(f"{uri}/shard/stats.json")) == _without_where(local_stats)
    # `curate stats` reads the whole work directory from the bucket.
    stats = collect_stats(uri)
    assert stats["path"] == uri and stats["kind"] == "workdir" and stats["documents"] > 0
    assert _without_where(stats) == _without_where(collect_stats(local_workdir))
    assert not [k for k in keys if ".tmp-" in k or "/.scratch/" in k]  # no temporaries, scratch stayed local
    assert verify(uri)[1] == []

    # Resume: a lost shard is recomputed alone, byte for byte.
    lost = manifests["language"]["outputs"][0]["path"]
    StoragePath(f"{uri}/language/{lost}").unlink()
    rerun = {m["stage"]: m for m in run_pipeline(pipeline, uri, LocalExecutor())}
    # guidelines and papers skip everything, language recomputes the lost shard (the stages after it see a
    # rewritten input, so they run again, as on a local disk), and every output is the same as before.
    assert [rerun[s]["tasks"]["run"] for s in STAGES[:3]] == [0, 0, 1]
    assert all(_outputs(rerun[s]) == _outputs(manifests[s]) for s in STAGES)


def test_curate_run_on_a_local_ray_writes_to_s3(
    s3, pipeline_file: Path, local_run: dict, local_workdir: Path
):
    """The command line with a real local Ray: the workers write straight to the bucket."""
    uri = f"s3://{BUCKET}/ray"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "curate",
            "run",
            str(pipeline_file),
            "--workdir",
            uri,
            "--num-cpus",
            "2",
            "--address",
            "local",  # a Ray in the process (without it, local worker processes)
            "--sources",
            str(REPO / "sources.yaml"),
        ],
        env={**os.environ, **s3},
        capture_output=True,
        text=True,
        timeout=480,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    for stage in STAGES:
        manifest = read_manifest(f"{uri}/{stage}")
        assert _outputs(manifest) == _outputs(local_run[stage]), stage
        assert (
            "local" not in manifest["nodes"] and sum(manifest["nodes"].values()) == manifest["tasks"]["run"]
        )
    check = subprocess.run(
        [sys.executable, "-m", "curate", "verify", uri],
        env={**os.environ, **s3},
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0 and f"ok: {len(STAGES)} stage(s)" in check.stdout, (
        check.stdout + check.stderr
    )
    shown = subprocess.run(
        [sys.executable, "-m", "curate", "stats", "--json", uri],
        env={**os.environ, **s3},
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0, shown.stderr[-4000:]
    assert _without_where(json.loads(shown.stdout)) == _without_where(collect_stats(local_workdir))


def test_mix_reads_jsonl_from_s3(s3, tmp_path: Path):
    """A mix input on S3 (gzipped JSONL, a broken line) gives the same kept bytes as that file on a disk."""
    lines = [json.dumps({"text": f"replay text number {i} " * 20, "source": "replay"}) for i in range(60)]
    data = gzip.compress(("\n".join(lines[:30] + ["{not json"] + lines[30:]) + "\n").encode(), mtime=0)
    local = tmp_path / "mixin" / "replay.jsonl.gz"  # the folder names the task, as on S3
    local.parent.mkdir()
    local.write_bytes(data)
    remote = f"s3://{BUCKET}/mixin/replay.jsonl.gz"
    write_bytes(data, remote)

    def mix(source: str, out: str | Path) -> dict:
        stage = MixStage(name="mix", components={"replay": {"epochs": 2}}, validation=0.1)
        return run_stage(stage, [Input(source)], out, LocalExecutor())

    on_disk = mix(str(local.parent), tmp_path / "mix")
    on_s3 = mix(f"s3://{BUCKET}/mixin", f"s3://{BUCKET}/mixout")
    assert on_s3["counts"] == on_disk["counts"] and on_s3["counts"]["kept"] > 60  # two epochs, plus copies
    assert sorted((o["path"], o["sha256"]) for o in on_s3["outputs"]) == sorted(
        (o["path"], o["sha256"]) for o in on_disk["outputs"]
    )
    assert on_s3["drop_reasons"] == {"jsonl_broken": 1}
    [broken] = read_parquet(f"s3://{BUCKET}/mixout/{on_s3['rejected_outputs'][0]['path']}").to_pylist()
    assert broken["url"] == remote and broken["drop_reason"] == "jsonl_broken"  # names the object it was in
    assert read_json(f"s3://{BUCKET}/mixout/mix.json") == read_json(tmp_path / "mix" / "mix.json")


def test_raw_inputs_on_s3_are_refused_before_any_work(s3, tmp_path: Path):
    from curate.parse.stages import HtmlStage

    stage = HtmlStage(name="h", source="demo-guidelines", licenses={"demo-guidelines": None})
    with pytest.raises(ValueError, match="reads its input files from a local or shared-mount folder"):
        run_stage(stage, [Input(f"s3://{BUCKET}/raw")], f"s3://{BUCKET}/refused/h", LocalExecutor())
    assert _keys("refused") == []  # refused before any work


def test_near_dedup_into_s3_builds_and_queries_a_local_index(
    s3, local_run: dict, local_workdir: Path, tmp_path: Path
):
    """The index names a generation by its output folder: an s3:// one too, so that its commit is found."""
    index = tmp_path / "index"
    source = [Input(str(local_workdir / "language"))]
    first = f"s3://{BUCKET}/near-a"
    built = run_stage(NearDedup(name="near", write_index=str(index)), source, first, LocalExecutor())
    [generation] = read_json(index / "index.json")["generations"]
    assert generation["out"] == first and generation["documents"] == built["counts"]["kept"]
    # The same documents again, against the index: every one that survived the first run is a duplicate.
    second = f"s3://{BUCKET}/near-b"
    again = run_stage(NearDedup(name="near", against=str(index)), source, second, LocalExecutor())
    assert again["counts"]["kept"] == 0 and again["drop_reasons"] == {"near_duplicate": again["counts"]["in"]}
