"""Loading CLIP: checkpoints round-trip; every bad input gives a clear error, never a hang."""

import pytest
import torch

from clips4.clip import build_model, load_clip, model_config, save_clip_checkpoint, text_embeddings
from clips4.clip.loading import file_sha256
from clips4.errors import Clips4Error


def test_checkpoint_round_trip(tmp_path):
    config = model_config("clips4-test-vit")
    model = build_model(config).eval()
    path = tmp_path / "clip.pt"
    sha = save_clip_checkpoint(path, model, "clips4-test-vit", config)
    loaded = load_clip("clips4-test-vit", str(path))
    assert loaded.sha256 == sha == file_sha256(path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.model.state_dict()[name]), name
    tokens = loaded.tokenizer(["a photo of a ball."])
    assert tokens.shape == (1, 16)


def test_raw_state_dict_file(tmp_path):
    model = build_model(model_config("clips4-test-rn"))
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    loaded = load_clip("clips4-test-rn", str(path))
    assert loaded.model_name == "clips4-test-rn"
    with pytest.raises(Clips4Error, match=r"do not fit clip\.model"):
        load_clip("clips4-test-vit", str(path))


def test_unknown_model_name_suggests_close_ones():
    with pytest.raises(Clips4Error, match=r"unknown model name 'ViT-B-61'.*ViT-B-16"):
        load_clip("ViT-B-61", "openai")


def test_missing_and_corrupt_checkpoints(tmp_path):
    with pytest.raises(Clips4Error, match="checkpoint file not found"):
        load_clip("clips4-test-vit", str(tmp_path / "absent.pt"))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(Clips4Error, match=r"corrupt\.pt: not a readable CLIP checkpoint"):
        load_clip("clips4-test-vit", str(corrupt))


def test_uncached_open_clip_tag_says_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf"))  # an empty cache: nothing to find offline
    with pytest.raises(Clips4Error, match=r"not in the local cache.*create_model_and_transforms"):
        load_clip("RN50", "openai")
    with pytest.raises(Clips4Error, match="neither a file nor an open_clip tag"):
        load_clip("RN50", "no-such-tag")


def test_missing_synth_checkpoint_says_which_stage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Clips4Error, match="dvc repro clip_pretrain"):
        load_clip("clips4-tiny-vit", "synth")


def test_text_embeddings_average_normalised_templates(tmp_path, tiny_clip):
    path = tmp_path / "clip.pt"
    tiny_clip(path)
    loaded = load_clip("clips4-test-vit", str(path))
    templates = ["a photo of a {}.", "a {} in the scene."]
    embeddings = text_embeddings(loaded, ["ball", "sky"], templates, cache_dir=tmp_path / "text")
    assert embeddings.shape == (2, 32)
    with torch.no_grad():
        for row, name in zip(embeddings, ["ball", "sky"], strict=True):
            encoded = loaded.model.encode_text(loaded.tokenizer([t.format(name) for t in templates]))
            expected = torch.nn.functional.normalize(torch.nn.functional.normalize(encoded, dim=-1).mean(0), dim=0)
            assert torch.allclose(row, expected, atol=1e-6)
    assert list((tmp_path / "text").glob("text_*.pt"))  # shared on disk with other processes
    again = text_embeddings(loaded, ["ball", "sky"], templates)
    assert torch.equal(again, embeddings)
    default = text_embeddings(loaded, ["ball"])  # the 85 packaged templates
    assert torch.allclose(default.norm(dim=-1), torch.ones(1))


@pytest.fixture
def tiny_openai_tag(tmp_path, monkeypatch):
    """A tiny checkpoint registered as the `openai` tag of clips4-test-vit (open_clip's pretrained registry),
    with `quick_gelu: True` as open_clip records for OpenAI's weights: no download."""
    import open_clip.pretrained

    path = tmp_path / "tiny_openai.pt"
    torch.save(build_model(model_config("clips4-test-vit")).state_dict(), path)
    entry = {"file": str(path), "quick_gelu": True, "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, "clips4-test-vit", {"openai": entry})
    return path


def test_openai_tag_builds_quick_gelu(tiny_openai_tag):
    loaded = load_clip("clips4-test-vit", "openai")
    assert loaded.quick_gelu  # open_clip alone builds exact GELU here and only warns
    assert loaded.source == "open_clip:clips4-test-vit/openai" and loaded.mean == (0.5, 0.5, 0.5)
    assert loaded.identity == "clips4-test-vit:open_clip:clips4-test-vit/openai:quickgelu"  # caches see the change
    assert not load_clip("clips4-test-vit", str(tiny_openai_tag)).quick_gelu  # a plain state dict: its config's


def test_openai_torchscript_file_builds_quick_gelu(tmp_path):
    model = build_model(model_config("clips4-test-vit")).eval()
    path = tmp_path / "openai.pt"  # OpenAI's released files are TorchScript archives
    traced = build_model(model_config("clips4-test-vit")).eval()
    traced.load_state_dict(model.state_dict())
    del traced._buffers["attn_mask"]  # a plain attribute in OpenAI's model: not among the archive's weights
    torch.jit.trace_module(traced, {"encode_image": torch.zeros(1, 3, 32, 32)}).save(str(path))
    loaded = load_clip("clips4-test-vit", str(path))
    assert loaded.quick_gelu
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.model.state_dict()[name]), name


def test_tag_loading_forces_the_hub_offline(tiny_openai_tag, monkeypatch):
    import huggingface_hub.constants
    import open_clip.factory

    seen = []
    original = open_clip.factory.download_pretrained
    monkeypatch.setattr(
        open_clip.factory,
        "download_pretrained",
        lambda *a, **k: seen.append(huggingface_hub.constants.is_offline_mode()) or original(*a, **k),
    )
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    load_clip("clips4-test-vit", "openai")
    assert seen == [True]  # the module constant, read by huggingface_hub, not only the variable
    assert not huggingface_hub.constants.HF_HUB_OFFLINE and "HF_HUB_OFFLINE" not in __import__("os").environ


def test_folder_as_checkpoint_is_called_a_folder(tmp_path):
    with pytest.raises(Clips4Error, match="is a folder, not a checkpoint file"):
        load_clip("clips4-test-vit", str(tmp_path))


def test_synth_rejects_a_model_that_is_not_packaged(tmp_path, monkeypatch, tiny_clip):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Clips4Error, match=r"clip\.model: 'ViT-B-16' is not a packaged tiny config"):
        load_clip("ViT-B-16", "synth")
    tiny_clip(tmp_path / "models" / "clip.pt")
    with pytest.raises(Clips4Error, match=r"was trained as 'clips4-test-vit' but clip\.model is 'clips4-tiny-vit'"):
        load_clip("clips4-tiny-vit", "synth")
    assert load_clip("clips4-test-vit", "synth").model_name == "clips4-test-vit"
