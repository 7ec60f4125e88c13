"""Errors that the CLI turns into a one-line message and a non-zero exit code (no stack trace)."""

from __future__ import annotations


class Clips4Error(Exception):
    """Base class: the message names the file or object, the problem, and the fix."""


class DatasetError(Clips4Error):
    """A dataset file is missing, unreadable or inconsistent with its layout."""
