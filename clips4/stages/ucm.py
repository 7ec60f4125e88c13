"""The ``ucm`` stage: OWT-UCM over every contour map, cut into superpixels, into data/cache/superpixels.zarr;
plus the quality of contours and superpixels on the val split's ground truth (reports/segments.json, figures;
``reports_dir`` elsewhere).

Layout (rows = images in the order of contours.zarr, padded like it):

- ``ucm``         float32 [N, 2, H, W]  UCM strength of each pixel edge: [0] between (y, x) and (y, x+1),
                                        [1] between (y, x) and (y+1, x); re-cut at any level with
                                        ``clips4.superpixels.ucm.labels_from_saliency`` (float32: the
                                        exact levels, so a re-cut equals the hierarchy's own cut)
- ``labels``      int32   [N, H, W]     superpixel ids 0..n-1 (-1 outside the image)
- ``num_regions`` int32   [N]           superpixels per image
- ``extent``      int32   [N, 2]        (height, width) of each image
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clips4.cache.api import open_complete
from clips4.cache.store import ArraySpec, ChunkedStore, code_digest, rows_per_chunk, sharded_layout
from clips4.params import Params
from clips4.paths import REPORTS_DIR
from clips4.stages.common import CONTOURS_STORE, SUPERPIXELS_STORE, StageResult, fill_units, store_or_default


def run_ucm(
    params: Params,
    contours: str | Path | None = None,
    out: str | Path | None = None,
    *,
    workers: int = 0,
    shard: tuple[int, int] = (0, 1),
    rebuild: bool = False,
    reports_dir: str | Path | None = None,
) -> StageResult:
    """OWT-UCM and superpixels for every image of the contours store; resumes an interrupted store (a stale one
    holding finished work is replaced only with ``rebuild``). When complete, the quality report and its figures
    go to ``reports_dir``. The defaults are the project's: data/cache/contours.zarr, data/cache/superpixels.zarr
    and reports/, beside the params file."""
    from clips4.superpixels.ucm import superpixel_rows

    contours = store_or_default(params, contours, CONTOURS_STORE)
    out = store_or_default(params, out, SUPERPIXELS_STORE)
    reports_dir = params.project_path(REPORTS_DIR) if reports_dir is None else reports_dir

    source = open_complete(contours, "contours", stage="contours")
    rows = source.num_rows
    height, width = source.arrays["strength"].shape[1:]
    cut = {"regions": params.ucm.regions, "threshold": params.ucm.threshold}
    layout = sharded_layout(
        "superpixels",
        rows,
        rows_per_chunk(4 * 2 * height * width + 4 * height * width, params.cache.chunk_mb, rows),
        {
            "ucm": ArraySpec((2, height, width), "float32"),
            "labels": ArraySpec((height, width), "int32"),
            "num_regions": ArraySpec((), "int32"),
            "extent": ArraySpec((2,), "int32"),
        },
        params.cache.images_per_file,
    )
    parts = {
        "kind": "superpixels",
        "inputs": {"contours": source.attrs["fingerprint"]},
        "ucm": cut,
        "code": code_digest("clips4.superpixels.ucm", "clips4.stages.ucm"),
    }
    attrs = {
        "image_ids": source.attrs["image_ids"],
        "splits": source.attrs["splits"],
        "dataset": source.attrs["dataset"],
        "params": {"ucm": cut},
        "inputs": {"contours": {"path": str(contours), "fingerprint": source.attrs["fingerprint"]}},
    }
    store = ChunkedStore.open(
        out, layout, parts, attrs, stage="ucm", clevel=params.cache.clevel, rebuild=rebuild, shard=shard
    )

    def compute(start: int, stop: int) -> dict[str, np.ndarray]:
        contour_maps = (contour_map for _, contour_map in source.iter_rows(start, stop))
        return superpixel_rows(contour_maps, stop - start, (height, width), **cut)

    pending = store.pending(shard)
    fill_units(store, pending, compute, workers=workers, desc="ucm")
    complete = store.finish()
    if complete:
        from clips4.report.superpixel_quality import write_quality_report

        write_quality_report(params, source, open_complete(out, "superpixels", stage="ucm"), Path(reports_dir))
    return StageResult(str(out), rows, len(pending), layout.num_units, complete)
