"""benchmarks/bench_gpu.py runs on the CPU at its tiny sizes (issue 23: CI checks that the GPU benchmark works)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_benchmark_runs_on_the_cpu_and_prints_every_figure() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_gpu.py"), "--device", "cpu", "--repeats", "1"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("bench_gpu: CPU") and "bf16 peak used: unknown" in lines[0]
    for label in ("dense clips4-tiny-vit", "train pspnet-synth", "segment clips4", "segment maskclip"):
        line = next(line for line in lines if line.startswith(label))
        assert "fp32" in line and "bf16/fp32" in line, line
    assert "TFLOP/s" in next(line for line in lines if line.startswith("dense"))
    cosine = next(line for line in lines if "bf16 vs fp32 features" in line)
    assert float(cosine.split("cosine mean ")[1].split()[0]) > 0.999  # the store's bf16 features are exact enough
    assert any(line.startswith("prototypes top-32 of 20,000 segments cpu") for line in lines)
