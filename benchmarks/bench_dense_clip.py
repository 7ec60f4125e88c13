"""Throughput of dense_clip_features (MaskCLIP) for ViT-B-16 with random weights (no download needed).

    python benchmarks/bench_dense_clip.py                       # CPU, float32, sizes 224 and 448
    python benchmarks/bench_dense_clip.py --device cuda --dtype bf16 --sizes 448 --batch 32

Prints images/s per size, and on CUDA the achieved TFLOP/s of the forward pass (FLOPs counted with
torch.utils.flop_counter) so it can be read against the card's peak.
"""

from __future__ import annotations

import argparse
import time

import torch

from clips4.clip import build_model, dense_clip_features, model_config

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def measure(
    model: torch.nn.Module, size: int, batch: int, device: str, dtype: torch.dtype, repeats: int
) -> tuple[float, float]:
    images = torch.randn(batch, 3, size, size, device=device, dtype=dtype)
    with torch.no_grad():
        for _ in range(2):  # warm-up
            dense_clip_features(model, images)
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(repeats):
            dense_clip_features(model, images)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - started) / repeats
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            dense_clip_features(model, images)
    return batch / seconds, counter.get_total_flops() / seconds / 1e12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 448])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = DTYPES[args.dtype]
    model = build_model(model_config(args.model)).eval().to(args.device, dtype)
    print(
        f"{args.model} dense (maskclip), {args.device}, {args.dtype}, batch {args.batch}, "
        f"{torch.get_num_threads()} CPU threads"
    )
    print(f"{'size':>6} {'images/s':>10} {'TFLOP/s':>9}")
    for size in args.sizes:
        rate, tflops = measure(model, size, args.batch, args.device, dtype, args.repeats)
        print(f"{size:>6} {rate:>10.2f} {tflops:>9.3f}")


if __name__ == "__main__":
    main()
