"""Reduced precision: what a ``clip.precision`` / ``train.precision`` value means on a device, and its autocast.

``auto`` is bf16 on CUDA and fp32 elsewhere. The CPU default stays fp32 so that the embedded pipeline's numbers are
those of fp32 on every machine, whether or not its CPU has bf16 units; ``bf16`` may still be asked for on a CPU
(on this project's 2-core machine, which has avx512_bf16, a 512 x 512 matmul under CPU autocast took 0.7 ms
against 2.9 ms in fp32, one thread). Autocast (``torch.autocast``), not a cast of the weights: the weights, the
optimiser's state and the losses' reductions stay fp32, and the ops autocast lists run in bf16.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``fp32`` or ``bf16``: what ``precision`` (one of :data:`PRECISIONS`) means on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if torch.device(device).type == "cuda" else "fp32"
    return precision


@contextlib.contextmanager
def autocast(precision: str, device: torch.device | str) -> Iterator[None]:
    """``torch.autocast`` to bf16 on ``device`` when ``precision`` resolves to bf16; nothing otherwise."""
    if resolve_precision(precision, device) == "fp32":
        yield
        return
    with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16):
        yield
