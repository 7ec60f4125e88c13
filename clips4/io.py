"""One atomic file write for the whole package: a reader sees the old file or the new one, never half of one.

:func:`atomic_write` writes into a hidden temporary file beside the destination (``.<name>.tmp<pid>``, so the
rename never crosses a file system and a kill leaves only a name that says what it was), then renames it over
the destination with ``os.replace``. Any failure on the way (an error in the writer, a full disk,
KeyboardInterrupt) removes the temporary file and leaves the previous content in place. ``durable=True`` also
fsyncs the file before the rename and its folder after it, so the new content survives a power loss, not only a
killed process; it is for the outputs that are costly to lose or that DVC records: checkpoints, a store's
metadata, metrics files.

Why one function and not a context manager (``with atomic_open(path) as handle``): most writes are a string or
bytes already in hand (one call each), and writers that need a file handle (``torch.save``, PIL's
``Image.save``, matplotlib's ``savefig``, ``np.savez``) pass a callback; either way the success path (flush,
fsync, rename) and the failure path (remove the temporary file) live here, where no caller can forget one.

A writer that must be given a path rather than a handle writes to ``handle.name``, the temporary file's path:
``torch.save(obj, path)`` names its zip archive after the file name's stem, so saving to the handle instead
(archive ``archive/``) would change the bytes, and the sha256, of a checkpoint that was always saved by name.
The temporary name keeps the destination's name before the last dot (``.clip.pt.tmp123``: archive
``.clip.pt``), so such bytes do not depend on the process id.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

#: What :func:`atomic_write` writes: the bytes, a string (UTF-8), or a callback that writes to a binary handle.
Data = bytes | bytearray | memoryview | str | Callable[[BinaryIO], object]


def temporary_path(path: str | Path) -> Path:
    """The hidden temporary file beside ``path``: ``.<name>.tmp<pid>``; off the main thread ``-<thread id>`` is
    appended, so two threads writing one file each write their own temporary file (the last rename wins)."""
    path = Path(path)
    owner = str(os.getpid())
    if threading.current_thread() is not threading.main_thread():
        owner += f"-{threading.get_native_id()}"
    return path.with_name(f".{path.name}.tmp{owner}")


def atomic_write(path: str | Path, data: Data, *, durable: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (see the module's docstring); creates the parent folder; returns
    ``path``.

    ``data`` is bytes, a ``str`` (written as UTF-8, newlines as given), or a callable that receives the open
    binary handle of the temporary file and writes to it. ``durable=True`` fsyncs the file and its folder.

    Examples:
        >>> atomic_write("reports/report.md", "# Report\\n")  # doctest: +SKIP
        >>> atomic_write("models/clips4.pt", lambda handle: torch.save(state, handle), durable=True)  # doctest: +SKIP
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not (callable(data) or isinstance(data, bytes | bytearray | memoryview)):
        raise TypeError(f"atomic_write: data must be bytes, str or a callable, got {type(data).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as handle:
            if callable(data):
                data(handle)
            else:
                handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # the original error matters more than a leftover temporary file
            tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_folder(path.parent)
    return path


def atomic_write_json(path: str | Path, payload: Any, *, durable: bool = False) -> Path:
    """``payload`` as JSON with ``indent=2`` and a trailing newline (the format of every JSON file clips4
    writes), through :func:`atomic_write`."""
    return atomic_write(path, json.dumps(payload, indent=2) + "\n", durable=durable)


def fsync_folder(folder: str | Path) -> None:
    """Make a rename or a new file in ``folder`` durable. Best effort: a platform or file system that cannot open
    or fsync a folder (Windows, some network mounts) is skipped; the file's own fsync is not."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
