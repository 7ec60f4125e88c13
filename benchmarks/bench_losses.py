"""Where a training step's time goes: the student's forward and backward, the k-means segments, and each loss.

Random inputs of the shapes a step sees (two views of ``--batch`` images, ``--crop`` px, the student's output
grid, 36 block superpixels per image, a memory bank of ``--memory`` segments), so it runs without any cache. Each part
is timed on its own, forward and backward, after ``--warmup`` steps, synchronising the GPU around each.

    python benchmarks/bench_losses.py                                   # pspnet-synth, CPU, the synthetic world
    python benchmarks/bench_losses.py --model pspnet-r50-d8 --embed-dim 512 --batch 8 --crop 320 --device cuda
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F


def timed(device: torch.device, run: Callable[[], torch.Tensor | None], repeat: int) -> float:
    """Mean seconds of ``run`` (forward, and backward when it returns a tensor that needs a gradient)."""
    total = 0.0
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = run()
        if out is not None and out.requires_grad:
            out.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        total += time.perf_counter() - start
    return total / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pspnet-synth")
    parser.add_argument("--embed-dim", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", type=int, default=80)
    parser.add_argument("--memory", type=int, default=4000)
    parser.add_argument("--segments-per-view", type=int, default=36)
    parser.add_argument("--sampled-pixels", type=int, default=2048)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from clips4.model import create_student
    from clips4.ops.kmeans import segments_within_superpixels
    from clips4.train.losses import (
        ClipS4Criterion,
        ViewBatch,
        embedding_consistency,
        segment_means,
        semantic_consistency,
        unknown_prototype_loss,
    )

    device = torch.device(args.device)
    torch.manual_seed(0)
    student = create_student(args.model, args.embed_dim, random_init=True).to(device)
    images = torch.randn(2 * args.batch, 3, args.crop, args.crop, device=device)
    with torch.no_grad():
        grid = student(images[:2]).shape[-2:]
    rows = torch.arange(grid[0], device=device) * 6 // grid[0]  # a 6 x 6 grid of block superpixels
    cols = torch.arange(grid[1], device=device) * 6 // grid[1]
    superpixels = rows[:, None] * 6 + cols[None, :]
    superpixels = superpixels.expand(args.batch, -1, -1).contiguous()
    clip = F.normalize(torch.randn(args.batch, args.embed_dim, *grid, device=device), dim=1)
    known = F.normalize(torch.randn(14, args.embed_dim, device=device), dim=1)
    unknown = F.normalize(torch.randn(64, args.embed_dim, device=device), dim=1)
    memory = F.normalize(torch.randn(args.memory, args.embed_dim, device=device), dim=1)
    criterion = ClipS4Criterion(
        known, unknown, segments_per_view=args.segments_per_view, sampled_pixels=args.sampled_pixels
    ).to(device)
    generator = torch.Generator().manual_seed(0)

    def views() -> list[ViewBatch]:
        embeddings = student(images).view(args.batch, 2, args.embed_dim, *grid)
        return [ViewBatch(embeddings[:, v], clip, superpixels) for v in range(2)]

    embeddings = student(images).detach()[: args.batch]
    segments = segments_within_superpixels(embeddings, superpixels, args.segments_per_view, generator=generator)
    flat = embeddings.permute(0, 2, 3, 1).reshape(-1, args.embed_dim).requires_grad_()

    def v_s() -> torch.Tensor:
        return segment_means(flat, segments.ids.flatten(), segments.count)

    i_s = segment_means(clip.permute(0, 2, 3, 1).reshape(-1, args.embed_dim), segments.ids.flatten(), segments.count)
    prototypes = torch.cat([known, unknown])
    keys = segments.image * (int(superpixels.max()) + 1) + segments.superpixel  # same image and superpixel
    pixel_keys = keys[segments.ids.flatten()]

    def kmeans_two_views() -> None:
        for _ in range(2):
            segments_within_superpixels(embeddings, superpixels, args.segments_per_view, generator=generator)

    parts: dict[str, Callable[[], torch.Tensor | None]] = {
        "student (forward + backward, 2 views)": lambda: student(images).sum(),
        "k-means segments (2 views)": kmeans_two_views,
        "L_t (sampled pixels x segments of 2 views + memory)": lambda: criterion.contrastive(
            flat.repeat(2, 1),
            pixel_keys.repeat(2),
            torch.cat([v_s(), v_s().detach()]),
            keys.repeat(2),
            torch.cat([segments.ids.flatten(), segments.ids.flatten() + segments.count]),
            memory,
            generator,
        ),
        "L_e": lambda: embedding_consistency(segment_means(flat, segments.ids.flatten(), segments.count), i_s),
        "L_s": lambda: semantic_consistency(
            segment_means(flat, segments.ids.flatten(), segments.count), i_s, prototypes, 0.1
        ),
        "L_u": lambda: unknown_prototype_loss(unknown.clone().requires_grad_(), i_s, torch.zeros_like(segments.image)),
        "whole step: student + criterion (all losses)": lambda: criterion(views(), memory, generator).total,
    }
    results = {}
    for name, run in parts.items():
        if args.warmup:
            timed(device, run, args.warmup)
        results[name] = round(1000 * timed(device, run, args.repeat), 2)
        student.zero_grad(set_to_none=True)
    step = results["whole step: student + criterion (all losses)"]
    print(
        json.dumps(
            {
                "device": str(device),
                "model": args.model,
                "batch": args.batch,
                "crop": args.crop,
                "grid": list(grid),
                "segments_per_view": segments.count / args.batch,
                "ms": results,
                "share_of_step": {k: round(v / step, 3) for k, v in results.items()},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
