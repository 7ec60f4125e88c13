"""Synthetic videos for mask propagation, in the DAVIS 2017 layout.

Each sequence is a static synthetic stuff background with 1-3 things moving on straight paths (and
slowly turning). Annotations are palette PNGs of instance ids (1..K, 0 = background) for every frame,
as in DAVIS; the first frame's mask is what propagation starts from.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from tqdm import tqdm

from clips4.data.images import write_jpeg, write_palette_png
from clips4.data.synth import render_scene, replace_dir, scene_rng, shape_mask, world_of
from clips4.params import SynthParams


def sequence_name(index: int) -> str:
    return f"synth{index:03d}"


def generate_sequence(params: SynthParams, seed: int, index: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frames (RGB uint8) and instance masks (uint8) of synthetic video ``index``; pure function of its inputs."""
    rng = scene_rng(seed, "video", index)
    size, frames = params.image_size, params.video_frames
    world = world_of(params)
    stuff_ids = [int(i) for i in rng.choice(len(world.stuff), size=int(rng.integers(2, 4)), replace=False)]
    background, _ = render_scene(rng, size, stuff_ids, [], world)
    objects = []
    for _ in range(int(rng.integers(1, 4))):
        radius = rng.uniform(0.12, 0.18) * size
        start = rng.uniform(radius, size - radius, 2)
        end = rng.uniform(radius, size - radius, 2)
        angle, spin = rng.uniform(0, 2 * np.pi), rng.normal(0, 0.1)
        objects.append((int(rng.integers(len(world.things))), start, end, radius, angle, spin))
    images, masks = [], []
    for t in range(frames):
        alpha = t / max(1, frames - 1)
        image = background.copy()
        mask = np.zeros((size, size), np.uint8)
        for instance, (thing_index, start, end, radius, angle, spin) in enumerate(objects, start=1):
            cy, cx = (1 - alpha) * start + alpha * end
            thing = world.things[thing_index]
            inside = shape_mask(thing.shape, size, cy, cx, radius * thing.size, angle + spin * t)
            image[inside] = thing.color
            mask[inside] = instance  # later objects occlude earlier ones, as in a real video
        noise = rng.normal(0, 3, image.shape)
        images.append(np.clip(image + noise, 0, 255).astype(np.uint8))
        masks.append(mask)
    return images, masks


def write_videos(params: SynthParams, seed: int, out: str | Path) -> Path:
    """Write ``params.video_sequences`` videos in DAVIS 2017 layout under ``out`` (atomically, as a whole)."""
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    names = [sequence_name(i) for i in range(params.video_sequences)]
    for index, name in enumerate(tqdm(names, desc="synth videos", unit="video", mininterval=1.0)):
        frames, masks = generate_sequence(params, seed, index)
        for t, (frame, mask) in enumerate(zip(frames, masks, strict=True)):
            write_jpeg(partial / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", frame)
            write_palette_png(partial / "Annotations" / "480p" / name / f"{t:05d}.png", mask)
    split_dir = partial / "ImageSets" / "2017"
    split_dir.mkdir(parents=True, exist_ok=True)
    (split_dir / "val.txt").write_text("\n".join(names) + "\n")
    replace_dir(partial, out)
    return out
