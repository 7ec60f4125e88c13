"""The methods ``evaluate`` scores, and one method's metrics.json block.

A method is a builder in :data:`METHODS` that returns a :class:`~clips4.inference.segmenter.Segmenter`, or
``None`` when it does not apply to this run (a student before its stage has written the checkpoint); a method that
does not run gets no block. Keys that do not apply are left out of a block, never filled with placeholders:

- ``miou``, ``pacc``: language-driven segmentation (always);
- ``miou_known``, ``miou_unknown``, ``hiou``: only when ``fold`` is set (:mod:`clips4.eval.class_free`);
- ``knn_miou``, ``linear_miou``: the Table 4 probes, unless ``eval.knn.train_images`` / ``eval.linear.train_images``
  is 0;
- ``davis_j_mean``, ``davis_f_mean``: mask propagation over ``video`` (unless ``video.name`` is ``none``);
- ``avgsim``: students only (a cosine; every other value is in percent).
Percentages are rounded to 2 decimals, avgsim to 4.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clips4.cache.store import StoreError
from clips4.clip.loading import LoadedClip, load_project_clip
from clips4.errors import Clips4Error
from clips4.eval.class_free import class_free_scores
from clips4.eval.davis import DavisSummary
from clips4.eval.linear import LinearProbeConfig
from clips4.eval.scoring import KnnSettings, ProbeData, SegmentationScores, SplitScores
from clips4.inference.language import LanguageClasses
from clips4.inference.reading import ReadSettings
from clips4.inference.segmenter import Segmenter
from clips4.inference.teacher import check_teacher
from clips4.model.checkpoint import load_student
from clips4.ops.metrics import per_class_iou
from clips4.params import Params
from clips4.paths import MODELS_DIR


@dataclass
class EvalContext:
    """What every method's builder gets: the classes to score (with prompt names), where to run, the folder of the
    checkpoints (the tiny CLIP of ``clip.pretrained: synth`` included), and the CLIP teacher (loaded once, on first
    use)."""

    params: Params
    classes: LanguageClasses
    device: torch.device
    dense_mode: str
    models_dir: Path | None = None  # None: the project's models/, beside the params file
    _clip: LoadedClip | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.models_dir is None:
            self.models_dir = self.params.project_path(MODELS_DIR)

    def clip(self) -> LoadedClip:
        if self._clip is None:
            self._clip = load_project_clip(self.params, self.device, models_dir=self.models_dir)
        return self._clip

    @property
    def settings(self) -> ReadSettings:
        """How this run reads images (the dense mode may differ from params': ``clips4 evaluate --dense-mode``)."""
        return dataclasses.replace(ReadSettings.from_params(self.params), dense_mode=self.dense_mode)


Builder = Callable[[EvalContext], "Segmenter | None"]


def build_maskclip(context: EvalContext) -> Segmenter:
    return Segmenter.maskclip(context.clip(), context.settings)


def check_fold(checkpoint: dict, fold: int | None, path: Path) -> None:
    """A student scored on a fold's held-out classes must have been trained without them (and the reverse)."""
    trained = checkpoint.get("params", {})
    if isinstance(trained, dict) and "fold" in trained and trained["fold"] != fold:
        raise Clips4Error(
            f"{path}: trained with fold {trained['fold']}, but params.yaml has fold {fold}; its class-free scores "
            "would be wrong: set fold to the one it was trained with, or retrain (`dvc repro`)"
        )


def student_segmenter(path: Path, clip: LoadedClip, params: Params, device: torch.device | str) -> Segmenter:
    """The student of the checkpoint at ``path``, labelled by ``clip``'s text, read as ``params`` say; errors name
    the file when it was trained against another CLIP or another fold."""
    student, checkpoint = load_student(path, device)
    check_teacher(checkpoint, clip, path)
    check_fold(checkpoint, params.fold, path)
    return Segmenter(student, clip, ReadSettings.from_params(params), checkpoint=path)


def student_builder(filename: str) -> Builder:
    """The builder of a student scored like CLIP-S4 from ``<models_dir>/<filename>`` (a checkpoint in
    clips4/model/checkpoint.py's format); it builds ``None`` while the file does not exist, so the method gets no
    block."""

    def build(context: EvalContext) -> Segmenter | None:
        path = context.models_dir / filename
        if not path.is_file():
            return None
        return student_segmenter(path, context.clip(), context.params, context.device)

    build.__name__ = f"build_{Path(filename).stem}"
    return build


build_clips4 = student_builder("clips4.pt")

#: Method name -> builder; a builder returns None when its method does not apply to this run. ``maskclip_plus`` is
#: the MaskCLIP+-style baseline (the student trained on MaskCLIP's pseudo-labels, stage ``train_maskclip_plus``).
METHODS: dict[str, Builder] = {
    "maskclip": build_maskclip,
    "clips4": build_clips4,
    "maskclip_plus": student_builder("maskclip_plus.pt"),
}

#: Keys of a method's block, in order (shared/DESIGN.md); a block holds those that apply.
METRIC_KEYS = (
    "miou",
    "pacc",
    "miou_known",
    "miou_unknown",
    "hiou",
    "knn_miou",
    "linear_miou",
    "davis_j_mean",
    "davis_f_mean",
    "avgsim",
)


def probe_settings(params: Params) -> dict[str, Any]:
    """The probes' keyword arguments of :func:`clips4.eval.scoring.score_segmenter` (``None``: switched off)."""
    knn, linear = params.eval.knn, params.eval.linear
    return {
        "knn": KnnSettings(train_images=knn.train_images, k=knn.k, clusters=knn.clusters, seed=params.seed)
        if knn.train_images
        else None,
        "linear": (
            linear.train_images,
            LinearProbeConfig(
                pixels_per_image=linear.pixels_per_image,
                steps=linear.steps,
                weight_decay=linear.weight_decay,
                seed=params.seed,
            ),
        )
        if linear.train_images
        else None,
    }


def metrics_block(
    scores: SplitScores, held_out: list[str] | None, classes: LanguageClasses, davis: DavisSummary | None
) -> dict[str, float]:
    """The metrics.json block of one method: the keys of :data:`METRIC_KEYS` that apply, rounded."""
    values: dict[str, float | None] = {"miou": scores.language.miou, "pacc": scores.language.pacc}
    if held_out is not None:
        class_free = class_free_scores(per_class_iou(scores.confusion), classes.names, held_out)
        values |= {
            "miou_known": class_free.miou_known,
            "miou_unknown": class_free.miou_unknown,
            "hiou": class_free.hiou,
        }
    values |= {"knn_miou": scores.knn_miou, "linear_miou": scores.linear_miou}
    if davis is not None:
        values |= {"davis_j_mean": davis.j_mean, "davis_f_mean": davis.f_mean}
    block = {key: round(float(values[key]), 2) for key in METRIC_KEYS if values.get(key) is not None}
    if scores.avgsim is not None:
        block["avgsim"] = round(scores.avgsim, 4)
    for key, value in block.items():
        if not np.isfinite(value):  # a NaN or infinite score is a bug upstream, never a result
            raise Clips4Error(f"evaluate: {key} is {value}; nothing was written")
    return block


def per_class_rows(scores: dict[str, SegmentationScores]) -> list[dict[str, Any]]:
    """One row per class, ``{"class": name, <method>: IoU, ...}`` (a method's class without IoU is left out),
    the record list ``dvc plots`` reads."""
    names = next(iter(scores.values())).per_class if scores else {}
    rows = []
    for name in names:
        row: dict[str, Any] = {"class": name}
        row.update({method: s.per_class[name] for method, s in scores.items() if s.per_class[name] is not None})
        rows.append(row)
    return rows


def split_rows(store: Any, split: str, count: int) -> list[Any]:
    """``store.image(row)`` for the first ``count`` images of ``split`` (one chunk read at a time)."""
    if split not in store.splits:
        raise StoreError(f"{store.path}: no split {split!r}; rebuild the caches for this dataset (dvc repro)")
    first, stop = store.splits[split]
    stop = min(stop, first + count)
    rows = list(store.iter_rows(first, stop))
    if [row for row, _ in rows] != list(range(first, stop)):
        raise StoreError(f"{store.path}: rows {first}..{stop - 1} are not all written; finish the store (dvc repro)")
    return [value for _, value in rows]


def probe_data(
    params: Params,
    clip: LoadedClip | None,
    *,
    superpixels_path: str | Path,
    dense_path: str | Path,
    split: str,
    val_count: int | None = None,
    train_count: int = 0,
    avgsim: bool = False,
) -> ProbeData:
    """The cached superpixels (kNN probe, avgsim) of the first ``train_count`` train images and ``val_count`` (all)
    ``split`` images, and CLIP's cached features of the latter (avgsim, checked to come from ``clip``)."""
    import clips4.cache

    if not (avgsim or train_count > 0):
        return ProbeData()
    superpixels = clips4.cache.open(str(superpixels_path))
    first, stop = superpixels.splits.get(split, (0, 0))
    val_count = stop - first if val_count is None else val_count
    train_superpixels = None
    if train_count > 0:
        train_superpixels = [s.labels for s in split_rows(superpixels, params.dataset.train_split, train_count)]
    val_superpixels = [s.labels for s in split_rows(superpixels, split, val_count)]
    if not avgsim:
        return ProbeData(train_superpixels=train_superpixels, val_superpixels=val_superpixels)
    dense = clips4.cache.open(str(dense_path))
    built_with = dense.attrs.get("weights_sha256")
    if clip is not None and clip.sha256 is not None and built_with != clip.sha256:
        raise Clips4Error(
            f"{dense_path}: built with CLIP weights {built_with}, but clip.* now loads {clip.sha256}; avgsim "
            "compares the student with that CLIP: rerun `dvc repro` so that caches and models share one CLIP"
        )
    return ProbeData(
        train_superpixels=train_superpixels,
        val_superpixels=val_superpixels,
        val_clip_dense=split_rows(dense, split, val_count),
        feature_stride=dense.feature_stride,
    )


def video_set(params: Params) -> Any:
    """The ``video`` set to propagate masks over, or ``None`` with ``video.name: none``."""
    if params.video.name == "none":
        return None
    from clips4.data.davis import open_davis
    from clips4.errors import DatasetError

    try:
        return open_davis(params.video.root, params.video.split)
    except DatasetError as err:
        raise DatasetError(
            f"video.root: {err}; point video.root at the videos (DAVIS 2017 layout) or set video.name: none",
            params.video.root,
        ) from None


def is_student(segmenter: Segmenter) -> bool:
    return segmenter.method == "clips4"
