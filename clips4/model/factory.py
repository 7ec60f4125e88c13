"""Student architectures by name, in open_clip's manner: ``model_configs/*.json`` scanned into a registry.

A JSON file holds only the architecture; keyword overrides win over it, and the embedding size always comes from
the teacher (the student's pixels live in CLIP's space). ``create_student`` also loads the backbone's ImageNet
weights where the architecture has them (the ResNet), from a local file only.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
from pathlib import Path
from typing import Any

from clips4.errors import Clips4Error
from clips4.model.pspnet import Student, StudentConfig

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
BACKBONES = ("resnet", "convnet")

_MODEL_CONFIGS: dict[str, dict[str, Any]] = {}


def add_model_config(path: str | Path) -> None:
    """Register one JSON config file, or every ``*.json`` in a folder, under its file name without ``.json``."""
    path = Path(path)
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    for file in files:
        try:
            config = json.loads(file.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise Clips4Error(f"{file}: not a readable JSON model config ({err}); fix or remove the file") from err
        _MODEL_CONFIGS[file.stem] = config


def list_models() -> list[str]:
    """The registered student architectures, sorted."""
    return sorted(_MODEL_CONFIGS)


def get_model_config(name: str) -> dict[str, Any]:
    """A copy of a registered config, or a clear error listing close names."""
    if name not in _MODEL_CONFIGS:
        close = difflib.get_close_matches(name, list_models(), n=5, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise Clips4Error(f"train.model: unknown student {name!r}.{hint} Known: {', '.join(list_models())}")
    return copy.deepcopy(_MODEL_CONFIGS[name])


def resolve_config(name: str, embed_dim: int, **overrides: Any) -> StudentConfig:
    """The registered config of ``name`` with ``overrides`` and ``embed_dim`` applied, validated."""
    config = get_model_config(name) | overrides | {"name": name, "embed_dim": int(embed_dim)}
    return config_from_dict(config)


def config_from_dict(config: dict[str, Any]) -> StudentConfig:
    """Validate a config dict (e.g. one saved in a checkpoint) into a :class:`StudentConfig`."""
    known = {f.name for f in dataclasses.fields(StudentConfig)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise Clips4Error(f"model config {config.get('name')!r}: unknown keys {unknown}; known: {sorted(known)}")
    try:
        resolved = StudentConfig(**config)
    except TypeError as err:
        raise Clips4Error(f"model config {config.get('name')!r}: {err}") from err
    if resolved.backbone not in BACKBONES:
        raise Clips4Error(f"model config {resolved.name!r}: backbone {resolved.backbone!r} is not one of {BACKBONES}")
    if resolved.embed_dim < 1 or resolved.head_channels < 1 or not 0 <= resolved.dropout < 1:
        raise Clips4Error(
            f"model config {resolved.name!r}: embed_dim and head_channels must be positive and dropout in [0, 1)"
        )
    return resolved


def build_student(config: dict[str, Any] | StudentConfig) -> Student:
    """A student with random weights from a resolved config (``Student.config``); loads no file."""
    return Student(config if isinstance(config, StudentConfig) else config_from_dict(config))


def create_student(
    name: str,
    embed_dim: int,
    *,
    pretrained_backbone: str | Path | None = None,
    random_init: bool = False,
    **overrides: Any,
) -> Student:
    """Build a registered student architecture.

    Args:
        name: a registered config (:func:`list_models`), e.g. ``"pspnet-r50-d8"`` or ``"pspnet-synth"``.
        embed_dim: D, the teacher's (CLIP's) embedding size.
        pretrained_backbone: the ImageNet weights file of a ResNet backbone; None looks in torch's hub cache.
        random_init: start a ResNet backbone from random weights instead of ImageNet's.
        **overrides: config keys that replace the JSON's (e.g. ``head_channels=256``).

    Returns:
        The student in training mode.

    Raises:
        Clips4Error: unknown name or key, or a ResNet's weights missing (and ``random_init`` not set) or unfit.

    Examples:
        >>> student = create_student("pspnet-test", embed_dim=16)
        >>> student.output_stride, student.embed_dim
        (4, 16)
    """
    config = resolve_config(name, embed_dim, **overrides)
    student = Student(config)
    if config.backbone == "resnet":
        if not random_init:
            student.backbone.load_imagenet(pretrained_backbone)
    elif pretrained_backbone is not None:
        raise Clips4Error(
            f"train.backbone_weights: {name!r} has a {config.backbone} backbone, which has no ImageNet weights; "
            "remove train.backbone_weights"
        )
    return student


add_model_config(MODEL_CONFIG_DIR)
