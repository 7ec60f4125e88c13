"""DAVIS 2017 videos (semi-supervised layout) for mask propagation.

Layout: ``JPEGImages/480p/<seq>/<frame>.jpg``, ``Annotations/480p/<seq>/<frame>.png`` (palette PNGs of
instance ids, 0 = background), ``ImageSets/2017/<split>.txt`` listing the sequences.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from clips4.data.images import read_label, read_rgb
from clips4.data.segmentation import read_split_file
from clips4.data.types import VideoSample
from clips4.errors import DatasetError


@dataclass
class DavisDataset(Sequence[VideoSample]):
    root: Path
    sequences: list[str]
    resolution: str = "480p"

    def __len__(self) -> int:
        return len(self.sequences)

    def __iter__(self) -> Iterator[VideoSample]:
        for index in range(len(self)):
            yield self[index]

    def frame_files(self, name: str) -> list[Path]:
        folder = self.root / "JPEGImages" / self.resolution / name
        if not folder.is_dir():
            raise DatasetError(f"{folder}: sequence listed in the split file but missing on disk", folder)
        return sorted(folder.glob("*.jpg"))

    def mask_file(self, name: str, frame: str) -> Path:
        return self.root / "Annotations" / self.resolution / name / f"{frame}.png"

    def __getitem__(self, index: int) -> VideoSample:  # type: ignore[override]
        name = self.sequences[index]
        frame_files = self.frame_files(name)
        if not frame_files:
            raise DatasetError(f"{self.root / 'JPEGImages' / self.resolution / name}: no frames", self.root)
        frames = tuple(read_rgb(f) for f in frame_files)
        first = self.mask_file(name, frame_files[0].stem)
        if not first.is_file():
            raise DatasetError(f"{first}: first-frame mask missing; propagation starts from it", first)
        masks = []
        for frame_file, frame in zip(frame_files, frames, strict=True):
            path = self.mask_file(name, frame_file.stem)
            if not path.is_file():
                break  # DAVIS test splits annotate only the first frame
            mask = read_label(path, require_palette=True)
            if mask.shape != frame.shape[:2]:
                raise DatasetError(f"{path}: mask size {mask.shape} differs from its frame {frame.shape[:2]}", path)
            masks.append(mask)
        return VideoSample(name, frames, tuple(masks), tuple(f.stem for f in frame_files))


def open_davis(root: str | Path, split: str = "val", resolution: str = "480p") -> DavisDataset:
    base = Path(root)
    for candidate in (base, base / "DAVIS"):
        if (candidate / "JPEGImages" / resolution).is_dir():
            base = candidate
            break
    else:
        raise DatasetError(
            f"{root}: no JPEGImages/{resolution}/ folder; expected the DAVIS 2017 layout "
            "(JPEGImages/480p/<seq>, Annotations/480p/<seq>, ImageSets/2017/<split>.txt)",
            root,
        )
    return DavisDataset(base, read_split_file(base / "ImageSets" / "2017" / f"{split}.txt"), resolution)
