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


#: errno names of the file-system errors a user fixes by choosing another place or freeing space.
_OS_ADVICE = {
    "EACCES": "permission denied: choose a folder you can write (or read), or fix its permissions",
    "EPERM": "operation not permitted: choose a folder you can write, or fix its permissions",
    "EROFS": "the file system is read-only: choose a writable folder",
    "ENOSPC": "no space left on the device: free some space, or choose another folder",
    "EDQUOT": "disk quota exceeded: free some space, or choose another folder",
    "ENOENT": "no such file or folder: check the path",
    "ENOTDIR": "a part of the path is a file, not a folder: check the path",
    "EISDIR": "is a folder, not a file: give a file path",
}


def describe_os_error(err: OSError, path: str | Path | None = None) -> str | None:
    """One line naming the file (``path``, else the error's own) and the fix for a file-system error a user can fix
    (permissions, a read-only or full disk, a missing folder), or ``None`` for other errors (which stay tracebacks:
    they are bugs)."""
    import errno

    name = errno.errorcode.get(err.errno or -1)
    if name not in _OS_ADVICE:
        return None
    where = path if path is not None else err.filename
    if where is None:
        return f"{_OS_ADVICE[name]} ({err})"
    return f"{where}: {_OS_ADVICE[name]} ({err.strerror or name})"
