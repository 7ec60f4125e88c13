"""Limits on class names, shared by the CLI, the Python API (:func:`clips4.inference.parse_classes`) and the web
page: a name is a few words, not a paragraph (a 10,500-character name made a 67,875-pixel-wide overlay legend, and
CLIP reads only the first few dozen words of a prompt anyway)."""

from __future__ import annotations

from collections.abc import Sequence

from clips4.errors import Clips4Error

#: Longest class name accepted, in characters.
MAX_CLASS_NAME_CHARS = 64


def check_name_lengths(names: Sequence[str], where: str) -> None:
    """:class:`Clips4Error` naming ``where`` and the first name longer than :data:`MAX_CLASS_NAME_CHARS`."""
    for name in names:
        if len(name) > MAX_CLASS_NAME_CHARS:
            shown = name if len(name) <= 24 else f"{name[:24]}..."
            raise Clips4Error(
                f"{where}: class name {shown!r} is {len(name)} characters long; at most {MAX_CLASS_NAME_CHARS} are "
                "accepted: name the class in a few words"
            )
