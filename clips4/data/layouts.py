"""Where each official dataset layout keeps its files, and how its label values map to class ids.

- Pascal VOC 2012: ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png`` (palette PNGs, 255 on
  object borders), ``ImageSets/Segmentation/<split>.txt``; the 10,582-image ``train_aug`` split takes
  its labels from ``SegmentationClassAug/<id>.png`` (plain 8-bit PNGs in the usual distribution) and its
  ids from ``ImageSets/Segmentation/train_aug.txt`` (or ``trainaug.txt``).
- Pascal Context-59 as prepared by mmsegmentation: ``VOC2010/JPEGImages``,
  ``VOC2010/SegmentationClassContext/<id>.png`` (0 = background, 1..59 = classes),
  ``VOC2010/ImageSets/SegmentationContext/<split>.txt``; labels reduced by one, background -> 255.
- COCO-Stuff-171 as prepared by mmsegmentation: ``images/<split>2017/<id>.jpg`` and
  ``annotations/<split>2017/<id>_labelTrainIds.png`` (ids 0..170, 255 = ignore); no split files.
- The synthetic world: the VOC layout plus ``classes.txt`` and ``captions.jsonl``.
"""

from __future__ import annotations

import json
from pathlib import Path

from clips4.data.names import DATASET_NAMES
from clips4.data.segmentation import SegmentationDataset, read_split_file, reduce_zero_label
from clips4.errors import DatasetError
from clips4.resources import class_names

def _find_root(root: Path, marker: str, candidates: tuple[str, ...], layout: str) -> Path:
    """The folder that holds ``marker``: ``root`` itself or one of the usual parents' sub-folders."""
    for candidate in (root, *(root / c for c in candidates)):
        if (candidate / marker).is_dir():
            return candidate
    raise DatasetError(
        f"{root}: no {marker}/ folder here or in {', '.join(candidates)}; expected the official {layout} layout "
        "(see clips4/data/layouts.py) — set dataset.root to the folder that contains it",
        root,
    )


def voc(root: str | Path, split: str) -> SegmentationDataset:
    base = _find_root(Path(root), "JPEGImages", ("VOC2012", "VOCdevkit/VOC2012"), "Pascal VOC 2012")
    sets = base / "ImageSets" / "Segmentation"
    if split in ("train_aug", "trainaug"):
        split_file = next((sets / n for n in ("train_aug.txt", "trainaug.txt") if (sets / n).is_file()), None)
        ids = read_split_file(split_file or sets / "train_aug.txt")
        labels, palette = base / "SegmentationClassAug", False
    else:
        ids = read_split_file(sets / f"{split}.txt")
        labels, palette = base / "SegmentationClass", True
    return SegmentationDataset(
        root=base,
        ids=ids,
        image_files=[base / "JPEGImages" / f"{i}.jpg" for i in ids],
        label_files=[labels / f"{i}.png" for i in ids],
        class_names=tuple(class_names("voc")),
        require_palette=palette,
    )


def synth(root: str | Path, split: str) -> SegmentationDataset:
    base = Path(root)
    classes_file = base / "classes.txt"
    if not classes_file.is_file():
        raise DatasetError(f"{classes_file}: missing; generate the world with `clips4 synth` (or `dvc repro synth`)")
    ids = read_split_file(base / "ImageSets" / "Segmentation" / f"{split}.txt")
    captions = {}
    captions_file = base / "captions.jsonl"
    if captions_file.is_file():
        for line_number, line in enumerate(captions_file.read_text().splitlines(), 1):
            try:
                record = json.loads(line)
                captions[record["id"]] = record
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise DatasetError(
                    f"{captions_file}:{line_number}: not a caption record ({err}); regenerate with `clips4 synth`",
                    captions_file,
                ) from err
    return SegmentationDataset(
        root=base,
        ids=ids,
        image_files=[base / "JPEGImages" / f"{i}.jpg" for i in ids],
        label_files=[base / "SegmentationClass" / f"{i}.png" for i in ids],
        class_names=tuple(line.strip() for line in classes_file.read_text().splitlines() if line.strip()),
        require_palette=True,
        captions=captions,
    )


def context(root: str | Path, split: str) -> SegmentationDataset:
    base = _find_root(Path(root), "SegmentationClassContext", ("VOC2010", "VOCdevkit/VOC2010"), "Pascal Context")
    ids = read_split_file(base / "ImageSets" / "SegmentationContext" / f"{split}.txt")
    return SegmentationDataset(
        root=base,
        ids=ids,
        image_files=[base / "JPEGImages" / f"{i}.jpg" for i in ids],
        label_files=[base / "SegmentationClassContext" / f"{i}.png" for i in ids],
        class_names=tuple(class_names("context")),
        label_map=reduce_zero_label,
    )


def cocostuff(root: str | Path, split: str) -> SegmentationDataset:
    base = _find_root(Path(root), "annotations", ("coco_stuff164k",), "COCO-Stuff (mmsegmentation)")
    folder = split if split.endswith("2017") else f"{split}2017"
    images = base / "images" / folder
    if not images.is_dir():
        raise DatasetError(f"{images}: split folder not found; COCO-Stuff splits are train2017 and val2017", images)
    ids = sorted(p.stem for p in images.glob("*.jpg"))
    return SegmentationDataset(
        root=base,
        ids=ids,
        image_files=[images / f"{i}.jpg" for i in ids],
        label_files=[base / "annotations" / folder / f"{i}_labelTrainIds.png" for i in ids],
        class_names=tuple(class_names("cocostuff")),
    )


#: The reader of each name of the registry (clips4/data/names.py): the layout function of that name, above.
READERS = {name: globals()[name] for name in DATASET_NAMES}


def split_names(fmt: str, root: str | Path) -> list[str]:
    """The splits present on disk for a layout (used by ``clips4 data check`` to scan everything)."""
    if fmt == "cocostuff":
        base = _find_root(Path(root), "annotations", ("coco_stuff164k",), "COCO-Stuff (mmsegmentation)")
        return sorted(p.name for p in (base / "images").iterdir() if p.is_dir())
    if fmt == "context":
        base = _find_root(Path(root), "SegmentationClassContext", ("VOC2010", "VOCdevkit/VOC2010"), "Pascal Context")
        sets = base / "ImageSets" / "SegmentationContext"
    elif fmt == "voc":
        base = _find_root(Path(root), "JPEGImages", ("VOC2012", "VOCdevkit/VOC2012"), "Pascal VOC 2012")
        sets = base / "ImageSets" / "Segmentation"
    else:
        sets = Path(root) / "ImageSets" / "Segmentation"
    if not sets.is_dir():
        raise DatasetError(f"{sets}: no split files; expected <split>.txt files listing image ids", sets)
    return sorted(p.stem for p in sets.glob("*.txt"))


def open_dataset(name: str, root: str | Path, split: str) -> SegmentationDataset:
    """Open one split of a dataset: ``name`` is one of :data:`clips4.data.names.DATASET_NAMES`."""
    if name not in DATASET_NAMES:
        raise DatasetError(f"unknown dataset format {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    return READERS[name](root, split)
