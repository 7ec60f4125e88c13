"""Each reader reads its official layout back exactly, and fails clearly on broken files."""

import numpy as np
import pytest
from PIL import Image

from clips4.data.davis import open_davis
from clips4.data.images import read_rgb, write_palette_png
from clips4.data.layouts import open_dataset
from clips4.errors import DatasetError
from tests.fixtures import make_cocostuff, make_context, make_davis, make_voc


def test_voc_reads_back_ids_images_and_palette_labels(tmp_path):
    make_voc(tmp_path)
    expected = np.load(tmp_path / "expected.npz")
    for root in (tmp_path, tmp_path / "VOCdevkit" / "VOC2012"):  # both the devkit parent and VOC2012 work
        train = open_dataset("voc", root, "train")
        assert train.ids == ["2007_train00", "2007_train01", "2007_train02"]
        assert len(train.class_names) == 21 and train.class_names[0] == "background"
        sample = train[1]
        assert sample.image.shape == (20, 28, 3) and sample.image.dtype == np.uint8
        np.testing.assert_array_equal(sample.label, expected[sample.image_id])
        assert 255 in sample.label  # the border stays ignore


def test_voc_train_aug_reads_plain_labels(tmp_path):
    make_voc(tmp_path)
    expected = np.load(tmp_path / "expected.npz")
    aug = open_dataset("voc", tmp_path, "train_aug")
    assert len(aug) == 6
    for sample in aug:
        np.testing.assert_array_equal(sample.label, expected[sample.image_id])


def test_context_reduces_zero_label(tmp_path):
    make_context(tmp_path)
    dataset = open_dataset("context", tmp_path, "val")
    raw = np.asarray(Image.open(dataset.label_files[0]))
    label = dataset[0].label
    assert len(dataset.class_names) == 59
    assert label[0, 0] == 255 and label[0, 1] == 58  # background -> ignore, 59 -> 58
    keep = raw > 0
    np.testing.assert_array_equal(label[keep], raw[keep] - 1)


def test_cocostuff_ids_and_splits(tmp_path):
    make_cocostuff(tmp_path)
    dataset = open_dataset("cocostuff", tmp_path, "val")
    assert dataset.ids == ["000000000000", "000000000001"]
    assert len(dataset.class_names) == 171
    label = dataset[0].label
    assert label[0, 0] == 170 and label.max() == 255


def test_davis_videos_and_instance_ids(tmp_path):
    make_davis(tmp_path)
    videos = open_davis(tmp_path, "val")
    assert videos.sequences == ["seq0", "seq1"]
    video = videos[0]
    assert len(video.frames) == 3 and len(video.masks) == 3
    assert video.num_objects == 2 and video.frame_ids[0] == "00000"
    assert set(np.unique(video.first_mask)) == {0, 1, 2}


def test_grayscale_and_rgba_images_become_rgb(tmp_path):
    gray = tmp_path / "gray.png"
    Image.fromarray(np.full((4, 5), 77, np.uint8), mode="L").save(gray)
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.full((4, 5, 4), 9, np.uint8), mode="RGBA").save(rgba)
    assert read_rgb(gray).shape == (4, 5, 3) and read_rgb(gray)[0, 0, 2] == 77
    assert read_rgb(rgba).shape == (4, 5, 3)


def test_reader_errors_name_the_file(tmp_path):
    make_voc(tmp_path)
    dataset = open_dataset("voc", tmp_path, "train")
    mask_path = dataset.label_files[0]
    label = np.asarray(Image.open(mask_path)).copy()
    label[0, 0] = 77
    write_palette_png(mask_path, label)
    with pytest.raises(DatasetError, match=r"2007_train00\.png.*\[77\]"):
        dataset[0]
    Image.fromarray(np.zeros((20, 28, 3), np.uint8)).save(dataset.label_files[1])  # RGB, not palette
    with pytest.raises(DatasetError, match="palette"):
        dataset[1]
    dataset.image_files[2].unlink()
    with pytest.raises(DatasetError, match=r"2007_train02\.jpg: file not found"):
        dataset[2]
    with pytest.raises(DatasetError, match="split file not found"):
        open_dataset("voc", tmp_path, "test")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no JPEGImages/ folder"):
        open_dataset("voc", tmp_path / "empty", "train")


def test_one_registry_of_dataset_names(tmp_path):
    """params.yaml's dataset.name, the readers and `clips4 data check` accept the names of one registry."""
    import dataclasses

    from clips4.data.check import check_dataset
    from clips4.data.layouts import READERS
    from clips4.data.names import CHECK_FORMATS, DATASET_NAMES
    from clips4.params import DatasetParams

    choices = next(f for f in dataclasses.fields(DatasetParams) if f.name == "name").metadata["choices"]
    assert tuple(choices) == DATASET_NAMES and DatasetParams().name == DATASET_NAMES[0]
    assert tuple(READERS) == DATASET_NAMES
    assert set(DATASET_NAMES) < set(CHECK_FORMATS)
    with pytest.raises(DatasetError, match="choose one of " + ", ".join(DATASET_NAMES)):
        open_dataset("imagenet", tmp_path, "val")
    with pytest.raises(DatasetError, match="choose one of " + ", ".join(CHECK_FORMATS)):
        check_dataset(tmp_path, "imagenet")
