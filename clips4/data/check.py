"""Validate a dataset on disk: every file of every split, each problem reported with its file.

The checks are the readers' own (the same errors a stage would meet), collected instead of raised, and images
smaller than :data:`clips4.data.images.MIN_IMAGE_SIDE` on a side are refused as the image stages refuse them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from clips4.data.davis import open_davis
from clips4.data.images import check_image_size, read_label, read_rgb
from clips4.data.layouts import open_dataset, split_names
from clips4.data.names import CHECK_FORMATS
from clips4.data.segmentation import SegmentationDataset
from clips4.data.splits import require_images
from clips4.data.types import IGNORE_INDEX
from clips4.errors import DatasetError


@dataclass(frozen=True)
class Problem:
    path: str
    message: str


def _problem(err: DatasetError, fallback: Path) -> Problem:
    return Problem(err.path or str(fallback), str(err))


def _check_caption(dataset: SegmentationDataset, index: int, label: np.ndarray) -> Problem | None:
    record = dataset.captions.get(dataset.ids[index])
    captions_file = str(dataset.root / "captions.jsonl")
    if record is None:
        return Problem(captions_file, f"{captions_file}: no caption for image {dataset.ids[index]!r}")
    present = {dataset.class_names[c] for c in np.unique(label) if c != IGNORE_INDEX}
    named = set(record.get("classes", []))
    if present != named:
        return Problem(
            str(dataset.label_files[index]),
            f"{dataset.label_files[index]}: classes in the mask {sorted(present)} differ from those its caption "
            f"names {sorted(named)}; regenerate with `clips4 synth`",
        )
    return None


def _check_segmentation(root: Path, fmt: str) -> tuple[list[Problem], int]:
    problems: list[Problem] = []
    checked = 0
    for split in split_names(fmt, root):
        try:
            dataset = open_dataset(fmt, root, split)
        except DatasetError as err:
            problems.append(_problem(err, root))
            continue
        try:
            require_images(fmt, dataset, split)
        except DatasetError as err:
            problems.append(_problem(err, root))
            continue
        for index in tqdm(range(len(dataset)), desc=f"check {split}", unit="img", mininterval=1.0, leave=False):
            checked += 1
            try:
                image = dataset.read_image(index)
                check_image_size(dataset.image_files[index], *image.shape[:2])
            except DatasetError as err:
                problems.append(_problem(err, dataset.image_files[index]))
                continue
            try:
                label = dataset.read_label(index, image.shape)
            except DatasetError as err:
                problems.append(_problem(err, dataset.label_files[index] or root))
                continue
            if fmt == "synth" and label is not None:
                caption_problem = _check_caption(dataset, index, label)
                if caption_problem:
                    problems.append(caption_problem)
    return problems, checked


def _check_davis(root: Path) -> tuple[list[Problem], int]:
    problems: list[Problem] = []
    checked = 0
    sets = Path(root) / "ImageSets" / "2017"
    splits = sorted(p.stem for p in sets.glob("*.txt")) if sets.is_dir() else ["val"]
    for split in splits:
        try:
            dataset = open_davis(root, split)
        except DatasetError as err:
            problems.append(_problem(err, root))
            continue
        if not dataset.sequences:
            split_file = sets / f"{split}.txt"
            problems.append(Problem(str(split_file), f"{split_file}: split {split!r} lists no sequences"))
            continue
        for name in tqdm(dataset.sequences, desc=f"check {split}", unit="video", leave=False):
            try:
                frame_files = dataset.frame_files(name)
            except DatasetError as err:
                problems.append(_problem(err, root))
                continue
            for position, frame_file in enumerate(frame_files):
                checked += 1
                try:
                    frame = read_rgb(frame_file)
                    check_image_size(frame_file, *frame.shape[:2])
                    mask_file = dataset.mask_file(name, frame_file.stem)
                    if not mask_file.is_file():
                        if position == 0:
                            raise DatasetError(f"{mask_file}: first-frame mask missing", mask_file)
                        continue
                    mask = read_label(mask_file, require_palette=True)
                    if mask.shape != frame.shape[:2]:
                        raise DatasetError(f"{mask_file}: mask size {mask.shape} differs from its frame", mask_file)
                except DatasetError as err:
                    problems.append(_problem(err, frame_file))
    return problems, checked


def check_dataset(root: str | Path, fmt: str) -> tuple[list[Problem], int]:
    """All problems found in the dataset at ``root`` of layout ``fmt``, and the number of items checked."""
    if fmt not in CHECK_FORMATS:
        raise DatasetError(f"unknown format {fmt!r}; choose one of {', '.join(CHECK_FORMATS)}")
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder", root)
    try:
        return _check_davis(root) if fmt == "davis" else _check_segmentation(root, fmt)
    except DatasetError as err:  # the layout itself is wrong (no split files, wrong root)
        return [_problem(err, root)], 0
