"""What float16 storage changes (issue 12): the prototypes and MaskCLIP's mIoU, float16 against float32.

The caches store dense CLIP features and segment embeddings in float16. This recomputes the dense features of a
project's world in float32 (its own CLIP, as ``clip_dense`` does), then compares, against the same computation on
the float16-rounded features:

1. segment embeddings (mean over each superpixel of ``superpixels.zarr``, then L2-normalised; stored in float16 in
   the float16 path, exactly as the ``segments`` stage does), and the check that this float16 path reproduces the
   project's ``segments.zarr`` bit for bit;
2. the known-class prototypes: the FAISS top-m segments per class (same set? same order?) with the stored
   ``class_text`` and ``logit_scale`` of ``prototypes.zarr``, and the prototypes' max abs difference;
3. MaskCLIP on the val split (``eval.protocol``): mIoU from float32 features and from float16-rounded ones, and
   the share of pixels whose label differs.

Reads the project read-only; writes nothing but ``--out``.

    python benchmarks/bench_float16.py --project /work/main --out /tmp/float16.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=Path("."), help="a project with data/cache and models/")
    parser.add_argument("--train-images", type=int, default=0, help="first N train images only (0: all)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    project = args.project.resolve()
    out = args.out.resolve() if args.out else None
    os.chdir(project)  # models/clip.pt and data/ are relative to the project; nothing is written there

    import clips4.cache
    from clips4.clip import dense_clip_features, feature_stride, load_clip, normalize_images, to_rgb_batch
    from clips4.clip.text import text_embeddings
    from clips4.inference.language import language_classes, segment_with_text
    from clips4.inference.reading import ReadSettings, clip_features
    from clips4.ops.metrics import confusion_matrix, mean_iou
    from clips4.ops.segment_means import grid_segment_means
    from clips4.params import load_params
    from clips4.prototypes import known_prototypes, top_m_segments
    from clips4.stages.common import image_list

    params = load_params("params.yaml")
    loaded = load_clip(params.clip.model, params.clip.pretrained)
    model = loaded.model.eval()
    stride = feature_stride(model.visual)
    images = image_list(params)
    superpixels = clips4.cache.open("data/cache/superpixels.zarr")
    segments = clips4.cache.open("data/cache/segments.zarr")
    prototypes = clips4.cache.open("data/cache/prototypes.zarr")
    first, stop = images.splits[params.dataset.train_split]
    stop = min(stop, first + args.train_images) if args.train_images else stop
    started = time.perf_counter()

    emb32, emb16, same_as_store, max_store_diff = [], [], True, 0.0
    with torch.no_grad():
        for start in range(first, stop, 64):
            rows = range(start, min(start + 64, stop))
            pixels = [images.read_image(row) for row in rows]
            batch = normalize_images(to_rgb_batch(np.stack(pixels)), loaded.mean, loaded.std)
            features32 = dense_clip_features(model, batch, params.clip.dense_mode).numpy()
            for k, row in enumerate(rows):
                labels = superpixels.image(row).labels
                n = int(superpixels.arrays["num_regions"][row])
                vectors32, _ = grid_segment_means(labels, features32[k], stride, n)
                f16 = features32[k].astype(np.float16).astype(np.float32)
                vectors16 = grid_segment_means(labels, f16, stride, n)[0].astype(np.float16)
                stored = segments.segments_of(row).embeddings
                same_as_store &= bool(np.array_equal(stored, vectors16))
                max_store_diff = max(max_store_diff, float(np.abs(stored.astype(np.float32) - vectors16).max()))
                emb32.append(vectors32)
                emb16.append(vectors16)
    emb32, emb16 = np.concatenate(emb32), np.concatenate(emb16)
    text = np.asarray(prototypes.arrays["class_text"][:], np.float32)
    scale = float(prototypes.attrs["logit_scale"])
    m = int(params.top_m)
    top32 = top_m_segments(emb32, text, scale, m)
    top16 = top_m_segments(emb16, text, scale, m)
    protos32 = known_prototypes(emb32, top32.indices)
    protos16 = known_prototypes(emb16.astype(np.float32), top16.indices)
    same_set = [set(a.tolist()) == set(b.tolist()) for a, b in zip(top32.indices, top16.indices, strict=True)]
    same_order = [np.array_equal(a, b) for a, b in zip(top32.indices, top16.indices, strict=True)]
    overlap = [len(set(a.tolist()) & set(b.tolist())) / m for a, b in zip(top32.indices, top16.indices, strict=True)]
    result = {
        "project": str(project),
        "train_images": stop - first,
        "segments": len(emb32),
        "segment_embeddings": {
            "float16_path_equals_segments_zarr": same_as_store,
            "max_abs_diff_float16_path_vs_segments_zarr": max_store_diff,
            "max_abs_diff_float16_vs_float32": float(np.abs(emb16.astype(np.float32) - emb32).max()),
        },
        "prototypes": {
            "classes": len(text),
            "top_m": m,
            "same_top_m_set": int(sum(same_set)),
            "same_top_m_order": int(sum(same_order)),
            "mean_top_m_overlap": float(np.mean(overlap)),
            "max_abs_diff": float(np.abs(protos16 - protos32).max()),
            "min_cosine": float((protos16 * protos32).sum(1).min()),
        },
    }
    print(json.dumps(result, indent=2), flush=True)

    dataset_split = params.dataset.val_split
    from clips4.data.layouts import open_dataset

    dataset = open_dataset(params.dataset.name, params.dataset.root, dataset_split)
    classes = language_classes(params.dataset.name, dataset.class_names)
    class_text = text_embeddings(loaded, classes.prompts)
    count = len(classes.names)
    confusion32 = np.zeros((count, count), np.int64)
    confusion16 = np.zeros_like(confusion32)
    differ = pixels_total = 0
    read = ReadSettings.from_params(params)
    with torch.no_grad():
        for index in range(len(dataset)):
            sample = dataset[index]
            batch = normalize_images(to_rgb_batch(sample.image), loaded.mean, loaded.std)
            features = clip_features(model, batch, read)
            size = sample.image.shape[:2]
            labels32 = segment_with_text(features, class_text, size)[0].numpy()
            labels16 = segment_with_text(features.half().float(), class_text, size)[0].numpy()
            truth = classes.map_labels(sample.label)
            confusion32 += confusion_matrix(truth, labels32, count)
            confusion16 += confusion_matrix(truth, labels16, count)
            differ += int((labels32 != labels16).sum())
            pixels_total += labels32.size
    result["maskclip_val"] = {
        "images": len(dataset),
        "miou_float32": round(mean_iou(confusion32), 4),
        "miou_float16": round(mean_iou(confusion16), 4),
        "pixels_labelled_differently": differ,
        "pixel_share_differently": differ / pixels_total,
    }
    result["seconds"] = round(time.perf_counter() - started, 1)
    text_out = json.dumps(result, indent=2)
    print(text_out)
    if out:
        out.write_text(text_out + "\n")


if __name__ == "__main__":
    main()
