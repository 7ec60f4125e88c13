"""The ``clip_pretrain`` stage: train the tiny CLIP on the synthetic world (``clip.pretrained: synth``) into
models/clip.pt, or, for real weights, write there a small reference whose content changes exactly when the
weights (or the activation they run with) do. Either way models/clip.json records what is used: model name,
source, sha256, ``quick_gelu`` (the MLP activation: QuickGELU for OpenAI's weights) and, for the tiny CLIP,
its training and zero-shot recall@k on val.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from clips4.clip.loading import (
    SYNTH_CHECKPOINT,
    LoadedClip,
    load_project_clip,
    model_config,
    save_clip_checkpoint,
    tokenizer_for,
)
from clips4.clip.pretrain import load_images_and_captions, state_dict_sha256, train_tiny_clip, zero_shot_recall_at_k
from clips4.data.layouts import open_dataset
from clips4.io import atomic_write, atomic_write_json
from clips4.params import Params


@dataclass(frozen=True, kw_only=True)
class PretrainResult:
    model_name: str
    source: str
    sha256: str | None
    quick_gelu: bool
    train_images: int
    epochs: int
    steps: int
    train_seconds: float
    final_loss: float | None  # None when nothing was trained (real weights)
    zero_shot_recall_at_k: float | None


def _train(params: Params, checkpoint: Path) -> PretrainResult:
    trained = train_tiny_clip(params)
    sha = save_clip_checkpoint(checkpoint, trained.model, params.clip.model, trained.config)
    loaded = LoadedClip(trained.model, tokenizer_for(trained.config), params.clip.model, str(checkpoint), sha)
    split = params.dataset.selection_split  # a record that may guide choices: never the reported split
    val_images, _, val_classes, _ = load_images_and_captions(params.dataset.root, split)
    class_names = list(open_dataset("synth", params.dataset.root, split).class_names)
    return PretrainResult(
        model_name=params.clip.model,
        source=str(checkpoint),
        sha256=sha,
        quick_gelu=loaded.quick_gelu,
        train_images=trained.train_images,
        epochs=trained.epochs,
        steps=trained.steps,
        train_seconds=trained.train_seconds,
        final_loss=trained.final_loss,
        zero_shot_recall_at_k=round(zero_shot_recall_at_k(loaded, val_images, val_classes, class_names), 2),
    )


def _record(params: Params, checkpoint: Path) -> PretrainResult:
    loaded = load_project_clip(params)  # a missing cache fails here, early
    sha = loaded.sha256 or state_dict_sha256(loaded.model)
    reference = {"model_name": loaded.model_name, "source": loaded.source, "sha256": sha}
    reference["quick_gelu"] = loaded.quick_gelu
    # Saved by name (handle.name), as always: torch names the archive after the file, so its bytes stay the same.
    atomic_write(checkpoint, lambda handle: torch.save({"reference": reference}, handle.name), durable=True)
    return PretrainResult(
        model_name=loaded.model_name,
        source=loaded.source,
        sha256=sha,
        quick_gelu=loaded.quick_gelu,
        train_images=0,
        epochs=0,
        steps=0,
        train_seconds=0.0,
        final_loss=None,
        zero_shot_recall_at_k=None,
    )


def clip_outputs(params: Params) -> tuple[Path, Path]:
    """The project's models/clip.pt (what ``clip.pretrained: synth`` loads) and models/clip.json, beside the params
    file."""
    checkpoint = params.project_path(SYNTH_CHECKPOINT)
    return checkpoint, checkpoint.with_suffix(".json")


def run_clip_pretrain(params: Params, checkpoint: Path | None = None, record: Path | None = None) -> PretrainResult:
    """Train (synth) or record (real weights) into ``checkpoint``, then write ``record`` as JSON (defaults:
    :func:`clip_outputs`)."""
    default_checkpoint, default_record = clip_outputs(params)
    checkpoint = default_checkpoint if checkpoint is None else checkpoint
    record = default_record if record is None else record
    if params.clip.pretrained == "synth":
        result = _train(params, checkpoint)
        config = model_config(params.clip.model)
    else:
        result = _record(params, checkpoint)
        config = {**model_config(params.clip.model), "quick_gelu": result.quick_gelu}
    payload = {"pretrained": params.clip.pretrained, "config": config, **asdict(result)}
    atomic_write_json(record, payload, durable=True)
    return result
