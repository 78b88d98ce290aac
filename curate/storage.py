"""Stage outputs on object storage: `s3://bucket/prefix` (or another pyarrow.fs URI) as a work directory.

`as_path` gives a `pathlib.Path` for a local path and a `StoragePath` for a URI; StoragePath has the part of
pathlib's interface that the runner and io use (`/`, name, stem, exists, iterdir, glob, stat, unlink, ...), so
the same code writes to a disk or a bucket. Object stores have no rename: io writes a complete object in one
upload (a PUT, or a multipart upload that becomes visible only when it completes), which is just as atomic.

S3 settings come from the usual AWS variables: credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...),
AWS_DEFAULT_REGION, and AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL for an S3-compatible store (MinIO, Ceph, ...).
Every Ray worker needs the same variables (a local Ray inherits the driver's).
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import json
import os
import posixpath
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from curate.errors import FolderBusy
from curate.layout import LOCK_FILE

OBJECT_STORES = ("s3", "gs", "gcs")


def is_uri(path: Any) -> bool:
    """True for a storage URI such as s3://bucket/key (file:// and plain paths are local)."""
    if isinstance(path, StoragePath):
        return True
    text = str(path)
    return "://" in text and not text.startswith("file://")


def as_path(path: str | os.PathLike | StoragePath) -> Path | StoragePath:
    """A local Path, or a StoragePath for a URI."""
    if isinstance(path, (Path, StoragePath)):
        return path
    text = os.fspath(path) if not isinstance(path, str) else path
    if text.startswith("file://"):
        return Path(urlsplit(text).path)
    return StoragePath(text) if is_uri(text) else Path(text)


def remove_tree(path: Path | StoragePath) -> None:
    """Delete a folder and everything in it, if it exists."""
    if isinstance(path, StoragePath):
        path.remove_tree()
    else:
        shutil.rmtree(path, ignore_errors=True)


_held_locks: dict[str, int] = {}  # resolved folder -> descriptor of its lock file, in this process


@contextlib.contextmanager
def folder_lock(folder: Path | StoragePath) -> Iterator[None]:
    """Hold the advisory lock of a work or stage folder (its `.curate.lock`) while the block runs.

    The lock is flock(2) on the file: the system releases it when its holder ends, however it ends (a killed
    driver leaves no stale lock to clean up). The file names the holder (host, PID, command, start) for the
    message another process gets. Re-entrant within a process. Object stores have no locks: not locked.
    """
    if isinstance(folder, StoragePath):
        yield
        return
    key = str(Path(folder).resolve())
    if key in _held_locks:
        yield
        return
    path = Path(key) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _lock_holder(fd)
        os.close(fd)
        raise FolderBusy(_busy_message(key, holder)) from None
    except BaseException:
        os.close(fd)
        raise
    me = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "command": " ".join(sys.argv)[:500],
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(me) + "\n").encode("utf-8", "backslashreplace"), 0)
    _held_locks[key] = fd
    try:
        yield
    finally:
        del _held_locks[key]
        os.close(fd)  # releases the lock; the file stays, so no second process races on creating it


def _lock_holder(fd: int) -> dict[str, Any]:
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace") or "{}")
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _busy_message(folder: str, holder: dict[str, Any]) -> str:
    who = f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, since {holder.get('since', '?')}"
    message = f"{folder} is in use by another curate process ({who}): wait for it to finish or stop it"
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            # flock is released when every holder ends: a child of the dead process still has it open.
            message += (
                f"; pid {holder['pid']} has ended, but a process it started still holds the lock "
                "(stop leftover curate or Ray worker processes)"
            )
        except PermissionError:
            pass
    return message


@lru_cache(maxsize=32)
def _filesystem(scheme: str, bucket: str) -> pafs.FileSystem:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if scheme == "s3" and endpoint:
        # pyarrow does not read the endpoint variables itself.
        parts = urlsplit(endpoint)
        return pafs.S3FileSystem(
            endpoint_override=parts.netloc or parts.path,
            scheme=parts.scheme or "https",
            region=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1",
            force_virtual_addressing=False,
        )
    filesystem, _ = pafs.FileSystem.from_uri(f"{scheme}://{bucket}/")
    return filesystem


@dataclass(frozen=True)
class _Stat:
    st_size: int
    st_mtime_ns: int


class StoragePath:
    """A file or folder on a pyarrow filesystem, named by its URI (`s3://bucket/prefix/file.parquet`)."""

    __slots__ = ("_scheme", "_bucket", "_key")

    def __init__(self, uri: str):
        parts = urlsplit(uri)
        if not parts.scheme or not parts.netloc:
            raise ValueError(f"not a storage URI: {uri!r} (expected e.g. s3://bucket/prefix)")
        self._scheme = parts.scheme.lower()
        self._bucket = parts.netloc
        self._key = posixpath.normpath(parts.path).strip("/") if parts.path.strip("/") else ""

    # -- naming
    def __str__(self) -> str:
        return f"{self._scheme}://{self._bucket}/{self._key}".rstrip("/")

    def __repr__(self) -> str:
        return f"StoragePath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoragePath) and str(self) == str(other)

    def __lt__(self, other: StoragePath) -> bool:
        return str(self) < str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __reduce__(self):
        return (StoragePath, (str(self),))  # the filesystem is rebuilt where it is used (a Ray worker)

    def __truediv__(self, name: str | os.PathLike) -> StoragePath:
        return StoragePath(f"{self}/{os.fspath(name)}")

    @property
    def name(self) -> str:
        return posixpath.basename(self._key)

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    @property
    def parent(self) -> StoragePath:
        return StoragePath(f"{self._scheme}://{self._bucket}/{posixpath.dirname(self._key)}")

    def resolve(self) -> StoragePath:
        return self

    def as_uri(self) -> str:
        return str(self)

    def relative_to(self, other: StoragePath) -> PurePosixPath:
        prefix = f"{other}/"
        if not str(self).startswith(prefix):
            raise ValueError(f"{self} is not inside {other}")
        return PurePosixPath(str(self)[len(prefix) :])

    def is_relative_to(self, other: Any) -> bool:
        return isinstance(other, StoragePath) and str(self).startswith(f"{other}/")

    # -- the filesystem
    @property
    def filesystem(self) -> pafs.FileSystem:
        return _filesystem(self._scheme, self._bucket)

    @property
    def fs_path(self) -> str:
        """The path as the pyarrow filesystem names it (bucket/key)."""
        return f"{self._bucket}/{self._key}".rstrip("/")

    def _info(self) -> pafs.FileInfo:
        return self.filesystem.get_file_info(self.fs_path)

    def exists(self) -> bool:
        return self._info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self._info().type == pafs.FileType.File

    def is_dir(self) -> bool:
        return self._info().type == pafs.FileType.Directory

    def is_symlink(self) -> bool:
        return False

    def stat(self) -> _Stat:
        info = self._info()
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"not found: {self}")
        return _Stat(int(info.size or 0), int(info.mtime_ns or 0))

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        # Object stores have no folders: a prefix exists once an object is written under it.
        if self._scheme not in OBJECT_STORES:
            self.filesystem.create_dir(self.fs_path, recursive=parents)

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.filesystem.delete_file(self.fs_path)
        except FileNotFoundError:
            if not missing_ok:
                raise
        except OSError:
            if not missing_ok or self.exists():
                raise

    def remove_tree(self) -> None:
        """Delete everything under this prefix."""
        self.filesystem.delete_dir_contents(self.fs_path, missing_dir_ok=True)
        with contextlib.suppress(OSError):  # no folder marker to delete
            self.filesystem.delete_dir(self.fs_path)

    def _list(self) -> list[tuple[StoragePath, pafs.FileType]]:
        selector = pafs.FileSelector(self.fs_path, recursive=False, allow_not_found=True)
        found = self.filesystem.get_file_info(selector)
        return sorted((StoragePath(f"{self._scheme}://{info.path}"), info.type) for info in found)

    def iterdir(self) -> list[StoragePath]:
        return [p for p, _ in self._list()]

    def glob(self, pattern: str) -> list[StoragePath]:
        """Files directly in this folder whose names match pattern (no `**`)."""
        return [
            p
            for p, kind in self._list()
            if kind == pafs.FileType.File and fnmatch.fnmatchcase(p.name, pattern)
        ]

    # -- contents
    def open_input(self) -> Any:
        """A seekable pyarrow file for reading (Parquet footers, JSON)."""
        return self.filesystem.open_input_file(self.fs_path)

    def open_input_stream(self, compression: str | None = "detect") -> Any:
        """A streaming reader; by default decompressed as the name's extension says (.gz, .zst, ...)."""
        return self.filesystem.open_input_stream(self.fs_path, compression=compression)

    def read_bytes(self) -> bytes:
        with self.open_input() as f:
            return f.read()

    def open_output_stream(self) -> Any:
        """A writer of the object's bytes as given; the object appears complete when the writer closes."""
        # compression=None: pyarrow would otherwise gzip (zstd, ...) a name ending in .gz (.zst, ...) again.
        return self.filesystem.open_output_stream(self.fs_path, compression=None)

    def upload(self, local: Path) -> None:
        """Copy a complete local file to this object in one upload (visible only once it is complete)."""
        with open(local, "rb") as src, self.open_output_stream() as dst:
            for chunk in iter(lambda: src.read(8 << 20), b""):
                dst.write(chunk)
