"""Data files shipped with the package: class lists, the prompt names MaskCLIP uses for them, prompt templates,
class folds (see shared/data/README.md)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib.resources import files


def read_lines(name: str) -> list[str]:
    """Non-empty lines of a packaged text resource (e.g. ``voc21.txt``)."""
    text = files(__package__).joinpath(name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


CLASS_LISTS = {"voc": "voc21", "context": "context59", "cocostuff": "cocostuff171"}


def class_names(dataset: str) -> list[str]:
    """Class names of a real dataset, in label-id order: ``voc`` (21), ``context`` (59), ``cocostuff`` (171)."""
    if dataset not in CLASS_LISTS:
        raise KeyError(f"no packaged class list for dataset {dataset!r}; known: {', '.join(CLASS_LISTS)}")
    return read_lines(f"{CLASS_LISTS[dataset]}.txt")


def prompt_names(dataset: str, names: Sequence[str]) -> list[str]:
    """The names to put in the prompt templates for ``names`` (a dataset's class names, in label-id order).

    For the real datasets these are MaskCLIP's prompt names (``prompt_names_<list>.txt``, line i for class i):
    ``aeroplane`` -> ``airplane``, ``diningtable`` -> ``dining table``, COCO-Stuff ``wall-other`` -> ``wall``, ...
    The list given must be the packaged class list (or a subset of it, in any order: a held-out fold, the
    known classes); each name maps by its label name. Any other dataset (the synthetic world) already uses
    human names, which are returned unchanged. Every text embedding of a class goes through this function.
    """
    if dataset not in CLASS_LISTS:
        return list(names)
    table = dict(zip(class_names(dataset), read_lines(f"prompt_names_{CLASS_LISTS[dataset]}.txt"), strict=True))
    unknown = [name for name in names if name not in table]
    if unknown:
        raise KeyError(f"{unknown[0]!r} is not a {dataset} class; the packaged list is {CLASS_LISTS[dataset]}.txt")
    return [table[name] for name in names]


def prompt_templates() -> list[str]:
    """The 85 prompt templates of MaskCLIP / CLIP-S4 (``{}`` is the class name)."""
    return read_lines("prompt_templates_vild85.txt")


def context59_folds() -> dict[int, list[str]]:
    """The 4 held-out class folds of Pascal Context-59 (class i in fold i mod 4)."""
    raw = json.loads(files(__package__).joinpath("context59_folds.json").read_text(encoding="utf-8"))
    return {int(k): v for k, v in raw.items()}
