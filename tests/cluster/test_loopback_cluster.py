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
from collections.abc import Iterator
from pathlib import Path

import pytest

from curate.filter.language import LanguageFilter
from curate.io import write_parquet
from curate.runner import LocalExecutor, run_stage
from curate.schema import records_table
from curate.stage import Input

from ..conftest import REPO

RAY = Path(sys.executable).with_name("ray")
# A loopback test cluster: Ray 2.60's token authentication is turned off on purpose (see README).
CLUSTER_ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
CLUSTER_ENV.pop("RAY_ADDRESS", None)


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


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """Head (1 CPU) and a second node (1 CPU) on 127.0.0.1; yields the address."""
    # Short temp dir: Ray's socket paths must stay under 107 characters.
    temp = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    head = _start(
        ["--head", f"--port={port}", f"--temp-dir={temp}", "--include-dashboard=false", *common],
        temp / "head.log",
    )
    nodes = [head]
    try:
        _wait_for_nodes(address, 1)
        nodes.append(
            _start([f"--address={address}", '--resources={"second_node": 1}', *common], temp / "node.log")
        )
        _wait_for_nodes(address, 2)
        yield address
    finally:
        for process in reversed(nodes):
            os.killpg(process.pid, signal.SIGTERM)  # the node's own processes, none of anyone else's
        for process in nodes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


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


def test_pipeline_on_a_two_node_cluster_matches_a_local_run(cluster: str, tmp_path: Path):
    src = _corpus(tmp_path / "src")
    out = tmp_path / "on-cluster"
    run = subprocess.run(
        [sys.executable, "-m", "curate", "filter", str(src), "--out", str(out), "--address", cluster],
        env=CLUSTER_ENV,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["nodes"]) == 2, manifest["nodes"]  # tasks ran on both nodes
    assert sum(manifest["nodes"].values()) == 8

    local = run_stage(LanguageFilter(name="filter"), [Input(str(src))], tmp_path / "local", LocalExecutor())
    assert [(o["path"], o["sha256"]) for o in manifest["outputs"]] == [
        (o["path"], o["sha256"]) for o in local["outputs"]
    ]
    assert manifest["counts"] == local["counts"]
