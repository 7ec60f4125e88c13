"""A tiny project with every cache the train stage reads, built once per test module (about 20 s on 2 cores)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.fixtures import make_tiny_project

#: A world of 48-px images, the 32-d test CLIP, 8 superpixels per image, the 8-px test student.
TINY_TRAIN = {
    "synth": {"image_size": 48, "train_images": 24, "val_images": 6},
    "clip": {"model": "clips4-test-vit", "pretrained": "synth", "window": 48, "stride": 16, "batch_size": 8},
    "cache": {"chunk_mb": 0.02},
    "ucm": {"regions": 8, "quality_images": 2},
    "unknowns": 4,
    "top_m": 4,
    "segments_per_view": 6,
    "train": {
        "iterations": 6,
        "batch_size": 4,
        "lr": 0.001,
        "model": "pspnet-test",
        "crop_size": 32,
        "checkpoint_every": 2,
        "workers": 0,
        "score_images": 6,
    },
}


def build_train_project(root: Path, overrides: dict | None = None) -> Path:
    """``root`` with params.yaml (``TINY_TRAIN`` updated section by section with ``overrides``), data/synth,
    models/clip.pt and the caches under data/cache."""
    from clips4.params import load_params
    from clips4.stages.clip_dense import run_clip_dense
    from clips4.stages.contours import run_contours
    from clips4.stages.prototypes import run_prototypes
    from clips4.stages.segments import run_segments
    from clips4.stages.ucm import run_ucm

    sections = {**TINY_TRAIN}
    for key, value in (overrides or {}).items():
        sections[key] = {**sections[key], **value} if isinstance(value, dict) and key in sections else value
    make_tiny_project(root, sections)
    previous = Path.cwd()
    os.chdir(root)
    try:
        params = load_params("params.yaml")
        cache = Path("data/cache")
        run_contours(params, cache / "contours.zarr", workers=1)
        run_ucm(params, cache / "contours.zarr", cache / "superpixels.zarr", workers=1)
        run_clip_dense(params, cache / "clip_dense.zarr")
        run_segments(params, cache / "superpixels.zarr", cache / "clip_dense.zarr", cache / "segments.zarr", workers=1)
        run_prototypes(params, cache / "segments.zarr", cache / "prototypes.zarr")
    finally:
        os.chdir(previous)
    return root


def train_project(root: Path) -> Path:
    """Run `clips4 train` in the project ``root`` (as `dvc repro` does, from its folder) and return ``root``."""
    from typer.testing import CliRunner

    from clips4.cli import app

    previous = Path.cwd()
    os.chdir(root)
    try:
        result = CliRunner().invoke(app, ["train"])
    finally:
        os.chdir(previous)
    assert result.exit_code == 0, result.output
    return root
