"""Known-class prototypes: FAISS streamed top-m vs the brute-force torch top-m, on the same random unit embeddings.

For each case (S segments, D dims, C classes) the embeddings are written once as a float16 Zarr array with 1 MB
chunks (like data/cache/segments.zarr), then each method runs in a fresh process so its peak memory can be read
(VmHWM minus the resident size after imports and a warm-up):

- faiss:      clips4.prototypes.top_m_segments (IndexFlatIP over [tau e, -lse_1..C], float32 log-odds)
- torch:      clips4.prototypes.top_m_segments_torch (every row's log-odds in float64; the reference)
- torch-f32:  a plain float32 log_softmax + topk per block (saturates where p rounds to 1: its sets are compared)

It reports how many classes' index sets and orders faiss and torch share, the prototypes' max abs diff, both
times (best of --repeat), the speed ratio and the peak memory. m=32, tau=100, 2 threads.

The script sets OMP_NUM_THREADS=MKL_NUM_THREADS=OPENBLAS_NUM_THREADS=2 and OMP_WAIT_POLICY=PASSIVE for the
method processes (--spin leaves the wait policy unset: torch and faiss-cpu each bring a libgomp, and on 2 cores
the idle threads of one spin against the other, 5-10x slower).

Usage:
    .venv/bin/python benchmarks/bench_prototypes.py                      # all cases, ~5 min on 2 cores
    .venv/bin/python benchmarks/bench_prototypes.py --cases 100000x512x171,192000x128x14 --repeat 1  # a subset
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

THREADS = 2
TOP_M = 32
TAU = 100.0
CASES = "100000x512x171,1000000x512x171,192000x128x14,1000000x128x14"  # COCO-Stuff ViT-B/16; the synthetic world


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def write_case(folder: Path, num: int, dim: int, classes: int, seed: int = 0) -> tuple[str, np.ndarray]:
    """Random unit float16 embeddings in a Zarr array (1 MB chunks), and random unit float32 class embeddings."""
    import zarr

    rng = np.random.default_rng(seed)
    chunk = max(1, (1 << 20) // (dim * 2))
    path = str(folder / f"segments_{num}_{dim}.zarr")
    array = zarr.create_array(store=path, shape=(num, dim), chunks=(chunk, dim), dtype="float16", compressors=None)
    step = chunk * 64
    for start in range(0, num, step):
        block = rng.standard_normal((min(step, num - start), dim), dtype=np.float32)
        array[start : start + len(block)] = (block / np.linalg.norm(block, axis=1, keepdims=True)).astype(np.float16)
    text = rng.standard_normal((classes, dim)).astype(np.float32)
    return path, text / np.linalg.norm(text, axis=1, keepdims=True)


def naive_float32(array: Any, text: np.ndarray, tau: float, m: int, block_rows: int) -> np.ndarray:
    """Float32 log_softmax + running topk over blocks: the obvious brute force (ties and rounding unresolved)."""
    import torch

    t = torch.from_numpy(text)
    best_v = torch.full((m, len(text)), -torch.inf)
    best_i = torch.zeros((m, len(text)), dtype=torch.int64)
    for start in range(0, array.shape[0], block_rows):
        x = torch.from_numpy(np.asarray(array[start : start + block_rows], dtype=np.float32))
        logp = torch.log_softmax(tau * (x @ t.T), dim=1)
        idx = torch.arange(start, start + len(x)).unsqueeze(1).expand(-1, len(text))
        values, where = torch.topk(torch.cat([best_v, logp]), m, dim=0)
        best_i = torch.gather(torch.cat([best_i, idx]), 0, where)
        best_v = values
    return best_i.T.numpy()


def run_method(method: str, path: str, text: np.ndarray, repeat: int) -> dict[str, Any]:
    """Child process: time one method on the Zarr array (best of ``repeat``), report its result and peak memory."""
    import faiss
    import torch
    import zarr

    import clips4.prototypes as P

    torch.set_num_threads(THREADS)
    faiss.omp_set_num_threads(THREADS)
    array = zarr.open_array(path, mode="r")
    block_rows = P.BLOCK_ROWS
    warm = np.asarray(array[:4096], dtype=np.float32)  # warm-up: thread pools, BLAS, FAISS
    P.top_m_segments(warm, text, TAU, TOP_M)
    P.top_m_segments_torch(warm, text, TAU, TOP_M)
    base_kib = _status_kib("VmRSS")
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        if method == "faiss":
            indices = P.top_m_segments(array, text, TAU, TOP_M).indices
        elif method == "torch":
            indices = P.top_m_segments_torch(array, text, TAU, TOP_M).indices
        else:
            indices = naive_float32(array, text, TAU, TOP_M, block_rows)
        times.append(time.perf_counter() - start)
    seconds = min(times)
    peak_mib = (_status_kib("VmHWM") - base_kib) / 1024
    start = time.perf_counter()
    prototypes = P.known_prototypes(array, indices)
    proto_seconds = time.perf_counter() - start
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    return {
        "indices": indices,
        "prototypes": prototypes,
        "seconds": seconds,
        "proto_seconds": proto_seconds,
        "peak_mib": peak_mib,
        "block_rows": block_rows,
        "device": f"faiss {'GPU' if gpus else 'CPU'} {faiss.__version__}, torch {torch.__version__} CPU",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=CASES, help="comma-separated SxDxC (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per method; the fastest is reported")
    parser.add_argument("--spin", action="store_true", help="leave OMP_WAIT_POLICY unset (OpenMP threads spin)")
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(THREADS)
    if args.spin:
        os.environ.pop("OMP_WAIT_POLICY", None)
    else:  # torch and faiss-cpu each load their own libgomp; spinning idle threads of one starve the other
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    ctx = mp.get_context("spawn")  # children inherit the environment above
    print(
        f"top_m={TOP_M} logit_scale={TAU} threads={THREADS} OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
        f"float16 Zarr input (1 MB chunks), best of {args.repeat} runs; peak = VmHWM - VmRSS before the runs"
    )
    with tempfile.TemporaryDirectory(prefix="bench_prototypes_") as tmp:
        for case in args.cases.split(","):
            num, dim, classes = (int(v) for v in case.lower().split("x"))
            path, text = write_case(Path(tmp), num, dim, classes)
            results = {}
            for method in ("faiss", "torch", "torch-f32"):
                with ctx.Pool(1) as pool:
                    results[method] = pool.apply(run_method, (method, path, text, args.repeat))
            fa, to, nf = results["faiss"], results["torch"], results["torch-f32"]
            same_order = sum(np.array_equal(a, b) for a, b in zip(fa["indices"], to["indices"], strict=True))
            same_sets = sum(set(a) == set(b) for a, b in zip(fa["indices"], to["indices"], strict=True))
            diff = float(np.abs(fa["prototypes"] - to["prototypes"]).max())
            naive_off = sum(set(a) != set(b) for a, b in zip(nf["indices"], to["indices"], strict=True))
            print(f"\nS={num:,} D={dim} C={classes}  block_rows={fa['block_rows']}  [{fa['device']}]")
            print(f"  faiss      {fa['seconds']:7.2f} s  peak +{fa['peak_mib']:6.0f} MiB")
            print(f"  torch      {to['seconds']:7.2f} s  peak +{to['peak_mib']:6.0f} MiB  (reference, float64)")
            print(
                f"  torch-f32  {nf['seconds']:7.2f} s  peak +{nf['peak_mib']:6.0f} MiB  "
                f"(not exact: {naive_off}/{classes} classes pick a different set)"
            )
            print(
                f"  speed ratio torch/faiss {to['seconds'] / fa['seconds']:.2f}x; "
                f"prototypes from indices {fa['proto_seconds']:.2f} s"
            )
            print(
                f"  faiss = torch: index order for {same_order}/{classes} classes, index sets for "
                f"{same_sets}/{classes}; prototypes max|diff| {diff:.1e}"
            )


if __name__ == "__main__":
    main()
