"""The ``clip_dense`` stage: CLIP's dense (MaskCLIP) embeddings of every train and val image, into
data/cache/clip_dense.zarr.

Features are computed once, on the original image (training augments image and features alike later), at the
feature grid's resolution (one vector per ``feature_stride`` x ``feature_stride`` pixels). Layout (rows = images,
train then val, as in every image store; grids padded at the bottom and right to the largest):

- ``features``   float16 [N, GH, GW, D]  unit-norm dense CLIP embeddings
- ``extent``     int32   [N, 2]          (grid height, grid width) that holds the image
- ``image_size`` int32   [N, 2]          (height, width) of the image in pixels
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from clips4.cache.store import ArraySpec, ChunkedStore, code_digest, rows_per_chunk, sharded_layout
from clips4.params import Params
from clips4.stages.common import DENSE_STORE, ImageList, StageResult, image_list, store_or_default


def dense_parts(params: Params, identity: Any, images: ImageList, precision: str = "fp32") -> dict[str, Any]:
    """What clip_dense.zarr depends on (see ``ChunkedStore.open``); ``precision`` is the resolved one (fp32 or bf16):
    a store is not resumed in another precision than the one it was started in."""
    clip = {"dense_mode": params.clip.dense_mode, "window": params.clip.window, "stride": params.clip.stride}
    if precision != "fp32":  # (fp32 stores keep the fingerprint they had before the option existed)
        clip["precision"] = precision
    return {
        "kind": "clip_dense",
        "weights": identity,
        "clip": clip,
        "images": images.identity(),
        "code": code_digest(
            "clips4.clip.dense",
            "clips4.ops.windows",
            "clips4.ops.batches",
            "clips4.ops.precision",
            "clips4.stages.clip_dense",
        ),
    }


def run_clip_dense(
    params: Params, out: str | Path | None = None, *, shard: tuple[int, int] = (0, 1), rebuild: bool = False
) -> StageResult:
    """Cache the dense CLIP features of every image (GPU when present) into ``out`` (default: the project's
    data/cache/clip_dense.zarr); resumes an interrupted store (a stale one holding finished work is replaced only
    with ``rebuild``)."""
    from tqdm import tqdm

    from clips4.clip import feature_stride, load_project_clip
    from clips4.clip.dense import padded_dense_features
    from clips4.clip.loading import compute_device
    from clips4.ops.precision import resolve_precision

    out = store_or_default(params, out, DENSE_STORE)
    device = compute_device()
    precision = resolve_precision(params.clip.precision, device)
    loaded = load_project_clip(params)
    loaded.model.to(device).eval()
    images = image_list(params)
    step = feature_stride(loaded.model.visual)
    height, width = images.max_size()
    grid_h, grid_w = math.ceil(height / step), math.ceil(width / step)
    dim = loaded.embed_dim
    layout = sharded_layout(
        "clip_dense",
        len(images),
        rows_per_chunk(2 * grid_h * grid_w * dim, params.cache.chunk_mb, len(images)),
        {
            "features": ArraySpec((grid_h, grid_w, dim), "float16"),
            "extent": ArraySpec((2,), "int32"),
            "image_size": ArraySpec((2,), "int32"),
        },
        params.cache.images_per_file,
    )
    attrs = {
        "image_ids": images.ids,
        "splits": images.splits,
        "dataset": params.dataset,
        "model_name": loaded.model_name,
        "weights_source": loaded.source,
        "weights_sha256": loaded.sha256,
        "dense_mode": params.clip.dense_mode,
        "precision": precision,
        "input_size": "original image size (sliding windows above clip.window)",
        "feature_stride": step,
        "embed_dim": dim,
        "params": {
            "clip": {k: getattr(params.clip, k) for k in ("model", "pretrained", "dense_mode", "window", "stride")}
        },
    }
    store = ChunkedStore.open(
        out,
        layout,
        dense_parts(params, loaded.identity, images, precision),
        attrs,
        stage="clip-dense",
        clevel=params.cache.clevel,
        rebuild=rebuild,
        shard=shard,
    )
    pending = store.pending(shard)

    def read_unit(unit: int) -> list[np.ndarray]:
        start, stop = layout.unit_rows(unit)
        return [images.read_image(row) for row in range(start, stop)]

    total = layout.num_units
    # Progress in images: a work unit (one shard) holds up to hundreds of them.
    done_rows = layout.rows - sum(stop - start for start, stop in map(layout.unit_rows, pending))
    progress = tqdm(total=layout.rows, initial=done_rows, desc=f"clip_dense ({device.type}, {precision})", unit="image")
    # Decoding the next unit's JPEGs overlaps with the forward passes of this one.
    with progress, ThreadPoolExecutor(max_workers=1) as reader:
        upcoming = reader.submit(read_unit, pending[0]) if pending else None
        for position, unit in enumerate(pending):
            pixels = upcoming.result()
            if position + 1 < len(pending):
                upcoming = reader.submit(read_unit, pending[position + 1])
            features = padded_dense_features(
                loaded.model,
                pixels,
                loaded.mean,
                loaded.std,
                shape=(grid_h, grid_w, dim),
                window=params.clip.window,
                stride=params.clip.stride,
                mode=params.clip.dense_mode,
                batch_size=params.clip.batch_size,
                device=device,
                progress=progress.update,  # a batch at a time: a unit holds hundreds of images
                precision=precision,
            )
            image_size = np.array([image.shape[:2] for image in pixels], np.int32)
            extent = np.array([[math.ceil(h / step), math.ceil(w / step)] for h, w in image_size], np.int32)
            store.write_unit(unit, {"features": features, "extent": extent, "image_size": image_size})
    return StageResult(str(out), layout.rows, len(pending), total, store.finish())
