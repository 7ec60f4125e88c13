"""The CLIP a student checkpoint was trained against, found from the reference the checkpoint records.

The student's pixels live in that CLIP's embedding space, so only that CLIP's text embeddings can label them.
The checkpoint records ``{"model_name", "weights_sha256", "source"}`` (the ``train`` stage writes it), so inference
needs no params.yaml: ``source`` is an ``open_clip:<model>/<tag>`` reference (read from the local cache) or a
weights file. A relative file path is looked up from the current folder, then beside the checkpoint (models/clip.pt
sits next to models/clips4.pt). ``clip=`` overrides where the weights are read from; the sha256 must still match.

A weights file is hashed before it is read, and one whose sha256 is not the recorded one is never deserialised; files
are read with ``torch.load(weights_only=True)``, and a TorchScript archive (OpenAI's format) is opened only from a
path the user named (``clip=``, ``--clip FILE``), never from one found through the record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from clips4.clip.loading import LoadedClip, WeightsMismatchError, file_sha256, load_clip
from clips4.errors import Clips4Error
from clips4.model.checkpoint import CheckpointError

OPEN_CLIP_PREFIX = "open_clip:"


def check_teacher(checkpoint: dict, loaded: LoadedClip, path: str | Path) -> None:
    """The student was trained against the CLIP whose text embeddings will label it, or a clear error."""
    trained = checkpoint.get("clip", {})
    now = {"model_name": loaded.model_name, "weights_sha256": loaded.sha256}
    if any(trained.get(key) != value for key, value in now.items() if value is not None):
        raise Clips4Error(
            f"{path}: trained against CLIP {trained.get('model_name')} ({trained.get('weights_sha256')}), but "
            f"clip.model and clip.pretrained load {loaded.model_name} ({loaded.sha256}); its embeddings live in "
            "that CLIP's space: set the params it was trained with, or retrain (`dvc repro`)"
        )


def clip_reference(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The checkpoint's CLIP reference, or :class:`CheckpointError` naming the file when it has none."""
    reference = checkpoint.get("clip")
    if not isinstance(reference, dict) or not reference.get("model_name") or not reference.get("source"):
        raise CheckpointError(
            f"{path}: records no CLIP teacher (model name and source), so its pixels cannot be labelled by text; "
            "retrain it with `clips4 train`"
        )
    return reference


def candidate_files(source: str, checkpoint_path: Path) -> list[Path]:
    """Where a recorded weights file may be: as recorded, then beside the checkpoint."""
    recorded = Path(source)
    if recorded.is_absolute():
        return [recorded, checkpoint_path.parent / recorded.name]
    return [recorded, checkpoint_path.parent / recorded.name, checkpoint_path.parent.parent / recorded]


def load_teacher_clip(
    checkpoint: dict[str, Any], path: str | Path, device: str | torch.device, clip: str | None = None
) -> LoadedClip:
    """The CLIP that labels the checkpoint at ``path``: from ``clip`` (a file or an open_clip tag) when given, else
    from the recorded reference. Errors name the checkpoint and say how to point at the weights."""
    path = Path(path)
    reference = clip_reference(checkpoint, path)
    model_name, source = reference["model_name"], str(reference["source"])
    recorded_sha = reference.get("weights_sha256")
    if clip is not None:
        try:  # a path the user named: a TorchScript archive may be opened, after its sha256 is checked
            loaded = load_clip(model_name, clip, device=device, expected_sha256=recorded_sha)
        except WeightsMismatchError as err:
            raise CheckpointError(_mismatch(path, model_name, recorded_sha, err.path, err.found)) from None
        except Clips4Error as err:
            raise CheckpointError(f"{path}: its CLIP teacher: {err}") from None
    elif source.startswith(OPEN_CLIP_PREFIX):
        name, _, tag = source[len(OPEN_CLIP_PREFIX) :].partition("/")
        loaded = load_clip(name, tag, device=device)
    else:
        existing = [file for file in candidate_files(source, path) if file.is_file()]
        # A relative path may name another project's file from the current folder: take the file whose sha256 is
        # the recorded one (e.g. models/clip.pt beside the checkpoint). Any other file is not read at all.
        if recorded_sha:
            found = next((file for file in existing if file_sha256(file) == recorded_sha), None)
            if found is None and existing:
                first = existing[0]
                raise CheckpointError(_mismatch(path, model_name, recorded_sha, first, file_sha256(first)))
        else:
            found = existing[0] if existing else None
        if found is None:
            tried = ", ".join(str(file) for file in candidate_files(source, path))
            raise CheckpointError(
                f"{path}: its CLIP teacher {model_name} ({source}) is not found (tried {tried}); pass the weights "
                "file with --clip FILE (Python: clip=...), or restore it (`dvc pull` / `dvc repro clip_pretrain`)"
            )
        try:  # found, not named: never a TorchScript archive
            loaded = load_clip(
                model_name, str(found), device=device, expected_sha256=recorded_sha, allow_torchscript=False
            )
        except Clips4Error as err:
            raise CheckpointError(f"{path}: its CLIP teacher: {err}") from None
    try:
        check_teacher(checkpoint, loaded, path)
    except Clips4Error:  # reworded: at inference no params choose the CLIP
        raise CheckpointError(
            f"{path}: trained against CLIP {model_name} ({reference.get('weights_sha256')}), but {loaded.source} is "
            f"{loaded.model_name} ({loaded.sha256}); its pixels live in the first one's space: point --clip at those "
            "weights (Python: clip=...), or retrain with `clips4 train`"
        ) from None
    if checkpoint.get("embed_dim") != loaded.embed_dim:
        raise CheckpointError(
            f"{path}: the student embeds into {checkpoint.get('embed_dim')} dimensions but CLIP {model_name} into "
            f"{loaded.embed_dim}; the checkpoint does not belong to this CLIP: retrain it with `clips4 train`"
        )
    return loaded


def _mismatch(path: Path, model_name: str, recorded: str | None, weights: Path, found: str) -> str:
    return (
        f"{path}: trained against CLIP {model_name} ({recorded}), but {weights} holds other weights ({found}); "
        "not loaded. Point --clip at the weights it was trained with (Python: clip=...), or retrain with "
        "`clips4 train`"
    )
