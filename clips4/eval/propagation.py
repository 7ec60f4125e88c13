"""Video mask propagation by pixel-embedding affinities (the DAVIS protocol of CRW, UVC and STC).

Any dense feature works: CLIP's MaskCLIP features or the student's pixel embeddings, ``[T, D, h, w]`` per video.
The protocol is that of the label propagation used by CRW (Jabri et al., 2020, "Space-Time Correspondence as a
Contrastive Random Walk"), which CLIP-S4's Table 5 follows; its defaults are :class:`PropagationConfig`'s:

- the first frame's object masks become one-hot label maps, resized bilinearly to the feature grid;
- every later frame ``t`` is labelled from a context of the first frame plus the ``context`` frames before
  ``t`` (the first frame repeated where ``t < context``), whose labels are the soft labels propagated so far;
- each query pixel takes its ``topk`` most similar context pixels (cosine of unit embeddings), weighted by a
  softmax of similarity / ``temperature``; in the previous frames only pixels closer than ``radius`` grid cells
  are candidates, while the first frame is searched whole (CRW's long-term memory);
- the soft labels are resized bilinearly to the frame size and the argmax gives the object ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from clips4.errors import Clips4Error


@dataclass(frozen=True)
class PropagationConfig:
    """Label propagation settings; the defaults are CRW's DAVIS 2017 ones, which CLIP-S4 reports with."""

    topk: int = 10
    context: int = 20
    """Previous frames in the context, besides the first frame."""
    radius: float = 12.0
    """Spatial radius on the feature grid (cells) for the previous frames; strict (``distance < radius``)."""
    temperature: float = 0.05
    max_affinity_elements: int = 1 << 26
    """Memory bound: the affinity of one chunk of query pixels holds at most this many floats."""

    def __post_init__(self) -> None:
        if self.topk < 1 or self.context < 0 or self.radius <= 0 or self.temperature <= 0:
            raise Clips4Error(
                f"propagation settings {self}: need topk >= 1, context >= 0, radius > 0 and temperature > 0"
            )


def context_frames(t: int, context: int) -> list[int]:
    """Frames whose labels feed frame ``t``: the first frame, then the ``context`` previous frames (clamped at 0)."""
    return [0] + [max(0, s) for s in range(t - context, t)]


def local_window(height: int, width: int, radius: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """``[h*w, h*w]`` boolean, symmetric: cell ``i`` lies closer than ``radius`` cells to cell ``j``."""
    rows, cols = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij")
    points = torch.stack([rows.flatten(), cols.flatten()], dim=1).float()
    return torch.cdist(points, points) < radius


def propagate_labels(
    embeddings: torch.Tensor, first_labels: torch.Tensor, config: PropagationConfig | None = None
) -> torch.Tensor:
    """Soft labels ``[T, C, h, w]`` of every frame from embeddings ``[T, D, h, w]`` and frame 0's ``[C, h, w]``.

    Runs on the embeddings' device; frame 0 keeps ``first_labels``.
    """
    config = config or PropagationConfig()
    if embeddings.ndim != 4 or first_labels.ndim != 3 or first_labels.shape[1:] != embeddings.shape[2:]:
        raise Clips4Error(
            f"propagation: embeddings {tuple(embeddings.shape)} must be [T, D, h, w] and first labels "
            f"{tuple(first_labels.shape)} [C, h, w] on the same grid"
        )
    frames, _, height, width = embeddings.shape
    cells = height * width
    features = F.normalize(embeddings.float(), dim=1).flatten(2)  # [T, D, n]
    labels = [first_labels.to(features).flatten(1)]  # [C, n] per frame
    local = local_window(height, width, config.radius, features.device)
    for t in range(1, frames):
        sources = context_frames(t, config.context)
        keys = torch.cat([features[s] for s in sources], dim=1)  # [D, K*n]
        key_labels = torch.cat([labels[s] for s in sources], dim=1)  # [C, K*n]
        topk = min(config.topk, keys.shape[1])
        chunk = max(1, config.max_affinity_elements // keys.shape[1])
        current = torch.empty_like(labels[0])
        for start in range(0, cells, chunk):
            stop = min(cells, start + chunk)
            # [m, K, n] with the keys last, so that top-k runs along contiguous memory (several times faster).
            affinity = (features[t][:, start:stop].T @ keys).view(stop - start, len(sources), cells)
            # Only the previous frames are restricted to the window; the first frame is searched whole.
            affinity[:, 1:].masked_fill_(~local[start:stop, None, :], float("-inf"))
            # Dividing by a positive temperature keeps the order, so it is applied to the top-k values only.
            weights, index = torch.topk(affinity.view(stop - start, -1), topk, dim=1)
            weights = torch.softmax(weights / config.temperature, dim=1)  # [m, k]
            current[:, start:stop] = (key_labels[:, index] * weights[None]).sum(dim=2)
        labels.append(current)
    return torch.stack(labels).view(frames, -1, height, width)


def propagate_masks(
    embeddings: torch.Tensor, first_mask: np.ndarray, config: PropagationConfig | None = None
) -> np.ndarray:
    """Object-id masks ``[T, H, W]`` uint8 from embeddings ``[T, D, h, w]`` and the first frame's ``[H, W]`` ids.

    The ids are those of the first mask (0 = background; 255 counts as background, as the DAVIS evaluator reads
    it); frame 0 of the result is the first mask itself.
    """
    first_mask = np.where(np.asarray(first_mask) == 255, 0, np.asarray(first_mask)).astype(np.int64)
    if first_mask.ndim != 2:
        raise Clips4Error(f"propagation: the first mask must be [H, W] object ids; got shape {first_mask.shape}")
    size = first_mask.shape
    object_ids = np.unique(first_mask)
    device = embeddings.device
    index = torch.from_numpy(np.searchsorted(object_ids, first_mask)).to(device)
    one_hot = F.one_hot(index, len(object_ids)).permute(2, 0, 1).float()  # [C, H, W]
    # Bilinear without antialiasing, as the reference implementation resizes the one-hot maps (cv2 INTER_LINEAR).
    first_labels = F.interpolate(one_hot[None], size=embeddings.shape[2:], mode="bilinear", align_corners=False)[0]
    soft = propagate_labels(embeddings, first_labels, config)
    masks = np.empty((len(soft), *size), np.uint8)
    masks[0] = first_mask
    for t in range(1, len(soft)):
        scores = F.interpolate(soft[t : t + 1], size=size, mode="bilinear", align_corners=False)[0]
        masks[t] = object_ids[scores.argmax(dim=0).cpu().numpy()]
    return masks
