"""How many worker processes a ``--workers`` option means (shared by the synthetic world and the cache stages)."""

from __future__ import annotations

import os


def worker_count(workers: int) -> int:
    """Worker processes for ``--workers``: 0 means every core this process may use."""
    return workers or len(os.sched_getaffinity(0))
