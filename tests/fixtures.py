"""Builders of tiny datasets in each official layout, written on the fly into a temporary folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from clips4.data.images import write_jpeg, write_palette_png


def _image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _label(rng: np.random.Generator, height: int, width: int, num_classes: int, ignore_border: bool) -> np.ndarray:
    label = np.zeros((height, width), np.uint8)
    label[height // 2 :] = rng.integers(1, num_classes)
    label[: height // 2, width // 2 :] = rng.integers(0, num_classes)
    if ignore_border:
        label[height // 2, :] = 255
    return label


def make_voc(root: Path, ids_per_split: int = 3, size: tuple[int, int] = (20, 28), seed: int = 0) -> Path:
    """VOCdevkit/VOC2012 with train/val splits, palette masks with 255 borders, and a train_aug split."""
    rng = np.random.default_rng(seed)
    base = root / "VOCdevkit" / "VOC2012"
    sets = base / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    labels = {}
    for split in ("train", "val"):
        ids = [f"2007_{split}{i:02d}" for i in range(ids_per_split)]
        (sets / f"{split}.txt").write_text("\n".join(ids) + "\n")
        for image_id in ids:
            write_jpeg(base / "JPEGImages" / f"{image_id}.jpg", _image(rng, *size))
            labels[image_id] = _label(rng, *size, 21, ignore_border=True)
            write_palette_png(base / "SegmentationClass" / f"{image_id}.png", labels[image_id])
    aug_ids = sorted(labels)
    (sets / "train_aug.txt").write_text("\n".join(aug_ids) + "\n")
    (base / "SegmentationClassAug").mkdir()
    for image_id in aug_ids:  # the augmented labels ship as plain 8-bit PNGs
        Image.fromarray(labels[image_id], mode="L").save(base / "SegmentationClassAug" / f"{image_id}.png")
    np.savez(root / "expected.npz", **labels)
    return root


def make_context(root: Path, ids_per_split: int = 2, size: tuple[int, int] = (18, 24), seed: int = 1) -> Path:
    """mmsegmentation's Pascal Context: 0 = background, 1..59 = classes, plain 8-bit label PNGs."""
    rng = np.random.default_rng(seed)
    base = root / "VOCdevkit" / "VOC2010"
    sets = base / "ImageSets" / "SegmentationContext"
    sets.mkdir(parents=True)
    for split in ("train", "val"):
        ids = [f"2008_{split}{i:02d}" for i in range(ids_per_split)]
        (sets / f"{split}.txt").write_text("\n".join(ids) + "\n")
        for image_id in ids:
            write_jpeg(base / "JPEGImages" / f"{image_id}.jpg", _image(rng, *size))
            label = _label(rng, *size, 60, ignore_border=False)
            label[0, 0], label[0, 1] = 0, 59
            (base / "SegmentationClassContext").mkdir(exist_ok=True)
            Image.fromarray(label, mode="L").save(base / "SegmentationClassContext" / f"{image_id}.png")
    return root


def make_cocostuff(root: Path, ids_per_split: int = 2, size: tuple[int, int] = (16, 20), seed: int = 2) -> Path:
    """mmsegmentation's COCO-Stuff-164k: images/<split>2017, annotations/<split>2017/*_labelTrainIds.png."""
    rng = np.random.default_rng(seed)
    base = root / "coco_stuff164k"
    for split in ("train2017", "val2017"):
        (base / "annotations" / split).mkdir(parents=True)
        for i in range(ids_per_split):
            image_id = f"{i:012d}"
            write_jpeg(base / "images" / split / f"{image_id}.jpg", _image(rng, *size))
            label = _label(rng, *size, 171, ignore_border=True)
            label[0, 0] = 170
            Image.fromarray(label, mode="L").save(base / "annotations" / split / f"{image_id}_labelTrainIds.png")
    return root


def make_davis(
    root: Path, sequences: int = 2, frames: int = 3, size: tuple[int, int] = (16, 24), seed: int = 3
) -> Path:
    """DAVIS 2017: JPEGImages/480p/<seq>, Annotations/480p/<seq> palette PNGs with instance ids."""
    rng = np.random.default_rng(seed)
    names = [f"seq{i}" for i in range(sequences)]
    for name in names:
        for t in range(frames):
            write_jpeg(root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", _image(rng, *size))
            mask = np.zeros(size, np.uint8)
            mask[2 + t : 8 + t, 3:9] = 1
            mask[10:14, 12:20] = 2
            write_palette_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", mask)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(names) + "\n")
    return root


SQUARE_LO, SQUARE_HI = 12, 36
"""The detector tests' square covers rows/cols LO..HI-1 of a 48x48 image; its outline lies at LO-0.5 and HI-0.5."""


def distance_to_square_outline(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Distance of pixel centres (ys, xs) to the test square's outline."""
    ys, xs = np.asarray(ys, float), np.asarray(xs, float)
    lo, hi = SQUARE_LO - 0.5, SQUARE_HI - 0.5
    inside_y = (ys >= lo) & (ys <= hi)
    inside_x = (xs >= lo) & (xs <= hi)
    d_vert = np.where(inside_y, np.minimum(np.abs(xs - lo), np.abs(xs - hi)), np.inf)
    d_horz = np.where(inside_x, np.minimum(np.abs(ys - lo), np.abs(ys - hi)), np.inf)
    return np.minimum(d_vert, d_horz)


def write_params_file(folder: Path, raw: dict, name: str = "params.yaml") -> Path:
    """``raw`` as YAML in ``folder/name`` (the conftest fixture ``write_params``); returns the file."""
    import yaml

    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw))
    return path


def save_tiny_clip(path: Path, model_name: str = "clips4-test-vit", seed: int = 0) -> str:
    """A randomly initialised packaged test CLIP (weights drawn with ``seed``) saved as a clips4 checkpoint at
    ``path`` (the conftest fixture ``tiny_clip``); returns the file's sha256."""
    import torch

    from clips4.clip.loading import build_model, model_config, save_clip_checkpoint

    torch.manual_seed(seed)
    config = model_config(model_name)
    return save_clip_checkpoint(path, build_model(config), model_name, config)


def tree_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (a store, a reports folder) by relative path, with its bytes (the conftest
    fixture ``tree_bytes``): two trees are byte for byte the same when these are equal."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def make_tiny_project(root: Path, params: dict) -> Path:
    """``root`` with ``params`` as params.yaml, its synthetic world in data/synth and a randomly initialised tiny
    CLIP (``clips4-test-vit``, seed 0) at models/clip.pt: what the cache and training stages read."""
    from clips4.data.synth import write_world
    from clips4.params import load_params

    # dataset.root as a real params file sets it (the default; a file without it gets a warning line)
    params = {**params, "dataset": {"root": "data/synth", **params.get("dataset", {})}}
    # no tune images unless the project asks (tiny worlds stay tiny; dataset.tune_split is null by default)
    params["synth"] = {"tune_images": 0, **params.get("synth", {})}
    loaded = load_params(write_params_file(root, params))
    write_world(loaded.synth, loaded.synth.seed, root / "data" / "synth", workers=1)
    save_tiny_clip(root / "models" / "clip.pt")
    return root
