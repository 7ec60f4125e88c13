"""Image and mask file I/O shared by every reader and writer.

Readers convert grayscale and RGBA images to RGB instead of rejecting them (16-bit images are scaled to 8 bits),
and turn every unreadable or truncated file into a :class:`DatasetError` that names the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from clips4.errors import DatasetError
from clips4.io import atomic_write


def voc_palette(num_colors: int = 256) -> np.ndarray:
    """The Pascal VOC colour map ([256, 3] uint8): the bits of the label id spread over R, G and B."""
    palette = np.zeros((num_colors, 3), dtype=np.uint8)
    for label in range(num_colors):
        value, red, green, blue = label, 0, 0, 0
        for shift in range(7, -1, -1):
            red |= ((value >> 0) & 1) << shift
            green |= ((value >> 1) & 1) << shift
            blue |= ((value >> 2) & 1) << shift
            value >>= 3
        palette[label] = (red, green, blue)
    return palette


#: The smallest image side the pipeline segments (pixels): smaller images have no contours (a gradient needs two
#: pixels) and at most one cell of CLIP's feature grid. ``clips4 data check`` and the image stages refuse them.
MIN_IMAGE_SIDE = 16


def check_image_size(path: str | Path, height: int, width: int) -> None:
    """:class:`DatasetError` naming ``path`` when the image is smaller than :data:`MIN_IMAGE_SIDE` on a side."""
    if min(height, width) < MIN_IMAGE_SIDE:
        raise DatasetError(
            f"{path}: {width}x{height} pixels, below the {MIN_IMAGE_SIDE}-pixel minimum side that clips4 segments; "
            "enlarge the image, or remove its id from the split file",
            path,
        )


def _open(path: Path) -> Image.Image:
    if not path.exists():
        raise DatasetError(f"{path}: file not found; restore it, or remove its id from the split file", path)
    try:
        image = Image.open(path)
        image.load()  # decode now, so that a truncated file fails here and not later
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        message = f"{path}: unreadable or truncated image ({err}); re-download or regenerate it"
        raise DatasetError(message, path) from err
    return image


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image as RGB uint8 ``[H, W, 3]``; grayscale, palette and RGBA files are converted, 16-bit ones
    scaled to 8 bits (see :func:`rgb_array`)."""
    return rgb_array(_open(Path(path)), path)


#: Pillow's modes of 16-bit grayscale (PNG, TIFF). Pillow's own conversion clips them to 255: an all-white image.
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def rgb_array(image: Image.Image, name: str | Path) -> np.ndarray:
    """A decoded image as RGB uint8 ``[H, W, 3]``. 16-bit grayscale is scaled to 8 bits (its high byte: 65535
    becomes 255), as Pillow already reads 16-bit RGB; 32-bit integer or float images are taken as they are when their
    values lie in [0, 255], scaled when they are 16-bit values, and refused, naming ``name``, otherwise."""
    if image.mode in SIXTEEN_BIT_MODES or image.mode in ("I", "F"):
        values = np.asarray(image)
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if low < 0 or high > 65535 or (image.mode == "F" and high > 255) or not np.isfinite(values).all():
            raise DatasetError(
                f"{name}: a {image.mode!r} image with values in [{low:.10g}, {high:.10g}], not 8- or 16-bit; save "
                "it as an 8-bit (or 16-bit) PNG or JPEG",
                name,
            )
        if image.mode in SIXTEEN_BIT_MODES or high > 255:
            values = values.astype(np.uint32) >> 8  # the high byte, as Pillow reads 16-bit RGB
        gray = np.round(values).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def read_label(path: str | Path, *, require_palette: bool = False) -> np.ndarray:
    """Read a label PNG as uint8 ``[H, W]`` of ids (palette indices for palette PNGs).

    ``require_palette`` refuses RGB or grayscale masks where the layout stores palette PNGs (VOC
    SegmentationClass, DAVIS Annotations): converting them would silently produce wrong ids.
    """
    path = Path(path)
    image = _open(path)
    if image.mode == "P":
        return np.asarray(image, dtype=np.uint8)
    if require_palette:
        raise DatasetError(
            f"{path}: mask is a {image.mode!r} image, not a palette ('P') PNG; this layout stores label ids as "
            "palette indices; re-export the mask as a palette PNG",
            path,
        )
    if image.mode in ("L", "I", "I;16"):
        array = np.asarray(image)
        if array.max(initial=0) > 255:
            raise DatasetError(f"{path}: label ids above 255 in a {image.mode!r} mask; expected 8-bit ids", path)
        return array.astype(np.uint8)
    raise DatasetError(f"{path}: mask is a {image.mode!r} image; expected an 8-bit label PNG ('L' or 'P')", path)


def _atomic_save(image: Image.Image, path: Path, **options: object) -> None:
    """Save through a temporary file in the same folder, so a killed writer never leaves half a file."""
    fmt = options.pop("format", None)
    atomic_write(path, lambda handle: image.save(handle, format=fmt, **options))  # type: ignore[arg-type]


def write_jpeg(path: str | Path, rgb: np.ndarray, quality: int = 92) -> None:
    """Write RGB uint8 as a JPEG with fixed settings (same pixels -> same bytes)."""
    _atomic_save(Image.fromarray(rgb, mode="RGB"), Path(path), format="JPEG", quality=quality, optimize=False)


def write_palette_png(path: str | Path, label: np.ndarray, palette: np.ndarray | None = None) -> None:
    """Write uint8 ids as a palette PNG (the VOC colour map by default)."""
    image = Image.fromarray(label.astype(np.uint8), mode="P")
    image.putpalette((voc_palette() if palette is None else palette).reshape(-1).tolist())
    _atomic_save(image, Path(path), format="PNG")


def colorize(label: np.ndarray) -> np.ndarray:
    """RGB rendering of a label map with the VOC colour map (255 = ignore is drawn in off-white)."""
    return voc_palette()[label]
