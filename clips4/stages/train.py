"""The ``train`` stage: the CLIP-S4 student from the caches, into models/clips4.pt and models/clips4.json.

``clips4 train`` in one process, or ``torchrun --nproc_per_node N $(which clips4) train`` for DDP (rank 0 writes).
models/clips4.json holds the params, the final losses, wall seconds, images per second, the data-wait share, and
the val scores of the student (mIoU by nearest text embedding, and avgsim), by the scorer ``evaluate`` uses
(:func:`clips4.eval.scoring.score_segmenter`), so the two agree.

``clips4 train --baseline maskclip-plus`` (stage ``train_maskclip_plus``) trains the MaskCLIP+-style baseline
instead: the same student and loop, per-pixel cross-entropy against MaskCLIP's argmax over the named classes' text
(the fold's classes left out, the text made by the prototypes stage's own function), into models/maskclip_plus.pt.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from clips4.errors import Clips4Error
from clips4.io import atomic_write_json
from clips4.params import Params
from clips4.paths import TRAIN_OUTPUTS
from clips4.stages.common import DENSE_STORE, PROTOTYPES_STORE, SUPERPIXELS_STORE, store_or_default

#: The baselines ``--baseline`` trains, with their default outputs (as :data:`clips4.paths.TRAIN_OUTPUTS`).
BASELINES = {
    "maskclip-plus": ("models/maskclip_plus.pt", "models/maskclip_plus.json", "reports/train_maskclip_plus"),
}


def default_outputs(params: Params, baseline: str | None = None) -> tuple[Path, Path, Path]:
    """The checkpoint, metrics file and dvclive folder of a run (of ``baseline``, if given) in the project's
    models/ and reports/, beside the params file."""
    checkpoint, metrics, live_dir = BASELINES[baseline] if baseline else TRAIN_OUTPUTS
    return params.project_path(checkpoint), params.project_path(metrics), params.project_path(live_dir)


@dataclass(frozen=True)
class SelectionScores:
    """A student's scores on the selection split (models/clips4.json's ``score``; ``split`` names it): mIoU and pixel
    accuracy in percent, avgsim a cosine."""

    split: str
    miou: float
    pacc: float
    avgsim: float
    images: int
    segments: int


@dataclass(frozen=True)
class TrainStageResult:
    checkpoint: str
    metrics: str | None  # None on ranks other than 0, and for a run stopped early
    iterations: int
    start_iteration: int
    miou: float | None
    avgsim: float | None
    wall_seconds: float
    score_split: str | None = None  # the split miou and avgsim are scored on (dataset.selection_split)


def run_train(
    params: Params,
    *,
    dense: str | Path | None = None,
    superpixels: str | Path | None = None,
    prototypes: str | Path | None = None,
    out: str | Path | None = None,
    metrics: str | Path | None = None,
    live_dir: str | Path | None = None,
    stop_after: int | None = None,
    progress: bool = True,
    baseline: str | None = None,
) -> TrainStageResult:
    """Train (resuming from ``out`` when it holds this configuration's run), then score the student on val.
    ``baseline`` (a name in :data:`BASELINES`) trains that baseline instead of CLIP-S4 (prototypes unused). Paths
    not given are the project's (:func:`default_outputs`, the stores in data/cache), beside the params file."""
    if baseline is not None and baseline not in BASELINES:
        raise Clips4Error(f"--baseline: unknown baseline {baseline!r}; choose one of {', '.join(BASELINES)}")
    import clips4.cache
    from clips4.clip import load_project_clip
    from clips4.train.distributed import setup_runtime, teardown
    from clips4.train.loop import TrainInputs, train_student

    dense = store_or_default(params, dense, DENSE_STORE)
    superpixels = store_or_default(params, superpixels, SUPERPIXELS_STORE)
    prototypes = store_or_default(params, prototypes, PROTOTYPES_STORE)
    default_out, default_metrics, default_live_dir = default_outputs(params, baseline)
    out = default_out if out is None else out
    metrics = default_metrics if metrics is None else metrics
    live_dir = default_live_dir if live_dir is None else live_dir
    runtime = setup_runtime()
    try:
        loaded = load_project_clip(params)
        dense_store = clips4.cache.open(str(dense))
        if loaded.sha256 != dense_store.attrs.get("weights_sha256"):
            raise Clips4Error(
                f"{dense}: built with CLIP weights {dense_store.attrs.get('weights_sha256')}, but clip.* now loads "
                f"{loaded.sha256}; rerun `dvc repro` so that the caches and the student share one CLIP"
            )
        teacher = {"model_name": loaded.model_name, "weights_sha256": loaded.sha256, "source": loaded.source}
        named = None if baseline is None else _baseline(params, loaded, baseline)
        inputs = TrainInputs(str(dense), str(superpixels), str(prototypes), teacher, named)
        result = train_student(
            params, inputs=inputs, out=out, live_dir=live_dir, stop_after=stop_after, progress=progress
        )
        if not runtime.is_main or result.stopped_early:
            return TrainStageResult(
                result.checkpoint, None, result.iterations, result.start_iteration, None, None, result.wall_seconds
            )
        scores = _score(params, loaded, out, dense, superpixels, runtime.device)
        record = {
            "model": params.train.model,
            "checkpoint": str(out),
            "baseline": baseline,
            "clip": teacher,
            "params": params.to_dict(),
            "iterations": result.iterations,
            "resumed_from": result.start_iteration,
            "final_losses": result.final_losses,
            "wall_seconds": result.wall_seconds,
            "images_per_second": result.images_per_second,
            "data_wait_fraction": result.data_wait_fraction,
            "world_size": result.world_size,
            "device": result.device,
            "score": asdict(scores),
            "avgsim": scores.avgsim,
            "miou": scores.miou,
        }
        atomic_write_json(Path(metrics), record, durable=True)
        return TrainStageResult(
            result.checkpoint,
            str(metrics),
            result.iterations,
            result.start_iteration,
            scores.miou,
            scores.avgsim,
            result.wall_seconds,
            scores.split,
        )
    finally:
        teardown()


def _baseline(params: Params, loaded, name: str):
    """The baseline's targets: the known classes' text, made as the prototypes stage makes its ``class_text``."""
    import torch

    from clips4.classes import class_text, held_out_classes
    from clips4.data.layouts import open_dataset
    from clips4.prototypes import known_classes
    from clips4.train.objective import PixelBaseline

    dataset = open_dataset(params.dataset.name, params.dataset.root, params.dataset.train_split)
    names, _ = known_classes(dataset.class_names, held_out_classes(params))
    return PixelBaseline(name, names, torch.from_numpy(class_text(loaded, params.dataset.name, names)))


def _score(params: Params, loaded, checkpoint, dense, superpixels, device):
    """Scores of the trained student (from its checkpoint, as any user would load it) on the selection split
    (``dataset.tune_split``; ``val_split`` for a dataset without one), by the scorer that ``evaluate`` uses (the same
    classes, prompts and reading), over its first ``train.score_images`` images."""
    from clips4.data.layouts import open_dataset
    from clips4.eval.methods import probe_data, student_segmenter
    from clips4.eval.scoring import score_segmenter
    from clips4.inference.language import language_classes

    split = params.dataset.selection_split
    val = open_dataset(params.dataset.name, params.dataset.root, split)
    count = min(params.train.score_images, len(val))
    classes = language_classes(params.dataset.name, val.class_names)
    data = probe_data(
        params, loaded, superpixels_path=superpixels, dense_path=dense, split=split, val_count=count, avgsim=True
    )
    scores = score_segmenter(
        student_segmenter(Path(checkpoint), loaded, params, device),
        val,
        classes,
        where=f"{params.dataset.root} (split {split!r})",
        desc="train: score",
        split_name=split,
        max_images=count,
        data=data,
        avgsim=True,
    )
    return SelectionScores(
        split=split,
        miou=scores.language.miou,
        pacc=scores.language.pacc,
        avgsim=round(scores.avgsim, 4) if scores.avgsim is not None else float("nan"),
        images=scores.images,
        segments=scores.segments,
    )
