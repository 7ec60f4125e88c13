"""Pretraining a tiny CLIP on the synthetic world's captions (stage ``clip_pretrain``).

The real CLIP cannot be downloaded here, so the embedded default trains one: an open_clip ``CLIP`` built
from a small JSON config (``clips4-tiny-vit``) and open_clip's BPE tokenizer, with CLIP's symmetric
contrastive loss on (image, caption) pairs. The config pools the image tower by *averaging* the patch
tokens rather than reading the class token. The image embedding is then the mean of the projected
patch embeddings, so each patch is pushed toward the text of what it shows. MaskCLIP's dense read-out
of the last layer depends on exactly that.

When ``clip.pretrained`` names real weights, the stage trains nothing. It records which weights are used
(name, source, sha256, activation), so downstream stages rerun when they change. The stage itself, which
writes the files, is clips4/stages/clip_pretrain.py.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.model import CLIP
from tqdm import tqdm

from clips4.clip.dense import dense_clip_features, normalize_images, to_rgb_batch
from clips4.clip.loading import (
    OPENAI_MEAN,
    OPENAI_STD,
    LoadedClip,
    build_model,
    model_config,
    require_packaged_model,
    tokenizer_for,
)
from clips4.clip.text import text_embeddings
from clips4.data.layouts import open_dataset
from clips4.data.splits import require_images
from clips4.errors import Clips4Error
from clips4.params import Params
from clips4.resources import prompt_templates


@dataclass(frozen=True)
class TrainedClip:
    """A freshly trained tiny CLIP (eval mode) with its config and training record."""

    model: CLIP
    config: dict[str, Any]
    train_images: int
    epochs: int
    steps: int
    train_seconds: float
    final_loss: float


def load_images_and_captions(
    root: str | Path, split: str
) -> tuple[torch.Tensor, list[str], list[tuple[str, ...]], list[tuple[str, ...]]]:
    """All images of a synthetic-world split as uint8 ``[N, H, W, 3]``, with captions, the named classes each
    caption names, and every concept it names (named classes and unnamed concepts alike)."""
    dataset = open_dataset("synth", root, split)
    require_images("synth", dataset, split)
    missing = [i for i in dataset.ids if i not in dataset.captions]
    if missing:
        raise Clips4Error(f"{Path(root) / 'captions.jsonl'}: no caption for {missing[0]} (and {len(missing) - 1} more)")
    images = np.stack([dataset.read_image(i) for i in tqdm(range(len(dataset)), desc=f"read {split}", leave=False)])
    captions = [dataset.captions[i]["caption"] for i in dataset.ids]
    classes = [tuple(dataset.captions[i]["classes"]) for i in dataset.ids]
    concepts = [classes[k] + tuple(dataset.captions[i].get("unnamed", ())) for k, i in enumerate(dataset.ids)]
    return torch.from_numpy(images), captions, classes, concepts


def contrastive_loss(
    image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """CLIP's symmetric InfoNCE over a batch of matching (image, text) pairs (features unit-norm)."""
    logits = logit_scale.exp().clamp(max=100) * image_features @ text_features.T
    targets = torch.arange(len(logits), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


def dense_presence_loss(
    dense: torch.Tensor, concept_text: torch.Tensor, present: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Multiple-instance loss tying each patch to the text of what it shows, from image-level captions only.

    ``dense`` ``[B, h, w, D]`` are MaskCLIP read-outs (unit), ``concept_text`` ``[C, D]`` the unit text of every
    concept the captions name, ``present`` ``[B, C]`` which of them each image's caption names. Each patch takes a
    softmax over the concepts (the argmax MaskCLIP segments by); a concept's presence in an image is its highest
    patch probability, scored by binary cross-entropy against the caption. A named concept must win some patch and
    an absent one none, so the patches that win it are the ones that look like it.
    """
    logits = logit_scale.exp().clamp(max=100) * dense.flatten(1, 2) @ concept_text.T  # [B, P, C]
    presence = logits.softmax(-1).amax(1).clamp(1e-6, 1 - 1e-6)  # [B, C]
    return F.binary_cross_entropy(presence, present.float())


def _learning_rate(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * base * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def zero_shot_recall_at_k(
    loaded: LoadedClip, images: torch.Tensor, classes: list[tuple[str, ...]], class_names: list[str]
) -> float:
    """Multi-label zero-shot accuracy: for an image with k classes, the share of its true classes among the
    k classes whose prompt-ensembled text is most similar to the image embedding (averaged over images)."""
    text = text_embeddings(loaded, class_names)
    hits = total = 0
    for start in range(0, len(images), 256):
        batch = normalize_images(to_rgb_batch(images[start : start + 256]), loaded.mean, loaded.std)
        scores = F.normalize(loaded.model.encode_image(batch), dim=-1) @ text.T
        for row, present in zip(scores, classes[start : start + 256], strict=True):
            top = {class_names[i] for i in row.topk(len(present)).indices.tolist()}
            hits += len(top & set(present))
            total += len(present)
    return 100.0 * hits / max(1, total)


def train_tiny_clip(params: Params, progress: bool = True) -> TrainedClip:
    """Train the tiny CLIP ``clip.model`` (a packaged config) on ``dataset.root``'s train captions."""
    require_packaged_model(params.clip.model)
    if params.dataset.name != "synth":
        raise Clips4Error(
            f"clip.pretrained is 'synth' but dataset.name is {params.dataset.name!r}: the tiny CLIP trains on the "
            "synthetic world's captions; for a real dataset set clip.model/clip.pretrained to real CLIP weights"
        )
    torch.manual_seed(params.synth.seed)  # the world's seed: the tiny CLIP belongs to the world (params.SynthParams)
    generator = torch.Generator().manual_seed(params.synth.seed)
    config = model_config(params.clip.model)
    settings = params.clip.pretrain
    # Patch dropout only acts in training and has no weights: the model is saved (and later built) without it.
    training_config = {**config, "vision_cfg": {**config["vision_cfg"], "patch_dropout": settings.patch_dropout}}
    model = build_model(training_config).train()
    tokenizer = tokenizer_for(config)
    images, captions, _, concepts = load_images_and_captions(params.dataset.root, params.dataset.train_split)
    tokens = tokenizer(captions)
    vocabulary = sorted({name for names in concepts for name in names})
    present = torch.tensor([[name in names for name in vocabulary] for names in concepts])
    templates = prompt_templates()
    batch_size = min(settings.batch_size, len(images))
    steps_per_epoch = len(images) // batch_size
    total_steps = steps_per_epoch * settings.epochs
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "embedding" in n]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    started = time.perf_counter()
    step, loss_value = 0, float("nan")
    bar = tqdm(total=total_steps, desc="clip pretrain", unit="step", disable=not progress, mininterval=2.0)
    for _ in range(settings.epochs):
        order = torch.randperm(len(images), generator=generator)
        for batch_start in range(0, steps_per_epoch * batch_size, batch_size):
            index = order[batch_start : batch_start + batch_size]
            batch = to_rgb_batch(images[index])
            flip = torch.rand(len(index), generator=generator) < 0.5  # flips keep every caption true
            batch[flip] = batch[flip].flip(-1)
            batch = normalize_images(batch, OPENAI_MEAN, OPENAI_STD)
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(step, total_steps, settings.warmup_steps, settings.lr)
            image_features, text_features, logit_scale = model(batch, tokens[index])[:3]
            loss = contrastive_loss(image_features, text_features, logit_scale)
            if settings.dense_weight > 0:
                # One template a step, drawn from the 85 that segmentation prompts with, for all concepts.
                template = templates[int(torch.randint(len(templates), (1,), generator=generator))]
                prompts = tokenizer([template.format(name) for name in vocabulary])
                concept_text = F.normalize(model.encode_text(prompts), dim=-1)
                first = slice(0, settings.dense_images)
                dense = dense_clip_features(model, batch[first])
                dense_loss = dense_presence_loss(dense, concept_text, present[index[first]], logit_scale)
                loss = loss + settings.dense_weight * dense_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            loss_value = float(loss)
            bar.update()
            bar.set_postfix(loss=f"{loss_value:.3f}")
    bar.close()
    return TrainedClip(
        model=model.eval(),
        config=config,
        train_images=len(images),
        epochs=settings.epochs,
        steps=step,
        train_seconds=round(time.perf_counter() - started, 1),
        final_loss=round(loss_value, 4),
    )


def state_dict_sha256(model: torch.nn.Module) -> str:
    """A hash of a model's weights (names, shapes and bytes), for weights that have no file of their own."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
