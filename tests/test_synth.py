"""The synthetic world: deterministic to the byte, captions agree with masks, layouts are official."""

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from clips4.data.davis import open_davis
from clips4.data.layouts import open_dataset
from clips4.data.synth import CLASS_NAMES, generate_image, synth_folds, write_world
from clips4.data.synth_video import write_videos
from clips4.data.types import IGNORE_INDEX
from clips4.params import SynthParams

TINY = SynthParams(image_size=64, train_images=10, val_images=4, video_sequences=2, video_frames=4)


def tree_digest(root):
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("a") / "synth"
    write_world(TINY, seed=3, out=root, workers=1)
    return root


def test_same_seed_gives_byte_identical_files(world, tmp_path):
    again = write_world(TINY, seed=3, out=tmp_path / "synth", workers=2)  # and in parallel
    assert tree_digest(again) == tree_digest(world)
    other = write_world(TINY, seed=4, out=tmp_path / "other", workers=1)
    assert tree_digest(other) != tree_digest(world)


def test_videos_are_deterministic(tmp_path):
    first = write_videos(TINY, 5, tmp_path / "v1")
    second = write_videos(TINY, 5, tmp_path / "v2")
    assert tree_digest(first) == tree_digest(second)


def test_every_caption_names_exactly_the_classes_in_its_mask(world):
    captions = {}
    for line in (world / "captions.jsonl").read_text().splitlines():
        record = json.loads(line)
        captions[record["id"]] = record
    for split in ("train", "val"):
        dataset = open_dataset("synth", world, split)
        for sample in dataset:
            present = {CLASS_NAMES[c] for c in np.unique(sample.label) if c != IGNORE_INDEX}
            record = captions[sample.image_id]
            assert present == set(record["classes"]), sample.image_id
            for name in present:  # every class is named in the caption text itself
                assert name in record["caption"], (name, record["caption"])
            words = set(record["caption"].replace(",", " ").split())
            assert not (set(CLASS_NAMES) - present) & words, record["caption"]


def test_labels_are_in_range_and_mostly_labelled():
    for index in range(30):
        sample = generate_image(TINY, 0, "train", index)
        assert sample.image.shape == (64, 64, 3) and sample.image.dtype == np.uint8
        valid = sample.label != IGNORE_INDEX
        assert sample.label[valid].max() < len(CLASS_NAMES)
        assert valid.mean() > 0.9
        assert any(name in sample.classes for name in CLASS_NAMES[:8])  # some stuff always survives


def test_layout_files(world):
    assert (world / "classes.txt").read_text().split() == list(CLASS_NAMES)
    assert len((world / "ImageSets/Segmentation/train.txt").read_text().split()) == 10
    assert len((world / "ImageSets/Segmentation/val.txt").read_text().split()) == 4
    assert Image.open(next((world / "SegmentationClass").glob("*.png"))).mode == "P"
    folds = json.loads((world / "folds.json").read_text())
    assert folds == synth_folds()
    assert sorted(name for fold in folds.values() for name in fold) == sorted(CLASS_NAMES)
    assert not (world.parent / "synth.partial").exists()


def test_video_layout_and_instances(tmp_path):
    root = write_videos(TINY, 0, tmp_path / "video")
    videos = open_davis(root, "val")
    assert len(videos) == 2
    for video in videos:
        assert len(video.frames) == 4 and len(video.masks) == 4
        assert 1 <= video.num_objects <= 3
        assert all(set(np.unique(m)) <= set(range(video.num_objects + 1)) for m in video.masks)
        assert not np.array_equal(video.masks[0], video.masks[-1])  # the objects move


def test_rectangular_images_crop_the_square_scene_and_leave_the_default_world_alone():
    wide = SynthParams(image_width=120, image_height=80)
    sample = generate_image(wide, 0, "train", 3)
    assert sample.image.shape == (80, 120, 3) and sample.label.shape == (80, 120)
    present = {c for c in np.unique(sample.label) if c != IGNORE_INDEX}
    assert {CLASS_NAMES[c] for c in present} == set(sample.classes)
    square, default = (
        generate_image(SynthParams(image_width=96, image_height=96), 0, "train", 3),
        generate_image(SynthParams(), 0, "train", 3),
    )
    np.testing.assert_array_equal(square.image, default.image)  # unset width/height: image_size, as before
