"""Parquet and JSON I/O with atomic writes: a file either exists complete or not at all."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

TMP_MARK = ".tmp-"  # temporary files carry this in their name until renamed into place
PARQUET_COMPRESSION = "zstd"


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{TMP_MARK}{uuid.uuid4().hex[:8]}")


def write_parquet(table: pa.Table, path: str | os.PathLike, *, row_group_size: int | None = None) -> None:
    """Write a zstd Parquet file atomically (temporary name, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
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
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parquet_rows(path: str | os.PathLike) -> int:
    """Row count from the Parquet footer, without reading data."""
    return pq.ParquetFile(path).metadata.num_rows


def read_parquet(path: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    """Read one Parquet file (optionally some columns)."""
    return pq.read_table(path, columns=columns)


def parquet_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The Parquet shards named by paths: files as given, directories' top-level *.parquet (not rejected/)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(f for f in p.glob("*.parquet") if TMP_MARK not in f.name))
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"input not found: {p}")
    return found


def is_tmp(path: Path) -> bool:
    """True for a temporary file left by an interrupted write."""
    return TMP_MARK in path.name
