"""A semantic-segmentation dataset over a list of (image file, label file) pairs.

Every layout (VOC, Context, COCO-Stuff, the synthetic world) only differs in where its files are and
how stored label values map to class ids; :class:`SegmentationDataset` does the reading and the
checks once for all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clips4.data.images import read_label, read_rgb
from clips4.data.types import IGNORE_INDEX, Sample
from clips4.errors import DatasetError

LabelMap = Callable[[np.ndarray], np.ndarray]
"""Maps stored label values to class ids (255 = ignore), e.g. Context-59's reduce-zero-label."""


def identity_labels(label: np.ndarray) -> np.ndarray:
    return label


def reduce_zero_label(label: np.ndarray) -> np.ndarray:
    """mmsegmentation's ``reduce_zero_label``: 0 (background) -> 255, k -> k - 1, 255 stays 255."""
    reduced = label.astype(np.int16) - 1
    reduced[label == 0] = IGNORE_INDEX
    reduced[label == IGNORE_INDEX] = IGNORE_INDEX
    return reduced.astype(np.uint8)


def read_split_file(path: Path) -> list[str]:
    """Ids listed one per line in a split file; a clear error when the file is missing."""
    if not path.is_file():
        siblings = sorted(p.name for p in path.parent.glob("*.txt")) if path.parent.is_dir() else []
        hint = f" (found: {', '.join(siblings)})" if siblings else ""
        raise DatasetError(f"{path}: split file not found{hint}; check dataset.root and the split name", path)
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


@dataclass
class SegmentationDataset(Sequence[Sample]):
    """Lazily reads samples; ``label_files[i]`` is ``None`` for unlabelled images."""

    root: Path
    ids: list[str]
    image_files: list[Path]
    label_files: list[Path | None]
    class_names: tuple[str, ...]
    label_map: LabelMap = identity_labels
    require_palette: bool = False
    captions: dict[str, dict] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[Sample]:
        for index in range(len(self)):
            yield self[index]

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        image = self.read_image(index)
        return Sample(self.ids[index], image, self.read_label(index, image.shape), self.class_names)

    def read_image(self, index: int) -> np.ndarray:
        return read_rgb(self.image_files[index])

    def read_label(self, index: int, image_shape: tuple[int, ...] | None = None) -> np.ndarray | None:
        """Read, map and check one label map against the class range and (optionally) the image size."""
        path = self.label_files[index]
        if path is None:
            return None
        label = self.label_map(read_label(path, require_palette=self.require_palette))
        if image_shape is None:
            image_shape = _image_size(self.image_files[index])
        if label.shape[:2] != tuple(image_shape[:2]):
            raise DatasetError(
                f"{path}: mask is {label.shape[1]}x{label.shape[0]} but its image is "
                f"{image_shape[1]}x{image_shape[0]}; the mask must match its image",
                path,
            )
        bad = np.unique(label[(label >= len(self.class_names)) & (label != IGNORE_INDEX)])
        if bad.size:
            raise DatasetError(
                f"{path}: label values {bad.tolist()[:5]} outside the {len(self.class_names)} classes "
                f"(ids 0..{len(self.class_names) - 1}, 255 = ignore); fix the mask or the class list",
                path,
            )
        return label

    def caption(self, index: int) -> str | None:
        record = self.captions.get(self.ids[index])
        return None if record is None else record["caption"]


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.height, image.width
    except (OSError, ValueError) as err:
        raise DatasetError(f"{path}: unreadable image ({err}); re-download or regenerate it", path) from err
