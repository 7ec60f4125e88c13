"""A memory bank of the segment embeddings of the last few batches: more negatives for the contrastive loss L_t.

SegSort and HSG keep the segment prototypes of recent batches as extra negatives, which gives each pixel many
more segments to be told apart from at no extra forward pass. The bank is part of the training state: a resumed
run restores it (``state_dict``/``load_state_dict``), or its first steps after the restart would see fewer negatives
than the uninterrupted run and drift from it.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch


class MemoryBank:
    """The detached segment embeddings ``[S_i, D]`` of the last ``batches`` pushes, oldest dropped first."""

    def __init__(self, batches: int) -> None:
        if batches < 0:
            raise ValueError(f"MemoryBank: batches must be >= 0, got {batches}")
        self.batches = batches
        self._entries: deque[torch.Tensor] = deque(maxlen=batches) if batches else deque(maxlen=0)

    def __len__(self) -> int:
        """The number of batches held."""
        return len(self._entries)

    def push(self, embeddings: torch.Tensor) -> None:
        """Add one batch's segment embeddings ``[S, D]`` (detached and copied: later steps must not change them)."""
        if embeddings.dim() != 2:
            raise ValueError(f"MemoryBank.push: expected [S, D] embeddings, got {tuple(embeddings.shape)}")
        if self.batches:
            self._entries.append(embeddings.detach().clone())

    def embeddings(self) -> torch.Tensor | None:
        """All held embeddings ``[M, D]``, oldest first, or None when the bank is empty."""
        return torch.cat(list(self._entries)) if self._entries else None

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors and ints (loads with ``torch.load(weights_only=True)``), on the CPU."""
        return {"batches": self.batches, "entries": [entry.cpu() for entry in self._entries]}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str | None = None) -> None:
        """Restore the entries (the newest ``batches`` of them if the saved bank was larger)."""
        entries = list(state["entries"])[-self.batches :] if self.batches else []
        self._entries = deque((e.to(device) if device is not None else e.clone() for e in entries), maxlen=self.batches)
