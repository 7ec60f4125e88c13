"""Language-driven segmentation: each pixel takes the class whose text embedding is nearest its embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def segment_with_text(dense_features: torch.Tensor, class_text: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Class ids ``[B, H, W]`` from dense features ``[B, h, w, D]`` and class embeddings ``[C, D]``.

    The cosine scores are computed on the feature grid and upsampled bilinearly to ``size`` before the
    argmax, as MaskCLIP does (upsampling scores keeps boundaries smoother than upsampling labels).
    """
    scores = torch.einsum("bhwd,cd->bchw", dense_features, class_text.to(dense_features.dtype))
    scores = F.interpolate(scores, size=size, mode="bilinear", align_corners=False)
    return scores.argmax(dim=1)
