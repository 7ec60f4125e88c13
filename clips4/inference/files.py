"""``clips4 segment``: segment image files and folders, writing per image a label PNG, an overlay and the scores.

Outputs of ``<name>.<ext>`` (for a folder, its path below the folder) in ``out``:

- ``<name>.labels.png``: a palette PNG of class indices in the order given (255 = unlabelled);
- ``<name>.overlay.png``: the colour overlay with its legend;
- ``<name>.scores.npz`` (``save_scores``): ``scores`` ``[C, H, W]`` float16 cosines and ``classes``;

and ``classes.txt`` (index, colour, name). A file that cannot be read is reported by name and skipped; the others
are still written. Consecutive images of one size go through the model together, ``batch_size`` at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from clips4.data.images import write_palette_png
from clips4.errors import Clips4Error
from clips4.inference.render import class_palette, overlay
from clips4.inference.segmenter import Segmenter, SegmentResult, as_rgb_array
from clips4.io import atomic_write
from clips4.ops.batches import same_size_batches

#: File name endings taken from folders (a file named on the command line is read whatever its ending).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


@dataclass
class SegmentRun:
    """What a run wrote, and the inputs it skipped with the reason (each names the file)."""

    written: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def collect_images(inputs: Sequence[str | Path]) -> tuple[list[tuple[Path, str]], list[str]]:
    """``(file, output name)`` for every image named or found in a folder (sorted), and the inputs not found."""
    found: list[tuple[Path, str]] = []
    missing = []
    for item in map(Path, inputs):
        if item.is_dir():
            files = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            found += [(file, file.relative_to(item).with_suffix("").as_posix()) for file in files]
        elif item.is_file():
            found.append((item, item.stem))
        else:
            missing.append(f"{item}: no such file or folder")
    # Inputs with one name (a.jpg and a.png, or a.jpg in two folders) get their ending, then a number, appended.
    names = [name for _, name in found]
    used: set[str] = set()
    unique = []
    for file, name in found:
        candidate = f"{name}_{file.suffix.lstrip('.')}" if names.count(name) > 1 else name
        number = 1
        while candidate in used:
            number += 1
            candidate = f"{name}_{file.suffix.lstrip('.')}_{number}"
        used.add(candidate)
        unique.append((file, candidate))
    return unique, missing


def _save_png(path: Path, picture: np.ndarray) -> None:
    atomic_write(path, lambda handle: Image.fromarray(picture).save(handle, format="PNG"))


def write_outputs(out: Path, name: str, image: np.ndarray, result: SegmentResult, save_scores: bool) -> list[Path]:
    """Write one image's files (each through a temporary name and a rename); returns their paths."""
    base = out / name
    base.parent.mkdir(parents=True, exist_ok=True)
    labels, picture = base.with_name(f"{base.name}.labels.png"), base.with_name(f"{base.name}.overlay.png")
    write_palette_png(labels, result.labels, class_palette())
    _save_png(picture, overlay(image, result, title=result.method))
    written = [labels, picture]
    if save_scores and result.scores is not None:
        scores = base.with_name(f"{base.name}.scores.npz")
        arrays = {"scores": result.scores.astype(np.float16), "classes": np.array(result.classes)}
        atomic_write(scores, lambda handle: np.savez_compressed(handle, **arrays))
        written.append(scores)
    return written


def write_classes(out: Path, classes: Sequence[str]) -> Path:
    palette = class_palette()
    lines = [f"{i}\t#{''.join(f'{c:02x}' for c in palette[i])}\t{name}" for i, name in enumerate(classes)]
    path = out / "classes.txt"
    atomic_write(path, "# index\tcolour\tname (label 255: unlabelled)\n" + "\n".join(lines) + "\n")
    return path


def _readable(items: Sequence[tuple[Path, str]], run: SegmentRun) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, image)`` of each readable image, in order; unreadable ones go to ``run.failed``."""
    for file, name in items:
        try:
            yield name, as_rgb_array(file)
        except Clips4Error as err:
            run.failed.append(str(err))


def run_segment(
    segmenter: Segmenter,
    inputs: Sequence[str | Path],
    classes: Sequence[str],
    out: Path,
    *,
    threshold: float | None = None,
    save_scores: bool = False,
    batch_size: int = 1,
    progress: bool = True,
) -> SegmentRun:
    """Segment every image of ``inputs`` (files and folders) into ``out``; see the module docstring."""
    items, missing = collect_images(inputs)
    if not items and not missing:
        endings = " ".join(sorted(IMAGE_SUFFIXES))
        raise Clips4Error(f"{', '.join(map(str, inputs))}: no image files found (endings {endings}); check the paths")
    run = SegmentRun(failed=list(missing))
    out.mkdir(parents=True, exist_ok=True)
    run.written.append(write_classes(out, classes))
    bar = tqdm(
        total=len(items), desc=f"segment ({segmenter.method})", unit="img", disable=not progress, mininterval=1.0
    )
    with bar:
        for batch in same_size_batches(_readable(items, run), lambda item: item[1].shape, batch_size):
            results = segmenter.segment_batch([image for _, image in batch], classes, threshold, scores=save_scores)
            for (name, image), result in zip(batch, results, strict=True):
                run.written += write_outputs(out, name, image, result, save_scores)
            bar.update(len(batch))
        bar.update(len(items) - bar.n)
    return run
