"""Where the library's messages go: the ``clips4`` logger hierarchy.

Library modules log to ``logging.getLogger(__name__)`` (``clips4.train.loop``, ``clips4.serve.app``, ...), the
children of ``clips4``; they never print. The command line calls :func:`configure` once, in its callback, with
the level of ``-v`` (DEBUG), ``-q`` (WARNING) or neither (INFO): each message is then written as it is
(``%(message)s``) to stderr, what the ``print`` calls wrote before. The messages go through ``tqdm.write``, so a
message in the middle of a progress bar does not break the bar. A program that uses clips4 as a library
configures logging its own way (without configuration Python shows warnings and errors only).
"""

from __future__ import annotations

import logging
import sys

#: The root of the package's loggers.
LOGGER_NAME = "clips4"


class _StderrHandler(logging.Handler):
    """Each record on the current ``sys.stderr`` (looked up per message), through ``tqdm.write``."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # pragma: no cover - logging's own convention: never raise from a handler
            self.handleError(record)


def configure(level: int = logging.INFO) -> logging.Logger:
    """Send the ``clips4`` loggers' messages at ``level`` and above to stderr, plainly; calling it again replaces
    the previous configuration (the CLI's callback runs once per command, a test may run many)."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    return logger
