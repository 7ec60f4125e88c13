"""The sample types every dataset reader yields."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = 255
"""Label value for pixels that are not evaluated (object borders in VOC, unlabelled pixels)."""


@dataclass(frozen=True)
class Sample:
    """One image with its semantic label map.

    ``image`` is RGB uint8 ``[H, W, 3]``; ``label`` is uint8 ``[H, W]`` with class ids indexing
    ``class_names`` and ``IGNORE_INDEX`` for ignored pixels (``None`` when the split has no labels).
    """

    image_id: str
    image: np.ndarray
    label: np.ndarray | None
    class_names: tuple[str, ...]


@dataclass(frozen=True)
class VideoSample:
    """One video for mask propagation (DAVIS 2017 layout).

    ``frames`` are RGB uint8 ``[H, W, 3]``; ``masks`` are uint8 ``[H, W]`` instance-id maps (0 is
    background) for every annotated frame, ``masks[0]`` being the first-frame mask that propagation
    starts from; ``frame_ids`` name the frames (file stems).
    """

    name: str
    frames: tuple[np.ndarray, ...]
    masks: tuple[np.ndarray, ...]
    frame_ids: tuple[str, ...]

    @property
    def first_mask(self) -> np.ndarray:
        return self.masks[0]

    @property
    def num_objects(self) -> int:
        return int(self.masks[0].max())
