"""Benchmarks drive curate's runner with executors of their own: those must take what the runner passes."""

from __future__ import annotations

import inspect

import pytest

from curate.executors import LocalExecutor, RayExecutor
from tests.conftest import load_benchmark


@pytest.mark.parametrize(
    ("script", "executor"), [("dedup", "SpawnExecutor"), ("gap_replay_scale", "MeasuredExecutor")]
)
def test_benchmark_executors_take_the_arguments_of_curates_executors(script: str, executor: str) -> None:
    # Twice a benchmark broke unseen when the runner passed its executors a new argument.
    expected = list(inspect.signature(LocalExecutor.map).parameters)
    assert list(inspect.signature(RayExecutor.map).parameters) == expected
    assert list(inspect.signature(getattr(load_benchmark(script), executor).map).parameters) == expected
