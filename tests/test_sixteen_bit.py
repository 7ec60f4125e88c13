"""16-bit PNGs are read as what they show, scaled to 8 bits (issue 22, finding 6): Pillow's own conversion clipped
16-bit grayscale to 255, so `data check`, the stages and `segment` saw an all-white image without a word."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from clips4.cli import app
from clips4.data.images import read_rgb
from clips4.data.layouts import open_dataset
from clips4.errors import DatasetError
from tests.fixtures import make_voc


def gradient16(height: int = 20, width: int = 28) -> np.ndarray:
    """uint16 values over the whole 16-bit range."""
    return (np.linspace(0, 65535, height * width).reshape(height, width)).astype(np.uint16)


def write_png16(path: Path, values: np.ndarray) -> Path:
    """A 16-bit PNG (grayscale [H, W] or RGB [H, W, 3]) written byte by byte (Pillow writes only grayscale ones)."""
    big_endian = np.asarray(values, dtype=">u2")
    height, width = big_endian.shape[:2]
    colour_type = 0 if big_endian.ndim == 2 else 2
    rows = b"".join(b"\x00" + big_endian[y].tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )
    return path


def test_a_16_bit_grayscale_png_is_scaled_to_8_bits(tmp_path):
    values = gradient16()
    path = write_png16(tmp_path / "gray16.png", values)
    assert Image.open(path).mode == "I;16"
    rgb = read_rgb(path)
    assert rgb.dtype == np.uint8 and rgb.shape == (*values.shape, 3)
    np.testing.assert_array_equal(rgb[..., 0], values >> 8)  # not 255 everywhere
    assert rgb.min() == 0 and rgb.max() == 255 and len(np.unique(rgb)) > 200
    colour = write_png16(tmp_path / "rgb16.png", np.stack([values, values // 2, 65535 - values], axis=-1))
    np.testing.assert_array_equal(read_rgb(colour), np.stack([values, values // 2, 65535 - values], -1) >> 8)


def test_an_image_of_values_beyond_16_bits_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "wide.tif"
    Image.fromarray(np.full((8, 8), 1 << 20, np.int32)).save(path)
    with pytest.raises(DatasetError, match=r"wide\.tif: a 'I' image with values in \[1048576, 1048576\]"):
        read_rgb(path)


def test_data_check_and_the_datasets_read_a_16_bit_image_as_it_looks(tmp_path):
    root = make_voc(tmp_path)
    base = root / "VOCdevkit" / "VOC2012"
    image_id = (base / "ImageSets" / "Segmentation" / "train.txt").read_text().split()[0]
    values = gradient16()
    write_png16(base / "JPEGImages" / f"{image_id}.jpg", values)  # read by content, whatever the ending
    result = CliRunner().invoke(app, ["data", "check", str(root), "--format", "voc"])
    assert result.exit_code == 0, result.output
    dataset = open_dataset("voc", root, "train")
    np.testing.assert_array_equal(dataset.read_image(dataset.ids.index(image_id))[..., 1], values >> 8)
