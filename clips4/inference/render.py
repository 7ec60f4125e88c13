"""Pictures of a segmentation: the label PNG's palette and a colour overlay with a legend.

Class ``i`` is drawn in the Pascal VOC colour of label ``i + 1`` (VOC's 0 is black, kept for unlabelled pixels;
VOC's greys are skipped), so the first classes get VOC's familiar colours. In the overlay, unlabelled pixels
(below ``--threshold``) keep the image in grey, with no colour over them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from clips4.data.images import voc_palette
from clips4.inference.segmenter import UNLABELLED, SegmentResult

#: Smallest side of an overlay: tiny images are enlarged (nearest neighbour) so that the legend stays readable.
MIN_OVERLAY_SIDE = 256
FONT_SIZE = 14


@dataclass(frozen=True)
class LegendEntry:
    name: str
    rgb: tuple[int, int, int]
    fraction: float

    @property
    def hex(self) -> str:
        return "#{:02x}{:02x}{:02x}".format(*self.rgb)


def class_palette() -> np.ndarray:
    """``[256, 3]`` uint8: the classes in VOC's colours from label 1 on, greys skipped (grey means unlabelled in the
    overlay); 255 (unlabelled) black."""
    voc = voc_palette(1024)[1:]
    colours = voc[~((voc[:, 0] == voc[:, 1]) & (voc[:, 1] == voc[:, 2]))]
    palette = np.zeros((256, 3), np.uint8)
    palette[:UNLABELLED] = colours[:UNLABELLED]
    return palette


def legend_entries(result: SegmentResult) -> list[LegendEntry]:
    """One entry per class (in the order given), then ``unlabelled`` when a threshold left pixels out."""
    palette = class_palette()
    fractions = result.fractions()
    entries = [
        LegendEntry(name, tuple(int(c) for c in palette[i]), fractions[name]) for i, name in enumerate(fractions)
    ]
    unlabelled = float((result.labels == UNLABELLED).mean())
    if result.threshold is not None:
        entries.append(LegendEntry(f"unlabelled (< {result.threshold:g})", (128, 128, 128), unlabelled))
    return entries


def overlay(image: np.ndarray, result: SegmentResult, title: str | None = None, alpha: float = 0.55) -> np.ndarray:
    """RGB ``[H', W', 3]``: the image with the class colours blended over it, and a legend panel on the right."""
    colours = class_palette()[result.labels].astype(np.float32)
    grey = np.repeat(image.astype(np.float32).mean(axis=-1, keepdims=True), 3, axis=-1)
    labelled = (result.labels != UNLABELLED)[..., None]
    blended = np.where(labelled, (1 - alpha) * image + alpha * colours, grey)
    picture = Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8))
    scale = max(1, -(-MIN_OVERLAY_SIDE // min(picture.size)))
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    return np.asarray(_with_legend(picture, legend_entries(result), title))


def _with_legend(picture: Image.Image, entries: Sequence[LegendEntry], title: str | None) -> Image.Image:
    font = ImageFont.load_default(size=FONT_SIZE)
    line = FONT_SIZE + 8
    lines = [*([title] if title else []), *(f"{e.name}  {100 * e.fraction:.1f}%" for e in entries)]
    measure = ImageDraw.Draw(picture)
    text_width = max(int(measure.textlength(text, font=font)) for text in lines)
    panel_width = text_width + line + 24
    height = max(picture.height, len(lines) * line + 16)
    canvas = Image.new("RGB", (picture.width + panel_width, height), (255, 255, 255))
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    x, y = picture.width + 8, 8
    if title:
        draw.text((x, y), title, fill=(0, 0, 0), font=font)
        y += line
    for entry in entries:
        draw.rectangle((x, y + 2, x + line - 6, y + line - 4), fill=entry.rgb, outline=(0, 0, 0))
        draw.text((x + line, y), f"{entry.name}  {100 * entry.fraction:.1f}%", fill=(0, 0, 0), font=font)
        y += line
    return canvas
