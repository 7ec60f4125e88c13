"""Does the data path keep up with the training step, and does its memory stay flat as the dataset grows?

1. ``--wait``: trains for ``--iterations`` with ``train.workers`` = 0, 1, 2 and reports the share of step time spent
   waiting for the next batch (target < 10%) and images per second.
2. ``--memory``: one epoch of batches over the first 1,500 and the first 6,000 train images, each in a fresh
   process, and the peak RSS of each (target: ratio <= 1.2).

    python benchmarks/bench_train_data.py --params /tmp/study/params.yaml --cache-dir /work/main/data/cache --wait
    python benchmarks/bench_train_data.py --params /tmp/study/params.yaml --cache-dir /work/main/data/cache --memory
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def wait_share(params_path: str, cache_dir: str, iterations: int, workers: int) -> dict:
    from clips4.clip import load_project_clip
    from clips4.params import load_params
    from clips4.train.loop import TrainInputs, train_student

    params = load_params(params_path)
    params = dataclasses.replace(
        params, train=dataclasses.replace(params.train, workers=workers, iterations=iterations)
    )
    loaded = load_project_clip(params)
    teacher = {"model_name": loaded.model_name, "weights_sha256": loaded.sha256, "source": loaded.source}
    inputs = TrainInputs(
        f"{cache_dir}/clip_dense.zarr", f"{cache_dir}/superpixels.zarr", f"{cache_dir}/prototypes.zarr", teacher
    )
    with tempfile.TemporaryDirectory() as tmp:
        result = train_student(params, inputs=inputs, out=Path(tmp) / "bench.pt", progress=False)
    return {
        "workers": workers,
        "iterations": iterations,
        "data_wait_fraction": result.data_wait_fraction,
        "images_per_second": result.images_per_second,
        "wall_seconds": result.wall_seconds,
    }


def epoch_memory(params_path: str, cache_dir: str, images: int) -> dict:
    """One epoch of collated two-view batches over the first ``images`` train images (no training)."""
    from clips4.params import load_params
    from clips4.train.data import BatchPlan, TrainBatches, TrainCaches, batch_loader
    from clips4.train.objective import TwoViews
    from clips4.train.transforms import JointAugment

    params = load_params(params_path)
    caches = TrainCaches(
        f"{cache_dir}/clip_dense.zarr",
        f"{cache_dir}/superpixels.zarr",
        params.dataset.name,
        params.dataset.root,
        params.dataset.train_split,
    )
    blocks = tuple(b for b in caches.blocks() if b.stop <= caches.first + images)
    plan = BatchPlan(blocks, params.train.batch_size, params.seed)
    from clips4.model import create_student

    stride = create_student(params.train.model, caches.embed_dim, random_init=True).output_stride
    augment = JointAugment(
        params.train.crop_size,
        (params.train.crop_scale_min, 1.0),
        True,
        0.0,
        False,
        clip_stride=caches.feature_stride,
        clip_size=-(-params.train.crop_size // stride),
    )
    began = time.perf_counter()
    count = 0
    for batch in batch_loader(TrainBatches(caches, plan, TwoViews(augment)), 0, plan.per_epoch, workers=0):
        count += int(batch["rows"].numel())
    return {
        "images": images,
        "batches": plan.per_epoch,
        "read": count,
        "seconds": round(time.perf_counter() - began, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--cache-dir", default="data/cache")
    parser.add_argument("--wait", action="store_true")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1500, 6000])
    parser.add_argument("--one-epoch", type=int, help=argparse.SUPPRESS)  # child process of --memory
    args = parser.parse_args()
    if args.one_epoch:
        print(json.dumps(epoch_memory(args.params, args.cache_dir, args.one_epoch)))
        return
    if args.wait:
        for workers in args.workers:
            print(json.dumps(wait_share(args.params, args.cache_dir, args.iterations, workers)), flush=True)
    if args.memory:
        rows = []
        for size in args.sizes:
            command = [
                sys.executable,
                __file__,
                "--params",
                args.params,
                "--cache-dir",
                args.cache_dir,
                "--one-epoch",
                str(size),
            ]
            rows.append(json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout))
            print(json.dumps(rows[-1]), flush=True)
        print(json.dumps({"peak_rss_ratio": round(rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"], 3)}))


if __name__ == "__main__":
    main()
