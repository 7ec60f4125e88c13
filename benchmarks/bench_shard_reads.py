"""Read speed of image stores, sharded (format 3) against unsharded (format 2) with the same content (issue 12).

For each store: the median time of ``store.image(i)`` for random rows (what a random-access reader pays), and
the time per image of reading a whole split in order with ``iter_images`` (the training loader's path). The
stores are opened once; the page cache is warmed by one untimed pass.

    python benchmarks/bench_shard_reads.py /work/main/data/cache/clip_dense.zarr /tmp/sharded/clip_dense.zarr

``--copy-sharded SRC DST`` first writes a sharded (format 3) copy of an unsharded store, same rows and chunks,
shards as the stages lay them out (``cache.images_per_file`` 64), through the stages' writer.

``--checksums DIR`` measures what store format 4's checks cost (issue 22). It writes a synthetic clip_dense store
(``--images`` rows of 12x12x128 float16 unit vectors, the synthetic world's shape and layout: chunks of 6 images,
shards as ``cache.images_per_file`` 64 lays them out) twice through the stages' writer, with the CRC-32C codec in
every chunk and without it (everything else equal), and reports: the write time of each, the time spent recording
each unit's file sizes and CRC-32 (reading the files back), random and in-order reads of each, the check a resumed
writer makes of a complete store (a no-change rerun), a full hash of the files, and ``cache verify``:

    python benchmarks/bench_shard_reads.py --checksums /tmp/bench_checksums
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import zarr

import clips4.cache
import clips4.cache.store as store_module
from clips4.cache.api import verify_store
from clips4.cache.integrity import damaged_units
from clips4.cache.store import ArraySpec, ChunkedStore, rows_per_chunk, sharded_layout

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


#: The synthetic world's dense features: a 12x12 grid of 128-d float16 vectors per image, 500 val images.
GRID, DIM, VAL = 12, 128, 500


def _synthetic_layout(images: int):
    arrays = {
        "features": ArraySpec((GRID, GRID, DIM), "float16"),
        "extent": ArraySpec((2,), "int32"),
        "image_size": ArraySpec((2,), "int32"),
    }
    return sharded_layout("clip_dense", images, rows_per_chunk(GRID * GRID * DIM * 2, 0.25, images), arrays, 64)


def _unit(layout, unit: int) -> dict[str, np.ndarray]:
    start, stop = layout.unit_rows(unit)
    features = np.random.default_rng(unit).standard_normal((stop - start, GRID, GRID, DIM)).astype(np.float32)
    features /= np.linalg.norm(features, axis=-1, keepdims=True)
    extent = np.full((stop - start, 2), GRID, np.int32)
    return {"features": features.astype(np.float16), "extent": extent, "image_size": extent * 8}


@contextlib.contextmanager
def _chunk_crc(enabled: bool, record_s: list[float]) -> Iterator[None]:
    """The writer with or without the CRC-32C codec in every chunk; the time spent recording files, in record_s."""
    codecs, record = store_module._codecs, store_module.unit_record

    def timed_record(group, unit):
        start = time.perf_counter()
        try:
            return record(group, unit)
        finally:
            record_s.append(time.perf_counter() - start)

    store_module.unit_record = timed_record
    if not enabled:
        store_module._codecs = lambda clevel: [store_module._compressor(clevel)]
    try:
        yield
    finally:
        store_module._codecs, store_module.unit_record = codecs, record


def write_synthetic(path: str, images: int, chunk_crc: bool) -> dict:
    """Write the synthetic store at ``path`` (replacing it); the write and record times."""
    shutil.rmtree(path, ignore_errors=True)
    layout = _synthetic_layout(images)
    attrs = {
        "image_ids": [f"im{i:06d}" for i in range(images)],
        "splits": {"train": [0, images - VAL], "val": [images - VAL, images]},
        "feature_stride": 8,
        "embed_dim": DIM,
    }
    record_s: list[float] = []
    write_s = 0.0
    with _chunk_crc(chunk_crc, record_s):
        store = ChunkedStore.open(path, layout, {"bench": "checksums"}, attrs, stage="clip-dense")
        for unit in store.pending():
            data = _unit(layout, unit)  # not timed: what a stage computes
            start = time.perf_counter()
            store.write_unit(unit, data)
            write_s += time.perf_counter() - start
        assert store.finish()
    stored = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    return {"write_s": write_s, "record_s": sum(record_s), "units": layout.num_units, "stored_mb": stored / 1e6}


def _best(function, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def measure_checksums(folder: str, images: int, reads: int, repeat: int) -> None:
    """Format 4 with the chunk CRC-32C against the same writer without it (see the module's doc)."""
    paths = {"crc32c": f"{folder}/with_crc32c.zarr", "none": f"{folder}/without.zarr"}
    writes: dict[str, list[dict]] = {name: [] for name in paths}
    for round_ in range(3):  # interleaved, in turn first, so a busy machine slows both alike; best of 3
        for name, path in sorted(paths.items(), reverse=bool(round_ % 2)):
            writes[name].append(write_synthetic(path, images, chunk_crc=name == "crc32c"))
    for name, rounds in writes.items():
        best = min(rounds, key=lambda r: r["write_s"])
        print(
            f"write, chunk CRC-32C {'on ' if name == 'crc32c' else 'off'}: {best['write_s']:.2f} s for {images} "
            f"images ({best['units']} units, {best['stored_mb']:.1f} MB), of which recording the files' sizes and "
            f"CRC-32: {best['record_s']:.3f} s"
        )
    rows = np.random.default_rng(0).integers(0, images, reads)
    results: dict[str, list[dict]] = {name: [] for name in paths}
    for round_ in range(2):
        for name, path in sorted(paths.items(), reverse=bool(round_ % 2)):
            results[name].append(measure(path, rows, "val", repeat))
    for name, rounds in results.items():
        random_ms = min(r["random_image_ms_median"] for r in rounds)
        in_order = min(r["in_order_ms_per_image_best"] for r in rounds)
        state = "on " if name == "crc32c" else "off"
        print(
            f"read, chunk CRC-32C {state}: random image(i) median {random_ms:.3f} ms, in order {in_order:.3f} ms/image"
        )
    path, layout = paths["crc32c"], _synthetic_layout(images)
    group = zarr.open_group(path, mode="r")
    resume = _best(lambda: ChunkedStore.open(path, layout, {"bench": "checksums"}, {}, stage="clip-dense"), repeat)
    print(f"no-change resume check (ChunkedStore.open of the complete store, stat + record): {resume:.3f} s")
    for hashing in ("never", "if-modified", "always"):
        seconds = _best(lambda h=hashing: damaged_units(group, hashing=h), repeat)
        print(f"  damaged_units(hashing={hashing!r}): {seconds:.3f} s")
    print(f"cache verify (hash + decode everything): {_best(lambda: verify_store(path), 1):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stores", nargs="*", help="image stores with the same rows")
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--split", default="val", help="the split read in order")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--copy-sharded", nargs=2, metavar=("SRC", "DST"), help="first write a sharded copy")
    parser.add_argument("--checksums", metavar="DIR", help="measure store format 4's checks in DIR (see above)")
    parser.add_argument("--images", type=int, default=6500, help="rows of the --checksums store")
    args = parser.parse_args()
    if args.checksums:
        Path(args.checksums).mkdir(parents=True, exist_ok=True)
        measure_checksums(args.checksums, args.images, args.reads, args.repeat)
        return
    if not args.stores:
        parser.error("give image stores, or --checksums DIR")
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
