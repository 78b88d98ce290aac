"""Parquet and JSON I/O with atomic writes: a file either exists complete or not at all.

Paths may be local or storage URIs (s3://bucket/key, see curate.storage): a URI is written by uploading a
complete local temporary file in one go, since object stores have no rename.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import MissingInput
from curate.layout import REJECTED_DIR, TMP_MARK, tmp_path
from curate.storage import StoragePath, as_path

PARQUET_COMPRESSION = "zstd"


def write_parquet(table: pa.Table, path: str | os.PathLike, *, row_group_size: int | None = None) -> None:
    """Write a zstd Parquet file atomically (temporary name, fsync, rename; or one upload to storage)."""
    path = as_path(path)
    if isinstance(path, StoragePath):
        with tempfile.TemporaryDirectory(prefix="curate-up-") as tmp:
            local = Path(tmp) / path.name
            pq.write_table(
                table,
                local,
                compression=PARQUET_COMPRESSION,
                row_group_size=row_group_size,
                write_statistics=True,
            )
            path.upload(local)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    try:
        pq.write_table(
            table, tmp, compression=PARQUET_COMPRESSION, row_group_size=row_group_size, write_statistics=True
        )
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Write bytes atomically."""
    path = as_path(path)
    if isinstance(path, StoragePath):
        with path.open_output_stream() as f:  # one PUT: visible only when complete
            f.write(data)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write pretty, key-sorted JSON atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    # Non-UTF-8 file names reach here as lone surrogates; backslashreplace keeps them as valid JSON escapes.
    write_bytes(text.encode("utf-8", "backslashreplace"), path)


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file."""
    path = as_path(path)
    if isinstance(path, StoragePath):
        return json.loads(path.read_bytes().decode("utf-8"))
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    path = as_path(path)
    with path.open_input() if isinstance(path, StoragePath) else open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _source(path: str | os.PathLike) -> Any:
    path = as_path(path)
    return path.open_input() if isinstance(path, StoragePath) else path


def parquet_file(path: str | os.PathLike, *, memory_map: bool = False) -> pq.ParquetFile:
    """A Parquet reader (footer read now, row groups on demand); memory-mapped only for a local file."""
    path = as_path(path)
    if isinstance(path, StoragePath):
        return pq.ParquetFile(path.open_input())
    return pq.ParquetFile(path, memory_map=memory_map)


def input_stream(path: str | os.PathLike) -> pa.NativeFile:
    """A streaming reader of a file, decompressed as its extension says (.gz, .zst, ...)."""
    path = as_path(path)
    if isinstance(path, StoragePath):
        return path.open_input_stream()
    return pa.input_stream(str(path), compression="detect")


def parquet_rows(path: str | os.PathLike) -> int:
    """Row count from the Parquet footer, without reading data."""
    return pq.ParquetFile(_source(path)).metadata.num_rows


def parquet_schema(path: str | os.PathLike) -> pa.Schema:
    """The schema (with its key-value metadata) from the Parquet footer."""
    return pq.read_schema(_source(path))


def read_parquet(path: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    """Read one Parquet file (optionally some columns)."""
    return pq.read_table(_source(path), columns=columns)


def parquet_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The Parquet shards named by paths: files as given, directories' top-level *.parquet (not rejected/)."""
    found: list[Path] = []
    for p in map(as_path, paths):
        if p.is_dir():
            # Files only: a folder named x.parquet is not a shard.
            found.extend(sorted(f for f in p.glob("*.parquet") if TMP_MARK not in f.name and f.is_file()))
        elif p.is_file():
            found.append(p)
        else:
            raise MissingInput(f"input not found: {p}")
    return found


def stage_shards(path: str | os.PathLike) -> list[Path]:
    """The Parquet shards of one stage input (a stage directory or a Parquet file); none is an error."""
    files = parquet_files([path])
    if files:
        return files
    folder = as_path(path)
    folders = [d for d in folder.iterdir() if d.is_dir() and d.name != REJECTED_DIR]
    stages = sorted(d.name for d in folders if parquet_files([d]))
    hint = f"; it holds stage folders ({', '.join(stages)}): pass one of them" if stages else ""
    raise MissingInput(f"no *.parquet in {folder} (is it a stage directory?){hint}")
