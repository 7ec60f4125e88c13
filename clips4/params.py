"""One typed params object, loaded from params.yaml and validated at start.

Every section is a frozen dataclass. Each field carries its own constraint in
``metadata`` (``choices``, ``min``/``max``), so the error for a bad value names
the dotted key, the allowed range and the file: ``params.yaml: unknowns: must be
an integer >= 1, got -1``. Unknown keys are errors too (a typo such as
``unknwons`` would otherwise be silently ignored and the default used).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from clips4.data.names import DATASET_NAMES
from clips4.errors import Clips4Warning
from clips4.paths import WEIGHTS_FILE_SUFFIXES

DEFAULT_PARAMS_PATH = Path("params.yaml")


class ParamsError(ValueError):
    """A params file is missing, unreadable, or holds a bad value. The message names the key."""


class ParamsWarning(Clips4Warning):
    """A params file leaves out a key a user most likely meant to set (``dataset.root``): the default is used."""


def _int(default: int, lo: int | None = None, hi: int | None = None) -> Any:
    return field(default=default, metadata={"min": lo, "max": hi})


def _float(default: float, lo: float | None = None, hi: float | None = None, *, open_lo: bool = False) -> Any:
    return field(default=default, metadata={"min": lo, "max": hi, "open_lo": open_lo})


def _choice(default: str, *choices: str) -> Any:
    return field(default=default, metadata={"choices": choices})


@dataclass(frozen=True)
class DatasetParams:
    """Which dataset the pipeline runs on. ``synth`` is the embedded synthetic world."""

    name: str = _choice(DATASET_NAMES[0], *DATASET_NAMES)
    root: str = "data/synth"
    train_split: str = "train"
    val_split: str = "val"
    # The split every default is chosen on (train's score in models/clips4.json, the studies); val is scored for the
    # record only. null: a dataset without one (the selection falls back to val_split; say so when you report).
    tune_split: str | None = None

    @property
    def selection_split(self) -> str:
        """The split scores are chosen on: ``tune_split``, or ``val_split`` for a dataset without one."""
        return self.tune_split or self.val_split


@dataclass(frozen=True)
class SynthParams:
    """The synthetic world (``clips4 synth``) and the tiny CLIP trained on it (``clips4 clip-pretrain``).

    ``seed`` draws the world and the tiny CLIP's training; the top-level ``seed`` draws the method's runs
    (prototypes, the student, the probes), so a sweep over seeds reruns neither the world nor its CLIP.
    """

    seed: int = _int(0, 0)
    # shapes: the default world; workshop: the second one, other classes, textures and shapes, thin and small things
    # (clips4/data/synth.py WORLDS), for checking that a default holds beyond one world
    world: str = _choice("shapes", "shapes", "workshop")

    image_size: int = _int(96, 32, 1024)
    # Rectangular images (benchmarks/bench_scale.py: 500x375, VOC/COCO-like); null: image_size. Not in params.yaml,
    # so the default world (and its dvc.lock entry) is unchanged.
    image_width: int | None = _int(None, 32, 2048)  # type: ignore[arg-type]
    image_height: int | None = _int(None, 32, 2048)  # type: ignore[arg-type]
    train_images: int = _int(6000, 1)
    val_images: int = _int(500, 1)
    tune_images: int = _int(500, 0)  # the selection split (dataset.tune_split), disjoint from train and val
    min_stuff: int = _int(2, 1, 6)
    max_stuff: int = _int(4, 1, 6)
    max_things: int = _int(3, 0, 6)
    video_sequences: int = _int(8, 1)
    video_frames: int = _int(12, 2)


@dataclass(frozen=True)
class ClipPretrainParams:
    """Training of the tiny CLIP on the synthetic world's captions (``clips4 clip-pretrain``)."""

    epochs: int = _int(10, 1)
    batch_size: int = _int(128, 2)
    lr: float = _float(1e-3, 0.0, open_lo=True)
    weight_decay: float = _float(0.1, 0.0)
    warmup_steps: int = _int(100, 0)
    # FLIP's patch dropout (Li et al. 2023; open_clip's vision_cfg.patch_dropout): this share of the image's patch
    # tokens is dropped at random in each training step, none at inference (docs/clip.md: half the cost per step)
    patch_dropout: float = _float(0.5, 0.0, 0.9)
    # weight of the dense presence loss (clips4.clip.pretrain.dense_presence_loss; 0: CLIP's loss alone) and the
    # images of each batch it reads (the first ones: it needs every patch, so it costs a full forward of them)
    dense_weight: float = _float(1.0, 0.0)
    dense_images: int = _int(32, 1)


@dataclass(frozen=True)
class ClipParams:
    """The CLIP teacher: which weights, and how dense features are taken from it."""

    model: str = "clips4-tiny-vit"
    pretrained: str = "synth"
    dense_mode: str = _choice("maskclip", "maskclip", "clearclip")
    batch_size: int = _int(64, 1)  # images per forward pass when caching dense features (clip_dense)
    window: int = _int(448, 16)  # sliding-window inference for images larger than this (pixels)
    stride: int = _int(224, 1)
    # dense features under autocast: auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 (clips4.ops.precision)
    precision: str = _choice("auto", "auto", "fp32", "bf16")
    pretrain: ClipPretrainParams = field(default_factory=ClipPretrainParams)


@dataclass(frozen=True)
class KnnProbeParams:
    """The kNN probe of ``clips4 evaluate`` (Table 4): val segments labelled by their nearest train segments."""

    train_images: int = _int(500, 0)  # first images of the train split in the segment bank (0: no kNN probe)
    k: int = _int(10, 1)  # nearest train segments that vote
    clusters: int = _int(8, 1)  # k-means clusters per image before the split by superpixel


@dataclass(frozen=True)
class LinearProbeParams:
    """The linear probe of ``clips4 evaluate`` (Table 4): a per-pixel linear classifier on frozen embeddings."""

    train_images: int = _int(500, 0)  # first images of the train split it is fitted on (0: no linear probe)
    pixels_per_image: int = _int(64, 1)  # labelled pixels sampled per train image
    steps: int = _int(100, 1)  # L-BFGS iterations
    weight_decay: float = _float(1e-4, 0.0)


@dataclass(frozen=True)
class EvalParams:
    """How ``clips4 evaluate`` reads the val images (clips4/inference/reading.py).

    ``slide``: sliding windows of ``clip.window`` every ``clip.stride`` pixels for larger images; ``whole``:
    MaskCLIP's test, one pass over the image after mmsegmentation's per-dataset keep-ratio resize.
    """

    protocol: str = _choice("slide", "slide", "whole")
    knn: KnnProbeParams = field(default_factory=KnnProbeParams)
    linear: LinearProbeParams = field(default_factory=LinearProbeParams)


@dataclass(frozen=True)
class VideoParams:
    """The videos of ``clips4 evaluate``'s mask propagation (DAVIS 2017 protocol, clips4/eval/propagation.py).

    ``synth_video`` (the synthetic world's videos) and ``davis`` (DAVIS 2017) share the DAVIS layout; ``none``
    skips propagation. The propagation settings are the prior work's (CRW) defaults."""

    name: str = _choice("synth_video", "synth_video", "davis", "none")
    root: str = "data/synth_video"
    split: str = "val"  # ImageSets/2017/<split>.txt
    topk: int = _int(10, 1)  # context pixels each query pixel reads
    context: int = _int(20, 0)  # previous frames in the context, besides the first frame
    radius: float = _float(12.0, 0.0, open_lo=True)  # spatial radius (feature-grid cells) in the previous frames
    temperature: float = _float(0.05, 0.0, open_lo=True)  # softmax temperature over the top-k similarities
    stride: int = _int(8, 1)  # embeddings are resampled to a grid of frame size / stride (CRW's stride 8)


@dataclass(frozen=True)
class ContourParams:
    """Contour detection (``clips4 contours``): the boundary map that OWT-UCM turns into superpixels."""

    method: str = _choice("gradient", "gradient", "pmi", "hed")
    sigma: float = _float(1.0, 0.0, open_lo=True)  # finest Gaussian scale of the gradient detector (pixels)
    num_scales: int = _int(3, 1, 6)  # gradient scales sigma, 2 sigma, 4 sigma, ...
    pmi_max_side: int = _int(80, 16)  # PMI works on a grid whose longer side is at most this (cost ~ its square)
    hed_weights: str | None = None  # path of HED weights (network-bsds500.pytorch), for method: hed


@dataclass(frozen=True)
class UcmParams:
    """OWT-UCM hierarchy and its cut into superpixels (``clips4 ucm``). Exactly one of regions / threshold."""

    regions: int | None = _int(32, 2)  # type: ignore[arg-type]  # cut into this many superpixels per image
    threshold: float | None = _float(None, 0.0, 1.0, open_lo=True)  # type: ignore[arg-type]  # or cut at this UCM level
    quality_images: int = _int(200, 1)  # val images scored in reports/segments.json


@dataclass(frozen=True)
class CacheParams:
    """Layout of the Zarr caches under data/cache/."""

    chunk_mb: float = _float(0.25, 0.0, open_lo=True)  # target uncompressed chunk size; images per chunk follow
    clevel: int = _int(5, 1, 9)  # zstd level of the Blosc codec
    # Files per store: a work unit (one shard file per array + its done flag) covers this many images per file
    # (docs/caches.md "Sharding"); 0: one chunk per shard (the finest work units, for tests)
    images_per_file: int = _int(64, 0, 1_000_000)


@dataclass(frozen=True)
class PrototypesParams:
    """Where the CLIP segment embeddings behind the prototypes come from (clips4/stages/prototypes.py)."""

    source: str = _choice("superpixels", "superpixels", "clip_kmeans")  # segments.zarr | k-means of CLIP's pixels
    clusters: int = _int(32, 2)  # clip_kmeans: clusters per image


@dataclass(frozen=True)
class LossParams:
    """Which CLIP-S4 losses are on (the paper's Table 6 ablation) and how they are weighed.

    The defaults here are the paper's form (all on, equal weights, k-means segments, known + unknown prototypes);
    params.yaml holds the balance the training study found best on the synthetic world (docs/training.md)."""

    contrastive: bool = True  # L_t: pixel-to-segment contrastive loss over k-means segments within superpixels
    embedding: bool = True  # L_e: 1 - cos(student segment, CLIP segment)
    semantic: bool = True  # L_s (cross-entropy to CLIP's pseudo-labels over the prototypes) and L_u (unknowns)
    contrastive_weight: float = _float(1.0, 0.0, open_lo=True)
    embedding_weight: float = _float(1.0, 0.0, open_lo=True)
    semantic_weight: float = _float(1.0, 0.0, open_lo=True)
    unknown_weight: float = _float(1.0, 0.0, open_lo=True)  # L_u (moves the unknown prototypes only)
    semantic_temperature: float = _float(0.1, 0.0, 10.0, open_lo=True)  # softmax temperature of L_s
    use_unknowns: bool = True  # L_s over known + unknown prototypes (false: known only, and no L_u)
    # CLIP's label is an unknown prototype only where it beats every known one by more than this cosine (0: the
    # paper's plain argmax; clips4.train.losses.clip_scores)
    unknown_margin: float = _float(0.0, 0.0, 2.0)
    semantic_targets: str = _choice("prototypes", "prototypes", "text")  # known classes: prototypes or class text
    segments: str = _choice("kmeans", "kmeans", "superpixels")  # L_t/L_e/L_s segments: k-means within superpixels
    semantic_soft_targets: bool = False  # L_s against CLIP's softmax over the prototypes instead of its argmax
    # L_t scores this many of the batch's pixels (over both views), drawn at random each step (0: every pixel); a
    # cost bound: the P x (segments + memory bank) logits grow with it
    contrastive_pixels: int = _int(2048, 0)
    # A pixel's own segment in L_t. Its positives are the segments of its superpixel in both views; ``positive``
    # keeps its own one among them (Eq. 1, SegSort), ``excluded`` leaves it out of both sums wherever another
    # positive remains (SegSort's "segsort+": only the other view's segments and the superpixel's other clusters)
    contrastive_own_segment: str = _choice("positive", "positive", "excluded")


@dataclass(frozen=True)
class TrainParams:
    """Student training (``clips4 train``)."""

    iterations: int = _int(200, 1)
    batch_size: int = _int(8, 1)
    lr: float = _float(3e-3, 0.0, open_lo=True)
    lr_power: float = _float(0.9, 0.0)  # polynomial decay: lr * (1 - it / iterations) ** lr_power (0: constant)
    weight_decay: float = _float(0.0, 0.0)
    memory_batches: int = _int(2, 0)
    model: str = "pspnet-synth"  # student config in clips4/model/model_configs (pspnet-r50-d8 for real data)
    backbone_weights: str | None = None  # torchvision ImageNet weights file for resnet backbones (else hub cache)
    random_init: bool = False  # allow a resnet backbone without ImageNet weights
    crop_size: int = _int(80, 16)  # side of each augmented view (pixels)
    crop_scale_min: float = _float(0.4, 0.0, 1.0, open_lo=True)  # random resized crop: area fraction range
    crop_scale_max: float = _float(1.0, 0.0, 1.0, open_lo=True)
    color_jitter: float = _float(0.0, 0.0, 1.0)  # SimCLR colour-jitter strength (0: off)
    blur: bool = False  # SimCLR's Gaussian blur (probability 1/2)
    checkpoint_every: int = _int(50, 1)  # iterations between checkpoints (models/clips4.pt)
    workers: int = _int(1, 0)  # data-loading processes (0: in the training process)
    precision: str = _choice("auto", "auto", "fp32", "bf16")  # the student's forward under autocast (as clip's)
    # images of dataset.tune_split (val_split without one) scored into models/clips4.json
    score_images: int = _int(500, 1)


@dataclass(frozen=True)
class Params:
    """Everything in params.yaml."""

    seed: int = _int(0, 0)
    dataset: DatasetParams = field(default_factory=DatasetParams)
    synth: SynthParams = field(default_factory=SynthParams)
    clip: ClipParams = field(default_factory=ClipParams)
    eval: EvalParams = field(default_factory=EvalParams)
    video: VideoParams = field(default_factory=VideoParams)
    contours: ContourParams = field(default_factory=ContourParams)
    ucm: UcmParams = field(default_factory=UcmParams)
    cache: CacheParams = field(default_factory=CacheParams)
    unknowns: int = _int(64, 1)
    top_m: int = _int(32, 1)
    kappa: float = _float(10.0, 0.0, open_lo=True)
    segments_per_view: int = _int(36, 2)
    fold: int | None = _int(None, 0, 3)  # type: ignore[arg-type]
    prototypes: PrototypesParams = field(default_factory=PrototypesParams)
    losses: LossParams = field(default_factory=LossParams)
    train: TrainParams = field(default_factory=TrainParams)
    # The params file's folder (set by load_params): where the project's default paths (models/, reports/,
    # data/cache) lie. Not a params.yaml key: never read from the file, recorded or compared.
    project_dir: Path | None = field(default=None, compare=False, repr=False, metadata={"not_a_key": True})

    def to_dict(self) -> dict[str, Any]:
        """The params.yaml keys and their values (what stages record and hash; ``project_dir`` is not one)."""
        return {name: value for name, value in dataclasses.asdict(self).items() if name in _keys(Params)}

    def project_path(self, relative: str | Path) -> Path:
        """A project path such as ``models/clips4.pt``, resolved as ``dataset.root`` is: against the params file's
        folder, never against the current folder by accident (relative when it lies inside the current folder,
        else absolute). Without a params file (``params_from_dict``), relative to the current folder."""
        if self.project_dir is None:
            return Path(relative)
        return Path(_resolve_root(str(relative), self.project_dir))


def _keys(cls: type) -> dict[str, dataclasses.Field]:
    """The params.yaml keys of a section: its fields, less those that are not keys (``Params.project_dir``)."""
    return {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("not_a_key")}


def _describe(meta: typing.Mapping[str, Any], kind: str) -> str:
    lo, hi = meta.get("min"), meta.get("max")
    op = ">" if meta.get("open_lo") else ">="
    if lo is not None and hi is not None:
        return f"{kind} in [{lo}, {hi}]" if not meta.get("open_lo") else f"{kind} in ({lo}, {hi}]"
    if lo is not None:
        return f"{kind} {op} {lo}"
    if hi is not None:
        return f"{kind} <= {hi}"
    return kind


def _check_value(key: str, value: Any, hint: Any, meta: typing.Mapping[str, Any]) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _check_value(key, value, args[0], meta)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ParamsError(f"{key}: must be a mapping of {hint.__name__} keys, got {value!r}")
        return _build(hint, value, key + ".")
    if hint is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{key}: must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{key}: must be {_describe(meta, 'an integer')}, got {value!r}")
        kind = "an integer"
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"{key}: must be {_describe(meta, 'a number')}, got {value!r}")
        value = float(value)
        kind = "a number"
        if not math.isfinite(value):  # NaN passes every comparison below: refuse it (and infinities) by name
            raise ParamsError(f"{key}: must be {_describe(meta, 'a finite number')}, got {value!r}")
    elif hint is str:
        if not isinstance(value, str):
            raise ParamsError(f"{key}: must be a string, got {value!r}")
        choices = meta.get("choices")
        if choices and value not in choices:
            raise ParamsError(f"{key}: must be one of {', '.join(choices)}; got {value!r}")
        return value
    else:  # pragma: no cover - a params field with an unsupported annotation is a programming error
        raise TypeError(f"unsupported params annotation for {key}: {hint!r}")
    lo, hi = meta.get("min"), meta.get("max")
    too_low = lo is not None and (value <= lo if meta.get("open_lo") else value < lo)
    if too_low or (hi is not None and value > hi):
        raise ParamsError(f"{key}: must be {_describe(meta, kind)}, got {value!r}")
    return value


def _build(cls: type, raw: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    fields = _keys(cls)
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ParamsError(
            f"{prefix}{unknown[0]}: unknown key; allowed keys{' under ' + prefix[:-1] if prefix else ''}: "
            + ", ".join(fields)
        )
    values = {}
    for name, value in raw.items():
        values[name] = _check_value(prefix + name, value, hints[name], fields[name].metadata)
    return cls(**values)


def _check_consistency(params: Params) -> None:
    if params.synth.min_stuff > params.synth.max_stuff:
        raise ParamsError(
            f"synth.min_stuff: must be <= synth.max_stuff ({params.synth.max_stuff}), got {params.synth.min_stuff}"
        )
    dataset = params.dataset
    if dataset.tune_split is not None and dataset.tune_split in (dataset.train_split, dataset.val_split):
        raise ParamsError(
            f"dataset.tune_split: must differ from dataset.train_split and dataset.val_split (choosing on the split "
            f"that is trained on or reported defeats it), got {dataset.tune_split!r}; name a split of its own, or null"
        )
    if params.clip.stride > params.clip.window:
        raise ParamsError(f"clip.stride: must be <= clip.window ({params.clip.window}), got {params.clip.stride}")
    losses = params.losses
    if not (losses.contrastive or losses.embedding or losses.semantic):
        raise ParamsError(
            "losses: at least one of losses.contrastive, losses.embedding and losses.semantic must be "
            "true; all three are false"
        )
    if params.train.crop_scale_min > params.train.crop_scale_max:
        raise ParamsError(
            f"train.crop_scale_min: must be <= train.crop_scale_max ({params.train.crop_scale_max}), "
            f"got {params.train.crop_scale_min}"
        )
    if (params.ucm.regions is None) == (params.ucm.threshold is None):
        raise ParamsError(
            "ucm.regions: set exactly one of ucm.regions (superpixels per image) and ucm.threshold (UCM level), "
            f"the other to null; got regions={params.ucm.regions}, threshold={params.ucm.threshold}"
        )


def params_from_dict(raw: dict[str, Any] | None) -> Params:
    """Build and validate a :class:`Params` from a parsed params.yaml mapping."""
    params = _build(Params, raw or {})
    _check_consistency(params)
    return params


def load_params(path: str | Path = DEFAULT_PARAMS_PATH, overrides: dict[str, Any] | None = None) -> Params:
    """Load params.yaml, apply dotted ``overrides`` (``{"clip.dense_mode": "clearclip"}``) and validate.

    Paths are relative to the params file's folder (``project_dir``): a relative ``dataset.root``, ``video.root``,
    ``contours.hed_weights``, ``train.backbone_weights`` or weights file in ``clip.pretrained`` is resolved against
    it, and so are the default paths through :meth:`Params.project_path`.
    Raises :class:`ParamsError` whose message starts with the file name and names the key.
    """
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: no such params file; run from the project root or pass --params FILE")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ParamsError(
            f"{path}: not UTF-8 text (byte {err.start}: {err.object[err.start : err.start + 1]!r}); save it as UTF-8 "
            "YAML, or restore it from git"
        ) from None
    except OSError as err:
        raise ParamsError(f"{path}: cannot be read ({err.strerror}); check the path and its permissions") from None
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML ({err}); fix the file or restore it from git") from err
    if raw is None:  # empty, or only comments: every default would be used without a word
        raise ParamsError(
            f"{path}: is empty (no keys); copy the project's params.yaml, or write at least the dataset, e.g. "
            "`dataset: {name: synth, root: data/synth}`"
        )
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: must be a mapping of keys to values, got {type(raw).__name__}")
    raw = dict(raw)
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    if not isinstance(raw.get("dataset"), dict) or "root" not in raw["dataset"]:
        warnings.warn(
            f"{path}: sets no dataset.root; using the default {DatasetParams.root!r} ({DatasetParams.name!r} layout)",
            ParamsWarning,
            stacklevel=2,
        )
    try:
        params = params_from_dict(raw)
    except ParamsError as err:
        raise ParamsError(f"{path}: {err}") from None
    return _resolve_paths(params, path.resolve().parent)


def _resolve_paths(params: Params, folder: Path) -> Params:
    """The paths params.yaml names, relative to the params file's folder (not to the current folder), so that
    ``--params /abs/project/params.yaml`` reads the project's data and weights from anywhere."""
    dataset = dataclasses.replace(params.dataset, root=_resolve_root(params.dataset.root, folder))
    video = dataclasses.replace(params.video, root=_resolve_root(params.video.root, folder))
    contours = dataclasses.replace(params.contours, hed_weights=_resolve_optional(params.contours.hed_weights, folder))
    weights = _resolve_optional(params.train.backbone_weights, folder)
    train = dataclasses.replace(params.train, backbone_weights=weights)
    pretrained = params.clip.pretrained
    if _names_a_file(pretrained, folder):
        pretrained = _resolve_root(pretrained, folder)
    clip = dataclasses.replace(params.clip, pretrained=pretrained)
    return dataclasses.replace(
        params, dataset=dataset, video=video, contours=contours, train=train, clip=clip, project_dir=folder
    )


def _names_a_file(pretrained: str, folder: Path) -> bool:
    """Whether ``clip.pretrained`` is a weights file, as ``load_clip`` decides: not ``synth`` nor an open_clip tag."""
    return pretrained != "synth" and (
        Path(pretrained).suffix in WEIGHTS_FILE_SUFFIXES or (folder / pretrained).exists()
    )


def _resolve_optional(root: str | None, folder: Path) -> str | None:
    return None if root is None else _resolve_root(root, folder)


def _resolve_root(root: str, folder: Path) -> str:
    """``root`` (relative to ``folder``) as a path that stays relative to the current folder when it lies inside
    it, so that what stages record (store attributes, models/clips4.json) names no machine folder; else absolute.
    URLs and absolute paths are kept."""
    if "://" in root or Path(root).is_absolute():
        return root
    resolved = (folder.resolve() / root).resolve()
    here = Path.cwd().resolve()
    return str(resolved.relative_to(here)) if resolved.is_relative_to(here) else str(resolved)
