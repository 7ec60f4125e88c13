"""The training loop of the CLIP-S4 student: ``train_student(params, ...) -> TrainResult``.

Each iteration takes one batch (two augmented views per image, from :mod:`clips4.train.data`), runs the student,
forms k-means segments within superpixels and sums the switched-on losses (:mod:`clips4.train.objective`); Adam
with polynomial learning-rate decay updates the student, and L_u alone moves the unknown prototypes.

Resuming. Every ``train.checkpoint_every`` iterations rank 0 writes models/clips4.pt atomically with the whole
training state: weights, optimiser, every rank's RNG state and memory bank, the unknown prototypes, and the
iteration (which is also the data position: batch ``i`` is a pure function of the seed). A rerun with the same
configuration resumes there and ends with the same weights, bit for bit on the CPU, as a run never stopped. A
checkpoint from another configuration is left alone (a fresh run replaces it) and its differences are logged.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

import clips4
from clips4.model.checkpoint import (
    CheckpointError,
    check_identity,
    identity_fingerprint,
    read_checkpoint,
    save_checkpoint,
)
from clips4.ops.precision import resolve_precision
from clips4.params import Params
from clips4.train.data import BatchPlan, TrainBatches, TrainCaches, batch_loader
from clips4.train.distributed import Runtime, broadcast_module_state, mean_over_ranks, setup_runtime
from clips4.train.live import TrainLog
from clips4.train.objective import Objective, PixelBaseline

log = logging.getLogger(__name__)

#: Params under ``train`` that change how a run is carried out but not the weights it reaches.
NOT_IN_IDENTITY = ("checkpoint_every", "workers", "score_images", "precision")  # precision: resolved, below


@dataclass(frozen=True, kw_only=True)
class TrainResult:
    """What a training run did. ``final_losses`` are the last iteration's terms (averaged over ranks)."""

    checkpoint: str
    iterations: int
    start_iteration: int
    final_losses: dict[str, float]
    wall_seconds: float
    images_per_second: float
    data_wait_fraction: float
    world_size: int
    device: str
    stopped_early: bool
    weights_sha256: str  # digest of this rank's final weights (parameters and buffers): equal on every rank


@dataclass(frozen=True)
class TrainInputs:
    """The caches training reads and the teacher they were computed with."""

    dense: str
    superpixels: str
    prototypes: str
    teacher: dict[str, Any]  # {"model_name", "weights_sha256", "source"} of the CLIP behind the caches
    baseline: PixelBaseline | None = None  # the MaskCLIP+-style baseline (its targets replace the prototypes)


def training_identity(
    params: Params, inputs: TrainInputs, caches: dict[str, str | None], world: int, device: torch.device | str = "cpu"
) -> dict:
    """Everything the final weights depend on, as flat ``key: value`` pairs (what a resume must match).

    The baseline's weights do not depend on CLIP-S4's own hyper-parameters (kappa, segments_per_view, losses.*):
    they are left out of its identity, and its name and classes are in it."""
    train = {k: v for k, v in asdict(params.train).items() if k not in NOT_IN_IDENTITY}
    precision = resolve_precision(params.train.precision, device)
    if precision != "fp32":  # the resolved one; fp32 runs keep the identity they had before the option existed
        train["precision"] = precision
    identity: dict[str, Any] = {
        "seed": params.seed,
        "dataset.name": params.dataset.name,
        "dataset.train_split": params.dataset.train_split,
        "world_size": world,
        "clip.weights": inputs.teacher.get("weights_sha256") or inputs.teacher.get("source"),
    }
    if inputs.baseline is None:
        identity |= {"kappa": params.kappa, "segments_per_view": params.segments_per_view}
        identity |= {f"losses.{k}": v for k, v in asdict(params.losses).items()}
    else:
        identity |= {"baseline": inputs.baseline.name, "baseline.classes": list(inputs.baseline.classes)}
    identity |= {f"train.{k}": v for k, v in train.items()}
    identity |= {f"cache.{name}": fingerprint for name, fingerprint in caches.items()}
    return identity


def poly_lr(base: float, iteration: int, total: int, power: float) -> float:
    """Polynomial decay: ``base * (1 - iteration / total) ** power``."""
    return base * (1.0 - iteration / total) ** power


def train_student(
    params: Params,
    *,
    inputs: TrainInputs,
    out: str | Path,
    live_dir: str | Path | None = None,
    stop_after: int | None = None,
    device: str | None = None,
    progress: bool = True,
    log_every: int = 10,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train the student on the caches of ``inputs``, writing the checkpoint ``out``; resume from it if it holds
    a run of the same configuration. ``stop_after`` ends the run after that many iterations (a simulated kill:
    no checkpoint is written beyond the periodic ones)."""
    runtime = setup_runtime(device)
    caches = TrainCaches(
        inputs.dense, inputs.superpixels, params.dataset.name, params.dataset.root, params.dataset.train_split
    )
    if inputs.baseline is None:
        objective = Objective.from_params(params, inputs.prototypes, caches.embed_dim, runtime.device)
    else:
        objective = Objective.for_baseline(params, inputs.baseline, caches.embed_dim, runtime.device)
    from clips4.model import create_student

    torch.manual_seed(params.seed)  # the same initial weights on every rank
    student = create_student(
        params.train.model,
        caches.embed_dim,
        pretrained_backbone=params.train.backbone_weights,
        random_init=params.train.random_init,
    ).to(runtime.device)
    if runtime.device.type == "cuda":  # convolutions run faster on NHWC tensors there (cuDNN)
        student = student.to(memory_format=torch.channels_last)
    if runtime.distributed and runtime.device.type == "cuda":
        student = torch.nn.SyncBatchNorm.convert_sync_batchnorm(student)
    optimizer = torch.optim.AdamW(
        [{"params": student.parameters()}, *objective.param_groups()],
        lr=params.train.lr,
        weight_decay=params.train.weight_decay,
    )
    identity = training_identity(
        params,
        inputs,
        {
            "clip_dense": caches.dense.fingerprint,
            "superpixels": caches.superpixels.fingerprint,
            "class_text" if inputs.baseline else "prototypes": objective.prototypes_fingerprint,
        },
        runtime.world,
        runtime.device,
    )
    start, finished_run = _resume(out, identity, student, optimizer, objective, runtime)
    # Each rank's own stream of dropout / k-means draws, after the identical initial weights.
    if start == 0:
        torch.manual_seed(params.seed * 1000 + 1 + runtime.rank)
        objective.seed(params.seed, runtime.rank)
    model = _wrap(student, runtime)
    plan = BatchPlan(tuple(caches.blocks()), params.train.batch_size, params.seed, runtime.rank, runtime.world)
    batches = TrainBatches(
        caches, plan, objective.view_maker(student.output_stride, student.mean, student.std, caches.feature_stride)
    )
    total = params.train.iterations
    stop = min(total, stop_after) if stop_after is not None else total
    loader = batch_loader(batches, start, stop, workers=params.train.workers, pin_memory=runtime.device.type == "cuda")
    log = TrainLog(live_dir, resume=start > 0, start=start) if (runtime.is_main and live_dir) else None

    def checkpoint(iteration: int, losses: dict[str, float], run: dict[str, Any] | None = None) -> None:
        states = _gather_rank_states(objective, runtime)
        if runtime.is_main:
            payload = _payload(params, identity, student, optimizer, objective, iteration, losses, states, inputs)
            save_checkpoint(out, payload | {"run": run})

    losses: dict[str, float] = {}
    logged: dict[str, float] = {}
    wait = compute = 0.0
    images = 0
    began = time.perf_counter()
    bar = tqdm(
        total=total, initial=start, desc="train", unit="it", disable=not (progress and runtime.is_main), smoothing=0.1
    )
    iteration = start
    ready = time.perf_counter()
    for iteration, batch in enumerate(loader, start=start + 1):
        fetched = time.perf_counter()
        wait += fetched - ready
        for group in optimizer.param_groups:
            group["lr"] = poly_lr(params.train.lr, iteration - 1, total, params.train.lr_power)
        output = objective.losses(model, batch, runtime.device)
        loss, terms = output.total, output.terms
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        objective.reduce_gradients()
        optimizer.step()
        objective.after_step()
        ready = time.perf_counter()
        compute += ready - fetched
        images += int(batch["rows"].numel()) * runtime.world
        if iteration % log_every == 0 or iteration == stop:
            values = mean_over_ranks(torch.stack([t.detach().float() for t in [loss, *terms.values()]]).cpu())
            losses = {"loss": float(values[0])} | {k: float(v) for k, v in zip(terms, values[1:], strict=True)}
            speed = images / max(ready - began, 1e-9)
            bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()} | {"img/s": f"{speed:.1f}"}, refresh=False)
            logged = losses | {"lr": optimizer.param_groups[0]["lr"], "images_per_second": speed}
            if log is not None:
                log.step(iteration, logged)
            if on_step is not None:
                on_step(iteration, losses)
        bar.update()
        if iteration % params.train.checkpoint_every == 0 and iteration < total:
            checkpoint(iteration, losses)
    bar.close()
    finished = iteration == total
    wall = time.perf_counter() - began
    run = {
        "final_losses": losses,
        "wall_seconds": round(wall, 2),
        "images_per_second": round(images / wall, 2) if wall > 0 and images else 0.0,
        "data_wait_fraction": round(wait / max(wait + compute, 1e-9), 4),
        "logged": logged,
    }
    if finished:
        broadcast_module_state(student)  # BatchNorm statistics of rank 0 everywhere: identical final weights
        if iteration > start or not Path(out).is_file():
            checkpoint(iteration, losses, run)
        elif finished_run is not None:
            # A rerun over a finished checkpoint (a code change upstream) trains nothing: report the run that made
            # it, so models/clips4.json and the dvclive summary (both rewritten by the stage) keep its record.
            run = finished_run
            if log is not None:
                log.restore_summary(iteration, run["logged"])
    if log is not None:
        log.close()
    return TrainResult(
        checkpoint=str(out),
        iterations=iteration,
        start_iteration=start,
        final_losses=run["final_losses"],
        wall_seconds=run["wall_seconds"],
        images_per_second=run["images_per_second"],
        data_wait_fraction=run["data_wait_fraction"],
        world_size=runtime.world,
        device=str(runtime.device),
        stopped_early=not finished,
        weights_sha256=weights_digest(student),
    )


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 over the bytes of every parameter and buffer, in state-dict order."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _wrap(student: torch.nn.Module, runtime: Runtime) -> torch.nn.Module:
    if not runtime.distributed:
        return student
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
    return DistributedDataParallel(student, device_ids=device_ids)


def _resume(
    out: str | Path,
    identity: dict[str, Any],
    student: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    objective: Objective,
    runtime: Runtime,
) -> tuple[int, dict[str, Any] | None]:
    """The iteration to start from: the checkpoint's when it is one of this configuration, else 0; and the record
    of the run that finished it (losses, speed, last logged values), when it is a finished one."""
    path = Path(out)
    if not path.is_file():
        return 0, None
    checkpoint = read_checkpoint(path)  # a corrupt file is an error: never silently thrown away
    try:
        check_identity(checkpoint, identity, path)
    except CheckpointError as err:
        if runtime.is_main:
            log.warning(f"train: starting afresh: {err}")
        return 0, None
    student.load_state_dict(checkpoint["state_dict"])
    optimizer.load_state_dict(checkpoint["training"]["optimizer"])
    states = checkpoint["training"]["ranks"]
    objective.load_state_dict(checkpoint["training"]["objective"], states[runtime.rank]["objective"])
    torch.set_rng_state(states[runtime.rank]["rng_cpu"])
    if runtime.device.type == "cuda" and states[runtime.rank].get("rng_cuda") is not None:
        torch.cuda.set_rng_state(states[runtime.rank]["rng_cuda"], runtime.device)
    return int(checkpoint["iteration"]), checkpoint.get("run")


def _gather_rank_states(objective: Objective, runtime: Runtime) -> list[dict[str, Any]]:
    """Every rank's own state (RNG, memory bank), gathered on rank 0 so one file resumes them all."""
    state = {
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state(runtime.device) if runtime.device.type == "cuda" else None,
        "objective": objective.rank_state_dict(),
    }
    if not runtime.distributed:
        return [state]
    gathered: list[Any] = [None] * runtime.world if runtime.is_main else []
    dist.gather_object(state, gathered if runtime.is_main else None, dst=0)
    return gathered


def _payload(
    params: Params,
    identity: dict[str, Any],
    student: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    objective: Objective,
    iteration: int,
    losses: dict[str, float],
    ranks: list[dict[str, Any]],
    inputs: TrainInputs,
) -> dict[str, Any]:
    return {
        "clips4_version": clips4.__version__,
        "model_name": params.train.model,
        "config": student.config,
        "embed_dim": student.embed_dim,
        "mean": list(student.mean),
        "std": list(student.std),
        "clip": dict(inputs.teacher),
        "baseline": None if inputs.baseline is None else inputs.baseline.name,  # None: the CLIP-S4 student
        "params": params.to_dict(),
        "identity": identity,
        "fingerprint": identity_fingerprint(identity),
        "iteration": iteration,
        "iterations": params.train.iterations,
        "losses": losses,
        "state_dict": {k: v.detach().cpu() for k, v in student.state_dict().items()},
        "training": {
            "optimizer": optimizer.state_dict(),
            "objective": objective.state_dict(),
            "ranks": [_cpu(state) for state in ranks],
        },
    }


def _cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_cpu(v) for v in value]
    return value
