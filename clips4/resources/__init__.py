"""Data files shipped with the package: class lists, prompt templates, class folds (see shared/data/README.md)."""

from __future__ import annotations

import json
from importlib.resources import files


def read_lines(name: str) -> list[str]:
    """Non-empty lines of a packaged text resource (e.g. ``voc21.txt``)."""
    text = files(__package__).joinpath(name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def class_names(dataset: str) -> list[str]:
    """Class names of a real dataset, in label-id order: ``voc`` (21), ``context`` (59), ``cocostuff`` (171)."""
    resource = {"voc": "voc21.txt", "context": "context59.txt", "cocostuff": "cocostuff171.txt"}
    if dataset not in resource:
        raise KeyError(f"no packaged class list for dataset {dataset!r}; known: {', '.join(resource)}")
    return read_lines(resource[dataset])


def prompt_templates() -> list[str]:
    """The 85 prompt templates of MaskCLIP / CLIP-S4 (``{}`` is the class name)."""
    return read_lines("prompt_templates_vild85.txt")


def context59_folds() -> dict[int, list[str]]:
    """The 4 held-out class folds of Pascal Context-59 (class i in fold i mod 4)."""
    raw = json.loads(files(__package__).joinpath("context59_folds.json").read_text(encoding="utf-8"))
    return {int(k): v for k, v in raw.items()}
