"""Shared test fixtures: repo paths, the evaluation data, and one local Ray for the whole session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EVALDATA = REPO.parent / "shared" / "evaldata"
# The 16 guideline sites and PubMed guidelines of Meditron's GAP-Replay.
GAP_SOURCES = (
    "aafp",
    "cco",
    "cdc",
    "cma",
    "cps",
    "drugs",
    "gc",
    "icrc",
    "idsa",
    "magic",
    "mayo",
    "nice",
    "rch",
    "spor",
    "who",
    "wikidoc",
    "pubmed",
)


@pytest.fixture(scope="session")
def evaldata() -> Path:
    """../shared/evaldata, or a skip that says why."""
    if not EVALDATA.is_dir():
        pytest.skip(f"evaluation data not found at {EVALDATA} (it lives in ../shared beside the checkout)")
    return EVALDATA


@pytest.fixture(scope="session")
def ray_session():
    """One real local Ray (2 CPUs, loopback only) shared by every test that needs it."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    from curate.runner import start_ray

    start_ray(num_cpus=2)
    yield ray
    ray.shutdown()
