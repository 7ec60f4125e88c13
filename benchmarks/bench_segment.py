"""Inference speed of `clips4 segment`: one 512x512 image through CLIP-S4 (the student) and the MaskCLIP teacher.

    python benchmarks/bench_segment.py                      # CPU: seconds per image, and the ratio
    python benchmarks/bench_segment.py --device cuda        # GPU: also images per second in batches of --batch

Both model sizes are built with random weights, so nothing is downloaded and no pipeline output (DVC, params.yaml)
is read: speed does not depend on the weights' values.

- ``real``: the paper's student ``pspnet-r50-d8`` (ResNet-50, output stride 8, ``random_init``) against CLIP
  ViT-B-16 (D = 512);
- ``tiny``: the synthetic world's ``pspnet-synth`` against the tiny CLIP ``clips4-tiny-vit`` (D = 128).

Each image goes through :class:`clips4.inference.Segmenter` exactly as in ``clips4 segment``: the default
``slide`` reading (``clip.window`` 448, ``clip.stride`` 224: four windows on a 512x512 image), scores against
``--classes`` prompt-ensembled class embeddings, upsampling and the argmax. The class text embeddings (85
templates per class) are computed once per class list and cached, so they are timed apart.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
import torch

from clips4.clip.loading import LoadedClip, build_model, model_config, tokenizer_for
from clips4.inference.segmenter import ReadSettings, Segmenter
from clips4.model import create_student

SIZES = {"real": ("pspnet-r50-d8", "ViT-B-16"), "tiny": ("pspnet-synth", "clips4-tiny-vit")}


def build(size: str, device: str, settings: ReadSettings) -> dict[str, Segmenter]:
    """The student and teacher segmenters of one model size, random weights, on ``device``."""
    student_name, clip_name = SIZES[size]
    torch.manual_seed(0)
    config = model_config(clip_name)
    clip = LoadedClip(build_model(config).eval().to(device), tokenizer_for(config), clip_name, "random", None)
    student = create_student(student_name, clip.embed_dim, random_init=True).eval().to(device)
    segmenter = Segmenter(student, clip, settings)
    return {"clips4": segmenter, "maskclip": segmenter.teacher()}


def seconds(run: Callable[[], object], device: str, repeats: int) -> tuple[float, float]:
    """Mean wall and CPU (this process, all threads) seconds of ``run`` over ``repeats`` calls; GPU work is
    finished before the clocks stop. On a shared machine the CPU seconds are the steadier figure."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        run()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - wall) / repeats, (time.process_time() - cpu) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="+", default=["real", "tiny"], choices=sorted(SIZES))
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--classes", type=int, default=20, help="number of class names (VOC has 20)")
    parser.add_argument("--window", type=int, default=448)
    parser.add_argument("--stride", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=0, help="timed runs per image (default: 1 on CPU, 10 on GPU)")
    parser.add_argument("--batch", type=int, default=8, help="images per forward pass for images/s on a GPU")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = args.device.startswith("cuda")
    repeats = args.repeats or (10 if gpu else 1)
    settings = ReadSettings("slide", "synth", args.window, args.stride, "maskclip")
    image = np.random.default_rng(0).integers(0, 256, (args.image_size, args.image_size, 3), dtype=np.uint8)
    classes = [f"class {i}" for i in range(args.classes)]
    where = torch.cuda.get_device_name(args.device) if gpu else f"CPU, {torch.get_num_threads()} torch threads"
    print(
        f"clips4 segment, one {args.image_size}x{args.image_size} image, {args.classes} classes, slide window "
        f"{args.window} stride {args.stride}, {where}, float32, torch {torch.__version__}"
    )
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {repeats} timed run(s) per figure")
    print(f"{'models':6s} {'method':9s} {'network':16s} {'wall s/img':>10s} {'CPU s/img':>10s} {'img/s':>8s}")
    for size in args.models:
        timings = {}
        segmenters = build(size, args.device, settings)
        # once per CLIP and class list (both methods share the CLIP, and the embeddings are cached in memory)
        text, text_cpu = seconds(lambda s=segmenters["clips4"]: s.class_embeddings(classes), args.device, 1)
        print(
            f"{size:6s} class text embeddings ({args.classes} x 85 prompts, {SIZES[size][1]}), once: {text:.2f} s wall,"
            f" {text_cpu:.2f} s CPU"
        )
        batch = [image] * args.batch
        for method, segmenter in segmenters.items():
            segmenter.segment(image[:64, :64], classes)  # warm-up (kernels, allocator)
            wall, cpu = seconds(lambda s=segmenter: s.segment(image, classes, scores=False), args.device, repeats)
            throughput = ""
            if gpu:
                segmenter.segment_batch(batch, classes, scores=False)
                batched, _ = seconds(
                    lambda s=segmenter, b=batch: s.segment_batch(b, classes, scores=False), args.device, 3
                )
                throughput = f"{args.batch / batched:8.1f}"
            timings[method] = (wall, cpu)
            network = SIZES[size][0] if method == "clips4" else SIZES[size][1]
            print(f"{size:6s} {method:9s} {network:16s} {wall:10.3f} {cpu:10.2f} {throughput:>8s}")
        ratio = [timings["clips4"][i] / timings["maskclip"][i] for i in (0, 1)]
        print(f"{size:6s} CLIP-S4 / MaskCLIP time per image: {ratio[0]:.2f} (wall), {ratio[1]:.2f} (CPU)")


if __name__ == "__main__":
    main()
