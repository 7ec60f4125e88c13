"""The MaskCLIP baseline: CLIP's own dense features (clips4.clip.dense), each pixel labelled with its nearest
class text embedding (MaskCLIP, Zhou et al. ECCV 2022, without its key smoothing and prompt denoising)."""

from __future__ import annotations

import numpy as np
import torch

from clips4.clip.dense import normalize_images, to_rgb_batch
from clips4.clip.loading import LoadedClip
from clips4.clip.text import text_embeddings
from clips4.eval.language import LanguageClasses, segment_with_text
from clips4.eval.protocol import protocol_features


class MaskClipSegmenter:
    """``segmenter(image [H, W, 3] uint8) -> [H, W]`` indices into ``classes``, on ``loaded``'s device."""

    def __init__(
        self,
        loaded: LoadedClip,
        classes: LanguageClasses,
        *,
        protocol: str,
        dataset_name: str,
        window: int,
        stride: int,
        dense_mode: str,
    ) -> None:
        self.loaded = loaded
        self.device = next(loaded.model.parameters()).device
        self.class_text = text_embeddings(loaded, classes.prompts).to(self.device)
        self.read = dict(protocol=protocol, dataset_name=dataset_name, window=window, stride=stride, mode=dense_mode)

    @torch.no_grad()
    def pixel_embeddings(self, images: np.ndarray | list[np.ndarray]) -> torch.Tensor:
        """Unit dense features ``[B, h, w, D]`` of uint8 images (one ``[H, W, 3]`` or several of one size)."""
        batch = normalize_images(to_rgb_batch(images).to(self.device), self.loaded.mean, self.loaded.std)
        return protocol_features(self.loaded.model, batch, **self.read)

    def label(self, embeddings: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
        """Class indices ``[B, H, W]`` of :meth:`pixel_embeddings`' output, by the nearest class text."""
        return segment_with_text(embeddings, self.class_text, size).cpu().numpy()

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.label(self.pixel_embeddings(image), image.shape[:2])[0]
