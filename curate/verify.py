"""Re-check a stage or work directory against its manifests: files, sizes, checksums, rows, accounting.

verify never leaves the directory it checks: a manifest or pipeline.json that names a path outside it
(`../..`, an absolute path, a link out), or a FIFO or device, is reported as a problem and never opened.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from curate.errors import ConfigError
from curate.io import parquet_file, parquet_rows, read_json, sha256_file
from curate.layout import MANIFEST, PIPELINE_FILE, REJECTED_DIR, is_tmp
from curate.storage import StoragePath, as_path

ENTRY_KEYS = {"path": str, "bytes": int, "sha256": str, "rows": int}


def _inside(root: Path | StoragePath, relative: str) -> Path | StoragePath | None:
    """root/relative if that is a path inside root (no '..', not absolute, no link leading out); else None."""
    parts = PurePosixPath(relative).parts
    if not relative or relative.startswith("/") or ".." in parts or "\\" in relative or "\0" in relative:
        return None
    path = root / relative
    if isinstance(path, StoragePath):
        return path if path.is_relative_to(root) else None
    if not path.resolve().is_relative_to(Path(root).resolve()):
        return None
    return path


def _regular_file(path: Path | StoragePath) -> str | None:
    """Why path is not a regular file (missing, a FIFO, a device, a folder), or None when it is one."""
    if isinstance(path, StoragePath):
        return None if path.is_file() else "missing"
    try:
        mode = os.stat(path).st_mode  # follows a link that stays inside (checked by _inside)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    return None if stat.S_ISREG(mode) else "not a regular file (a folder, FIFO or device)"


def _entry_problem(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return "an output entry is not an object"
    for key, kind in ENTRY_KEYS.items():
        if not isinstance(entry.get(key), kind) or isinstance(entry.get(key), bool):
            return f"an output entry lacks {key!r} (or it is not a {kind.__name__})"
    return None


def verify_stage(stage_dir: Path | StoragePath) -> list[str]:
    """Problems found in one stage directory (empty when everything matches its manifest)."""
    name = stage_dir.name
    manifest_path = stage_dir / MANIFEST
    if _regular_file(manifest_path) == "missing":
        return [f"{name}: no manifest.json: the stage never finished; rerun the pipeline to complete it"]
    try:
        if _regular_file(manifest_path):
            raise ConfigError(_regular_file(manifest_path))
        manifest = read_json(manifest_path)
        listed = manifest["outputs"] + manifest["rejected_outputs"]
        counts = {k: int(manifest["counts"][k]) for k in ("in", "kept", "rejected", "errored")}
        bad = next((p for p in map(_entry_problem, listed) if p), None)
        if bad:
            raise ConfigError(bad)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return [f"{name}: manifest.json is unreadable or malformed ({exc}); rerun the pipeline to rewrite it"]
    problems = []
    if not listed:
        problems.append(f"{name}: the stage wrote no output files (were its inputs empty?): nothing to check")
    if manifest.get("status") != "complete":
        failed = manifest.get("failed_tasks")
        failed = len(failed) if isinstance(failed, list) else "?"
        problems.append(f"{name}: status {manifest.get('status')!r}: {failed} failed task(s)")
    if counts["in"] != counts["kept"] + counts["rejected"] + counts["errored"]:
        problems.append(f"{name}: counts do not add up: {counts}")
    for entry in listed:
        problems.extend(f"{name}: {p}" for p in _check_file(stage_dir, entry))
    kept_rows = sum(e["rows"] for e in manifest["outputs"])
    if kept_rows != counts["kept"]:
        problems.append(
            f"{name}: outputs hold {kept_rows} rows but the manifest counts {counts['kept']} kept"
        )
    known = {e["path"] for e in listed}
    for folder in (stage_dir, stage_dir / REJECTED_DIR):
        for f in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
            relative = str(f.relative_to(stage_dir))
            if relative not in known:
                problems.append(f"{name}: {relative} is not in the manifest (left over from another run?)")
        for f in sorted(folder.iterdir()) if folder.is_dir() else []:
            if is_tmp(f):
                problems.append(f"{name}: temporary file {f.name} left by an interrupted write")
    return problems


def _check_file(stage_dir: Path | StoragePath, entry: dict[str, Any]) -> list[str]:
    """Problems of one output the manifest lists: place, kind, size, checksum, rows, UTF-8 text."""
    where = entry["path"]
    path = _inside(stage_dir, where)
    if path is None:
        return [f"manifest entry {where!r} points outside the stage folder (not opened)"]
    kind = _regular_file(path)
    if kind:
        return [f"{'missing ' + where if kind == 'missing' else where + ' is ' + kind}"]
    size = path.stat().st_size
    if size != entry["bytes"]:
        return [f"{where} has {size} bytes, manifest says {entry['bytes']}"]
    if sha256_file(path) != entry["sha256"]:
        return [f"{where} checksum differs from the manifest (corrupted)"]
    try:
        rows = parquet_rows(path)
        _check_utf8(path)
    except Exception as exc:  # noqa: BLE001 - report, don't crash, on any unreadable file
        return [f"{where} is not readable Parquet ({exc})"]
    if rows != entry["rows"]:
        return [f"{where} has {rows} rows, manifest says {entry['rows']}"]
    return []


def _check_utf8(path: Path | StoragePath) -> None:
    """Raise if a string column holds bytes that are not UTF-8 (readers such as `datasets` fail on them)."""
    reader = parquet_file(path)
    strings = [f.name for f in reader.schema_arrow if str(f.type) in ("string", "large_string")]
    for group in range(reader.num_row_groups) if strings else ():
        reader.read_row_group(group, columns=strings).validate(full=True)


def flow_problems(manifests: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Where a stage that reads only earlier stages of the pipeline did not read exactly what they kept.

    `manifests` maps stage name (the folder name in the work directory) to its manifest, in pipeline order.
    """
    problems = []
    for name, manifest in manifests.items():
        sources = [_stage_name(i.get("path", "")) for i in manifest.get("inputs", []) if isinstance(i, dict)]
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


def _pipeline_stages(root: Path | StoragePath) -> list[str]:
    """The stage folder names pipeline.json lists; ValueError if it is malformed or names a path."""
    try:
        if _regular_file(root / PIPELINE_FILE):
            raise OSError(_regular_file(root / PIPELINE_FILE))
        stages = read_json(root / PIPELINE_FILE)["stages"]
    except (OSError, KeyError, TypeError) as exc:
        raise ConfigError(f"{root / PIPELINE_FILE} is malformed ({exc!r}); rerun the pipeline") from exc
    if not isinstance(stages, list) or not all(isinstance(s, str) for s in stages):
        raise ConfigError(f"{root / PIPELINE_FILE}: 'stages' is not a list of names; rerun the pipeline")
    outside = [s for s in stages if "/" in s or "\\" in s or s in ("", ".", "..")]
    if outside:
        raise ConfigError(f"{root / PIPELINE_FILE} names stage folder {outside[0]!r} outside {root}")
    return stages


def verify(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """(stages checked, problems) for a stage directory or a work directory (with pipeline.json); or a URI."""
    root = as_path(path)
    if not root.is_dir():
        raise ConfigError(f"not a directory: {root}")
    if (root / PIPELINE_FILE).exists():
        stages = [root / s for s in _pipeline_stages(root)]
    elif (root / MANIFEST).exists() or list(root.glob("*.parquet")):
        stages = [root]
    else:
        raise ConfigError(f"not a curate stage or work directory: {root} (no pipeline.json or manifest.json)")
    problems = []
    manifests = {}
    for stage_dir in stages:
        if stage_dir.is_symlink():
            problems.append(f"{stage_dir.name}: the stage directory is a link (not followed)")
            continue
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
