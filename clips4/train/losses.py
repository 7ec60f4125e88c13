"""CLIP-S4's four losses (He et al., CVPR 2023, section 3), as pure functions, and the criterion that combines them.

- L_t (Eq. 1), pixel-segment contrastive, SegSort-style: a pixel should be closer (concentration ``kappa``) to the
  segments of its own superpixel, in either view, than to every other segment of the batch and of the memory bank.
- L_e (Eq. 2), embedding consistency: a segment's student embedding ``v_s`` points where CLIP's does (``i_s``, the
  mean of the view's CLIP features over the segment).
- L_s (Eq. 3), semantic consistency: the student classifies a segment over the prototypes C (known + unknown) as
  CLIP does: cross-entropy of ``softmax(cos(v_s, C) / temperature)`` against ``argmax_c cos(i_s, c)``.
- L_u (Eq. 4): each unknown prototype moves toward the CLIP embeddings of the segments CLIP assigns to it. Its
  inputs are CLIP's (constant) and the prototypes, so it trains the prototypes only, never the encoder.

The MaskCLIP+-style baseline (the paper's Table 3 comparison) is not one of CLIP-S4's losses: it trains the same
student per pixel against MaskCLIP's pixel pseudo-labels over the named classes' text embeddings
(:func:`pixel_text_cross_entropy`, :class:`PixelPseudoLabelCriterion`), with no segments, no unknowns, no L_t, no L_e.

Segment embeddings are the normalised means of pixel embeddings over a segment (``segment_means``). The pure
functions take flat tensors; :class:`ClipS4Criterion` builds them from a batch of views and sums the terms switched
on in ``params.losses``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from clips4.ops.kmeans import Segments, segments_within_superpixels
from clips4.ops.segment_means import segment_means

# ---------------------------------------------------------------------------------------------- pure functions


def pixel_segment_contrastive(
    pixels: torch.Tensor,
    pixel_keys: torch.Tensor,
    prototypes: torch.Tensor,
    prototype_keys: torch.Tensor,
    kappa: float,
    negatives: torch.Tensor | None = None,
    own_segments: torch.Tensor | None = None,
) -> torch.Tensor:
    """L_t: ``mean_i -log( sum_{s in pos(i)} exp(kappa e_i.mu_s) / sum_{all s} exp(kappa e_i.mu_s) )``.

    Args:
        pixels: unit pixel embeddings ``e_i``, ``[P, D]``.
        pixel_keys: long ``[P]``; a segment is a positive of pixel i when its key equals i's (same image, same
            superpixel).
        prototypes: unit segment embeddings ``mu_s`` of the batch, ``[S, D]``, with ``prototype_keys`` long ``[S]``.
        kappa: the concentration.
        negatives: extra unit embeddings ``[M, D]`` that are never positives (the memory bank), or None.
        own_segments: long ``[P]``, the index in ``prototypes`` of each pixel's own segment, to leave it out of
            the sums wherever the pixel has another positive (SegSort's "segsort+" mode: the positive is then the
            other view's segment, an invariance signal, not the trivial match with the segment the pixel is in).
            None keeps it.

    Pixels with no positive segment are left out of the mean (none are when every pixel's own segment is in
    ``prototypes``).
    """
    candidates = prototypes if negatives is None or negatives.numel() == 0 else torch.cat([prototypes, negatives])
    logits = kappa * pixels @ candidates.T
    positive = pixel_keys[:, None] == prototype_keys[None, :]
    positive = F.pad(positive, (0, candidates.shape[0] - prototypes.shape[0]), value=False)
    left_out = torch.zeros_like(positive)
    if own_segments is not None:
        own = torch.zeros_like(positive)  # (not one_hot: that is int64, 8x the memory of this P x N mask)
        own[torch.arange(len(own_segments), device=own.device), own_segments] = True
        left_out = own & (positive & ~own).any(dim=1, keepdim=True)  # only where another positive remains
        positive = positive & ~left_out
    has_positive = positive.any(dim=1)
    if not bool(has_positive.any()):
        return logits.sum() * 0.0
    if not bool(has_positive.all()):
        logits, positive, left_out = logits[has_positive], positive[has_positive], left_out[has_positive]
    # One exponential pass: with unit vectors the logits span at most 2 kappa, so exp(logit - row max) cannot
    # underflow to 0 in float32 for kappa <= 40 (float64 beyond). -log(P / (P + N)) = log(1 + N / P) is then exact
    # for small losses, where subtracting two nearly equal log-sums would cancel.
    if kappa > 40:
        logits = logits.double()
    weights = torch.exp(logits - logits.max(dim=1, keepdim=True).values.detach())
    positives = torch.where(positive, weights, 0).sum(dim=1)
    negatives_sum = torch.where(positive | left_out if own_segments is not None else positive, 0, weights).sum(dim=1)
    return torch.log1p(negatives_sum / positives).mean().to(pixels.dtype)


def embedding_consistency(student: torch.Tensor, clip: torch.Tensor) -> torch.Tensor:
    """L_e: ``mean_s 1 - cos(v_s, i_s)`` over segment embeddings ``[S, D]``."""
    return (1 - F.cosine_similarity(student, clip, dim=1)).mean()


def clip_scores(
    clip: torch.Tensor, prototypes: torch.Tensor, known: int | None = None, margin: float = 0.0
) -> torch.Tensor:
    """``cos(i_s, c)`` ``[S, C]`` of ``clip [S, D]`` to ``prototypes [C, D]``, the prototypes after the first ``known``
    (the unknown ones) lowered by ``margin``: a segment goes to an unknown prototype only where it beats every known
    one by more than ``margin``. The tiny CLIP puts 77.0 % of the named classes' train superpixels (79.4 % of the
    unnamed ones) nearer a randomly drawn unknown prototype than every known one; a margin of 0.2 takes that to
    9.9 % (``benchmarks/unknown_share.py``, docs/training.md)."""
    scores = F.normalize(clip, dim=1) @ F.normalize(prototypes, dim=1).T
    if margin and known is not None and known < scores.shape[1]:
        scores = torch.cat([scores[:, :known], scores[:, known:] - margin], dim=1)
    return scores


def pseudo_labels(
    clip: torch.Tensor, prototypes: torch.Tensor, known: int | None = None, margin: float = 0.0
) -> torch.Tensor:
    """CLIP's class of each segment, ``argmax_c cos(i_s, c)`` (the unknown prototypes after the first ``known``
    lowered by ``margin``: :func:`clip_scores`): ``clip [S, D]``, ``prototypes [C, D]`` -> ``[S]``."""
    return clip_scores(clip, prototypes, known, margin).argmax(dim=1)


def semantic_consistency(
    student: torch.Tensor,
    clip: torch.Tensor,
    prototypes: torch.Tensor,
    temperature: float,
    soft: bool = False,
    known: int | None = None,
    margin: float = 0.0,
) -> torch.Tensor:
    """L_s: cross-entropy of ``softmax(cos(v_s, C) / temperature)`` against CLIP's pseudo-label
    ``argmax_c cos(i_s, c)``, averaged over segments ``[S, D]``; ``prototypes`` C ``[C, D]``.

    ``soft`` uses CLIP's whole prediction ``softmax(cos(i_s, C) / temperature)`` as the target instead of its argmax.
    The hard form's optimum is ``v_s`` on its class prototype, away from ``i_s`` (its gradient at ``v_s = i_s`` is
    not zero); the soft form's is ``v_s`` predicting as ``i_s`` does, which ``v_s = i_s`` satisfies.
    ``known`` and ``margin`` shape CLIP's side only (:func:`clip_scores`): the student is scored on plain cosines.
    """
    logits = F.normalize(student, dim=1) @ F.normalize(prototypes, dim=1).T / temperature
    if soft:
        target = torch.softmax(clip_scores(clip, prototypes, known, margin) / temperature, dim=1)
        return F.cross_entropy(logits, target.detach())
    return F.cross_entropy(logits, pseudo_labels(clip, prototypes, known, margin))


def pixel_text_cross_entropy(
    pixels: torch.Tensor, clip: torch.Tensor, text: torch.Tensor, temperature: float
) -> torch.Tensor:
    """MaskCLIP+'s per-pixel loss: cross-entropy of ``softmax(cos(e_p, t_c) / temperature)`` against MaskCLIP's
    pseudo-label ``argmax_c cos(clip_p, t_c)``, averaged over pixels.

    ``pixels`` the student's pixel embeddings ``[P, D]``, ``clip`` CLIP's dense features at the same pixels
    ``[P, D]``, ``text`` the named classes' text embeddings ``[C, D]`` (none of them need be unit length).
    """
    logits = F.normalize(pixels, dim=1) @ F.normalize(text, dim=1).T / temperature
    return F.cross_entropy(logits, pseudo_labels(clip.detach(), text))


def unknown_prototype_loss(unknown: torch.Tensor, clip: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_u: ``mean 1 - cos(u_{labels[s]}, i_s)`` over the segments with ``labels[s] >= 0`` (the index of the unknown
    prototype CLIP assigns them; -1 for the others). ``clip`` is detached: only ``unknown [U, D]`` learns from it.
    Zero (still attached to ``unknown``) when no segment is assigned to an unknown prototype."""
    assigned = labels >= 0
    if not bool(assigned.any()):
        return unknown.sum() * 0.0
    chosen = unknown[labels[assigned]]
    return (1 - F.cosine_similarity(chosen, clip[assigned].detach(), dim=1)).mean()


# ---------------------------------------------------------------------------------------------- the criterion


@dataclass(frozen=True)
class ViewBatch:
    """One augmented view of each image of the batch, on the student's output grid ``[h, w]``.

    ``embeddings`` the student's unit pixel embeddings ``[B, D, h, w]``; ``clip`` the view's CLIP map ``[B, D, h, w]``;
    ``superpixels`` long ``[B, h, w]``, with the same ids in every view of an image.
    """

    embeddings: torch.Tensor
    clip: torch.Tensor
    superpixels: torch.Tensor


@dataclass(frozen=True)
class LossOutput:
    """``total`` (to backpropagate), the unweighted ``terms`` (detached, for logging), the batch's student segment
    embeddings (detached, ``[S, D]``: what to push into the memory bank) and the segments of each view."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor]
    segment_embeddings: torch.Tensor
    segments: list[Segments]


class PixelSegmentContrastiveLoss(nn.Module):
    """L_t over the views of a batch, with ``sampled_pixels`` pixels (over all views) drawn from the generator."""

    def __init__(self, kappa: float = 10.0, sampled_pixels: int = 2048, exclude_own_segment: bool = False) -> None:
        super().__init__()
        self.kappa = kappa
        self.sampled_pixels = sampled_pixels
        self.exclude_own_segment = exclude_own_segment

    def forward(
        self,
        pixels: torch.Tensor,
        pixel_keys: torch.Tensor,
        prototypes: torch.Tensor,
        prototype_keys: torch.Tensor,
        pixel_segments: torch.Tensor,
        memory: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``pixel_segments`` long ``[P]``: the index in ``prototypes`` of each pixel's own segment."""
        if 0 < self.sampled_pixels < pixels.shape[0]:
            chosen = torch.randperm(pixels.shape[0], generator=generator)[: self.sampled_pixels].to(pixels.device)
            pixels, pixel_keys, pixel_segments = pixels[chosen], pixel_keys[chosen], pixel_segments[chosen]
        negatives = None if memory is None else memory.to(prototypes.dtype)
        own = pixel_segments if self.exclude_own_segment else None
        return pixel_segment_contrastive(pixels, pixel_keys, prototypes, prototype_keys, self.kappa, negatives, own)


class ClipS4Criterion(nn.Module):
    """The weighted sum of the losses switched on, from the views of a batch.

    Holds the prototypes: ``known`` (a buffer, fixed) and ``unknown`` (a parameter, trained by L_u only; put it in
    the optimiser and the checkpoint). Segments come from spherical k-means on each view's pixel embeddings
    (``segments_per_view`` clusters, ``kmeans_iterations`` iterations) split by superpixel; ``segments_per_view=0``
    uses the superpixels themselves.

    Args:
        known, unknown: prototypes ``[K, D]`` and ``[U, D]`` (``prototypes.zarr``).
        contrastive, embedding, semantic: the switches of ``params.losses`` (L_u is on with L_s).
        kappa: L_t's concentration. ``*_weight``: each term's weight in the total.
        semantic_temperature: L_s's softmax temperature (1: the paper's ``softmax(sim(v_s, C))``).
        sampled_pixels: pixels (over all views) that L_t scores per batch (0: all).
        exclude_own_segment: L_t leaves a pixel's own segment out when its superpixel has another segment (in the
            other view, or another cluster): SegSort's "segsort+" positives.
        kmeans_location_weight: weight of the pixel coordinates appended to the embeddings for k-means (0: none).
        semantic_soft_targets: L_s against CLIP's softmax over C rather than its argmax (see semantic_consistency).
        unknown_margin: how far an unknown prototype must beat every known one before CLIP's label is unknown
            (:func:`clip_scores`; 0: the paper's plain argmax).
    """

    def __init__(
        self,
        known: torch.Tensor,
        unknown: torch.Tensor,
        *,
        contrastive: bool = True,
        embedding: bool = True,
        semantic: bool = True,
        kappa: float = 10.0,
        contrastive_weight: float = 1.0,
        embedding_weight: float = 1.0,
        semantic_weight: float = 1.0,
        unknown_weight: float = 1.0,
        semantic_temperature: float = 1.0,
        segments_per_view: int = 36,
        kmeans_iterations: int = 10,
        sampled_pixels: int = 2048,
        exclude_own_segment: bool = False,
        kmeans_location_weight: float = 0.0,
        semantic_soft_targets: bool = False,
        unknown_margin: float = 0.0,
    ) -> None:
        super().__init__()
        if not (contrastive or embedding or semantic):
            raise ValueError("ClipS4Criterion: at least one of contrastive, embedding, semantic must be on")
        if semantic_temperature <= 0:
            raise ValueError(f"ClipS4Criterion: semantic_temperature must be > 0, got {semantic_temperature}")
        self.register_buffer("known", F.normalize(known.float(), dim=1))
        self.unknown = nn.Parameter(F.normalize(unknown.float(), dim=1))
        self.switches = {"contrastive": contrastive, "embedding": embedding, "semantic": semantic}
        self.weights = {
            "contrastive": contrastive_weight,
            "embedding": embedding_weight,
            "semantic": semantic_weight,
            "unknown": unknown_weight,
        }
        self.contrastive = PixelSegmentContrastiveLoss(kappa, sampled_pixels, exclude_own_segment)
        self.semantic_temperature = semantic_temperature
        self.semantic_soft_targets = semantic_soft_targets
        self.unknown_margin = unknown_margin
        self.segments_per_view = segments_per_view
        self.kmeans_iterations = kmeans_iterations
        self.kmeans_location_weight = kmeans_location_weight

    def prototypes(self) -> torch.Tensor:
        """Known then unknown prototypes, unit length: ``[K + U, D]``."""
        return torch.cat([self.known, F.normalize(self.unknown, dim=1)])

    def forward(
        self,
        views: Sequence[ViewBatch],
        memory: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> LossOutput:
        segments = [
            segments_within_superpixels(
                v.embeddings,
                v.superpixels,
                self.segments_per_view,
                iterations=self.kmeans_iterations,
                generator=generator,
                location_weight=self.kmeans_location_weight,
            )
            for v in views
        ]
        student, clip, keys, pixels, pixel_keys, pixel_segments = [], [], [], [], [], []
        offset = 0  # segment ids of each view follow those of the views before it
        key_stride = max(int(v.superpixels.max()) for v in views) + 1  # key = image * stride + superpixel
        for view, seg in zip(views, segments, strict=True):
            dim = view.embeddings.shape[1]
            flat_ids = seg.ids.flatten()
            flat_pixels = view.embeddings.permute(0, 2, 3, 1).reshape(-1, dim)
            student.append(segment_means(flat_pixels, flat_ids, seg.count))
            clip.append(segment_means(view.clip.permute(0, 2, 3, 1).reshape(-1, dim).float(), flat_ids, seg.count))
            keys.append(seg.image * key_stride + seg.superpixel)
            pixels.append(flat_pixels)
            pixel_keys.append((seg.image * key_stride + seg.superpixel)[flat_ids])
            pixel_segments.append(flat_ids + offset)
            offset += seg.count
        v_s, i_s, segment_keys = torch.cat(student), torch.cat(clip).detach(), torch.cat(keys)

        terms: dict[str, torch.Tensor] = {}
        if self.switches["contrastive"]:
            terms["contrastive"] = self.contrastive(
                torch.cat(pixels),
                torch.cat(pixel_keys),
                v_s,
                segment_keys,
                torch.cat(pixel_segments),
                memory,
                generator,
            )
        if self.switches["embedding"]:
            terms["embedding"] = embedding_consistency(v_s, i_s)
        if self.switches["semantic"]:
            prototypes = self.prototypes()
            # L_s trains the student against fixed targets; the prototypes learn from L_u alone
            known = self.known.shape[0]
            terms["semantic"] = semantic_consistency(
                v_s,
                i_s,
                prototypes.detach(),
                self.semantic_temperature,
                self.semantic_soft_targets,
                known,
                self.unknown_margin,
            )
            labels = (
                pseudo_labels(i_s, prototypes.detach(), known, self.unknown_margin) - known
            )  # unknown index, or < 0
            terms["unknown"] = unknown_prototype_loss(F.normalize(self.unknown, dim=1), i_s, labels.clamp(min=-1))
        total = sum(self.weights[name] * value for name, value in terms.items())
        return LossOutput(
            total=total,  # type: ignore[arg-type]
            terms={name: value.detach() for name, value in terms.items()},
            segment_embeddings=v_s.detach(),
            segments=segments,
        )


class PixelPseudoLabelCriterion(nn.Module):
    """The MaskCLIP+-style baseline's criterion: :func:`pixel_text_cross_entropy` over every pixel of every view.

    It has the interface of :class:`ClipS4Criterion` that :class:`clips4.train.objective.Objective` uses: ``known``
    (the named classes' text, a fixed buffer) and ``unknown`` (an empty parameter: the baseline has no unknowns),
    and a :class:`LossOutput` whose segment embeddings are empty (no segments, so nothing for a memory bank).

    Args:
        text: the named (known) classes' text embeddings ``[K, D]``.
        temperature: the softmax temperature of the student's logits.
    """

    def __init__(self, text: torch.Tensor, temperature: float) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"PixelPseudoLabelCriterion: temperature must be > 0, got {temperature}")
        self.register_buffer("known", F.normalize(text.float(), dim=1))
        self.unknown = nn.Parameter(text.new_zeros(0, text.shape[1]).float())
        self.temperature = temperature

    def forward(
        self,
        views: Sequence[ViewBatch],
        memory: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> LossOutput:
        dim = views[0].embeddings.shape[1]
        pixels = torch.cat([v.embeddings.permute(0, 2, 3, 1).reshape(-1, dim) for v in views])
        clip = torch.cat([v.clip.permute(0, 2, 3, 1).reshape(-1, dim).float() for v in views])
        loss = pixel_text_cross_entropy(pixels, clip, self.known, self.temperature)
        return LossOutput(
            total=loss,
            terms={"pixel_semantic": loss.detach()},
            segment_embeddings=pixels.new_zeros(0, dim).detach(),
            segments=[],
        )
