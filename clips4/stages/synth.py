"""The ``synth`` stage: the embedded synthetic world (clips4/data/synth.py) in Pascal VOC layout under
data/synth, and its videos (clips4/data/synth_video.py) in DAVIS 2017 layout under data/synth_video. Both are
pure functions of ``synth`` (its ``seed`` included), written into a temporary folder and swapped in when complete."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clips4.data.synth import generate_image, write_world
from clips4.data.synth_video import write_videos
from clips4.params import Params


@dataclass(frozen=True, kw_only=True)
class SynthResult:
    image_root: Path
    video_root: Path
    train_images: int
    val_images: int
    tune_images: int
    video_sequences: int
    stats: dict[str, object]


def run_synth(params: Params, out: Path, video_out: Path, workers: int = 0) -> SynthResult:
    """Generate the image world into ``out`` (with its statistics, ``stats.json``) and the videos into
    ``video_out``."""
    image_root, stats = write_world(params.synth, params.synth.seed, out, workers=workers)
    video_root = write_videos(params.synth, params.synth.seed, video_out)
    return SynthResult(
        image_root=Path(image_root),
        video_root=Path(video_root),
        train_images=params.synth.train_images,
        val_images=params.synth.val_images,
        tune_images=params.synth.tune_images,
        video_sequences=params.synth.video_sequences,
        stats=stats,
    )


def run_synth_preview(params: Params, count: int, path: Path) -> Path:
    """Draw the first ``count`` train images with their masks and captions into ``path`` (nothing else written)."""
    from clips4.data.preview import write_preview

    samples = [generate_image(params.synth, params.synth.seed, "train", index) for index in range(count)]
    return write_preview(
        [s.image for s in samples],
        [s.label for s in samples],
        [s.caption for s in samples],
        path,
        unnamed=[s.unnamed for s in samples],
    )
