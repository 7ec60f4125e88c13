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
    def __call__(self, image: np.ndarray) -> np.ndarray:
        batch = normalize_images(to_rgb_batch(image).to(self.device), self.loaded.mean, self.loaded.std)
        features = protocol_features(self.loaded.model, batch, **self.read)
        return segment_with_text(features, self.class_text, image.shape[:2])[0].cpu().numpy()
