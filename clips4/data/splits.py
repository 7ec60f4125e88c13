"""Where a split's images are listed, and the refusal of a split that lists none (an empty val split would
otherwise score to a NaN mIoU with exit 0, and an empty train split would fail stages later with a traceback)."""

from __future__ import annotations

from pathlib import Path

from clips4.data.segmentation import SegmentationDataset
from clips4.errors import DatasetError


def split_source(fmt: str, dataset: SegmentationDataset, split: str) -> Path:
    """The file (or, for COCO-Stuff, the folder) that lists a split's images, to name in messages."""
    if fmt == "cocostuff":
        return dataset.root / "images" / (split if split.endswith("2017") else f"{split}2017")
    folder = "SegmentationContext" if fmt == "context" else "Segmentation"
    return dataset.root / "ImageSets" / folder / f"{split}.txt"


def require_images(fmt: str, dataset: SegmentationDataset, split: str, key: str | None = None) -> None:
    """Raise a :class:`DatasetError` naming the split's file (and the params ``key`` that chose the split, when
    given) when the split lists no image."""
    if len(dataset) == 0:
        source = split_source(fmt, dataset, split)
        chosen_by = f" (dataset.{key})" if key else ""
        point = f", or point dataset.{key} at a split that has images" if key else ""
        raise DatasetError(
            f"{source}: split {split!r}{chosen_by} lists no images; list one image id per line (or regenerate the "
            f"dataset){point}",
            source,
        )
