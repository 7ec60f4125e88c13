"""Cache benchmarks: stage memory against dataset size, random-access reads against recomputing, compression.

    python benchmarks/bench_caches.py                          # all three parts, worlds of 400+100 and 1600+400
    python benchmarks/bench_caches.py --sizes 200:50 800:200   # smaller worlds (train:val images)
    python benchmarks/bench_caches.py --only speed compression # skip the stage runs
    python benchmarks/bench_caches.py --reads 500 --recompute 100 --real-images 8 --keep
    python benchmarks/bench_caches.py --only integrity           # fingerprint hashing, chunk listing, verify

Run from anywhere; ``--project`` (default: this repository) is where the full synthetic world, its stores and
``models/clip.pt`` are read from (read-only).

1. Memory. For each world size, a fresh project folder under /tmp gets a params.yaml (``synth`` sizes, defaults
   otherwise) and a copy of models/clip.pt, and ``clips4 synth``, ``contours``, ``ucm``, ``clip-dense`` and
   ``segments`` run there as subprocesses (``--workers N`` where the command has it). For every stage it reports
   ``ru_maxrss`` from ``os.wait4`` on that one child, taken by a ~10 MB launcher process (see ``LAUNCHER``:
   called straight from here, the child would inherit this process's RSS high-water mark): the kernel's peak RSS
   of the *largest single process* of the stage's tree (the command and its forked, joined pool workers), not a
   sum. Alongside, a sampler (psutil, every ``--sample-ms``) records the peak RSS of the main process, of the
   largest worker, and the peak over time of the tree's summed PSS (shared copy-on-write pages split between the
   processes that map them: the tree's total footprint). The ratio large/small world is the growth in memory for
   4x the images (target <= 1.2). Two extra rows per world: ``(imports)``, the memory floor of clip-dense
   (python importing clips4.clip, i.e. torch and open_clip), and ``segments`` rerun from scratch with
   ``MALLOC_ARENA_MAX=1`` (``--no-arena-check`` skips it), which separates glibc per-thread-arena growth in the
   workers (zarr decodes in its own threads) from memory that follows the data.
2. Read speed. Random-access reads of one image's dense features (``clips4.cache.open(...).image(i)``, and the
   raw Zarr slice ``features[i]`` of an array opened once) against recomputing them as the clip_dense stage does
   (read the JPEG, ``to_rgb_batch``, ``normalize_images``, forward at batch 1, float16), for (a) the synthetic
   world's store with the tiny CLIP, and (b) a real-size case: ViT-B-16 with random weights on 500x375 JPEGs in
   the Pascal VOC layout, its store written by ``run_clip_dense`` itself (sliding windows of ``clip.window`` /
   ``clip.stride``; ``load_clip`` is patched to hand the stage the random model, so no checkpoint is needed).
   Reads are from a warm page cache. Target: recompute / read >= 5. A check line compares one recomputed row with
   the stored one and counts NaN grid cells in the stored features.
3. Compression: raw bytes / stored bytes (``zarr.Array.nbytes_stored()``) of every array of every store under
   ``<project>/data/cache`` and of the ViT-B-16 store (the ``done`` bookkeeping array is left out, as in
   ``clips4 cache info``).

4. Integrity. The cost of the content fingerprint of the image files (``ImageList.identity``: sha256 of every
   image file's bytes, streamed; the page cache is warm after the first of ``--hash-repeats`` runs) against the
   former size+mtime ``os.stat`` identity; the cost of checking that every chunk marked done has its file (one key
   listing per array, as every writer, ``open_for_reading`` and ``cache info`` do) and of ``cache verify`` (decode
   every chunk) for each store under ``<project>/data/cache``.

Prints tables; exits 0 (1 only when a stage command fails). Temporary folders are removed unless ``--keep``.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
STAGES = ("synth", "contours", "ucm", "clip-dense", "segments")
WORKER_STAGES = {"synth", "contours", "ucm", "segments"}  # the commands with --workers
IMPORTS = "(imports)"  # python -c "import clips4.clip, clips4.stages.clip_dense, zarr": torch + open_clip
#: segments again (store removed first) with glibc limited to one malloc arena: tells allocator growth from data
ARENA = "segments (MALLOC_ARENA_MAX=1)"
TARGET_STAGES = ("clip-dense", "segments", ARENA)
MB = 1024 * 1024


# --- 1. memory ---------------------------------------------------------------------------------------------------


@dataclass
class StageRun:
    stage: str
    seconds: float
    returncode: int
    maxrss: int  # bytes, ru_maxrss of the child (largest single process of its tree)
    main_rss: int  # sampled peak RSS of the command's own process
    worker_rss: int  # sampled peak RSS of the largest descendant (0: none seen)
    tree_pss: int  # sampled peak of the tree's summed PSS
    processes: int  # most processes seen at once


class TreeSampler(threading.Thread):
    """Samples RSS and PSS of the descendants of ``pid`` (the launcher, itself left out) until stopped.

    The stage command is the launcher's direct child ("main"); its descendants are the forked workers.
    """

    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.stop = threading.Event()
        self.main_rss = self.worker_rss = self.tree_pss = self.processes = 0

    def run(self) -> None:
        import psutil

        try:
            launcher = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self.stop.is_set():
            try:
                direct = {p.pid for p in launcher.children()}
                procs = launcher.children(recursive=True)
            except psutil.NoSuchProcess:
                return
            pss = 0
            for proc in procs:
                try:
                    info = proc.memory_full_info()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                pss += info.pss
                if proc.pid in direct:
                    self.main_rss = max(self.main_rss, info.rss)
                else:
                    self.worker_rss = max(self.worker_rss, info.rss)
            self.tree_pss = max(self.tree_pss, pss)
            self.processes = max(self.processes, len(procs))
            self.stop.wait(self.interval)


#: A small Python process between the benchmark and the stage. Linux keeps, through fork + exec, the RSS high-water
#: mark of the process that forked (signal->maxrss records the old mm at exec), so a stage spawned straight from this
#: benchmark (torch imported: ~500 MB) would report at least that. The launcher is ~10 MB: the stage's ru_maxrss,
#: read by the launcher's own wait4 on it, is then the stage's own (max over its tree: joined pool workers count).
LAUNCHER = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], "w") as handle:
    handle.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _dense_features(loaded, images, params, device):
    """CLIP's float16 dense features ``[h, w, D]`` of same-size images, as the clip_dense stage computes them."""
    import numpy as np

    from clips4.clip.dense import dense_features_batch

    clip = params.clip
    return list(
        dense_features_batch(
            loaded.model,
            np.stack(images),
            loaded.mean,
            loaded.std,
            window=clip.window,
            stride=clip.stride,
            mode=clip.dense_mode,
            device=device,
        )
    )


def clips4_command() -> list[str]:
    script = Path(sys.executable).with_name("clips4")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "clips4.cli"]


def stage_command(stage: str, workers: int) -> list[str]:
    if stage == IMPORTS:  # what clip-dense imports before it computes anything: its memory floor
        return [sys.executable, "-c", "import clips4.clip, clips4.stages.clip_dense, zarr"]
    name = stage.split(" ")[0]
    return [*clips4_command(), name, *(["--workers", str(workers)] if name in WORKER_STAGES else [])]


def run_stage(stage: str, cwd: Path, workers: int, sample_s: float, env: dict[str, str] | None = None) -> StageRun:
    """Run ``clips4 <stage>`` in ``cwd`` under the launcher; its rusage comes from a wait4 on exactly that child."""
    command = stage_command(stage, workers)
    slug = stage.replace(" ", "_").replace("=", "-").strip("()")
    log, rss_file = cwd / f"{slug}.log", cwd / f"{slug}.maxrss"
    with open(log, "w") as handle:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-S", "-c", LAUNCHER, str(rss_file), *command],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        sampler = TreeSampler(proc.pid, sample_s)
        sampler.start()
        proc.wait()
        seconds = time.perf_counter() - started
        sampler.stop.set()
        sampler.join()
    if proc.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        print(f"!! `{' '.join(command)}` in {cwd} exited {proc.returncode}; last lines of {log}:\n{tail}")
    maxrss_kb = int(rss_file.read_text()) if rss_file.is_file() else 0  # Linux reports kilobytes
    return StageRun(
        stage,
        seconds,
        proc.returncode,
        maxrss_kb * 1024,
        sampler.main_rss,
        sampler.worker_rss,
        sampler.tree_pss,
        sampler.processes,
    )


def report_run(train: int, val: int, run: StageRun) -> None:
    print(
        f"  [{train}+{val}] {run.stage}: {run.seconds:.1f} s, maxrss {run.maxrss / MB:.0f} MB, "
        f"tree PSS {run.tree_pss / MB:.0f} MB",
        flush=True,
    )


def memory_part(args: argparse.Namespace, scratch: Path) -> bool:
    checkpoint = args.project / "models" / "clip.pt"
    results: dict[tuple[int, int], dict[str, StageRun]] = {}
    ok = True
    for train, val in args.sizes:
        folder = scratch / f"world_{train}_{val}"
        (folder / "models").mkdir(parents=True)
        (folder / "params.yaml").write_text(f"synth:\n  train_images: {train}\n  val_images: {val}\n")
        shutil.copy2(checkpoint, folder / "models" / "clip.pt")
        runs: dict[str, StageRun] = {}
        for stage in STAGES:
            run = run_stage(stage, folder, args.workers, args.sample_ms / 1000)
            runs[stage] = run
            report_run(train, val, run)
            if run.returncode != 0:
                ok = False
                break
        if ok and args.arena_check:
            shutil.rmtree(folder / "data" / "cache" / "segments.zarr")
            runs[ARENA] = run_stage(ARENA, folder, args.workers, args.sample_ms / 1000, {"MALLOC_ARENA_MAX": "1"})
            report_run(train, val, runs[ARENA])
        if ok:
            runs[IMPORTS] = run_stage(IMPORTS, folder, args.workers, args.sample_ms / 1000)
            report_run(train, val, runs[IMPORTS])
        results[(train, val)] = runs
        if not ok:
            return False

    sizes = list(results)
    print()
    print(f"Peak memory per stage (MB; workers {args.workers}; psutil sampled every {args.sample_ms:g} ms)")
    print(
        "  maxrss    = ru_maxrss from a launcher's os.wait4(stage): the largest single process of the stage's tree "
        "(exact)"
    )
    print("  main/wkr  = sampled peak RSS of the command's process / of its largest forked worker (0: no worker)")
    print("  tree PSS  = sampled peak of the summed PSS of all processes of the tree (COW pages shared out)")
    print(f"  {IMPORTS} = python -c 'import clips4.clip, clips4.stages.clip_dense, zarr' (torch, open_clip): a floor")
    print(f"  {ARENA} = segments rerun from scratch with glibc limited to one malloc arena")
    header = f"{'stage':29s}"
    for train, val in sizes:
        label = f"{train}+{val}"
        header += f" | {label + ' s':>10s} {'maxrss':>7s} {'main':>6s} {'wkr':>6s} {'treePSS':>7s} {'procs':>5s}"
    if len(sizes) >= 2:
        header += f" | {'maxrss ratio':>12s} {'PSS ratio':>9s}"
    print(header)
    print("-" * len(header))
    for stage in (*STAGES, ARENA, IMPORTS):
        if not any(stage in runs for runs in results.values()):
            continue
        line = f"{stage:29s}"
        for size in sizes:
            run = results[size].get(stage)
            if run is None:
                line += f" | {'-':>10s} {'-':>7s} {'-':>6s} {'-':>6s} {'-':>7s} {'-':>5s}"
                continue
            line += (
                f" | {run.seconds:10.1f} {run.maxrss / MB:7.0f} {run.main_rss / MB:6.0f} "
                f"{run.worker_rss / MB:6.0f} {run.tree_pss / MB:7.0f} {run.processes:5d}"
            )
        if len(sizes) >= 2 and stage in results[sizes[0]] and stage in results[sizes[-1]]:
            small, large = results[sizes[0]][stage], results[sizes[-1]][stage]
            verdict = (
                ""
                if stage not in TARGET_STAGES
                else ("  ok" if large.maxrss <= 1.2 * small.maxrss else "  MISS (>1.2)")
            )
            line += f" | {large.maxrss / small.maxrss:12.2f} {large.tree_pss / max(1, small.tree_pss):9.2f}{verdict}"
        print(line)
    if len(sizes) >= 2:
        (t0, v0), (t1, v1) = sizes[0], sizes[-1]
        print(
            f"ratio = {t1 + v1} images / {t0 + v0} images ({(t1 + v1) / (t0 + v0):.1f}x); target <= 1.2 for "
            "clip-dense and segments"
        )
    return True


# --- 2. read speed -----------------------------------------------------------------------------------------------


def time_each(fn: Callable[[Any], Any], items: Sequence[Any], warmup: int = 2) -> np.ndarray:
    """Milliseconds of ``fn(item)`` for each item (after ``warmup`` untimed calls)."""
    for item in items[:warmup]:
        fn(item)
    times = []
    for item in items:
        started = time.perf_counter()
        fn(item)
        times.append((time.perf_counter() - started) * 1000)
    return np.array(times)


def fmt(times: np.ndarray) -> str:
    return f"{np.median(times):9.2f} {times.mean():9.2f} {len(times):5d}"


def speed_table(title: str, rows: list[tuple[str, np.ndarray]], read: str, recompute: str) -> None:
    print()
    print(title)
    print(f"  {'operation':54s} {'median ms':>9s} {'mean ms':>9s} {'n':>5s}")
    for name, times in rows:
        print(f"  {name:54s} {fmt(times)}")
    timed = dict(rows)
    for reader in (read, "raw zarr features[i] (array opened once)"):
        if reader in timed:
            ratio = np.median(timed[recompute]) / np.median(timed[reader])
            verdict = "ok" if ratio >= 5 else "MISS (< 5x)"
            print(f"  recompute / read, {reader.split(' (')[0]}: {ratio:.2f}x (median)  target >= 5x: {verdict}")


def dense_params(store: Any, dataset_root: Path) -> Any:
    from clips4.params import params_from_dict

    dataset = dict(store.attrs["dataset"])
    dataset["root"] = str(dataset_root)
    return params_from_dict({"dataset": dataset, "clip": dict(store.attrs["params"]["clip"])})


def read_rows(store: Any, features: Any, rows: Sequence[int], recompute_rows: Sequence[int], recompute: Callable):
    """The timings shared by both cases: cache API, raw slice, whole chunk, recompute (with its parts)."""
    per_chunk = store.rows_per_chunk

    def whole_chunk(row: int) -> Any:
        start = row - row % per_chunk
        return features[start : min(start + per_chunk, store.num_rows)]

    group = store.group
    chunk_times = time_each(whole_chunk, rows)
    return [
        ("cache API: clips4.cache.open(p).image(i)", time_each(store.image, rows)),
        ("  API parts: row_done: group['done'][chunk]", time_each(store.row_done, rows)),
        ("  API parts: group['features'] (opens array metadata)", time_each(lambda r: group["features"], rows)),
        ("  API parts: group['extent'][i] (open + 8-byte read)", time_each(lambda r: group["extent"][r], rows)),
        ("raw zarr features[i] (array opened once)", time_each(lambda r: features[r], rows)),
        (f"raw zarr, i's whole chunk ({per_chunk} rows)", chunk_times),
        ("(reference) sequential, chunk order: whole chunk / rows", chunk_times / per_chunk),
        *recompute(recompute_rows),
    ]


def recompute_timings(loaded: Any, images: Any, params: Any, rows: Sequence[int]) -> list[tuple[str, np.ndarray]]:
    import torch

    device = torch.device("cpu")
    pixels = {row: images.read_image(row) for row in rows[:1]}
    return [
        ("  of which: read JPEG", time_each(images.read_image, rows)),
        (
            "  of which: forward (rgb, normalize, dense, fp16)",
            time_each(lambda r: _dense_features(loaded, [pixels[rows[0]]], params, device), [rows[0]] * len(rows)),
        ),
        (
            "recompute: read JPEG + forward at batch 1",
            time_each(lambda r: _dense_features(loaded, [images.read_image(r)], params, device), rows),
        ),
    ]


def check_equal(store: Any, loaded: Any, images: Any, params: Any, row: int) -> str:
    """Recomputed vs stored features of one row, and any NaN grid cells in the stored ones."""
    import torch

    fresh = _dense_features(loaded, [images.read_image(row)], params, torch.device("cpu"))[0].astype(np.float32)
    stored = store.image(row).astype(np.float32)
    both = ~(np.isnan(fresh) | np.isnan(stored))
    difference = float(np.abs(fresh - stored)[both].max()) if both.any() else float("nan")
    bad = np.isnan(stored).any(axis=-1)
    text = f"max |recomputed - stored| on row {row}: {difference:.4f}"
    if bad.any():
        columns = sorted({int(c) for c in np.nonzero(bad)[1]})
        rows = sorted({int(r) for r in np.nonzero(bad)[0]})
        text += (
            f"; NaN in {int(bad.sum())} of {bad.size} stored grid cells (grid rows {rows[0]}..{rows[-1]}, "
            f"columns {columns}; recomputed: {int(np.isnan(fresh).any(axis=-1).sum())} NaN cells)"
        )
    return text


def speed_synth(args: argparse.Namespace, rng: np.random.Generator) -> None:
    import zarr

    import clips4.cache
    from clips4.clip import load_clip
    from clips4.stages.common import image_list

    path = args.project / "data" / "cache" / "clip_dense.zarr"
    store = clips4.cache.open(str(path))
    features = zarr.open_array(str(path / "features"), mode="r")
    params = dense_params(store, args.project / store.attrs["dataset"]["root"])
    loaded = load_clip(store.attrs["model_name"], str(args.project / "models" / "clip.pt"))
    loaded.model.eval()
    images = image_list(params)
    if images.ids != store.image_ids:
        raise SystemExit(f"{path}: its image ids differ from {params.dataset.root}; rebuild the store first")
    done_rows = np.nonzero(np.repeat(store.done_chunks(), store.rows_per_chunk)[: store.num_rows])[0]
    if len(done_rows) < store.num_rows:  # e.g. a `dvc repro` is rebuilding it right now
        print(f"  note: {path} is incomplete ({len(done_rows)} of {store.num_rows} rows done); reading done rows only")
    if not len(done_rows):
        raise SystemExit(f"{path}: no complete chunk to read; run `clips4 clip-dense` first")
    rows = [int(r) for r in rng.choice(done_rows, size=min(args.reads, len(done_rows)), replace=False)]
    recompute_rows = rows[: args.recompute]
    timings = read_rows(store, features, rows, recompute_rows, lambda rr: recompute_timings(loaded, images, params, rr))
    batch = min(params.clip.batch_size, len(done_rows))
    batch_rows = [int(r) for r in rng.choice(done_rows, size=batch, replace=False)]

    def batched(_: int) -> None:
        import torch

        _dense_features(loaded, [images.read_image(r) for r in batch_rows], params, torch.device("cpu"))

    per_batch = time_each(batched, [0, 1, 2], warmup=1)
    timings.append((f"(reference) recompute batched, per image at batch {batch}", per_batch / batch))
    shape = tuple(features.shape[1:])
    speed_table(
        f"(a) synthetic world: {path} ({store.num_rows} images 96x96, {store.attrs['model_name']}, grid {shape} "
        f"float16 = {math.prod(shape) * 2 / 1024:.0f} KB/image, {store.rows_per_chunk} images/chunk)",
        timings,
        "cache API: clips4.cache.open(p).image(i)",
        "recompute: read JPEG + forward at batch 1",
    )
    print(f"  check: {check_equal(store, loaded, images, params, rows[0])}")
    if args.one_row_chunks:
        one_row_chunk_diagnostic(args, features, rows, done_rows)


def one_row_chunk_diagnostic(args: argparse.Namespace, features: Any, rows: Sequence[int], done: np.ndarray) -> None:
    """Random reads from a copy of (up to) 1024 of the rows with one image per chunk (what chunking costs)."""
    import zarr

    from clips4.cache.store import _compressor

    source = np.asarray(sorted(set(rows) | set(done[:1024].tolist())))[:1024]
    count = len(source)
    folder = Path(tempfile.mkdtemp(prefix="bench_caches_onerow_", dir=args.tmp))
    try:
        copy = zarr.create_array(
            str(folder / "features.zarr"),
            shape=(count, *features.shape[1:]),
            chunks=(1, *features.shape[1:]),
            dtype=features.dtype,
            compressors=_compressor(5),
        )
        copy[...] = features.oindex[source]
        subset = [int(k) for k in np.random.default_rng(1).integers(0, count, size=len(rows))]
        times = time_each(lambda r: copy[r], subset)
        print(f"  diagnostic: raw zarr features[i] from a copy of {count} rows, 1 image/chunk: {fmt(times)}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_voc_world(root: Path, count: int, height: int, width: int, rng: np.random.Generator) -> None:
    """``count`` random-ish (smooth noise plus shapes) RGB JPEGs of height x width and palette labels, VOC layout."""
    from PIL import Image

    from clips4.data.images import write_jpeg, write_palette_png

    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    ids = [f"2099_{k:06d}" for k in range(count)]
    yy, xx = np.mgrid[:height, :width]
    for image_id in ids:
        coarse = rng.integers(0, 256, size=(height // 32 + 1, width // 32 + 1, 3), dtype=np.uint8)
        rgb = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.float32)
        label = np.zeros((height, width), np.uint8)
        for klass in rng.integers(1, 21, size=4):
            cy, cx = rng.integers(0, height), rng.integers(0, width)
            ry, rx = rng.integers(20, height // 2), rng.integers(20, width // 2)
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            label[inside] = klass
            rgb[inside] = 0.5 * rgb[inside] + 0.5 * rng.integers(0, 256, size=3)
        rgb += rng.normal(0, 8, size=rgb.shape)
        write_jpeg(root / "JPEGImages" / f"{image_id}.jpg", np.clip(rgb, 0, 255).astype(np.uint8))
        write_palette_png(root / "SegmentationClass" / f"{image_id}.png", label)
    split = max(1, count * 3 // 4)
    sets = root / "ImageSets" / "Segmentation"
    (sets / "train.txt").write_text("\n".join(ids[:split]) + "\n")
    (sets / "val.txt").write_text("\n".join(ids[split:]) + "\n")


def speed_real(args: argparse.Namespace, rng: np.random.Generator, scratch: Path) -> Path:
    """ViT-B-16 (random weights) on VOC-sized JPEGs; returns its store for the compression table."""
    import torch
    import zarr

    import clips4.cache
    import clips4.clip
    from clips4.clip import LoadedClip, build_model, model_config
    from clips4.params import params_from_dict
    from clips4.stages.clip_dense import run_clip_dense
    from clips4.stages.common import image_list

    width, height = args.real_size
    root = scratch / "voc"
    write_voc_world(root, args.real_images, height, width, rng)
    params = params_from_dict(
        {"dataset": {"name": "voc", "root": str(root)}, "clip": {"model": args.real_model, "pretrained": "random"}}
    )
    torch.manual_seed(0)
    config = model_config(args.real_model)
    loaded = LoadedClip(build_model(config).eval(), None, args.real_model, "random-init (bench_caches)", None)
    original = clips4.clip.load_clip
    clips4.clip.load_clip = lambda *_, **__: loaded  # run_clip_dense imports it from clips4.clip at call time
    out = scratch / "cache" / "clip_dense_vitb16.zarr"
    try:
        started = time.perf_counter()
        result = run_clip_dense(params, out)
        stage_seconds = time.perf_counter() - started
    finally:
        clips4.clip.load_clip = original
    assert result.complete, result
    store = clips4.cache.open(str(out))
    features = zarr.open_array(str(out / "features"), mode="r")
    images = image_list(params)
    rows = [int(r) for r in rng.integers(0, store.num_rows, size=args.real_reads)]
    recompute_rows = [
        int(r) for r in rng.choice(store.num_rows, size=min(args.real_recompute, store.num_rows), replace=False)
    ]
    timings = read_rows(store, features, rows, recompute_rows, lambda rr: recompute_timings(loaded, images, params, rr))
    timings.append(
        ("(reference) the clip_dense stage itself, per image", np.array([stage_seconds * 1000 / store.num_rows]))
    )
    shape = tuple(features.shape[1:])
    speed_table(
        f"(b) real size: {args.real_model} random weights, {store.num_rows} JPEGs {width}x{height} (VOC layout), "
        f"window {params.clip.window} stride {params.clip.stride}; grid {shape} float16 = "
        f"{math.prod(shape) * 2 / 1024:.0f} KB/image, {store.rows_per_chunk} image(s)/chunk",
        timings,
        "cache API: clips4.cache.open(p).image(i)",
        "recompute: read JPEG + forward at batch 1",
    )
    print(f"  check: {check_equal(store, loaded, images, params, rows[0])}")
    return out


# --- 3. compression ----------------------------------------------------------------------------------------------


def compression_part(stores: Sequence[Path]) -> None:
    import zarr

    print()
    print("Compression (raw = shape x itemsize; stored = zarr nbytes_stored(), chunk files and metadata)")
    print(
        f"  {'store / array':44s} {'shape':>24s} {'chunks':>22s} {'dtype':>8s} {'raw MB':>9s} {'stored MB':>9s} "
        f"{'ratio':>6s}"
    )
    for path in stores:
        group = zarr.open_group(str(path), mode="r")
        total_raw = total_stored = 0
        print(f"  {path}")
        for name, array in sorted(group.arrays()):
            if name == "done":
                continue
            raw = math.prod(array.shape) * array.dtype.itemsize
            stored = int(array.nbytes_stored())
            total_raw, total_stored = total_raw + raw, total_stored + stored
            print(
                f"    {name:42s} {tuple(array.shape)!s:>24s} {tuple(array.chunks)!s:>22s} {array.dtype!s:>8s} "
                f"{raw / MB:9.2f} {stored / MB:9.2f} {raw / stored:6.2f}"
            )
        print(
            f"    {'total':42s} {'':>24s} {'':>22s} {'':>8s} {total_raw / MB:9.2f} {total_stored / MB:9.2f} "
            f"{total_raw / total_stored:6.2f}"
        )


# --- main --------------------------------------------------------------------------------------------------------


def integrity_part(args: argparse.Namespace) -> None:
    import zarr

    from clips4.cache.integrity import missing_chunks, verify
    from clips4.params import load_params
    from clips4.stages.common import image_list

    params = load_params(args.project / "params.yaml", overrides={"dataset.root": str(args.project / "data/synth")})
    images = image_list(params)
    files = [path for dataset in images.datasets for path in dataset.image_files]
    size = sum(os.stat(path).st_size for path in files)
    stat_times, hash_times = [], []
    for _ in range(args.hash_repeats):
        start = time.perf_counter()
        [(os.stat(path).st_size, os.stat(path).st_mtime_ns) for path in files]
        stat_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        images.identity()
        hash_times.append(time.perf_counter() - start)
    print(f"fingerprint of {len(files)} image files ({size / 1e6:.1f} MB):")
    print(f"  content sha256: first {hash_times[0]:.2f} s, then median {np.median(hash_times[1:] or hash_times):.2f} s")
    print(f"  size+mtime stat (former): median {np.median(stat_times):.3f} s")
    print("chunk files vs done flags (listing) and verify (decode all), per store:")
    for path in sorted((args.project / "data" / "cache").glob("*.zarr")):
        group = zarr.open_group(str(path), mode="r")
        if "done" not in group:
            continue
        start = time.perf_counter()
        lost = missing_chunks(group)
        listed = time.perf_counter() - start
        start = time.perf_counter()
        bad = verify(group, str(path))
        decoded = time.perf_counter() - start
        files_count = sum(1 for _ in path.rglob("*") if _.is_file())
        print(
            f"  {path.name:20s} {files_count:6d} files: listing {listed:.2f} s ({len(lost)} lost), "
            f"verify {decoded:.1f} s ({len(bad)} bad)"
        )


def parse_size(text: str) -> tuple[int, int]:
    train, _, val = text.partition(":")
    return int(train), int(val or max(1, int(train) // 4))


def parse_wh(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=("memory", "speed", "compression", "integrity"), default=None)
    parser.add_argument("--hash-repeats", type=int, default=3, help="runs of the image-content fingerprint")
    parser.add_argument("--project", type=Path, default=REPO, help="project with data/synth, data/cache, models/")
    parser.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()), help="where scratch folders go")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (printed)")
    parser.add_argument("--sizes", type=parse_size, nargs="+", default=[(400, 100), (1600, 400)], metavar="TRAIN:VAL")
    parser.add_argument("--workers", type=int, default=2, help="--workers of the stage commands that have it")
    parser.add_argument("--no-arena-check", dest="arena_check", action="store_false", help=f"skip the {ARENA!r} rerun")
    parser.add_argument("--sample-ms", type=float, default=50.0, help="psutil sampling interval of the stage trees")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads for the recompute timings")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reads", type=int, default=200, help="random rows read from the synthetic store")
    parser.add_argument("--recompute", type=int, default=50, help="synthetic images recomputed at batch 1")
    parser.add_argument(
        "--no-one-row-chunks",
        dest="one_row_chunks",
        action="store_false",
        help="skip the 1-image-per-chunk read diagnostic",
    )
    parser.add_argument("--skip-real", action="store_true", help="skip the ViT-B-16 500x375 case")
    parser.add_argument("--real-model", default="ViT-B-16")
    parser.add_argument("--real-size", type=parse_wh, default=(500, 375), metavar="WxH")
    parser.add_argument("--real-images", type=int, default=8)
    parser.add_argument("--real-reads", type=int, default=50)
    parser.add_argument("--real-recompute", type=int, default=3)
    args = parser.parse_args()
    args.project = args.project.resolve()
    parts = set(args.only or ("memory", "speed", "compression", "integrity"))

    import torch
    import zarr

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    scratch = Path(tempfile.mkdtemp(prefix="bench_caches_", dir=args.tmp))
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"bench_caches: {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores "
        f"(load avg {load}), torch {torch.__version__} ({args.threads} threads), zarr {zarr.__version__}; "
        f"project {args.project}; scratch {scratch}"
    )
    started = time.perf_counter()
    ok = True
    real_store = None
    try:
        if "memory" in parts:
            print("\n== 1. memory of the stage commands ==")
            ok = memory_part(args, scratch)
        if "speed" in parts:
            print("\n== 2. random-access read vs recompute, per image (warm page cache) ==")
            speed_synth(args, rng)
            if not args.skip_real:
                real_store = speed_real(args, rng, scratch)
        if "compression" in parts:
            print("\n== 3. compression ==")
            stores = sorted((args.project / "data" / "cache").glob("*.zarr"))
            compression_part([*stores, *([real_store] if real_store else [])])
        if "integrity" in parts:
            print("\n== 4. integrity: content fingerprint, chunk listing, verify ==")
            integrity_part(args)
    finally:
        if args.keep:
            print(f"\nkept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
