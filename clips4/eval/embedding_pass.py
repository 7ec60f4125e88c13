"""One pass of a method over a split's images: their pixel embeddings, in batches of images of one size.

Every metric of the ``evaluate`` stage reads a method through the same two calls, which MaskCLIP's and the
student's segmenters both provide (:class:`PixelEmbedder`): ``pixel_embeddings`` (unit dense features
``[B, h, w, D]``, read as ``eval.protocol`` says) and ``label`` (class indices by the nearest class text).
Reading each image once and handing its embeddings to every metric keeps the stage to one forward pass per
image and method.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
import torch

from clips4.data.types import Sample


class PixelEmbedder(Protocol):
    def pixel_embeddings(self, images: np.ndarray | list[np.ndarray]) -> torch.Tensor: ...

    def label(self, embeddings: torch.Tensor, size: tuple[int, int]) -> np.ndarray: ...


def embedded_samples(
    embedder: PixelEmbedder, samples: Sequence[Sample], count: int, batch_size: int = 32
) -> Iterator[tuple[int, Sample, torch.Tensor]]:
    """``(index, sample, embeddings [h, w, D])`` for the first ``count`` samples, in order; consecutive images
    of one size share a forward pass (at most ``batch_size``)."""
    pending: list[tuple[int, Sample]] = []

    def flush() -> Iterator[tuple[int, Sample, torch.Tensor]]:
        embeddings = embedder.pixel_embeddings([sample.image for _, sample in pending])
        for (index, sample), embedding in zip(pending, embeddings, strict=True):
            yield index, sample, embedding
        pending.clear()

    for index in range(min(count, len(samples))):
        sample = samples[index]
        if pending and (len(pending) == batch_size or pending[0][1].image.shape != sample.image.shape):
            yield from flush()
        pending.append((index, sample))
    if pending:
        yield from flush()
