"""Statistics of a generated world (the ``synth`` stage's ``stats.json``): how much of it the named classes cover,
how much the unnamed concepts do, and how many classes an image holds. Pure functions over per-image summaries."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImageSummary:
    """What the statistics need of one image: its split, pixels per named class (``[C]``), pixels of unnamed
    concepts, all its pixels, and the unnamed concepts it shows."""

    split: str
    class_pixels: np.ndarray
    unnamed_pixels: int
    pixels: int
    unnamed: tuple[str, ...]


def split_stats(summaries: Sequence[ImageSummary], class_names: Sequence[str]) -> dict[str, object]:
    """One split's (or the whole world's) statistics; shares in percent of all its pixels (or images)."""
    pixels = sum(s.pixels for s in summaries)
    class_pixels = np.sum([s.class_pixels for s in summaries], axis=0) if summaries else np.zeros(len(class_names))
    labelled = float(class_pixels.sum())
    unnamed = sum(s.unnamed_pixels for s in summaries)
    per_image = [int((s.class_pixels > 0).sum()) for s in summaries]
    return {
        "images": len(summaries),
        "pixels": int(pixels),
        "class_pixel_share": {n: round(100 * float(c) / max(pixels, 1), 2) for n, c in zip(class_names, class_pixels)},
        "labelled_pixel_share": round(100 * labelled / max(pixels, 1), 2),
        "unnamed_pixel_share": round(100 * unnamed / max(pixels, 1), 2),
        # the rest of 255: slivers of a class squeezed under synth.MIN_AREA_FRACTION by occlusion
        "other_ignored_pixel_share": round(100 * (pixels - labelled - unnamed) / max(pixels, 1), 2),
        "images_with_unnamed_share": round(100 * sum(bool(s.unnamed) for s in summaries) / max(len(summaries), 1), 2),
        "unnamed_images": {name: sum(name in s.unnamed for s in summaries) for name in _unnamed_names(summaries)},
        "classes_per_image": {
            "mean": round(float(np.mean(per_image)), 2) if per_image else 0.0,
            "histogram": {str(k): per_image.count(k) for k in range(max(per_image, default=0) + 1)},
        },
    }


def world_stats(summaries: Iterable[ImageSummary], class_names: Sequence[str]) -> dict[str, object]:
    """The whole world's statistics (``all``) and each split's, in the order the splits first appear."""
    summaries = list(summaries)
    splits = list(dict.fromkeys(s.split for s in summaries))
    by_split = {split: split_stats([s for s in summaries if s.split == split], class_names) for split in splits}
    return {"all": split_stats(summaries, class_names), **by_split}


def format_stats(stats: dict[str, object]) -> str:
    """Three lines for the terminal: the shares the world is built to have."""
    total = stats["all"]
    assert isinstance(total, dict)
    largest = sorted(total["class_pixel_share"].items(), key=lambda item: -item[1])
    return "\n".join(
        [
            f"{total['images']} images: unnamed concepts cover {total['unnamed_pixel_share']}% of pixels and appear in "
            f"{total['images_with_unnamed_share']}% of images; named classes label {total['labelled_pixel_share']}%",
            f"classes per image: {total['classes_per_image']['mean']} on average",
            "pixels per class (%): " + ", ".join(f"{name} {share}" for name, share in largest),
        ]
    )


def _unnamed_names(summaries: Sequence[ImageSummary]) -> list[str]:
    return sorted({name for s in summaries for name in s.unnamed})
