"""The ``contours`` stage: the boundary map of every train and val image, into data/cache/contours.zarr.

Layout (rows = images, train then val; images of different sizes are padded at the bottom and right to the
largest, and ``extent`` says how much of each row is image):

- ``strength``    float16 [N, H, W]  thinned boundary strength in [0, 1]
- ``orientation`` float16 [N, H, W]  angle of the boundary normal in [0, pi) where strength > 0, else 0
- ``extent``      int32   [N, 2]     (height, width) of each image
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from clips4.cache.store import ArraySpec, ChunkedStore, code_digest, rows_per_chunk, sharded_layout
from clips4.params import Params
from clips4.stages.common import CONTOURS_STORE, ImageList, StageResult, fill_units, image_list, store_or_default


def contours_parts(params: Params, images: ImageList) -> dict[str, Any]:
    """What contours.zarr depends on (see ``ChunkedStore.open``)."""
    weights = None
    if params.contours.method == "hed" and params.contours.hed_weights and Path(params.contours.hed_weights).is_file():
        from clips4.clip.loading import file_sha256

        weights = file_sha256(params.contours.hed_weights)
    return {
        "kind": "contours",
        "contours": params.contours,
        "hed_weights_sha256": weights,
        "images": images.identity(),
        "code": code_digest(
            *(f"clips4.superpixels.{name}" for name in ("contours", "pmi", "hed", "nms", "types")),
            "clips4.stages.contours",
        ),
    }


def run_contours(
    params: Params,
    out: str | Path | None = None,
    *,
    workers: int = 0,
    shard: tuple[int, int] = (0, 1),
    rebuild: bool = False,
) -> StageResult:
    """Detect contours (``contours.method``) on every image into ``out`` (default: the project's
    data/cache/contours.zarr); resumes an interrupted store, and replaces a stale one that holds finished work only
    with ``rebuild``."""
    from clips4.superpixels.contours import contour_rows

    out = store_or_default(params, out, CONTOURS_STORE)

    if params.contours.method == "hed":  # fail on missing weights before any work, with the weights' help
        from clips4.superpixels.hed import load_hed

        load_hed(params.contours.hed_weights)
    images = image_list(params)
    height, width = images.max_size()
    layout = sharded_layout(
        "contours",
        len(images),
        rows_per_chunk(2 * 2 * height * width, params.cache.chunk_mb, len(images)),
        {
            "strength": ArraySpec((height, width), "float16"),
            "orientation": ArraySpec((height, width), "float16"),
            "extent": ArraySpec((2,), "int32"),
        },
        params.cache.images_per_file,
    )
    attrs = {
        "image_ids": images.ids,
        "splits": images.splits,
        "dataset": params.dataset,
        "params": {"contours": params.contours},
    }
    store = ChunkedStore.open(
        out,
        layout,
        contours_parts(params, images),
        attrs,
        stage="contours",
        clevel=params.cache.clevel,
        rebuild=rebuild,
        shard=shard,
    )

    def compute(start: int, stop: int) -> dict[str, np.ndarray]:
        return contour_rows(map(images.read_image, range(start, stop)), stop - start, (height, width), params.contours)

    pending = store.pending(shard)
    # HED runs torch, which parallelises itself and must not be forked after initialisation: one process.
    workers = 1 if params.contours.method == "hed" else workers
    fill_units(store, pending, compute, workers=workers, desc=f"contours ({params.contours.method})")
    return StageResult(str(out), layout.rows, len(pending), layout.num_units, store.finish())
