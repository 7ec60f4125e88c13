"""The embedded synthetic world: images with exact masks and captions that name the concepts present.

Design (why it looks like this): a tiny CLIP is trained on the captions and its dense (MaskCLIP)
features must be able to tell classes apart patch by patch, so every class is recognisable locally:
"stuff" classes by a distinct colour plus a texture (stripes, bricks, waves, speckle), "thing" classes
by a shape plus a colour of their own that no stuff class uses. The caption is derived from the final
mask, so it names exactly the concepts present: concepts squeezed below ``MIN_AREA_FRACTION`` of the
image by occlusion are set to ignore (255) and left out of the caption.

Two properties of real data that CLIP-S4's mechanisms answer to (docs/data.md measures both):

- **Unnamed concepts** (``UNNAMED_STUFF``, ``UNNAMED_THINGS``): drawn and named in the captions, so the tiny CLIP
  learns them as real CLIP knows far more than any label set, but not in ``classes.txt``: their pixels are 255
  in the masks, as Pascal Context-59 leaves its other 400 classes unlabelled. The unknown prototypes have them
  to find.
- **Weak edges**: stuff regions blend into each other over a few pixels, one smooth illumination field shades
  the whole image across boundaries, things cast soft shadows (edges inside one class), and some stuff colours
  are close to others' (grass and moss, road and rock), so OWT-UCM's superpixels miss boundaries as they do on
  VOC, instead of following every one.

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
from clips4.data.world_stats import ImageSummary, world_stats
from clips4.params import SynthParams
from clips4.workers import worker_count

SPLITS = ("train", "val", "tune")
"""Splits in the order their images are drawn (the index seeds each image's generator: never reorder)."""
STATS_FILE = "stats.json"
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
    size: float = 1.0  # radius relative to the drawn one (a small thing: < 1)


@dataclass(frozen=True)
class World:
    """One synthetic world's concepts: the named ``stuff`` and ``things`` (ids 0.. in the masks, in that order),
    then the ``unnamed_stuff`` and ``unnamed_things`` (drawn and captioned, 255 in the masks)."""

    name: str
    stuff: tuple[StuffClass, ...]
    things: tuple[ThingClass, ...]
    unnamed_stuff: tuple[StuffClass, ...]
    unnamed_things: tuple[ThingClass, ...]
    min_area_fraction: float = MIN_AREA_FRACTION  # below it a concept is 255 and uncaptioned (thin things: lower)

    @property
    def class_names(self) -> tuple[str, ...]:
        """The named classes (``classes.txt``)."""
        return tuple(c.name for c in self.stuff + self.things)

    @property
    def concepts(self) -> tuple[StuffClass | ThingClass, ...]:
        """Every concept drawn, by raw label id: the named classes first, then the unnamed ones."""
        return self.stuff + self.things + self.unnamed_stuff + self.unnamed_things

    @property
    def unnamed_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.unnamed_stuff + self.unnamed_things)


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
# Unnamed concepts: in the images and the captions, 255 in the masks. Moss's colour is close to grass's and
# rock's to road's (weak edges between a named and an unnamed region, as between Context's classes and the rest).
UNNAMED_STUFF = (
    StuffClass("rock", (105, 100, 95), "cracks"),
    StuffClass("moss", (80, 140, 55), "moss"),
)
UNNAMED_THINGS = (
    ThingClass("heart", "heart", "lime", (170, 235, 40)),
    ThingClass("cross", "cross", "blue", (45, 60, 225)),
)
SHAPES_WORLD = World("shapes", STUFF, THINGS, UNNAMED_STUFF, UNNAMED_THINGS)
"""The default world (``synth.world: shapes``)."""

# The second world (``synth.world: workshop``), kept for checking that a default holds beyond the first one: other
# classes, textures and shapes, with thin things (pencil, wire, crescent moon) and a small one (button, at 40 % of
# the others' size); nothing shared with the shapes world but the rendering (weak edges, shadows, illumination).
WORKSHOP_WORLD = World(
    "workshop",
    stuff=(
        StuffClass("tiles", (200, 205, 195), "checker"),
        StuffClass("carpet", (150, 30, 70), "dots"),
        StuffClass("marble", (225, 220, 210), "veins"),
        StuffClass("metal", (140, 150, 160), "brushed"),
        StuffClass("fabric", (60, 110, 120), "hatch"),
        StuffClass("leaves", (70, 115, 30), "blobs"),
        StuffClass("gravel", (170, 150, 120), "gravel"),
        StuffClass("concrete", (120, 120, 115), "cloudy"),
    ),
    things=(
        ThingClass("pencil", "bar", "yellow", (245, 200, 20), 1.0),
        ThingClass("wire", "thin_plus", "red", (220, 30, 35), 1.0),
        ThingClass("moon", "crescent", "white", (250, 250, 235), 1.0),
        ThingClass("button", "disc", "blue", (35, 70, 230), 0.4),
        ThingClass("arrow", "arrow", "orange", (250, 130, 20), 1.0),
        ThingClass("nut", "hexagon", "purple", (130, 50, 190), 1.0),
    ),
    unnamed_stuff=(
        StuffClass("foam", (235, 235, 240), "bubbles"),
        StuffClass("rust", (150, 80, 40), "blobs"),
    ),
    unnamed_things=(
        ThingClass("hook", "hook", "green", (40, 200, 80), 1.0),
        ThingClass("egg", "ellipse", "cream", (245, 225, 180), 0.7),
    ),
    # a pencil covers 0.4 r^2 (r = 12-21 px: 55-180 px), under the shapes world's 2 % of 96 x 96 = 184 px
    min_area_fraction=0.005,
)
WORLDS = {world.name: world for world in (SHAPES_WORLD, WORKSHOP_WORLD)}
"""The worlds ``synth.world`` chooses among."""

CLASS_NAMES: tuple[str, ...] = SHAPES_WORLD.class_names
"""The default world's named classes (``classes.txt``), ids 0..13 in the masks."""
CONCEPTS: tuple[StuffClass | ThingClass, ...] = SHAPES_WORLD.concepts
"""Every concept of the default world, by raw label id: the named classes first, then the unnamed ones (14..17)."""
UNNAMED_NAMES: tuple[str, ...] = SHAPES_WORLD.unnamed_names
UNNAMED_STUFF_PROBABILITY = 0.6
"""Chance that an image has one unnamed stuff region among its stuff."""
UNNAMED_THING_PROBABILITY = 0.3
"""Chance that each thing of an image is an unnamed one."""
NUM_FOLDS = 4


@dataclass(frozen=True)
class SynthImage:
    """One generated image: RGB uint8 [H, W, 3], label uint8 [H, W], its caption, named classes and unnamed
    concepts."""

    image: np.ndarray
    label: np.ndarray
    caption: str
    classes: tuple[str, ...]
    unnamed: tuple[str, ...] = ()
    """Unnamed concepts present (named in the caption, 255 in the label)."""
    unnamed_pixels: int = 0
    """Pixels of those concepts (the rest of 255 are slivers of classes squeezed out by occlusion)."""


def image_id(split: str, index: int) -> str:
    return f"{split}_{index:06d}"


def synth_folds(class_names: tuple[str, ...] = CLASS_NAMES) -> dict[str, list[str]]:
    """4 held-out class folds: class i goes to fold i mod 4 (stuff and things mix in every fold)."""
    return {str(fold): [name for i, name in enumerate(class_names) if i % NUM_FOLDS == fold] for fold in range(4)}


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLITS.index(split) if split in SPLITS else 7, index])


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Unit-variance Gaussian-smoothed white noise [size, size], periodic at the borders: filtered in Fourier space,
    0.36 ms against 1.3 ms for a direct filter at sigma 9.6 on 96 px (and seconds less at 500 px)."""
    white = rng.standard_normal((size, size))
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
    elif stuff.texture == "cracks":  # rock: dark cracks along the zero lines of smooth noise, strong inner edges
        field = _smooth_noise(rng, size, 5 * scale)
        pattern = -0.45 * (np.abs(field) < 0.12) + 0.08 * fine + 0.08 * _smooth_noise(rng, size, 2 * scale)
    elif stuff.texture == "moss":  # soft blotches of light and dark
        pattern = 0.18 * _smooth_noise(rng, size, 1.5 * scale) + 0.06 * fine
    # the workshop world's textures
    elif stuff.texture == "checker":  # tiles: a grid of squares alternating light and dark, thin grout lines
        cell = 12 * scale
        pattern = 0.12 * ((np.floor(yy / cell) + np.floor(xx / cell)) % 2 - 0.5) + 0.03 * fine
        pattern -= 0.35 * ((yy % cell < scale) | (xx % cell < scale))
    elif stuff.texture == "dots":  # carpet: a regular lattice of light dots
        period = 5 * scale
        pattern = 0.3 * (np.hypot(yy % period - period / 2, xx % period - period / 2) < 1.2 * scale) + 0.05 * fine
    elif stuff.texture == "veins":  # marble: thin dark veins along the zero lines of a stretched smooth noise
        field = gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), (2 * scale, 8 * scale))
        field /= field.std() + 1e-6
        pattern = -0.3 * (np.abs(field) < 0.1) + 0.03 * fine
    elif stuff.texture == "brushed":  # metal: fine horizontal streaks
        pattern = 0.2 * gaussian_filter(fine, (0.4 * scale, 6 * scale)) / 0.15
    elif stuff.texture == "hatch":  # fabric: two diagonal weaves
        pattern = 0.12 * np.sin(2 * np.pi * (yy + xx) / (4 * scale)) * np.sin(2 * np.pi * (yy - xx) / (4 * scale))
        pattern += 0.04 * fine
    elif stuff.texture == "blobs":  # leaves, rust: large soft patches of light and dark
        pattern = 0.25 * _smooth_noise(rng, size, 4 * scale) + 0.05 * fine
    elif stuff.texture == "gravel":  # coarse speckle: 2-3 px stones
        pattern = 0.2 * np.repeat(np.repeat(rng.standard_normal((size // 3 + 1, size // 3 + 1)), 3, 0), 3, 1)[
            :size, :size
        ].astype(np.float32)
    elif stuff.texture == "cloudy":  # concrete: faint smooth mottling
        pattern = 0.08 * _smooth_noise(rng, size, 6 * scale) + 0.06 * fine
    elif stuff.texture == "bubbles":  # foam: bright rings of random bubbles
        pattern = 0.04 * fine
        for cy, cx, r in zip(*rng.uniform(0, size, (2, 40)), rng.uniform(1.5, 4.0, 40) * scale, strict=True):
            pattern -= 0.25 * (np.abs(np.hypot(yy - cy, xx - cx) - r) < 0.6 * scale)
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
    if shape == "cross":  # two bars of a third of the width
        return ((np.abs(ry) <= 0.9 * radius) & (np.abs(rx) <= 0.3 * radius)) | (
            (np.abs(rx) <= 0.9 * radius) & (np.abs(ry) <= 0.3 * radius)
        )
    if shape == "heart":  # two lobes above a point: the implicit curve (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0
        u, v = rx / (0.8 * radius), -ry / (0.8 * radius)
        return (u**2 + v**2 - 1) ** 3 - u**2 * v**3 <= 0
    # the workshop world's shapes: thin ones (bar, thin_plus, crescent, hook) among the others
    if shape == "bar":  # a pencil: a 1.9 x 0.2 radius stick
        return (np.abs(rx) <= 0.95 * radius) & (np.abs(ry) <= 0.1 * radius)
    if shape == "thin_plus":  # a wire cross: two bars a tenth of the width
        return ((np.abs(ry) <= 0.95 * radius) & (np.abs(rx) <= 0.1 * radius)) | (
            (np.abs(rx) <= 0.95 * radius) & (np.abs(ry) <= 0.1 * radius)
        )
    if shape == "crescent":  # a disc less a shifted one: a thin curved sliver
        return (r <= radius) & (np.hypot(ry + 0.0, rx - 0.35 * radius) > 0.85 * radius)
    if shape == "arrow":  # a shaft and a triangular head
        shaft = (rx >= -0.9 * radius) & (rx <= 0.3 * radius) & (np.abs(ry) <= 0.15 * radius)
        head = (rx >= 0.3 * radius) & (rx <= 0.9 * radius) & (np.abs(ry) <= (0.9 * radius - rx) * 0.8)
        return shaft | head
    if shape == "hexagon":  # inside 6 half-planes
        inside = np.ones_like(r, dtype=bool)
        for k in range(6):
            a = angle + np.pi * k / 3
            inside &= (dy * np.sin(a) + dx * np.cos(a)) <= 0.8 * radius
        return inside
    if shape == "hook":  # an L of two thin bars
        return ((rx >= -0.8 * radius) & (rx <= 0.8 * radius) & (np.abs(ry - 0.6 * radius) <= 0.12 * radius)) | (
            (np.abs(rx + 0.8 * radius) <= 0.12 * radius) & (ry >= -0.8 * radius) & (ry <= 0.72 * radius)
        )
    if shape == "ellipse":
        return (rx / radius) ** 2 + (ry / (0.6 * radius)) ** 2 <= 1
    raise ValueError(f"unknown shape {shape!r}")


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _caption(rng: np.random.Generator, present: list[int], world: World = SHAPES_WORLD) -> str:
    phrases = []
    for class_id in present:
        concept = world.concepts[class_id]
        # No colour word for things: a caption "a red ball" lets the model tie the red patches to "red" instead of
        # "ball", and the class prompts ("a photo of a ball.") carry no colour (measured: things at ~0 IoU).
        article = "an" if concept.name[0] in "aeiou" else "a"
        phrases.append(concept.name if isinstance(concept, StuffClass) else f"{article} {concept.name}")
    order = rng.permutation(len(phrases))
    prefix = ("a photo of", "an image of", "a picture of", "a scene with")[rng.integers(4)]
    return f"{prefix} {_join([phrases[i] for i in order])}"


#: Weak edges (docs/data.md): stuff regions blend over a Gaussian of this sigma range (pixels at 96 px) ...
BLEND_SIGMA = (3.0, 6.0)
#: ... their colours drawn toward the scene's mean by a share in this range ...
PALETTE_PULL = (0.2, 0.85)
#: ... one smooth illumination field of this strength shades the whole image across boundaries ...
ILLUMINATION = 0.3
#: ... things' edges blur over this sigma ...
THING_EDGE_SIGMA = 1.0
#: ... and things cast a soft shadow this much darker, offset by about a third of their radius.
SHADOW_DARKENING = 0.4


def _blend_weights(layout: np.ndarray, num_regions: int, sigma: float) -> np.ndarray:
    """float32 [R, H, W]: each region's share of every pixel, its mask blurred by ``sigma`` (sums to 1)."""
    weights = np.stack([gaussian_filter((layout == k).astype(np.float32), sigma) for k in range(num_regions)])
    return weights / np.maximum(weights.sum(0), 1e-6)


def render_scene(
    rng: np.random.Generator,
    size: int,
    stuff_ids: list[int],
    things: list[tuple[int, float, float, float, float]],
    world: World = SHAPES_WORLD,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw a scene of ``world``: stuff regions (concept ids) and things ``(concept_id, cy, cx, radius, angle)``.

    Returns float RGB [H, W, 3] and the raw label map of concept ids (before small and unnamed ones are dropped).
    """
    scale = size / 96.0
    layout = _stuff_layout(rng, size, len(stuff_ids))
    weights = _blend_weights(layout, len(stuff_ids), rng.uniform(*BLEND_SIGMA) * scale)
    image = np.zeros((size, size, 3), np.float32)
    label = np.zeros((size, size), np.uint8)
    textures = [_texture(world.concepts[class_id], rng, size) for class_id in stuff_ids]
    # low contrast (haze, dusk): every region's colour drawn toward the scene's mean, its pattern kept
    means = [texture.mean((0, 1)) for texture in textures]
    pull = rng.uniform(*PALETTE_PULL)
    for region, class_id in enumerate(stuff_ids):
        texture = textures[region] + pull * (np.mean(means, 0) - means[region])
        image += weights[region][..., None] * texture
        label[layout == region] = class_id
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for class_id, cy, cx, radius, angle in things:
        thing = world.concepts[class_id]
        radius = radius * thing.size
        mask = shape_mask(thing.shape, size, cy, cx, radius, angle)
        # a soft shadow below-right: an edge inside whatever class lies under it
        offset = rng.uniform(0.2, 0.45) * radius
        shadow = gaussian_filter(shape_mask(thing.shape, size, cy + offset, cx + offset, radius, angle) * 1.0, 1.5 * scale)
        image *= 1 - SHADOW_DARKENING * shadow[..., None]
        # shading from the top-left so things read as objects, not flat stickers
        shade = 1.0 - 0.25 * ((yy - cy) + (xx - cx)) / (2 * radius)
        color = np.clip(np.array(thing.color, np.float32) + rng.normal(0, 6, 3), 0, 255)
        # anti-aliased over THING_EDGE_SIGMA: a soft edge, as a real camera's
        alpha = gaussian_filter(mask.astype(np.float32), THING_EDGE_SIGMA * scale)[..., None]
        image = (1 - alpha) * image + alpha * np.clip(color * shade[..., None], 0, 255)
        label[mask] = class_id
    illumination = 1 + ILLUMINATION * np.clip(_smooth_noise(rng, size, size / 4), -2, 2) / 2
    return np.clip(image * illumination[..., None], 0, 255), label


def image_shape(params: SynthParams) -> tuple[int, int]:
    """(height, width) of the world's images: ``image_height`` x ``image_width``, each ``image_size`` when unset."""
    return params.image_height or params.image_size, params.image_width or params.image_size


def _draw_stuff(rng: np.random.Generator, count: int, world: World) -> list[int]:
    """``count`` distinct stuff concept ids; with ``UNNAMED_STUFF_PROBABILITY`` one of them unnamed."""
    named = [int(i) for i in rng.choice(len(world.stuff), size=count, replace=False)]
    if rng.random() < UNNAMED_STUFF_PROBABILITY:
        named[int(rng.integers(count))] = len(world.class_names) + int(rng.integers(len(world.unnamed_stuff)))
    return named


def _draw_thing(rng: np.random.Generator, world: World) -> int:
    if rng.random() < UNNAMED_THING_PROBABILITY:
        first = len(world.class_names) + len(world.unnamed_stuff)
        return first + int(rng.integers(len(world.unnamed_things)))
    return len(world.stuff) + int(rng.integers(len(world.things)))


def world_of(params: SynthParams) -> World:
    """The world ``synth.world`` names."""
    return WORLDS[params.world]


def generate_image(params: SynthParams, seed: int, split: str, index: int) -> SynthImage:
    """The synthetic image ``index`` of ``split``: a pure function of its arguments.

    A rectangular image is the top-left crop of the square scene of its longer side (a square world is unchanged).
    """
    rng = scene_rng(seed, split, index)
    world = world_of(params)
    height, width = image_shape(params)
    size = max(height, width)
    stuff_ids = _draw_stuff(rng, int(rng.integers(params.min_stuff, params.max_stuff + 1)), world)
    things = []
    for _ in range(int(rng.integers(0, params.max_things + 1))):
        radius = rng.uniform(0.12, 0.22) * size
        cy, cx = rng.uniform(radius, size - radius, 2)
        things.append((_draw_thing(rng, world), cy, cx, radius, rng.uniform(0, 2 * np.pi)))
    image, label = render_scene(rng, size, stuff_ids, things, world)
    image, label = image[:height, :width], label[:height, :width]
    image = np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)

    counts = np.bincount(label.ravel(), minlength=len(world.concepts))
    present = [int(c) for c in np.flatnonzero(counts >= world.min_area_fraction * label.size)]
    caption = _caption(rng, present, world)
    classes = world.class_names
    named = [c for c in present if c < len(classes)]
    unnamed_pixels = int(counts[[c for c in present if c >= len(classes)]].sum())
    label[~np.isin(label, named)] = IGNORE_INDEX  # unnamed concepts and slivers: 255, as Context's other classes
    return SynthImage(
        image=image,
        label=label,
        caption=caption,
        classes=tuple(classes[c] for c in named),
        unnamed=tuple(world.concepts[c].name for c in present if c >= len(classes)),
        unnamed_pixels=unnamed_pixels,
    )


def _generate_and_write(job: tuple[SynthParams, int, str, int, str]) -> tuple[dict[str, object], ImageSummary]:
    params, seed, split, index, root = job
    sample = generate_image(params, seed, split, index)
    name = image_id(split, index)
    write_jpeg(Path(root) / "JPEGImages" / f"{name}.jpg", sample.image)
    write_palette_png(Path(root) / "SegmentationClass" / f"{name}.png", sample.label)
    record = {"id": name, "caption": sample.caption, "classes": list(sample.classes), "unnamed": list(sample.unnamed)}
    labelled = sample.label[sample.label != IGNORE_INDEX]
    summary = ImageSummary(
        split=split,
        class_pixels=np.bincount(labelled, minlength=len(world_of(params).class_names)),
        unnamed_pixels=sample.unnamed_pixels,
        pixels=sample.label.size,
        unnamed=sample.unnamed,
    )
    return record, summary


def _jobs(params: SynthParams, seed: int, root: Path) -> Iterator[tuple[SynthParams, int, str, int, str]]:
    for split, count in (("train", params.train_images), ("val", params.val_images), ("tune", params.tune_images)):
        for index in range(count):
            yield params, seed, split, index, str(root)


def write_world(params: SynthParams, seed: int, out: str | Path, workers: int = 0) -> tuple[Path, dict[str, object]]:
    """Generate the image world into ``out`` (Pascal VOC layout); return it and its statistics (also written to
    ``stats.json`` beside it; returned so that the stage never reads the dataset it writes).

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
            results = list(tqdm(pool.imap(_generate_and_write, jobs, chunksize=64), **progress))
    else:
        results = [_generate_and_write(job) for job in tqdm(jobs, **progress)]
    records = [record for record, _ in results]

    class_names = world_of(params).class_names
    (partial / "classes.txt").write_text("\n".join(class_names) + "\n")
    (partial / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (partial / "folds.json").write_text(json.dumps(synth_folds(class_names), indent=1) + "\n")
    stats = world_stats((summary for _, summary in results), class_names)
    (partial / STATS_FILE).write_text(json.dumps(stats, indent=1) + "\n")
    for split in SPLITS:
        ids = [str(r["id"]) for r in records if str(r["id"]).startswith(split + "_")]
        if ids:  # a split of 0 images (synth.tune_images: 0) has no list, as a dataset without it
            (partial / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    replace_dir(partial, out)
    return out, stats


def read_stats(root: str | Path) -> dict[str, object]:
    """The statistics ``write_world`` recorded beside a world (``stats.json``)."""
    return json.loads((Path(root) / STATS_FILE).read_text())


def replace_dir(new: Path, target: Path) -> None:
    """Put ``new`` in place of ``target`` with renames only (the old tree is removed last)."""
    trash = target.with_name(target.name + ".old")
    shutil.rmtree(trash, ignore_errors=True)
    if target.exists():
        os.replace(target, trash)
    os.replace(new, target)
    shutil.rmtree(trash, ignore_errors=True)
