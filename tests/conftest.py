"""Shared test fixtures: repo paths, the evaluation data, and one local Ray for the whole session."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

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


# What a test may need that a machine may lack: the test skips without it, or, where CURATE_REQUIRE lists the
# name (CI does, in .ci/run), fails, so that CI cannot go green without running it. Mark such a test with
# @pytest.mark.requires("name"); tests using the evaldata fixture require "evaldata" without a mark.
REQUIREMENTS = {
    "browser": "Chromium for the HTML report test (make browser)",
    "tmpfs": "root, to mount a small tmpfs for the full-disk test",
    "evaldata": "../shared/evaldata beside the checkout",
    "ocr": "Tesseract's models for PDF OCR (make ocr)",
    # Every test but those marked `optional` (tools that are not part of `make install`, e.g. megatron-core).
    "all": "every test that is not marked optional",
}
REQUIRE_ENV = "CURATE_REQUIRE"


@contextlib.contextmanager
def small_disk(folder: Path, size: str, case: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at folder while the block runs: a disk that fills (skips without root)."""
    folder.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]
    if subprocess.run(mount, capture_output=True).returncode:
        pytest.skip(f"cannot mount a small tmpfs here (needs root); {case} is not exercised")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


def load_benchmark(name: str) -> ModuleType:
    """benchmarks/NAME.py as a module, imported as its script runs (its sibling _results importable)."""
    folder = str(REPO / "benchmarks")
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
    return module


def required() -> set[str]:
    """The requirements this run must meet, from $CURATE_REQUIRE (comma-separated names)."""
    return {name.strip() for name in os.environ.get(REQUIRE_ENV, "").split(",") if name.strip()}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requires(name): needs one of conftest.REQUIREMENTS; skips without it")
    config.addinivalue_line("markers", "optional(why): may skip even where $CURATE_REQUIRE is 'all'")
    if unknown := sorted(required() - set(REQUIREMENTS)):
        raise pytest.UsageError(
            f"{REQUIRE_ENV} names unknown requirements {unknown}; known: {sorted(REQUIREMENTS)}"
        )


def _requirements(item: pytest.Item) -> set[str]:
    names = {mark.args[0] for mark in item.iter_markers("requires")}
    if unknown := sorted(names - set(REQUIREMENTS)):
        raise pytest.UsageError(
            f"{item.nodeid}: unknown requirement {unknown}; add it to conftest.REQUIREMENTS"
        )
    names |= {"evaldata"} if "evaldata" in getattr(item, "fixturenames", ()) else set()
    return names | (set() if item.get_closest_marker("optional") else {"all"})


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A skipped test that needs something $CURATE_REQUIRE lists is reported as a failure."""
    report = yield
    missing = _requirements(item) & required()
    if report.skipped and missing and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped, but {REQUIRE_ENV} requires {', '.join(sorted(missing))}: {reason}"
    return report


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

    from curate.executors import start_ray

    start_ray(num_cpus=2)
    yield ray
    ray.shutdown()
