"""Read speed of image stores, sharded (format 3) against unsharded (format 2) with the same content (issue 12).

For each store: the median time of ``store.image(i)`` for random rows (what a random-access reader pays), and
the time per image of reading a whole split in order with ``iter_images`` (the training loader's path). The
stores are opened once; the page cache is warmed by one untimed pass.

    python benchmarks/bench_shard_reads.py /work/main/data/cache/clip_dense.zarr /tmp/sharded/clip_dense.zarr
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import clips4.cache


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
    args = parser.parse_args()
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
