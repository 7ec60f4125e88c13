"""The student checkpoint (models/clips4.pt): written atomically, read with ``torch.load(weights_only=True)``.

It holds only tensors and plain values: the student's weights and architecture config, its embedding size, the
CLIP teacher's reference (model name and weights sha256), the clips4 version, the resolved params, and, so that a
killed run resumes to the same weights, the training state (iteration, optimiser, RNG states, memory bank,
unknown prototypes). ``identity`` names everything the weights depend on (params, CLIP, caches); a run resumes
from a checkpoint only when it matches, and each differing key is named otherwise.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from clips4.errors import Clips4Error
from clips4.io import atomic_write

FORMAT = "clips4-student"
FORMAT_VERSION = 1


class CheckpointError(Clips4Error):
    """A checkpoint file is corrupt, not a clips4 student checkpoint, or from another configuration."""


#: The metrics files that dvc.yaml's train stages write beside each checkpoint (``cache: false``, kept in git). A
#: failed ``dvc repro`` of the stage deletes them, and ``dvc checkout`` cannot bring them back: git holds them.
STAGE_METRICS = {
    "models/clips4.pt": ("models/clips4.json", "reports/train/metrics.json"),
    "models/maskclip_plus.pt": ("models/maskclip_plus.json", "reports/train_maskclip_plus/metrics.json"),
}


def restore_advice(path: str | Path) -> str:
    """How to restore the committed copy of a checkpoint: ``dvc checkout --force`` (a plain ``dvc checkout`` refuses
    to replace a modified file), plus ``git checkout`` of its stage's metrics for the pipeline's own checkpoints."""
    posix = Path(path).as_posix()
    stage_path = next((key for key in STAGE_METRICS if posix == key or posix.endswith("/" + key)), None)
    if stage_path is None:
        return f"restore it (for a DVC output: `dvc checkout --force {path}`)"
    metrics = " ".join(STAGE_METRICS[stage_path])
    return (
        f"restore the last committed run, from the project root: `dvc checkout --force {stage_path} && git checkout "
        f"-- {metrics}` (git brings back the metrics files that a failed `dvc repro` deletes)"
    )


def identity_fingerprint(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:32]


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus the format tag) to ``path`` through :func:`clips4.io.atomic_write` (durable), so a
    kill or a power loss mid-write leaves the previous checkpoint intact."""
    checkpoint = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    atomic_write(path, lambda handle: torch.save(checkpoint, handle), durable=True)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's dict (on the CPU); :class:`CheckpointError` naming the file when it cannot serve."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found; train one with `clips4 train` (dvc repro train)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({first[:200]}); the file is corrupt or truncated: delete it to "
            f"train afresh, or {restore_advice(path)}"
        ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a clips4 student checkpoint (no '{FORMAT}' format tag); point at a file written by "
            "`clips4 train`"
        )
    if checkpoint.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {checkpoint.get('format_version')} is not {FORMAT_VERSION}, the one this "
            "clips4 reads; retrain with `clips4 train` or use the clips4 version that wrote it"
        )
    return checkpoint


def identity_differences(stored: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """Keys whose values differ between two identities, as ``key: stored -> expected``."""
    keys = sorted(set(stored) | set(expected))
    return [f"{k}: {stored.get(k)!r} -> {expected.get(k)!r}" for k in keys if stored.get(k) != expected.get(k)]


def check_identity(checkpoint: dict[str, Any], expected: dict[str, Any], path: str | Path) -> None:
    """Raise :class:`CheckpointError` naming ``path`` and the differing keys when the checkpoint was trained with
    another configuration (params, CLIP weights or caches) than ``expected``."""
    differences = identity_differences(checkpoint.get("identity", {}), expected)
    if differences:
        shown = "; ".join(differences[:4]) + (f"; and {len(differences) - 4} more" if len(differences) > 4 else "")
        raise CheckpointError(
            f"{path}: trained with another configuration ({shown}); use the params it was trained with, "
            "or move the file away to train afresh"
        )


def load_student(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """The trained student (eval mode, on ``device``) and its checkpoint dict, from ``path``; errors name the file.

    Examples:
        >>> student, checkpoint = load_student("models/clips4.pt")  # doctest: +SKIP
        >>> checkpoint["clip"]["weights_sha256"], student.embed_dim  # doctest: +SKIP
    """
    from clips4.model import build_student

    checkpoint = read_checkpoint(path)
    try:
        student = build_student(checkpoint["config"])
        student.load_state_dict(checkpoint["state_dict"], strict=True)
    except (KeyError, RuntimeError, TypeError, Clips4Error) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path}: its weights do not fit its student config ({first[:200]}); the file was written by another "
            "clips4 version or is damaged: retrain with `clips4 train`"
        ) from None
    return student.to(device).eval(), checkpoint
