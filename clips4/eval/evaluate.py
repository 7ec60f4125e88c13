"""The ``evaluate`` stage: language-driven segmentation of the val split, scored against ground truth.

Only the MaskCLIP baseline exists so far: CLIP's own dense features (clips4.clip.dense), each pixel
labelled with its nearest class text embedding.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from clips4.clip import dense_clip_features, load_clip, normalize_images, text_embeddings, to_rgb_batch
from clips4.clip.dense import dense_clip_features_sliding
from clips4.data.layouts import open_dataset
from clips4.eval.language import segment_with_text
from clips4.eval.metrics import confusion_matrix, mean_iou, per_class_iou, pixel_accuracy
from clips4.params import Params

METHODS = ("maskclip",)


@torch.no_grad()
def evaluate_maskclip(params: Params, dense_mode: str | None = None) -> dict[str, Any]:
    """MaskCLIP on the val split: mIoU, pixel accuracy (percent) and per-class IoU."""
    mode = dense_mode or params.clip.dense_mode
    loaded = load_clip(params.clip.model, params.clip.pretrained)
    dataset = open_dataset(params.dataset.name, params.dataset.root, params.dataset.val_split)
    class_text = text_embeddings(loaded, dataset.class_names)
    num_classes = len(dataset.class_names)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    for index in tqdm(range(len(dataset)), desc=f"evaluate maskclip ({mode})", unit="img", mininterval=1.0):
        sample = dataset[index]
        if sample.label is None:
            continue
        images = normalize_images(to_rgb_batch(sample.image), loaded.mean, loaded.std)
        if max(images.shape[-2:]) > params.clip.window:
            features = dense_clip_features_sliding(loaded.model, images, params.clip.window, params.clip.stride, mode)
        else:
            features = dense_clip_features(loaded.model, images, mode)
        prediction = segment_with_text(features, class_text, sample.label.shape)[0].numpy()
        confusion += confusion_matrix(sample.label, prediction, num_classes)
    iou = per_class_iou(confusion)
    return {
        "miou": round(mean_iou(confusion), 2),
        "pacc": round(pixel_accuracy(confusion), 2),
        "dense_mode": mode,
        "per_class": {
            name: (None if np.isnan(value) else round(float(value), 2))
            for name, value in zip(dataset.class_names, iou, strict=True)
        },
    }


def merge_metrics(path: Path, key: str, values: dict[str, Any]) -> None:
    """Set ``key`` in the metrics JSON, keeping the other methods' keys (written atomically)."""
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    metrics[key] = values
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    tmp.replace(path)
