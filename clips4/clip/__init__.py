"""The CLIP teacher: loading, MaskCLIP dense features, prompt-ensembled text embeddings."""

from clips4.clip.dense import (
    DENSE_MODES,
    dense_clip_features,
    dense_clip_features_sliding,
    feature_stride,
    normalize_images,
    to_rgb_batch,
)
from clips4.clip.loading import (
    LoadedClip,
    build_model,
    load_clip,
    load_project_clip,
    model_config,
    save_clip_checkpoint,
)
from clips4.clip.text import text_embeddings

__all__ = [
    "DENSE_MODES",
    "LoadedClip",
    "build_model",
    "dense_clip_features",
    "dense_clip_features_sliding",
    "feature_stride",
    "load_clip",
    "load_project_clip",
    "model_config",
    "normalize_images",
    "save_clip_checkpoint",
    "text_embeddings",
    "to_rgb_batch",
]
