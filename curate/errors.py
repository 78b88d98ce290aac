"""The errors curate raises on purpose, and the exit code each gives the `curate` command.

One rule: a mistake of the user (a configuration file, an option, an input, a folder another run holds) is a
ConfigError and exits 2 before any work, with a message that says what to change. A failure of the work
itself exits 1 (DiskFullError, PreparationError, failed tasks). Anything else is a bug in curate: the command
says so and exits 3 (AccountingError is one such bug, caught by curate's own bookkeeping).
"""

from __future__ import annotations

import errno
import os
import traceback

USAGE = 2  # exit code of a usage or configuration error
FAILED = 1  # exit code of work that could not be completed (failed tasks, a full disk, a failed global pass)
BUG = 3  # exit code of an error curate did not expect: a bug to report


class ConfigError(ValueError):
    """A configuration or usage mistake (sources.yaml, pipeline YAML, options, inputs): the message says
    where and what to change. Exit code 2."""


class MissingInput(ConfigError, FileNotFoundError):
    """A file or folder the user named (an input, an index) does not exist, or holds nothing to read."""


class FolderBusy(ConfigError):
    """Another curate process works in the same folder (a usage error: nothing was done)."""


class RayUnreachable(ConfigError, ConnectionError):
    """--address names a Ray cluster this machine cannot reach: a usage error, said before anything runs."""


class PreparationError(RuntimeError):
    """A task of a stage's global pass (dedup, near_dedup, mix, pubmed) failed: the stage cannot go on."""


class AccountingError(RuntimeError):
    """A stage's documents in do not equal kept + rejected + errored: a bug, never a data problem."""


class DiskFullError(OSError):
    """The output filesystem is full: nothing partial is kept, and a rerun resumes once space is freed."""


def disk_full(where: object) -> DiskFullError:
    """The DiskFullError for a write into the folder `where` that did not fit."""
    return DiskFullError(
        errno.ENOSPC,
        f"no space left while writing {where}: free some space there and rerun the same command "
        "(finished shards are kept and will not be recomputed)",
    )


def exit_code(error: BaseException) -> int:
    """The `curate` command's exit code for an error that stopped it."""
    if isinstance(error, ConfigError):
        return USAGE
    if isinstance(error, (DiskFullError, PreparationError)):
        return FAILED
    return BUG


def message(error: BaseException) -> str:
    """What the command prints for an error that stopped it: a bug says that it is one."""
    if isinstance(error, DiskFullError):
        return str(error.strerror)
    if exit_code(error) != BUG:
        return str(error)
    if isinstance(error, AccountingError):
        return f"accounting check failed (a bug, please report it): {error}"
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    return (
        f"internal error (a bug in curate, please report it with the command and this message): "
        f"{type(error).__name__}: {error}{where}"
    )
