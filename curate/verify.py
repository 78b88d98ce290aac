"""Re-check a stage or work directory against its manifests: files, sizes, checksums, rows, accounting."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from curate.io import is_tmp, parquet_rows, read_json, sha256_file
from curate.runner import MANIFEST
from curate.storage import StoragePath, as_path


def verify_stage(stage_dir: Path | StoragePath) -> list[str]:
    """Problems found in one stage directory (empty when everything matches its manifest)."""
    name = stage_dir.name
    manifest_path = stage_dir / MANIFEST
    if not manifest_path.exists():
        return [f"{name}: no manifest.json: the stage never finished; rerun the pipeline to complete it"]
    try:
        manifest = read_json(manifest_path)
        listed = manifest["outputs"] + manifest["rejected_outputs"]
        counts = manifest["counts"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{name}: manifest.json is unreadable ({exc}); rerun the pipeline to rewrite it"]
    problems = []
    if not listed:
        problems.append(f"{name}: the stage wrote no output files (were its inputs empty?): nothing to check")
    if manifest.get("status") != "complete":
        failed = len(manifest.get("failed_tasks", []))
        problems.append(f"{name}: status {manifest.get('status')!r}: {failed} failed task(s)")
    if counts["in"] != counts["kept"] + counts["rejected"] + counts["errored"]:
        problems.append(f"{name}: counts do not add up: {counts}")
    for entry in listed:
        path = stage_dir / entry["path"]
        if not path.exists():
            problems.append(f"{name}: missing {entry['path']}")
            continue
        if path.stat().st_size != entry["bytes"]:
            problems.append(
                f"{name}: {entry['path']} has {path.stat().st_size} bytes, manifest says {entry['bytes']}"
            )
            continue
        if sha256_file(path) != entry["sha256"]:
            problems.append(f"{name}: {entry['path']} checksum differs from the manifest (corrupted)")
            continue
        try:
            rows = parquet_rows(path)
        except Exception as exc:  # noqa: BLE001 - report, don't crash, on any unreadable file
            problems.append(f"{name}: {entry['path']} is not readable Parquet ({exc})")
            continue
        if rows != entry["rows"]:
            problems.append(f"{name}: {entry['path']} has {rows} rows, manifest says {entry['rows']}")
    kept_rows = sum(e["rows"] for e in manifest["outputs"])
    if kept_rows != counts["kept"]:
        problems.append(
            f"{name}: outputs hold {kept_rows} rows but the manifest counts {counts['kept']} kept"
        )
    known = {e["path"] for e in listed}
    for folder in (stage_dir, stage_dir / "rejected"):
        for f in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
            relative = str(f.relative_to(stage_dir))
            if relative not in known:
                problems.append(f"{name}: {relative} is not in the manifest (left over from another run?)")
        for f in sorted(folder.iterdir()) if folder.is_dir() else []:
            if is_tmp(f):
                problems.append(f"{name}: temporary file {f.name} left by an interrupted write")
    return problems


def flow_problems(manifests: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Where a stage that reads only earlier stages of the pipeline did not read exactly what they kept.

    `manifests` maps stage name (the folder name in the work directory) to its manifest, in pipeline order.
    """
    problems = []
    for name, manifest in manifests.items():
        sources = [_stage_name(i.get("path", "")) for i in manifest.get("inputs", [])]
        if not sources or not all(s in manifests and s != name for s in sources):
            continue  # reads files from outside the pipeline (or nothing): its own count is the start
        if manifest.get("step") == "mix":
            continue  # each extra copy of a document counts as one more document in
        kept = sum(manifests[s]["counts"]["kept"] for s in sources)
        if manifest["counts"]["in"] != kept:
            problems.append(
                f"{name}: read {manifest['counts']['in']} documents but {', '.join(sources)} kept {kept}"
            )
    return problems


def _stage_name(path: str) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[-1]


def verify(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """(stages checked, problems) for a stage directory or a work directory (with pipeline.json); or a URI."""
    root = as_path(path)
    if not root.is_dir():
        raise ValueError(f"not a directory: {root}")
    pipeline = root / "pipeline.json"
    if pipeline.exists():
        stages = [root / s for s in read_json(pipeline)["stages"]]
    elif (root / MANIFEST).exists() or list(root.glob("*.parquet")):
        stages = [root]
    else:
        raise ValueError(f"not a curate stage or work directory: {root} (no pipeline.json or manifest.json)")
    problems = []
    manifests = {}
    for stage_dir in stages:
        if not stage_dir.is_dir():
            problems.append(f"{stage_dir.name}: stage directory missing; rerun the pipeline")
            continue
        found = verify_stage(stage_dir)
        problems.extend(found)
        if not found:
            manifests[stage_dir.name] = read_json(stage_dir / MANIFEST)
    if len(stages) > 1 and len(manifests) == len(stages):
        problems.extend(flow_problems(manifests))
    return [s.name for s in stages], problems
