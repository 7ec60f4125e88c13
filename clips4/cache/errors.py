"""The error of the cache layer (re-exported as ``clips4.cache.StoreError``)."""

from __future__ import annotations

from clips4.errors import Clips4Error


class StoreError(Clips4Error):
    """A cache store is missing, incomplete, stale, damaged or of the wrong kind; the message says what to run."""
