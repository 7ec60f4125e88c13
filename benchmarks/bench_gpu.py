"""The GPU path's speed in one run (issue 23): each figure in bf16 as a ratio to fp32 measured in the same run, and
as a share of the device's bf16 peak where the device is known.

    python benchmarks/bench_gpu.py --device cuda              # real sizes: ViT-B/16, PSPNet-R50-D8, 1M segments
    python benchmarks/bench_gpu.py                            # CPU, tiny sizes: that it runs (CI runs this)

Random weights everywhere (nothing is downloaded, no pipeline output is read): speed does not depend on the values.

1. **Dense extraction** (the clip_dense stage's path, MaskCLIP mode): ``clips4.clip.dense.padded_dense_features``
   over Context-sized 500 x 375 images in the slide protocol (448 windows, stride 224: 2 windows an image), all
   windows of a batch in one forward; windows per second, and TFLOP/s from ``torch.utils.flop_counter`` on one
   window; and the stored cache's exactness: the bf16 features' cosine to fp32's, and how often the nearest of 20
   random class vectors agrees.
2. **Training step** of the student at batch 8 with two views (512 px real, 80 px tiny), all four losses on
   (``ClipS4Criterion`` with 14 known and 64 unknown prototypes, k-means segments, a 2-batch memory bank):
   forward under ``train.precision``'s autocast, backward, AdamW step; iterations per second. The batches are
   made on the device, so this is the compute ceiling; the data path's wait is the ``data_wait_fraction`` that
   ``clips4 train`` writes into models/clips4.json.
3. **Inference** (``clips4 segment``'s ``Segmenter.segment_batch``): images per second, 512 x 512, 20 classes,
   CLIP-S4 and MaskCLIP.
4. **Prototypes**: ``clips4.prototypes.top_m_segments`` (top 32 per class of 14, FAISS flat inner product) over
   random unit segment embeddings (1M x 512 real, 20k x 32 tiny), faiss-gpu against faiss-cpu when a GPU index
   exists.

Peak bf16 dense TFLOP/s by device name (the vendors' data sheets, without sparsity): H100/H200 SXM 989, H100 PCIe
756, A100 312, L40S 362, A10 125; unknown devices print no share.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from clips4.clip import build_model, feature_stride, model_config
from clips4.clip.dense import dense_clip_features, padded_dense_features
from clips4.ops.precision import autocast
from clips4.ops.windows import window_starts

PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}
SIZES = {
    "real": {"clip": "ViT-B-16", "student": "pspnet-r50-d8", "image": (375, 500), "window": 448, "stride": 224,
             "crop": 512, "segments": 1_000_000, "segment_dim": 512, "images": 16, "segment_image": 512},
    "tiny": {"clip": "clips4-tiny-vit", "student": "pspnet-synth", "image": (48, 64), "window": 32, "stride": 16,
             "crop": 80, "segments": 20_000, "segment_dim": 32, "images": 4, "segment_image": 96},
}  # fmt: skip
PRECISIONS = ("fp32", "bf16")


def peak_tflops(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        return "CPU", None
    name = torch.cuda.get_device_name(device)
    return name, next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


def timed(run: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Mean seconds of ``run`` after one warm-up call; the device's queue is drained before each clock read."""
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - started) / repeats


def report(label: str, unit: str, rates: dict[str, float], flops: float | None, peak: float | None) -> None:
    line = f"{label:34s}" + "".join(f" {p} {rates[p]:9.2f} {unit}" for p in PRECISIONS)
    line += f"   bf16/fp32 {rates['bf16'] / rates['fp32']:5.2f}x"
    if flops is not None:
        achieved = rates["bf16"] * flops / 1e12
        line += f"   bf16 {achieved:7.3f} TFLOP/s" + (f" = {100 * achieved / peak:4.1f} % of peak" if peak else "")
    print(line, flush=True)


def dense_extraction(size: dict, device: torch.device, repeats: int, peak: float | None) -> None:
    torch.manual_seed(0)
    model = build_model(model_config(size["clip"])).eval().to(device)
    height, width = size["image"]
    images = list(np.random.default_rng(0).integers(0, 256, (size["images"], height, width, 3), dtype=np.uint8))
    step = feature_stride(model.visual)
    grid = (-(-height // step), -(-width // step), model.visual.output_dim)
    if max(height, width) > size["window"]:  # the windows of one image, on its padded size (as the reader counts)
        per_image = len(window_starts(grid[0] * step, size["window"], size["stride"]))
        per_image *= len(window_starts(grid[1] * step, size["window"], size["stride"]))
    else:
        per_image = 1
    windows = per_image * len(images)
    options = {"window": size["window"], "stride": size["stride"], "mode": "maskclip", "batch_size": len(images)}
    rates, features = {}, {}
    for precision in PRECISIONS:

        def run(p: str = precision) -> np.ndarray:
            with torch.no_grad():
                return padded_dense_features(
                    model, images, (0.48, 0.46, 0.41), (0.27, 0.26, 0.28), shape=grid, device=device, precision=p,
                    **options,
                )  # fmt: skip

        rates[precision] = windows / timed(run, device, repeats)
        features[precision] = run().astype(np.float32)
    # the cache's exactness (issue 23): bf16 against fp32 features, and the labels of 20 random class vectors
    cosine = (features["fp32"] * features["bf16"]).sum(-1)[np.linalg.norm(features["fp32"], axis=-1) > 0]
    text = np.random.default_rng(1).standard_normal((20, grid[2])).astype(np.float32)
    agree = ((features["fp32"] @ text.T).argmax(-1) == (features["bf16"] @ text.T).argmax(-1)).mean()
    from torch.utils.flop_counter import FlopCounterMode

    window = torch.randn(1, 3, size["window"], size["window"], device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        dense_clip_features(model, window)
    label = f"dense {size['clip']} {width}x{height} ({per_image} windows)"
    report(label, "win/s", rates, counter.get_total_flops(), peak)
    print(
        f"{'  bf16 vs fp32 features':34s} cosine mean {cosine.mean():.6f} min {cosine.min():.6f}; labels of 20 random"
        f" classes agree on {100 * agree:.2f} % of cells",
        flush=True,
    )


def training_step(size: dict, device: torch.device, repeats: int) -> None:
    from clips4.model import create_student
    from clips4.train.losses import ClipS4Criterion, ViewBatch

    torch.manual_seed(0)
    dim = 512 if size["student"] == "pspnet-r50-d8" else 32
    batch, crop = 8, size["crop"]
    student = create_student(size["student"], dim, random_init=True).to(device)
    if device.type == "cuda":
        student = student.to(memory_format=torch.channels_last)
    known = F.normalize(torch.randn(14, dim, device=device), dim=1)
    unknown = F.normalize(torch.randn(64, dim, device=device), dim=1)
    criterion = ClipS4Criterion(known, unknown, segments_per_view=36).to(device)
    optimizer = torch.optim.AdamW([*student.parameters(), criterion.unknown], lr=1e-3)
    images = torch.randn(2 * batch, 3, crop, crop, device=device)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        grid = student(images[:2]).shape[-2:]
    rows, cols = (torch.arange(n, device=device) * 6 // n for n in grid)
    superpixels = (rows[:, None] * 6 + cols[None, :]).expand(batch, -1, -1).contiguous()
    clip = F.normalize(torch.randn(batch, dim, *grid, device=device), dim=1)
    memory = F.normalize(torch.randn(2 * 36 * 2 * batch, dim, device=device), dim=1)
    generator = torch.Generator().manual_seed(0)
    rates = {}
    for precision in PRECISIONS:

        def step(p: str = precision) -> None:
            with autocast(p, device):
                embeddings = student(images)
            embeddings = F.normalize(embeddings.float(), dim=1).view(batch, 2, dim, *grid)
            views = [ViewBatch(embeddings[:, v], clip, superpixels) for v in range(2)]
            loss = criterion(views, memory, generator).total
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        rates[precision] = 1 / timed(step, device, repeats)
    report(f"train {size['student']} b8 x 2 x {crop}", "it/s", rates, None, None)


def inference(size: dict, device: torch.device, repeats: int) -> None:
    from clips4.clip.loading import LoadedClip, tokenizer_for
    from clips4.inference.segmenter import ReadSettings, Segmenter
    from clips4.model import create_student

    torch.manual_seed(0)
    config = model_config(size["clip"])
    clip = LoadedClip(build_model(config).eval().to(device), tokenizer_for(config), size["clip"], "random", None)
    student = create_student(size["student"], clip.embed_dim, random_init=True).eval().to(device)
    side = size["segment_image"]
    settings = ReadSettings("slide", "synth", size["window"], size["stride"], "maskclip")
    segmenter = Segmenter(student, clip, settings)
    image = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    classes = [f"class {i}" for i in range(20)]
    batch = [image] * 8
    for name, method in (("clips4", segmenter), ("maskclip", segmenter.teacher())):
        method.class_embeddings(classes)  # once per class list (cached): not timed
        rates = {}
        for precision in PRECISIONS:

            def run(p: str = precision, m: Segmenter = method) -> object:
                with torch.no_grad(), autocast(p, device):
                    return m.segment_batch(batch, classes, scores=False)

            rates[precision] = len(batch) / timed(run, device, repeats)
        report(f"segment {name} {side}x{side}", "img/s", rates, None, None)


def prototypes(size: dict, device: torch.device) -> None:
    from clips4.prototypes import top_m_segments

    rng = np.random.default_rng(0)
    segments = rng.standard_normal((size["segments"], size["segment_dim"]), dtype=np.float32)
    segments /= np.linalg.norm(segments, axis=1, keepdims=True)
    text = rng.standard_normal((14, size["segment_dim"]), dtype=np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    import faiss

    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    seconds = {}
    for where in ("cpu", "gpu") if gpus else ("cpu",):
        started = time.perf_counter()
        found = top_m_segments(segments, text, 100.0, 32, use_gpu=where == "gpu")
        seconds[where] = time.perf_counter() - started
    line = f"{'prototypes top-32 of ' + format(size['segments'], ',') + ' segments':34s}"
    line += "".join(f" {where} {s:7.2f} s" for where, s in seconds.items())
    if "gpu" in seconds:
        line += f"   gpu/cpu speed {seconds['cpu'] / seconds['gpu']:5.1f}x"
    print(f"{line}   ({found.index})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", choices=sorted(SIZES), default=None, help="default: real on CUDA, tiny on CPU")
    parser.add_argument("--repeats", type=int, default=0, help="timed calls per figure (default: 10 GPU, 2 CPU)")
    parser.add_argument("--only", nargs="+", choices=["dense", "train", "segment", "prototypes"], default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    size = SIZES[args.size or ("real" if device.type == "cuda" else "tiny")]
    repeats = args.repeats or (10 if device.type == "cuda" else 2)
    name, peak = peak_tflops(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    print(
        f"bench_gpu: {name}, torch {torch.__version__}, {size['clip']} / {size['student']}, {repeats} timed calls a "
        f"figure, {os.cpu_count()} CPU cores; bf16 peak used: {peak if peak else 'unknown'} TFLOP/s",
        flush=True,
    )
    sections = {
        "dense": lambda: dense_extraction(size, device, repeats, peak),
        "train": lambda: training_step(size, device, repeats),
        "segment": lambda: inference(size, device, repeats),
        "prototypes": lambda: prototypes(size, device),
    }
    for key in args.only or sections:
        sections[key]()


if __name__ == "__main__":
    main()
