"""`--address`: a real two-node Ray cluster on 127.0.0.1, started and stopped by this test (by process id)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from curate.executors import LocalExecutor
from curate.filter.language import LanguageFilter
from curate.io import write_parquet
from curate.pipeline import load_pipeline, run_pipeline
from curate.runner import run_stage
from curate.schema import records_table
from curate.stage import Input
from curate.verify import verify

from ..conftest import REPO

RAY = Path(sys.executable).with_name("ray")
# A loopback test cluster: Ray 2.60's token authentication is turned off on purpose (see README). The venv's
# bin/ comes first on PATH, as an activated venv does, so that a job's `python` is the one with curate.
CLUSTER_ENV = {
    **os.environ,
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "PATH": f"{RAY.parent}{os.pathsep}{os.environ.get('PATH', '')}",
}
CLUSTER_ENV.pop("RAY_ADDRESS", None)
DEMO = REPO / "pipelines" / "demo.yaml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(RAY), "start", "--block", *args],
        env=CLUSTER_ENV,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_for_nodes(address: str, count: int, timeout: float = 90) -> None:
    code = f"import ray; ray.init(address={address!r}); print(len([n for n in ray.nodes() if n['Alive']]))"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = subprocess.run([sys.executable, "-c", code], env=CLUSTER_ENV, capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.strip().splitlines()[-1:] == [str(count)]:
            return
        time.sleep(2)
    raise TimeoutError(f"the loopback cluster at {address} did not reach {count} nodes")


def _wait_for_dashboard(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise TimeoutError(f"the loopback cluster's job server at {url} did not answer")


@dataclass(frozen=True)
class Cluster:
    """A running loopback cluster: the GCS address for drivers, the dashboard URL for `ray job`."""

    address: str
    dashboard: str


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """Head (1 CPU, dashboard and job server) and a second node (1 CPU), all on 127.0.0.1."""
    # Short temp dir: Ray's socket paths must stay under 107 characters.
    temp = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
    port, dashboard_port = _free_port(), _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    dashboard = [
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}",
    ]
    head = _start(
        ["--head", f"--port={port}", f"--temp-dir={temp}", *dashboard, *common, *_agent_port()],
        temp / "head.log",
    )
    nodes = [head]
    try:
        _wait_for_nodes(address, 1)
        # Its own temp dir, as on a second machine: runtime-env agents must not share an extraction folder.
        second = [f"--address={address}", f"--temp-dir={temp / 'n'}", '--resources={"second_node": 1}']
        second += [*common, *_agent_port()]
        nodes.append(_start(second, temp / "node.log"))
        _wait_for_nodes(address, 2)
        url = f"http://127.0.0.1:{dashboard_port}"
        _wait_for_dashboard(url)
        yield Cluster(address, url)
    finally:
        for process in reversed(nodes):
            os.killpg(process.pid, signal.SIGTERM)  # the node's own processes, none of anyone else's
        for process in nodes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


def _agent_port() -> list[str]:
    # Two nodes on one machine: each node's dashboard agent needs its own port (the default is fixed).
    return [f"--dashboard-agent-listen-port={_free_port()}"]


def _corpus(folder: Path) -> Path:
    sentences = [
        "Offer a statin to adults with a ten-year cardiovascular risk of ten percent or more.",
        "Start antibiotics within one hour when sepsis is suspected in a patient with organ failure.",
        "Bluthochdruck wird bei Erwachsenen zuerst mit einer Änderung des Lebensstils behandelt.",
    ]
    for s in range(8):
        rows = [
            {"id": f"c:{s}-{i}", "text": f"{sentences[(s + i) % 3]} " * 40, "source": "demo-guidelines"}
            for i in range(400)
        ]
        write_parquet(records_table(rows), folder / f"part-{s}.parquet")
    return folder


def test_pipeline_on_a_two_node_cluster_matches_a_local_run(cluster: Cluster, tmp_path: Path):
    src = _corpus(tmp_path / "src")
    (src / "part-9.parquet").write_bytes(b"PAR1 not parquet")  # a failure must name its node and input
    out = tmp_path / "on-cluster"
    run = subprocess.run(
        [sys.executable, "-m", "curate", "filter", str(src), "--out", str(out), "--address", cluster.address],
        env=CLUSTER_ENV,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert run.returncode == 1, run.stderr  # exit 1: a task failed
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["nodes"]) == 2, manifest["nodes"]  # tasks ran on both nodes
    assert sum(manifest["nodes"].values()) == 8
    assert set(manifest["node_seconds"]) == set(manifest["nodes"])
    [failure] = manifest["failed_tasks"]
    assert failure["node"] in manifest["nodes"]  # one of the cluster's two node ids
    assert failure["inputs"] == [str(src / "part-9.parquet")]
    assert "part-9" in run.stderr
    (src / "part-9.parquet").unlink()
    assert (
        subprocess.run(
            [
                sys.executable,
                "-m",
                "curate",
                "filter",
                str(src),
                "--out",
                str(out),
                "--address",
                cluster.address,
            ],
            env=CLUSTER_ENV,
            capture_output=True,
            timeout=300,
            cwd=REPO,
        ).returncode
        == 0
    )
    manifest = json.loads((out / "manifest.json").read_text())

    local = run_stage(LanguageFilter(name="filter"), [Input(str(src))], tmp_path / "local", LocalExecutor())
    assert [(o["path"], o["sha256"]) for o in manifest["outputs"]] == [
        (o["path"], o["sha256"]) for o in local["outputs"]
    ]
    assert manifest["counts"] == local["counts"]


@pytest.fixture(scope="module")
def local_demo(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """The demo pipeline's manifests from a run without Ray: what every cluster run must reproduce."""
    sys.path.insert(0, str(REPO / "pipelines" / "demo"))
    from make_pdfs import make_demo_pdfs

    make_demo_pdfs(REPO / "pipelines" / "demo" / "pdf")
    local, _ = load_pipeline(DEMO)
    return run_pipeline(local, tmp_path_factory.mktemp("local-demo"), LocalExecutor())


def test_curate_run_of_the_demo_uses_both_nodes_and_matches_a_local_run(
    cluster: Cluster, local_demo: list[dict], tmp_path: Path
):
    workdir = tmp_path / "demo-on-cluster"
    command = [sys.executable, "-m", "curate", "run", str(DEMO), "--workdir", str(workdir)]
    run = subprocess.run(
        [*command, "--address", cluster.address],
        env=CLUSTER_ENV,
        capture_output=True,
        text=True,
        timeout=480,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    nodes = set()
    for theirs in local_demo:
        ours = json.loads((workdir / theirs["stage"] / "manifest.json").read_text())
        assert ours["counts"] == theirs["counts"], theirs["stage"]
        assert [(o["path"], o["sha256"]) for o in ours["outputs"] + ours["rejected_outputs"]] == [
            (o["path"], o["sha256"]) for o in theirs["outputs"] + theirs["rejected_outputs"]
        ], theirs["stage"]
        nodes |= set(ours["nodes"])
    assert len(nodes) == 2, nodes  # the stages' tasks ran on both nodes of the cluster
    assert verify(workdir)[1] == []


def test_ray_job_submit_runs_the_demo_pipeline(cluster: Cluster, local_demo: list[dict], tmp_path: Path):
    """`ray job submit --working-dir .` as the README shows it: the job ships the checkout to the cluster."""
    workdir = tmp_path / "job-work"
    job_id = f"curate-test-{os.getpid()}"
    submit = subprocess.run(
        [
            str(RAY),
            "job",
            "submit",
            "--address",
            cluster.dashboard,
            "--submission-id",
            job_id,
            "--working-dir",
            ".",
            "--",
            "python",
            "-m",
            "curate",
            "run",
            "pipelines/demo.yaml",
            "--workdir",
            str(workdir),
        ],
        env={**CLUSTER_ENV, "RAY_RUNTIME_ENV_IGNORE_GITIGNORE": "1"},  # ship the generated demo PDFs
        capture_output=True,
        text=True,
        timeout=480,
        cwd=REPO,
    )
    from ray.job_submission import JobStatus, JobSubmissionClient

    status = JobSubmissionClient(cluster.dashboard).get_job_status(job_id)
    assert status == JobStatus.SUCCEEDED, submit.stdout[-4000:] + submit.stderr[-4000:]
    assert verify(workdir)[1] == []
    # The job read the uploaded copy of the checkout, not this one: same documents as a local run.
    for theirs in local_demo:
        ours = json.loads((workdir / theirs["stage"] / "manifest.json").read_text())
        assert ours["counts"] == theirs["counts"], theirs["stage"]
        assert ours["status"] == "complete"
    guidelines = json.loads((workdir / "guidelines" / "manifest.json").read_text())
    assert all("/runtime_resources/working_dir_files/" in i["path"] for i in guidelines["inputs"])
    shard = json.loads((workdir / "shard" / "manifest.json").read_text())
    assert shard["counts"]["kept"] > 0
