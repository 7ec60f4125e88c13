"""Class text embeddings: each class name in every prompt template, encoded, normalised, averaged and
re-normalised (the prompt ensemble of CLIP, MaskCLIP and CLIP-S4, with the 85 ViLD templates).

Results are cached in memory per (model weights, class list, templates), so a process never encodes the
same text twice; stages in separate processes may also pass ``cache_dir`` to share them on disk. A cached file
that is unreadable or not a finite ``[C, D]`` tensor of unit rows is recomputed and replaced, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from clips4.clip.loading import LoadedClip
from clips4.errors import Clips4Warning
from clips4.io import atomic_write
from clips4.resources import prompt_templates

_MEMORY_CACHE: dict[str, torch.Tensor] = {}
#: How far from 1 the norm of a cached embedding may be (float32 rounding is about 1e-7).
UNIT_NORM_TOLERANCE = 1e-3


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
    embeddings = None
    if cache_file is not None and cache_file.is_file():
        embeddings = _read_cached(cache_file, len(class_names), loaded.embed_dim)
    if embeddings is None:
        prompts = [template.format(name) for name in class_names for template in templates]
        per_prompt = encode_prompts(loaded, prompts).reshape(len(class_names), len(templates), -1)
        embeddings = F.normalize(per_prompt.mean(dim=1), dim=-1)
        if cache_file is not None:
            atomic_write(cache_file, lambda handle: torch.save(embeddings, handle.name))  # by name, as always
    _MEMORY_CACHE[key] = embeddings
    return embeddings.clone()


def _read_cached(cache_file: Path, rows: int, dim: int) -> torch.Tensor | None:
    """The cached embeddings of ``cache_file`` when they are a finite float ``[rows, dim]`` tensor of unit rows
    (``dim`` < 0: any width); else ``None`` with a warning naming the file (the caller recomputes and replaces it)."""
    try:
        embeddings = torch.load(cache_file, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, corrupt, or not a tensor file: all mean "recompute"
        problem = f"unreadable ({type(err).__name__})"
    else:
        if not isinstance(embeddings, torch.Tensor) or not embeddings.is_floating_point():
            problem = f"holds a {type(embeddings).__name__}, not float embeddings"
        elif embeddings.ndim != 2 or embeddings.shape[0] != rows or (dim > 0 and embeddings.shape[1] != dim):
            problem = f"holds shape {tuple(embeddings.shape)}, not ({rows}, {dim if dim > 0 else 'D'})"
        elif not bool(torch.isfinite(embeddings).all()):
            problem = "holds NaN or infinite values"
        elif not torch.allclose(embeddings.float().norm(dim=-1), torch.ones(rows), atol=UNIT_NORM_TOLERANCE):
            problem = "holds rows that are not of unit norm"
        else:
            return embeddings.float()
    warnings.warn(
        f"{cache_file}: text cache entry {problem}; recomputing and replacing it", Clips4Warning, stacklevel=3
    )
    return None
