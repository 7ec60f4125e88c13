"""The classes a run names: the held-out folds of a class-free experiment, and the known classes' text embeddings.

One home for both, since the prototypes stage, the baseline's training, evaluation and the report all need the
same fold and the same text: a class held out in one place and named in another would make the class-free scores
meaningless.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from clips4.errors import Clips4Error
from clips4.params import Params


def class_folds(params: Params) -> dict[int, list[str]]:
    """The held-out class folds of the dataset: the synthetic world's folds.json, or Pascal Context-59's."""
    if params.dataset.name == "synth":
        path = Path(params.dataset.root) / "folds.json"
        if not path.is_file():
            raise Clips4Error(f"{path}: missing; regenerate the world with `clips4 synth`")
        return {int(k): v for k, v in json.loads(path.read_text()).items()}
    if params.dataset.name == "context":
        from clips4.resources import context59_folds

        return context59_folds()
    raise Clips4Error(
        f"params.yaml: fold: no class folds are defined for dataset {params.dataset.name!r} "
        "(folds exist for synth and context); set fold: null"
    )


def held_out_classes(params: Params) -> list[str]:
    """The classes of ``params.fold`` (never named in training), or none when no fold is set."""
    return [] if params.fold is None else class_folds(params)[params.fold]


def class_text(loaded: Any, dataset: str, names: tuple[str, ...]) -> np.ndarray:
    """float32 ``[k, D]`` prompt-ensembled text embeddings of the known classes (the one place they are made),
    with the dataset's prompt names (``aeroplane`` -> ``airplane``, as MaskCLIP prompts them)."""
    from clips4.clip import text_embeddings
    from clips4.resources import prompt_names

    return text_embeddings(loaded, prompt_names(dataset, names)).numpy().astype(np.float32)
