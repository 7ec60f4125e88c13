"""Class text embeddings: each class name in every prompt template, encoded, normalised, averaged and
re-normalised (the prompt ensemble of CLIP, MaskCLIP and CLIP-S4, with the 85 ViLD templates).

Results are cached in memory per (model weights, class list, templates), so a process never encodes the
same text twice; stages in separate processes may also pass ``cache_dir`` to share them on disk.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from clips4.clip.loading import LoadedClip
from clips4.io import atomic_write
from clips4.resources import prompt_templates

_MEMORY_CACHE: dict[str, torch.Tensor] = {}


def _cache_key(loaded: LoadedClip, class_names: Sequence[str], templates: Sequence[str]) -> str:
    payload = json.dumps([loaded.identity, list(class_names), list(templates)])
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


@torch.no_grad()
def encode_prompts(loaded: LoadedClip, prompts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """L2-normalised text embeddings ``[N, D]`` of raw prompts."""
    device = next(loaded.model.parameters()).device
    outputs = []
    for start in range(0, len(prompts), batch_size):
        tokens = loaded.tokenizer(list(prompts[start : start + batch_size])).to(device)
        outputs.append(F.normalize(loaded.model.encode_text(tokens).float(), dim=-1))
    return torch.cat(outputs).cpu()


def text_embeddings(
    loaded: LoadedClip,
    class_names: Sequence[str],
    templates: Sequence[str] | None = None,
    cache_dir: str | Path | None = None,
) -> torch.Tensor:
    """Prompt-ensembled class embeddings ``[C, D]`` (float32, unit norm), in ``class_names`` order."""
    templates = list(prompt_templates() if templates is None else templates)
    key = _cache_key(loaded, class_names, templates)
    if key in _MEMORY_CACHE:
        return _MEMORY_CACHE[key].clone()
    cache_file = Path(cache_dir) / f"text_{key}.pt" if cache_dir and loaded.sha256 else None
    if cache_file is not None and cache_file.is_file():
        embeddings = torch.load(cache_file, map_location="cpu")
    else:
        prompts = [template.format(name) for name in class_names for template in templates]
        per_prompt = encode_prompts(loaded, prompts).reshape(len(class_names), len(templates), -1)
        embeddings = F.normalize(per_prompt.mean(dim=1), dim=-1)
        if cache_file is not None:
            atomic_write(cache_file, lambda handle: torch.save(embeddings, handle.name))  # by name, as always
    _MEMORY_CACHE[key] = embeddings
    return embeddings.clone()
