"""The synthetic world: deterministic to the byte, captions agree with masks, layouts are official."""

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from clips4.data.davis import open_davis
from clips4.data.layouts import open_dataset
from clips4.data.synth import (
    CLASS_NAMES,
    UNNAMED_NAMES,
    WORLDS,
    generate_image,
    read_stats,
    synth_folds,
    write_world,
)
from clips4.data.synth_video import write_videos
from clips4.data.types import IGNORE_INDEX
from clips4.params import SynthParams

TINY = SynthParams(image_size=64, train_images=10, val_images=4, tune_images=3, video_sequences=2, video_frames=4)


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
    again, _ = write_world(TINY, seed=3, out=tmp_path / "synth", workers=2)  # and in parallel
    assert tree_digest(again) == tree_digest(world)
    other, stats = write_world(TINY, seed=4, out=tmp_path / "other", workers=1)
    assert stats == read_stats(other)  # what the stage prints is what it wrote
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
    for split in ("train", "val", "tune"):
        dataset = open_dataset("synth", world, split)
        for sample in dataset:
            present = {CLASS_NAMES[c] for c in np.unique(sample.label) if c != IGNORE_INDEX}
            record = captions[sample.image_id]
            assert present == set(record["classes"]), sample.image_id
            for name in present:  # every class is named in the caption text itself
                assert name in record["caption"], (name, record["caption"])
            words = set(record["caption"].replace(",", " ").split())
            assert not (set(CLASS_NAMES) - present) & words, record["caption"]
            # the unnamed concepts the record lists are named in the caption, the others are not
            assert set(record["unnamed"]) <= set(UNNAMED_NAMES)
            assert set(record["unnamed"]) == set(UNNAMED_NAMES) & words, record


def test_unnamed_concepts_are_drawn_captioned_and_ignored_in_masks():
    """Over 40 images: the unnamed concepts appear, are in the captions, and every one of their pixels is 255
    (the masks hold only named class ids and 255)."""
    seen = set()
    for index in range(40):
        sample = generate_image(TINY, 0, "train", index)
        ignored = int((sample.label == IGNORE_INDEX).sum())
        assert sample.unnamed_pixels <= ignored
        assert set(np.unique(sample.label)) <= set(range(len(CLASS_NAMES))) | {IGNORE_INDEX}
        for name in sample.unnamed:
            assert name in sample.caption and name not in CLASS_NAMES
        if sample.unnamed:
            assert sample.unnamed_pixels >= 0.02 * sample.label.size  # a concept under 2% is neither drawn nor named
        seen |= set(sample.unnamed)
    assert seen == set(UNNAMED_NAMES)  # stuff and things alike
    assert set(UNNAMED_NAMES) >= {"rock", "moss", "heart", "cross"}


def test_unnamed_pixels_are_where_the_unnamed_concept_is_drawn(monkeypatch):
    """With every stuff region unnamed, the whole background is 255 and only the things carry class ids."""
    from clips4.data import synth

    monkeypatch.setattr(synth, "UNNAMED_STUFF_PROBABILITY", 1.0)
    params = SynthParams(image_size=64, min_stuff=1, max_stuff=1, max_things=0)
    for index in range(5):
        sample = generate_image(params, 0, "train", index)
        assert (sample.label == IGNORE_INDEX).all() and sample.unnamed_pixels == sample.label.size
        assert len(sample.unnamed) == 1 and sample.classes == ()


def test_world_statistics_match_the_masks(world):
    stats = read_stats(world)
    assert set(stats) == {"all", "train", "val", "tune"}
    assert [stats[s]["images"] for s in ("train", "val", "tune")] == [10, 4, 3]
    counts = np.zeros(len(CLASS_NAMES))
    pixels = 0
    for split in ("train", "val", "tune"):
        for sample in open_dataset("synth", world, split):
            labelled = sample.label[sample.label != IGNORE_INDEX]
            counts += np.bincount(labelled, minlength=len(CLASS_NAMES))
            pixels += sample.label.size
    share = stats["all"]["class_pixel_share"]
    np.testing.assert_allclose([share[n] for n in CLASS_NAMES], 100 * counts / pixels, atol=0.006)
    total = stats["all"]
    assert total["labelled_pixel_share"] + total["unnamed_pixel_share"] + total["other_ignored_pixel_share"] == (
        pytest.approx(100, abs=0.02)
    )
    assert sum(total["classes_per_image"]["histogram"].values()) == 17


def test_default_world_has_the_shares_it_is_built_for():
    """The default world's first 60 train images: unnamed concepts cover at least 15% of pixels and appear in at least
    40% of images (issue 19's floor), while named classes still label most pixels."""
    samples = [generate_image(SynthParams(), 0, "train", i) for i in range(60)]
    pixels = sum(s.label.size for s in samples)
    assert sum(s.unnamed_pixels for s in samples) / pixels >= 0.15
    assert sum(bool(s.unnamed) for s in samples) / len(samples) >= 0.40
    assert sum(int((s.label != IGNORE_INDEX).sum()) for s in samples) / pixels >= 0.6


def test_labels_are_in_range_and_mostly_labelled():
    for index in range(30):
        sample = generate_image(TINY, 0, "train", index)
        assert sample.image.shape == (64, 64, 3) and sample.image.dtype == np.uint8
        valid = sample.label != IGNORE_INDEX
        assert sample.label[valid].max() < len(CLASS_NAMES)
        # all but the unnamed concepts and the slivers under MIN_AREA_FRACTION (at most 2% each) is labelled
        assert valid.sum() + sample.unnamed_pixels >= 0.9 * sample.label.size
        assert any(name in sample.classes for name in CLASS_NAMES[:8])  # some named stuff always survives


def test_layout_files(world):
    assert (world / "classes.txt").read_text().split() == list(CLASS_NAMES)
    assert len((world / "ImageSets/Segmentation/train.txt").read_text().split()) == 10
    assert len((world / "ImageSets/Segmentation/val.txt").read_text().split()) == 4
    tune = (world / "ImageSets/Segmentation/tune.txt").read_text().split()
    assert len(tune) == 3 and not set(tune) & set((world / "ImageSets/Segmentation/val.txt").read_text().split())
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


def test_preview_hatches_the_ignored_pixels_and_keeps_the_class_colours():
    from clips4.data.images import colorize
    from clips4.data.preview import hatch_ignored

    label = np.zeros((12, 12), np.uint8)
    label[:, 6:] = IGNORE_INDEX
    hatched = hatch_ignored(colorize(label), label)
    np.testing.assert_array_equal(hatched[:, :6], colorize(label)[:, :6])
    assert set(np.unique(hatched[:, 6:])) == {0, 255}  # black and white stripes, no class colour


def test_the_worlds_are_the_params_choices():
    from dataclasses import fields

    (world_field,) = [f for f in fields(SynthParams) if f.name == "world"]
    assert set(world_field.metadata["choices"]) == set(WORLDS)
    assert SynthParams().world == "shapes" and WORLDS["shapes"].class_names == CLASS_NAMES


def test_the_workshop_world_has_its_own_concepts_and_keeps_its_thin_things(tmp_path):
    workshop = WORLDS["workshop"]
    assert not set(workshop.class_names + workshop.unnamed_names) & set(CLASS_NAMES + UNNAMED_NAMES)
    params = SynthParams(world="workshop", train_images=3, val_images=2, tune_images=0, max_things=3)
    root, _ = write_world(params, seed=0, out=tmp_path / "synth", workers=1)
    assert (root / "classes.txt").read_text().split() == list(workshop.class_names)
    assert sorted(n for fold in json.loads((root / "folds.json").read_text()).values() for n in fold) == sorted(
        workshop.class_names
    )
    labelled, unnamed = set(), set()
    for index in range(80):
        sample = generate_image(params, 0, "train", index)
        present = {workshop.class_names[c] for c in np.unique(sample.label) if c != IGNORE_INDEX}
        assert present == set(sample.classes)
        assert all(name in sample.caption for name in sample.classes + sample.unnamed)
        labelled |= present
        unnamed |= set(sample.unnamed)
    # thin (pencil, wire, moon) and small (button) things survive the world's lower area floor into the masks
    assert {"pencil", "wire", "moon", "button"} <= labelled
    assert unnamed == set(workshop.unnamed_names)
