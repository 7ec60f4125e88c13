"""Read speed of image stores, sharded (format 3) against unsharded (format 2) with the same content (issue 12).

For each store: the median time of ``store.image(i)`` for random rows (what a random-access reader pays), and
the time per image of reading a whole split in order with ``iter_images`` (the training loader's path). The
stores are opened once; the page cache is warmed by one untimed pass.

    python benchmarks/bench_shard_reads.py /work/main/data/cache/clip_dense.zarr /tmp/sharded/clip_dense.zarr

``--copy-sharded SRC DST`` first writes a sharded (format 3) copy of an unsharded store, same rows and chunks,
shards as the stages lay them out (``cache.images_per_file`` 64), through the stages' writer.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import zarr

import clips4.cache
from clips4.cache.store import ArraySpec, ChunkedStore, sharded_layout

#: Attributes the writer sets itself (not copied from the source store).
_WRITER_ATTRS = ("kind", "format", "fingerprint", "fingerprint_parts", "rows", "rows_per_chunk", "rows_per_shard")
_WRITER_ATTRS += ("complete", "created", "completed", "clips4_version", "arrays", "row_arrays")


def copy_sharded(source: str, target: str, images_per_file: int = 64) -> int:
    """Write a sharded copy of the unsharded image store ``source``; returns its rows per shard."""
    group = zarr.open_group(source, mode="r")
    attrs = dict(group.attrs.asdict())
    rows = int(attrs["rows"])
    names = [name for name, array in group.arrays() if name != "done" and array.shape[0] == rows]
    arrays = {name: ArraySpec(tuple(group[name].shape[1:]), str(group[name].dtype)) for name in names}
    layout = sharded_layout(attrs["kind"], rows, int(attrs["rows_per_chunk"]), arrays, images_per_file)
    kept = {key: value for key, value in attrs.items() if key not in _WRITER_ATTRS}
    store = ChunkedStore.open(target, layout, {"copy_of": attrs.get("fingerprint")}, kept, stage=attrs["kind"])
    for unit in store.pending():
        start, stop = layout.unit_rows(unit)
        store.write_unit(unit, {name: np.asarray(group[name][start:stop]) for name in names})
    store.finish()
    return layout.rows_per_shard


def measure(path: str, rows: np.ndarray, split: str, repeat: int) -> dict:
    store = clips4.cache.open(path)
    for row in rows[:50]:  # warm-up: page cache and zarr's codec pipeline
        store.image(int(row))
    random_ms = []
    for row in rows:
        start = time.perf_counter()
        store.image(int(row))
        random_ms.append(1e3 * (time.perf_counter() - start))
    in_order = []
    for _ in range(repeat):
        start = time.perf_counter()
        count = sum(1 for _ in store.iter_images(split))
        in_order.append(1e3 * (time.perf_counter() - start) / count)
    return {
        "store": path,
        "sharded": "rows_per_shard" in store.attrs,
        "rows_per_chunk": store.rows_per_chunk,
        "rows_per_shard": store.rows_per_shard,
        "random_image_ms_median": round(statistics.median(random_ms), 3),
        "in_order_ms_per_image_best": round(min(in_order), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stores", nargs="+", help="image stores with the same rows")
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--split", default="val", help="the split read in order")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--copy-sharded", nargs=2, metavar=("SRC", "DST"), help="first write a sharded copy")
    args = parser.parse_args()
    if args.copy_sharded:
        print(f"{args.copy_sharded[1]}: {copy_sharded(*args.copy_sharded)} rows per shard")
    rows = np.random.default_rng(0).integers(0, clips4.cache.open(args.stores[0]).num_rows, args.reads)
    # Interleaved rounds, so a busy machine slows every store alike.
    results: dict[str, list[dict]] = {path: [] for path in args.stores}
    for _ in range(2):
        for path in args.stores:
            results[path].append(measure(path, rows, args.split, args.repeat))
    for rounds in results.values():
        best = min(rounds, key=lambda r: r["random_image_ms_median"])
        best["in_order_ms_per_image_best"] = min(r["in_order_ms_per_image_best"] for r in rounds)
        print(best)


if __name__ == "__main__":
    main()
