"""Errors that the CLI turns into a one-line message and a non-zero exit code (no stack trace)."""

from __future__ import annotations

from pathlib import Path


class Clips4Error(Exception):
    """Base class: the message names the file or object, the problem, and the fix."""


class DatasetError(Clips4Error):
    """A dataset file is missing, unreadable or inconsistent with its layout.

    ``path`` is the offending file or folder, so that ``clips4 data check`` can list problems per file.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else str(path)


class Clips4Warning(UserWarning):
    """Something a user should hear about that does not stop the command (the CLI prints it as one line)."""
