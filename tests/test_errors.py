"""Errors end in one line and an exit code: 2 for a usage or configuration mistake, 1 for work that could not
be completed, 3 for a bug in curate, which says so (a ValueError from a bug is not a usage error)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from curate.command import execute
from curate.errors import (
    AccountingError,
    ConfigError,
    FolderBusy,
    MissingInput,
    PreparationError,
    disk_full,
    exit_code,
)


def _ended(error: BaseException, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    def body(executor, progress):
        raise error

    with pytest.raises(typer.Exit) as stopped:
        execute(body, None, None, local=True)
    return stopped.value.exit_code, " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize(
    ("error", "code", "said"),
    [
        (ConfigError("stage 'x': option 'y' must be a number"), 2, "error: stage 'x': option 'y' must be"),
        (FolderBusy("/w is in use by another curate process"), 2, "/w is in use"),
        (MissingInput("/idx is not a near-duplicate index"), 2, "/idx is not a near-duplicate index"),
        (disk_full("/out/.scratch"), 1, "no space left while writing /out/.scratch: free some space"),
        (PreparationError("stage 'near': its global pass failed"), 1, "its global pass failed"),
        (AccountingError("stage 'x': 3 in, 2 out"), 3, "accounting check failed (a bug, please report it)"),
        (ValueError("invalid literal for int()"), 3, "internal error (a bug in curate"),
        (
            KeyError("text"),
            3,
            "please report it with the command and this message): KeyError: 'text'",
        ),
    ],
)
def test_an_error_becomes_its_message_and_exit_code(error, code, said, capsys):
    ended, text = _ended(error, capsys)
    assert ended == code and said in text and "Traceback" not in text, text


def test_a_configuration_error_is_a_value_error_and_a_missing_input_a_file_not_found():
    """Code that catches the built-in types (and tests written against them) still does."""
    assert isinstance(ConfigError("x"), ValueError)
    assert isinstance(MissingInput("x"), FileNotFoundError) and exit_code(MissingInput("x")) == 2
    assert exit_code(ValueError("x")) == exit_code(RuntimeError("x")) == 3


def test_a_usage_error_through_the_command_line_exits_2_before_any_work(tmp_path: Path):
    from typer.testing import CliRunner

    from curate.cli import app

    result = CliRunner().invoke(
        app,
        ["dedup", str(tmp_path / "missing"), "--near", "--threshold", "1.5", "--out", str(tmp_path / "o")],
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "option 'threshold' must be a fraction between 0 and 1, not 1.5" in " ".join(result.output.split())
    assert not (tmp_path / "o").exists()
