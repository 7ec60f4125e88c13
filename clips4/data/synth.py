"""The embedded synthetic world: images with exact masks and captions that name the classes present.

Design (why it looks like this): a tiny CLIP is trained on the captions and its dense (MaskCLIP)
features must be able to tell classes apart patch by patch, so every class is recognisable locally:
"stuff" classes by a distinct colour plus a texture (stripes, bricks, waves, speckle), "thing" classes
by a shape plus a colour of their own that no stuff class uses. The caption is derived from the final
mask, so it names exactly the classes present: classes squeezed below ``MIN_AREA_FRACTION`` of the
image by occlusion are set to ignore (255) and left out of the caption.

Every image is a pure function of ``(seed, split, index, params)``; files are written with fixed
encoder settings, so the same seed gives byte-identical files, in any order and from any process.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from scipy.ndimage import fourier_gaussian, gaussian_filter
from tqdm import tqdm

from clips4.data.images import write_jpeg, write_palette_png
from clips4.data.types import IGNORE_INDEX
from clips4.params import SynthParams
from clips4.workers import worker_count

SPLITS = ("train", "val")
MIN_AREA_FRACTION = 0.02
"""A class covering less of the image than this is set to ignore and not named in the caption."""


@dataclass(frozen=True)
class StuffClass:
    name: str
    color: tuple[int, int, int]
    texture: str


@dataclass(frozen=True)
class ThingClass:
    name: str
    shape: str
    color_name: str
    color: tuple[int, int, int]


STUFF = (
    StuffClass("grass", (60, 150, 45), "blades"),
    StuffClass("sky", (125, 180, 240), "smooth"),
    StuffClass("water", (25, 75, 165), "waves"),
    StuffClass("sand", (225, 195, 135), "speckle"),
    StuffClass("brick", (165, 65, 45), "bricks"),
    StuffClass("wood", (120, 75, 35), "grain"),
    StuffClass("snow", (242, 244, 250), "speckle"),
    StuffClass("road", (75, 75, 80), "noise"),
)
THINGS = (
    ThingClass("ball", "disc", "red", (225, 25, 30)),
    ThingClass("box", "square", "purple", (135, 45, 185)),
    ThingClass("star", "star", "yellow", (250, 225, 30)),
    ThingClass("kite", "diamond", "pink", (250, 120, 185)),
    ThingClass("ring", "ring", "orange", (250, 135, 15)),
    ThingClass("triangle", "triangle", "cyan", (30, 215, 215)),
)
CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in STUFF) + tuple(c.name for c in THINGS)
NUM_FOLDS = 4


@dataclass(frozen=True)
class SynthImage:
    """One generated image: RGB uint8 [H, W, 3], label uint8 [H, W], its caption and class names."""

    image: np.ndarray
    label: np.ndarray
    caption: str
    classes: tuple[str, ...]


def image_id(split: str, index: int) -> str:
    return f"{split}_{index:06d}"


def synth_folds(class_names: tuple[str, ...] = CLASS_NAMES) -> dict[str, list[str]]:
    """4 held-out class folds: class i goes to fold i mod 4 (stuff and things mix in every fold)."""
    return {str(fold): [name for i, name in enumerate(class_names) if i % NUM_FOLDS == fold] for fold in range(4)}


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLITS.index(split) if split in SPLITS else 7, index])


#: Above this sigma (images larger than about 120 px), smooth noise is filtered in Fourier space.
DIRECT_SMOOTHING_MAX_SIGMA = 12.0


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    white = rng.standard_normal((size, size))
    if sigma <= DIRECT_SMOOTHING_MAX_SIGMA:  # the default 96 px world (sigma 9.6): unchanged
        noise = gaussian_filter(white, sigma)
    else:  # the same Gaussian, periodic at the borders: 500 px images (sigma 50) take seconds less each
        noise = np.fft.irfft2(fourier_gaussian(np.fft.rfft2(white), sigma, n=size), s=white.shape)
    return noise / (noise.std() + 1e-8)


def _texture(stuff: StuffClass, rng: np.random.Generator, size: int) -> np.ndarray:
    """RGB float texture [H, W, 3] for a stuff class: its colour, jittered, times its pattern."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    color = np.array(stuff.color, np.float32) + rng.normal(0, 8, 3)
    scale = size / 96.0
    fine = rng.standard_normal((size, size)).astype(np.float32)
    if stuff.texture == "blades":  # vertical grass blades: noise smeared along y
        pattern = 0.22 * gaussian_filter(fine, (3 * scale, 0.6 * scale)) / 0.25
    elif stuff.texture == "smooth":  # sky: a soft vertical gradient
        pattern = 0.10 * (yy / size - 0.5) + 0.02 * fine
    elif stuff.texture == "waves":
        phase = rng.uniform(0, 2 * np.pi)
        pattern = 0.22 * np.sin(2 * np.pi * yy / (6 * scale) + 0.6 * np.sin(xx / (9 * scale)) + phase)
    elif stuff.texture == "speckle":
        pattern = 0.12 * fine
    elif stuff.texture == "bricks":  # light mortar lines on a staggered brick grid
        height, width = 8 * scale, 16 * scale
        row = np.floor(yy / height)
        mortar = (yy % height < 1.5 * scale) | ((xx + (row % 2) * width / 2) % width < 1.5 * scale)
        return np.clip(color * (1 + 0.05 * fine[..., None]) * (1 - mortar[..., None]) + mortar[..., None] * 200, 0, 255)
    elif stuff.texture == "grain":  # wood: wavy horizontal stripes
        pattern = 0.25 * np.sin(2 * np.pi * (yy + 2.5 * np.sin(xx / (7 * scale))) / (4 * scale)) + 0.05 * fine
    else:  # "noise": asphalt
        pattern = 0.18 * fine
    return np.clip(color * (1 + pattern[..., None]), 0, 255)


def _stuff_layout(rng: np.random.Generator, size: int, num_regions: int) -> np.ndarray:
    """Region index per pixel: nearest of a few random seeds, with boundaries bent by smooth noise."""
    seeds = rng.uniform(0, size, (num_regions, 2))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dist = np.stack([np.hypot(yy - sy, xx - sx) for sy, sx in seeds])
    dist += np.stack([_smooth_noise(rng, size, size / 10) * size / 10 for _ in range(num_regions)])
    return dist.argmin(0)


def shape_mask(shape: str, size: int, cy: float, cx: float, radius: float, angle: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    # rotate the frame so squares, stars and triangles appear at random orientations
    ry = dy * np.cos(angle) - dx * np.sin(angle)
    rx = dy * np.sin(angle) + dx * np.cos(angle)
    r = np.hypot(dy, dx)
    theta = np.arctan2(ry, rx)
    if shape == "disc":
        return r <= radius
    if shape == "ring":
        return (r <= radius) & (r >= 0.55 * radius)
    if shape == "square":
        return (np.abs(ry) <= 0.8 * radius) & (np.abs(rx) <= 0.8 * radius)
    if shape == "diamond":
        return np.abs(ry) / radius + np.abs(rx) / (0.65 * radius) <= 1
    if shape == "star":  # 5 points: the radius varies with the angle
        spikes = 0.5 + 0.5 * np.cos(5 * theta)
        return r <= radius * (0.45 + 0.55 * spikes**2)
    if shape == "triangle":  # inside 3 half-planes
        inside = np.ones_like(r, dtype=bool)
        for k in range(3):
            a = angle + 2 * np.pi * k / 3
            inside &= (dy * np.sin(a) + dx * np.cos(a)) <= 0.5 * radius
        return inside
    raise ValueError(f"unknown shape {shape!r}")


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _caption(rng: np.random.Generator, present: list[int]) -> str:
    phrases = []
    for class_id in present:
        if class_id < len(STUFF):
            phrases.append(STUFF[class_id].name)
        else:
            # No colour word: a caption "a red ball" lets the model tie the red patches to "red" instead of
            # "ball", and the class prompts ("a photo of a ball.") carry no colour (measured: things at ~0 IoU).
            phrases.append(f"a {THINGS[class_id - len(STUFF)].name}")
    order = rng.permutation(len(phrases))
    prefix = ("a photo of", "an image of", "a picture of", "a scene with")[rng.integers(4)]
    return f"{prefix} {_join([phrases[i] for i in order])}"


def render_scene(
    rng: np.random.Generator, size: int, stuff_ids: list[int], things: list[tuple[int, float, float, float, float]]
) -> tuple[np.ndarray, np.ndarray]:
    """Draw a scene: stuff regions (class ids) and things ``(class_id, cy, cx, radius, angle)``.

    Returns float RGB [H, W, 3] and the raw label map (before small classes are dropped).
    """
    layout = _stuff_layout(rng, size, len(stuff_ids))
    image = np.zeros((size, size, 3), np.float32)
    label = np.zeros((size, size), np.uint8)
    for region, class_id in enumerate(stuff_ids):
        inside = layout == region
        image[inside] = _texture(STUFF[class_id], rng, size)[inside]
        label[inside] = class_id
    for class_id, cy, cx, radius, angle in things:
        thing = THINGS[class_id - len(STUFF)]
        mask = shape_mask(thing.shape, size, cy, cx, radius, angle)
        # shading from the top-left so things read as objects, not flat stickers
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        shade = 1.0 - 0.25 * ((yy - cy) + (xx - cx)) / (2 * radius)
        color = np.clip(np.array(thing.color, np.float32) + rng.normal(0, 6, 3), 0, 255)
        image[mask] = np.clip(color * shade[mask][:, None], 0, 255)
        label[mask] = class_id
    return image, label


def image_shape(params: SynthParams) -> tuple[int, int]:
    """(height, width) of the world's images: ``image_height`` x ``image_width``, each ``image_size`` when unset."""
    return params.image_height or params.image_size, params.image_width or params.image_size


def generate_image(params: SynthParams, seed: int, split: str, index: int) -> SynthImage:
    """The synthetic image ``index`` of ``split``: a pure function of its arguments.

    A rectangular image is the top-left crop of the square scene of its longer side (a square world is unchanged).
    """
    rng = scene_rng(seed, split, index)
    height, width = image_shape(params)
    size = max(height, width)
    num_stuff = int(rng.integers(params.min_stuff, params.max_stuff + 1))
    stuff_ids = [int(i) for i in rng.choice(len(STUFF), size=num_stuff, replace=False)]
    things = []
    for _ in range(int(rng.integers(0, params.max_things + 1))):
        radius = rng.uniform(0.12, 0.22) * size
        cy, cx = rng.uniform(radius, size - radius, 2)
        things.append((len(STUFF) + int(rng.integers(len(THINGS))), cy, cx, radius, rng.uniform(0, 2 * np.pi)))
    image, label = render_scene(rng, size, stuff_ids, things)
    image, label = image[:height, :width], label[:height, :width]
    image = np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)

    counts = np.bincount(label.ravel(), minlength=len(CLASS_NAMES))
    present = [int(c) for c in np.flatnonzero(counts >= MIN_AREA_FRACTION * label.size)]
    label[~np.isin(label, present)] = IGNORE_INDEX
    return SynthImage(
        image=image,
        label=label,
        caption=_caption(rng, present),
        classes=tuple(CLASS_NAMES[c] for c in present),
    )


def _generate_and_write(job: tuple[SynthParams, int, str, int, str]) -> dict[str, object]:
    params, seed, split, index, root = job
    sample = generate_image(params, seed, split, index)
    name = image_id(split, index)
    write_jpeg(Path(root) / "JPEGImages" / f"{name}.jpg", sample.image)
    write_palette_png(Path(root) / "SegmentationClass" / f"{name}.png", sample.label)
    return {"id": name, "caption": sample.caption, "classes": list(sample.classes)}


def _jobs(params: SynthParams, seed: int, root: Path) -> Iterator[tuple[SynthParams, int, str, int, str]]:
    for split, count in (("train", params.train_images), ("val", params.val_images)):
        for index in range(count):
            yield params, seed, split, index, str(root)


def write_world(params: SynthParams, seed: int, out: str | Path, workers: int = 0) -> Path:
    """Generate the image world into ``out`` (Pascal VOC layout) and return it.

    Everything is written into ``<out>.partial`` and renamed at the end, so a killed run leaves the
    previous world (or none) in place, never a half-written one; a rerun starts the partial one afresh.
    """
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "ImageSets" / "Segmentation").mkdir(parents=True)
    jobs = list(_jobs(params, seed, partial))
    processes = min(worker_count(workers), max(1, len(jobs) // 256))
    progress = dict(total=len(jobs), desc="synth images", unit="img", mininterval=1.0)
    if processes > 1:
        with get_context("fork").Pool(processes) as pool:
            records = list(tqdm(pool.imap(_generate_and_write, jobs, chunksize=64), **progress))
    else:
        records = [_generate_and_write(job) for job in tqdm(jobs, **progress)]

    (partial / "classes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    (partial / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (partial / "folds.json").write_text(json.dumps(synth_folds(), indent=1) + "\n")
    for split in SPLITS:
        ids = [str(r["id"]) for r in records if str(r["id"]).startswith(split + "_")]
        (partial / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    replace_dir(partial, out)
    return out


def replace_dir(new: Path, target: Path) -> None:
    """Put ``new`` in place of ``target`` with renames only (the old tree is removed last)."""
    trash = target.with_name(target.name + ".old")
    shutil.rmtree(trash, ignore_errors=True)
    if target.exists():
        os.replace(target, trash)
    os.replace(new, target)
    shutil.rmtree(trash, ignore_errors=True)
