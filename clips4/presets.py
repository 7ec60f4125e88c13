"""Presets: named params overrides in ``pipeline/presets/<name>.yaml``, merged into a params file (``clips4 params
preset NAME``), so that DVC sees the change as it sees an edit by hand.

A preset file holds a one-line ``description`` and ``set``: the params it sets, as dotted keys
(``losses.contrastive_weight: 1.0``, the form of ``dvc exp run -S`` and of ``load_params``'s overrides) or nested
sections; comments beside each value cite its source. A preset sets only keys that exist: the merged file is
validated (:func:`clips4.params.params_from_dict`) before anything is written, and a bad key or value is refused
with a message naming the preset file and the key.

The merge edits the params file in place through ruamel.yaml's round trip (installed with DVC, which edits
params.yaml the same way for ``dvc exp run -S``): every comment, the key order and the alignment are kept, only the
preset's values change (a key the file lacks is added at the end of its section). The write is atomic
(:func:`clips4.io.atomic_write`).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from clips4.io import atomic_write
from clips4.params import ParamsError, load_params, params_from_dict

#: The presets' folder, relative to the current folder (as ``clips4 experiments``'s pipeline/experiments.yaml).
PRESETS_DIR = Path("pipeline/presets")
PRESET_SUFFIX = ".yaml"
PRESET_KEYS = ("description", "set")


@dataclass(frozen=True)
class Preset:
    """One preset file: its ``name`` (the file's stem), ``path``, one-line ``description`` and the ``values`` it
    sets, ``{dotted key: value}`` in the file's order."""

    name: str
    path: Path
    description: str
    values: dict[str, Any]


def preset_names(folder: str | Path = PRESETS_DIR) -> list[str]:
    """The presets in ``folder``, sorted; a missing folder is an error naming it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ParamsError(f"{folder}: no presets folder; run from the project root or pass --presets-dir")
    return sorted(path.stem for path in folder.glob(f"*{PRESET_SUFFIX}") if path.is_file())


def list_presets(folder: str | Path = PRESETS_DIR) -> list[Preset]:
    """Every preset of ``folder``, sorted by name."""
    return [load_preset(name, folder) for name in preset_names(folder)]


def load_preset(name: str, folder: str | Path = PRESETS_DIR) -> Preset:
    """The preset ``name`` of ``folder``; an unknown name is an error naming the folder and the presets in it."""
    names = preset_names(folder)
    if name not in names:
        raise ParamsError(f"{folder}: no preset {name!r}; presets: {', '.join(names) or 'none'}")
    path = Path(folder) / f"{name}{PRESET_SUFFIX}"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML ({err}); fix the preset") from None
    if not isinstance(raw, dict) or set(raw) != set(PRESET_KEYS):
        raise ParamsError(f"{path}: a preset is a mapping of exactly {' and '.join(PRESET_KEYS)}")
    description, values = raw["description"], raw["set"]
    if not isinstance(description, str) or "\n" in description.strip() or not isinstance(values, dict) or not values:
        raise ParamsError(f"{path}: `description` must be one line of text and `set` a non-empty mapping of params")
    return Preset(name, path, description.strip(), dotted(values))


def dotted(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"losses": {"semantic": true}, "train.lr": 0.001}`` as ``{"losses.semantic": true, "train.lr": 0.001}``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat |= dotted(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def merge(document: dict[str, Any], values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Set each dotted key of ``values`` in the nested ``document`` (in place; a missing section is added) and
    return it. ``where`` names the preset in the error for a key whose parent is a value, not a section."""
    for key, value in values.items():
        *parents, leaf = key.split(".")
        node = document
        for depth, part in enumerate(parents):
            if node.get(part) is None:
                node[part] = CommentedMap()
            node = node[part]
            if not isinstance(node, dict):
                section = ".".join(parents[: depth + 1])
                raise ParamsError(f"{where}: {key}: {section} is a value, not a section of keys; fix the preset")
        node[leaf] = value
    return document


def apply_preset(preset: Preset, params_path: str | Path) -> dict[str, tuple[Any, Any]]:
    """Merge ``preset`` into the params file ``params_path`` (comments kept) and write it atomically, after
    validating the result. Returns ``{dotted key: (old value, new value)}`` for the keys whose value changed (old
    ``None`` for a key the file lacked).

    Raises :class:`ParamsError` naming the params file when it is invalid before the merge, and naming the preset
    file and the key when the merged params are; nothing is written then.
    """
    params_path = Path(params_path)
    load_params(params_path)  # the file's own problems name the file, before the preset is blamed for them
    text = params_path.read_text(encoding="utf-8")
    rt = _round_trip()
    document = rt.load(text)
    before = dotted(yaml.safe_load(text))
    merged = _dump(rt, merge(document, preset.values, str(preset.path)))
    try:
        params_from_dict(yaml.safe_load(merged))
    except ParamsError as err:
        raise ParamsError(f"{preset.path}: {err} (merged into {params_path}; nothing written)") from None
    changed = {key: (before.get(key), value) for key, value in preset.values.items() if before.get(key) != value}
    if merged != text:
        atomic_write(params_path, merged)
    return changed


def _round_trip() -> YAML:
    """ruamel.yaml's round-trip mode, writing YAML as params.yaml is written: long lines unwrapped, ``null``."""
    rt = YAML(typ="rt")
    rt.width = 4096  # never fold a long value or comment onto a second line
    rt.preserve_quotes = True
    # round-trip mode writes None as an empty value (`key:`); params.yaml spells it out
    rt.representer.add_representer(
        type(None), lambda representer, _: representer.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    return rt


def _dump(rt: YAML, document: Any) -> str:
    out = io.StringIO()
    rt.dump(document, out)
    return out.getvalue()
