"""Benchmarks drive curate's runner with executors of their own: those must take what the runner passes."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from types import ModuleType

import pytest

from curate.executors import LocalExecutor, RayExecutor
from tests.conftest import REPO

BENCHMARKS = REPO / "benchmarks"


def _benchmark(name: str) -> ModuleType:
    sys.path.insert(0, str(BENCHMARKS))  # as when the script runs: it imports its sibling _results
    try:
        spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


@pytest.mark.parametrize(
    ("script", "executor"), [("dedup", "SpawnExecutor"), ("gap_replay_scale", "MeasuredExecutor")]
)
def test_benchmark_executors_take_the_arguments_of_curates_executors(script: str, executor: str) -> None:
    # Twice a benchmark broke unseen when the runner passed its executors a new argument.
    expected = list(inspect.signature(LocalExecutor.map).parameters)
    assert list(inspect.signature(RayExecutor.map).parameters) == expected
    assert list(inspect.signature(getattr(_benchmark(script), executor).map).parameters) == expected
