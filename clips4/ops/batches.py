"""Batching images of one size: the one batcher of the evaluation, the report, ``clips4 segment`` and the
clip_dense cache (a forward pass takes a stack of images, so only images of one size can share it)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import TypeVar

Item = TypeVar("Item")


def same_size_batches(
    items: Iterable[Item], size_of: Callable[[Item], Hashable], batch_size: int
) -> Iterator[list[Item]]:
    """Runs of consecutive ``items`` whose ``size_of`` is equal, at most ``batch_size`` each, in order (lazily:
    an item is read when the batch before it is handed out)."""
    pending: list[Item] = []
    for item in items:
        if pending and (len(pending) == max(1, batch_size) or size_of(pending[0]) != size_of(item)):
            yield pending
            pending = []
        pending.append(item)
    if pending:
        yield pending
