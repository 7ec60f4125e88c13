"""What one training step computes, built from params: the two views of each image, the criterion of the four
losses (:class:`clips4.train.losses.ClipS4Criterion`), the memory bank and the step's random generator.

The loop (:mod:`clips4.train.loop`) only sees ``losses(model, batch)``, ``total``, the gradient reduction of the
unknown prototypes and the state to checkpoint. State is split in two: ``state_dict`` is the same on every rank
(the unknown prototypes, kept identical by averaging their gradients), ``rank_state_dict`` is each rank's own (its
memory bank and generator).

The MaskCLIP+-style baseline (:class:`PixelBaseline`) is the same loop with another criterion
(:class:`clips4.train.losses.PixelPseudoLabelCriterion`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

import clips4.cache
from clips4.cache.api import PrototypesStore
from clips4.cache.store import StoreError
from clips4.ops.precision import autocast
from clips4.params import Params
from clips4.train.data import RawSample
from clips4.train.losses import ClipS4Criterion, LossOutput, PixelPseudoLabelCriterion, ViewBatch
from clips4.train.memory import MemoryBank
from clips4.train.transforms import JointAugment, resize_labels


class TwoViews:
    """The view maker of :mod:`clips4.train.data`: two joint augmentations of one cached sample, stacked."""

    def __init__(self, augment: JointAugment) -> None:
        self.augment = augment

    def __call__(self, sample: RawSample, generator: torch.Generator) -> dict[str, torch.Tensor]:
        views = [self.augment(sample.image, sample.superpixels, sample.clip_dense, generator) for _ in range(2)]
        return {
            "images": torch.stack([v.image for v in views]),  # [2, 3, c, c]
            "superpixels": torch.stack([v.superpixels for v in views]),  # [2, c, c]
            "clip": torch.stack([v.clip_dense for v in views]).half(),  # [2, D, h, w] on the student's grid
        }


def load_prototypes(path: str, embed_dim: int, targets: str) -> tuple[torch.Tensor, torch.Tensor, str | None]:
    """Known (or the known classes' text, for ``targets == "text"``) and unknown prototypes from prototypes.zarr."""
    store = clips4.cache.open(path)
    if not isinstance(store, PrototypesStore):
        raise StoreError(f"{path}: a {store.kind} store, expected prototypes; check the cache paths")
    known = torch.from_numpy(store.arrays["class_text"][:] if targets == "text" else store.known).float()
    unknown = torch.from_numpy(store.unknown).float()
    if known.shape[1] != embed_dim or unknown.shape[1] != embed_dim:
        raise StoreError(
            f"{path}: prototypes of dimension {known.shape[1]}, but the CLIP features have {embed_dim}; "
            "rebuild it (dvc repro prototypes)"
        )
    return known, unknown, store.fingerprint


#: The baseline's softmax temperature: CLIP-S4's default L_s temperature (losses.semantic_temperature), so both
#: students are trained with logits on the same scale.
MASKCLIP_PLUS_TEMPERATURE = 0.1


@dataclass(frozen=True)
class PixelBaseline:
    """The MaskCLIP+-style baseline: the student trained per pixel against MaskCLIP's pseudo-labels over the named
    classes only. ``name`` (recorded in the checkpoint), the named ``classes`` and their text ``[K, D]``."""

    name: str
    classes: tuple[str, ...]
    text: torch.Tensor

    def fingerprint(self) -> str:
        """What its targets depend on: the class names and their text embeddings' bytes."""
        digest = hashlib.sha256("\n".join(self.classes).encode())
        digest.update(self.text.detach().cpu().float().contiguous().numpy().tobytes())
        return digest.hexdigest()[:32]


def criterion_from_params(params: Params, known: torch.Tensor, unknown: torch.Tensor) -> ClipS4Criterion:
    """CLIP-S4's criterion as ``params`` configure it (``kappa``, ``segments_per_view``, ``losses.*``), over the
    ``known`` and ``unknown`` prototypes (the unknown ones dropped without ``losses.use_unknowns``)."""
    losses = params.losses
    return ClipS4Criterion(
        known,
        unknown if losses.use_unknowns else unknown[:0],
        contrastive=losses.contrastive,
        embedding=losses.embedding,
        semantic=losses.semantic,
        kappa=params.kappa,
        contrastive_weight=losses.contrastive_weight,
        embedding_weight=losses.embedding_weight,
        semantic_weight=losses.semantic_weight,
        unknown_weight=losses.unknown_weight,
        semantic_temperature=losses.semantic_temperature,
        segments_per_view=params.segments_per_view if losses.segments == "kmeans" else 0,
        sampled_pixels=losses.contrastive_pixels,
        exclude_own_segment=losses.contrastive_own_segment == "excluded",
        semantic_soft_targets=losses.semantic_soft_targets,
        unknown_margin=losses.unknown_margin,
    )


class Objective:
    """The losses of a training run and the state they carry between steps."""

    def __init__(
        self,
        params: Params,
        criterion: ClipS4Criterion | PixelPseudoLabelCriterion,
        prototypes_fingerprint: str | None,
    ) -> None:
        self.params = params
        self.criterion = criterion
        self.prototypes_fingerprint = prototypes_fingerprint
        self.memory = MemoryBank(params.train.memory_batches)
        self.generator = torch.Generator()  # k-means starts and L_t's pixel sample; reseeded per rank by the loop
        self._last: LossOutput | None = None

    @classmethod
    def from_params(cls, params: Params, prototypes_path: str, embed_dim: int, device: torch.device) -> Objective:
        known, unknown, fingerprint = load_prototypes(prototypes_path, embed_dim, params.losses.semantic_targets)
        return cls(params, criterion_from_params(params, known, unknown).to(device), fingerprint)

    @classmethod
    def for_baseline(cls, params: Params, baseline: PixelBaseline, embed_dim: int, device: torch.device) -> Objective:
        """The MaskCLIP+-style baseline's objective; its targets' fingerprint stands for the prototypes'."""
        if baseline.text.shape[1] != embed_dim:
            raise StoreError(
                f"class text of dimension {baseline.text.shape[1]}, but the CLIP features have {embed_dim}; "
                "check clip.model against the caches (dvc repro)"
            )
        criterion = PixelPseudoLabelCriterion(baseline.text, MASKCLIP_PLUS_TEMPERATURE).to(device)
        return cls(params, criterion, baseline.fingerprint())

    def seed(self, seed: int, rank: int) -> None:
        self.generator.manual_seed(seed * 1000 + 7 + rank)

    def param_groups(self) -> list[dict[str, Any]]:
        """The unknown prototypes (trained by L_u only), without weight decay."""
        if self.criterion.unknown.numel() == 0:
            return []
        return [{"params": [self.criterion.unknown], "weight_decay": 0.0}]

    def view_maker(self, output_stride: int, mean: tuple, std: tuple, clip_stride: int) -> TwoViews:
        train = self.params.train
        return TwoViews(
            JointAugment(
                train.crop_size,
                (train.crop_scale_min, train.crop_scale_max),
                True,
                train.color_jitter,
                train.blur,
                clip_stride=clip_stride,
                clip_size=-(-train.crop_size // output_stride),
                mean=tuple(mean),
                std=tuple(std),
            )
        )

    def losses(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], device: torch.device) -> LossOutput:
        """The criterion's output for one batch (both views through the student in one forward pass)."""
        images = batch["images"].to(device, non_blocking=True)
        size, views = images.shape[0], images.shape[1]
        images = images.flatten(0, 1)
        if device.type == "cuda":  # the student is channels-last there (clips4.train.loop)
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(self.params.train.precision, device):
            embeddings = model(images)  # [B * 2, D, h, w], image-major
        if embeddings.dtype != torch.float32:  # the losses run in fp32 on unit vectors
            embeddings = F.normalize(embeddings.float(), dim=1)
        grid = tuple(embeddings.shape[-2:])
        superpixels = resize_labels(batch["superpixels"].to(device, non_blocking=True), grid)  # [B, 2, h, w]
        clip = batch["clip"].to(device, non_blocking=True).float()
        if tuple(clip.shape[-2:]) != grid:
            raise ValueError(f"CLIP map {tuple(clip.shape[-2:])} is not on the student's output grid {grid}")
        embeddings = embeddings.view(size, views, *embeddings.shape[1:])
        view_batches = [ViewBatch(embeddings[:, v], clip[:, v], superpixels[:, v]) for v in range(views)]
        self._last = self.criterion(view_batches, self.memory.embeddings(), self.generator)
        return self._last

    def reduce_gradients(self) -> None:
        """Average the unknown prototypes' gradient over ranks (DDP averages the student's)."""
        grad = self.criterion.unknown.grad
        if grad is not None and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(grad)
            grad /= dist.get_world_size()

    def after_step(self) -> None:
        """Push this batch's segment embeddings into the memory bank."""
        if self._last is not None:
            self.memory.push(self._last.segment_embeddings)
            self._last = None

    def state_dict(self) -> dict[str, Any]:
        return {"unknown": self.criterion.unknown.detach().cpu().clone()}

    def rank_state_dict(self) -> dict[str, Any]:
        return {"memory": self.memory.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, shared: dict[str, Any], own: dict[str, Any]) -> None:
        with torch.no_grad():
            self.criterion.unknown.copy_(shared["unknown"])
        device = self.criterion.known.device
        self.memory.load_state_dict(own["memory"], device)
        self.generator.set_state(own["generator"])
