"""A bad on-disk text cache entry (`--text-cache`) is recomputed and replaced with a warning (issue 22, finding 9):
a truncated file failed every rerun with a traceback, and a zero tensor labelled every pixel class 0."""

from __future__ import annotations

import warnings

import pytest
import torch

from clips4.clip import build_model, load_clip, model_config, save_clip_checkpoint
from clips4.clip import text as text_module
from clips4.clip.text import text_embeddings
from clips4.errors import Clips4Warning

TEMPLATES = ["a photo of a {}.", "a {} in the scene."]
NAMES = ["ball", "sky", "tree"]


@pytest.fixture
def loaded(tmp_path, monkeypatch):
    monkeypatch.setattr(text_module, "_MEMORY_CACHE", {})  # only the disk cache between calls
    config = model_config("clips4-test-vit")
    path = tmp_path / "clip.pt"
    save_clip_checkpoint(path, build_model(config).eval(), "clips4-test-vit", config)
    return load_clip("clips4-test-vit", str(path))


def _spoil(kind: str, good: torch.Tensor, path) -> None:
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "zeros":
        torch.save(torch.zeros_like(good), path)
    elif kind == "nan":
        torch.save(torch.full_like(good, float("nan")), path)
    elif kind == "shape":
        torch.save(good[:2], path)
    elif kind == "not unit":
        torch.save(good * 3, path)
    elif kind == "not a tensor":
        torch.save({"embeddings": good}, path)


@pytest.mark.parametrize("kind", ["truncated", "empty", "zeros", "nan", "shape", "not unit", "not a tensor"])
def test_a_bad_cache_entry_is_recomputed_and_replaced_with_a_warning(loaded, tmp_path, kind):
    cache = tmp_path / "text"
    good = text_embeddings(loaded, NAMES, TEMPLATES, cache_dir=cache)
    (entry,) = cache.glob("text_*.pt")
    _spoil(kind, good, entry)
    text_module._MEMORY_CACHE.clear()
    with pytest.warns(Clips4Warning, match=rf"{entry.name}: text cache entry .*recomputing and replacing it"):
        again = text_embeddings(loaded, NAMES, TEMPLATES, cache_dir=cache)
    torch.testing.assert_close(again, good)
    torch.testing.assert_close(torch.load(entry, weights_only=True), good)  # replaced on disk
    text_module._MEMORY_CACHE.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a good entry: read, no warning
        torch.testing.assert_close(text_embeddings(loaded, NAMES, TEMPLATES, cache_dir=cache), good)
