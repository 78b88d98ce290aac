"""The names curate gives the files of a stage directory and of a pipeline's work directory (only here).

A stage directory:
  <task>.parquet            kept rows; written last, so its presence marks the task done; its footer carries
                            the task's counts (key TASK_META_KEY)
  rejected/<task>.parquet   dropped rows with drop_stage/drop_reason/drop_detail ("error": errored)
  manifest.json             written when every task is done: counts, outputs with SHA-256, params, versions;
                            the previous one stays until then, so a resumed run still has its checksums
  .curate-stage.json        the fingerprint (step, params, inputs) the outputs belong to
  .curate.lock              held (flock) by the process working in the folder
  .scratch/                 a stage's global pass (prepare) works here; removed when the stage ends
  .<name>.tmp-<8 hex>       a file being written, renamed into place when complete
  (and a stage's own reports beside them: a mix report, stats.json, crawl reports)

A work directory: pipeline.json (the pipeline's name, YAML and stage order), its .curate.lock, and one stage
directory per stage, named after the stage.

Paths here are pathlib.Path or curate.storage.StoragePath: both support `/` and `.name`.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, TypeVar

MANIFEST = "manifest.json"
REJECTED_DIR = "rejected"
STATE_FILE = ".curate-stage.json"
LOCK_FILE = ".curate.lock"
SCRATCH_DIR = ".scratch"
SCRATCH_PREFIX = "curate-scratch-"  # a local scratch folder of a stage whose directory is in object storage
SCRATCH_ENV = "CURATE_SCRATCH"  # where those go (a shared mount when the cluster has more than one node)
PIPELINE_FILE = "pipeline.json"
PARQUET = ".parquet"
TASK_META_KEY = b"curate.task"  # in the footer of every Parquet file a task writes: its counts
# Outputs of a validation split start with this: a mix stage's (validation-<input>) and the shards made of
# them (validation-shard-<n>), so that a training job never reads them by accident.
VALIDATION_PREFIX = "validation-"
TMP_MARK = ".tmp-"  # temporary files carry this in their name until renamed into place
_TMP_NAME = re.compile(r"^\..+\.tmp-[0-9a-f]{8}$")

P = TypeVar("P")


def kept_file(out: Any, task: str) -> Any:
    """The file of a task's kept rows in stage directory `out`."""
    return out / f"{task}{PARQUET}"


def rejected_file(out: Any, task: str) -> Any:
    """The file of a task's rejected (and errored) rows in stage directory `out`."""
    return out / REJECTED_DIR / f"{task}{PARQUET}"


def task_of(path: Any) -> str | None:
    """The task a kept or rejected file belongs to (its name without .parquet); None for other files."""
    return path.name.removesuffix(PARQUET) if path.name.endswith(PARQUET) else None


def tmp_path(path: P) -> P:
    """A fresh temporary name beside path, for a write that is renamed into place when complete."""
    return path.with_name(f".{path.name}{TMP_MARK}{uuid.uuid4().hex[:8]}")  # type: ignore[attr-defined]


def is_tmp(path: Any) -> bool:
    """True for a temporary file left by an interrupted write (named as tmp_path names them)."""
    return _TMP_NAME.match(path.name) is not None


def is_scratch(path: str) -> bool:
    """True for a path inside a stage's scratch folder (local or under CURATE_SCRATCH)."""
    return SCRATCH_DIR in path or SCRATCH_PREFIX in path
