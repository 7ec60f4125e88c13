"""DAVIS-protocol mask propagation end to end: propagate, write the official results layout, score J and F.

Usage (from the repository root):

    OMP_NUM_THREADS=1 python benchmarks/bench_davis_propagation.py DAVIS_ROOT OUT [--clip CHECKPOINT] [--device cpu]
    python benchmarks/bench_davis_propagation.py --timing FRAMES H W DIM [--device cuda]

The first form runs every val sequence of DAVIS_ROOT (DAVIS 2017 layout, e.g. data/synth_video) with two
features: ``colour`` (each grid cell's mean RGB, centred and unit-normalised: a model-free floor) and, with
``--clip``, MaskCLIP's dense features of that tiny-CLIP checkpoint (model clips4-tiny-vit). Masks go to
``OUT/<feature>/<sequence>/<frame>.png`` and are scored by clips4.eval.davis. The second form times
propagation alone on random unit features of one video (DAVIS 480p at stride 8 is 60 x 107 cells).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from clips4.data.davis import open_davis
from clips4.eval.davis import evaluate_results, write_results
from clips4.eval.propagation import PropagationConfig, propagate_masks

STRIDE = 8


def colour_features(frames: np.ndarray) -> torch.Tensor:
    """``[T, 3, h, w]``: mean RGB per 8x8 cell, centred on mid-grey and unit-normalised."""
    rgb = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0 - 0.5
    return F.normalize(F.avg_pool2d(rgb, STRIDE, ceil_mode=True), dim=1)


def clip_features(checkpoint: str, device: str):
    from clips4.clip.dense import dense_clip_features, normalize_images, to_rgb_batch
    from clips4.clip.loading import load_clip

    loaded = load_clip("clips4-tiny-vit", checkpoint, device)
    loaded.model.eval()

    @torch.no_grad()
    def features(frames: np.ndarray) -> torch.Tensor:
        images = normalize_images(to_rgb_batch(list(frames)).to(device), loaded.mean, loaded.std)
        return dense_clip_features(loaded.model, images).permute(0, 3, 1, 2)

    return features


def run(root: Path, out: Path, extractors: dict, device: str) -> None:
    dataset = open_davis(root, "val")
    for name, extract in extractors.items():
        start = time.perf_counter()
        for video in dataset:
            frames = np.stack(video.frames)
            masks = propagate_masks(extract(frames).to(device), video.first_mask, PropagationConfig())
            write_results(out / name, video.name, video.frame_ids, masks)
        seconds = time.perf_counter() - start
        summary = evaluate_results(dataset.root, out / name, dataset.sequences)
        print(
            f"{name:8s} J&F {summary.jf_mean:5.1f}  J {summary.j_mean:5.1f}  F {summary.f_mean:5.1f}  "
            f"objects {summary.objects}  features+propagation {seconds:.1f} s"
        )


def timing(frames: int, height: int, width: int, dim: int, device: str) -> None:
    generator = torch.Generator().manual_seed(0)
    embeddings = F.normalize(torch.randn(frames, dim, height, width, generator=generator), dim=1).to(device)
    first_mask = np.zeros((height * STRIDE, width * STRIDE), np.uint8)
    first_mask[: height * 4, : width * 4] = 1
    propagate_masks(embeddings[:3], first_mask)  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    propagate_masks(embeddings, first_mask)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    print(
        f"{frames} frames, grid {height}x{width}, D={dim}, {device}: {seconds:.2f} s ({seconds / frames:.3f} s/frame)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", help="DAVIS_ROOT OUT")
    parser.add_argument("--clip", help="tiny-CLIP checkpoint for MaskCLIP features")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--timing", nargs=4, type=int, metavar=("FRAMES", "H", "W", "DIM"))
    args = parser.parse_args()
    if args.timing:
        timing(*args.timing, args.device)
        return
    extractors = {"colour": colour_features}
    if args.clip:
        extractors["maskclip"] = clip_features(args.clip, args.device)
    run(Path(args.paths[0]), Path(args.paths[1]), extractors, args.device)


if __name__ == "__main__":
    main()
