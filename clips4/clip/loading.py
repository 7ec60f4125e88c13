"""Loading CLIP through open_clip: by model name and pretrained tag, from a local checkpoint, or the tiny
CLIP that the ``clip_pretrain`` stage trains on the synthetic world.

Nothing here reaches the network: open_clip tags are read from the local cache with the Hugging Face
hub forced offline. A missing cache is an error that says how to fetch the weights on a connected
machine, not a hang. Tags and third-party files go through open_clip's own loading
(``create_model_and_transforms(name, pretrained=<tag or file>)``); weights trained with QuickGELU (OpenAI's
tags and TorchScript files) get QuickGELU (``force_quick_gelu``), as they were trained.

Loading a file never runs code from it: checkpoints and state dicts are read with ``torch.load(weights_only=True)``
(tensors and plain values only); given the sha256 that a record holds (``expected_sha256``: a student checkpoint's
``weights_sha256``), a file is hashed and refused before it is deserialised. OpenAI's TorchScript archives, which
``weights_only`` cannot read, are opened with ``torch.jit.load`` only from a path the user named (clip.pretrained,
``--clip FILE``), never from one clips4 found on its own (``allow_torchscript=False``).
"""

from __future__ import annotations

import difflib
import hashlib
import os
import pickle
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import huggingface_hub.constants as hub_constants
import open_clip
import torch
from open_clip.model import CLIP
from open_clip.transformer import QuickGELU

from clips4.errors import Clips4Error
from clips4.io import atomic_write
from clips4.params import Params
from clips4.paths import MODELS_DIR, WEIGHTS_FILE_SUFFIXES

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
#: The tiny CLIP that clip_pretrain trains (``clip.pretrained: synth``), relative to the project folder.
SYNTH_CHECKPOINT = Path(MODELS_DIR) / "clip.pt"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

open_clip.add_model_config(MODEL_CONFIG_DIR)  # the tiny configs live beside open_clip's own


@dataclass
class LoadedClip:
    """A CLIP model ready for inference, with what it takes to use and to identify it."""

    model: CLIP
    tokenizer: Any
    model_name: str
    source: str
    sha256: str | None
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD

    @property
    def embed_dim(self) -> int:
        return int(self.model.text_projection.shape[1]) if self.model.text_projection is not None else -1

    @property
    def quick_gelu(self) -> bool:
        """Whether the MLPs use QuickGELU (recorded in models/clip.json)."""
        return uses_quick_gelu(self.model)

    @property
    def identity(self) -> str:
        """A key for caches: changes when the model, its weights or its activation change (``:quickgelu`` is
        appended only for QuickGELU, so the keys of GELU models, the tiny CLIP included, are unchanged)."""
        key = f"{self.model_name}:{self.sha256 or self.source}"
        return f"{key}:quickgelu" if self.quick_gelu else key


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def packaged_models() -> list[str]:
    """The tiny configs shipped in ``clips4/clip/model_configs/`` (the only models ``clip.pretrained: synth`` takes)."""
    return sorted(path.stem for path in MODEL_CONFIG_DIR.glob("*.json"))


def compute_device() -> torch.device:
    """The GPU when torch sees one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def model_config(model_name: str) -> dict[str, Any]:
    """The open_clip JSON config of a model name, or a clear error listing close names."""
    config = open_clip.get_model_config(model_name)
    if config is None:
        close = difflib.get_close_matches(model_name, open_clip.list_models(), n=5, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise Clips4Error(
            f"clip.model: unknown model name {model_name!r}.{hint} "
            "List them all with: python -c 'import open_clip; print(open_clip.list_models())'"
        )
    return config


def build_model(config: dict[str, Any]) -> CLIP:
    """An open_clip CLIP from a JSON-style config dict (random weights)."""
    keys = ("embed_dim", "vision_cfg", "text_cfg", "quick_gelu")
    return CLIP(**{k: config[k] for k in keys if k in config})


def tokenizer_for(config: dict[str, Any]) -> Any:
    """open_clip's BPE tokenizer (its vocabulary ships inside the package, so this works offline)."""
    return open_clip.tokenizer.SimpleTokenizer(context_length=config.get("text_cfg", {}).get("context_length", 77))


def save_clip_checkpoint(path: str | Path, model: CLIP, model_name: str, config: dict[str, Any]) -> str:
    """Write ``{"model_name", "model_config", "state_dict"}`` atomically; returns the file's sha256."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    checkpoint = {"model_name": model_name, "model_config": config, "state_dict": state}
    # Saved by name (handle.name), as always: torch names the archive after the file, so its bytes stay the same.
    path = atomic_write(path, lambda handle: torch.save(checkpoint, handle.name), durable=True)
    return file_sha256(path)


class WeightsMismatchError(Clips4Error):
    """A weights file's sha256 is not the one its record holds; the file was not deserialised."""

    def __init__(self, message: str, path: Path, expected: str, found: str) -> None:
        super().__init__(message)
        self.path, self.expected, self.found = path, expected, found


def is_torchscript_archive(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (OpenAI's released CLIP files): a zip holding ``constants.pkl``."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name == "constants.pkl" or name.endswith("/constants.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _read_checkpoint(path: Path) -> Any:
    """The checkpoint's contents, read with ``weights_only=True``: tensors and plain values, never code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if unsafe:
            raise Clips4Error(
                f"{path}: holds Python objects ({unsafe.group(1)}), not only tensors and plain values; clips4 never "
                "unpickles those (they can run code): re-save the weights as a state dict, or use a file you trust"
            ) from None
        raise Clips4Error(
            f"{path}: not a readable CLIP checkpoint (not a torch file); the file is corrupt or not a torch "
            "checkpoint; re-create it (dvc repro clip_pretrain) or re-copy it"
        ) from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, ValueError, OSError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise Clips4Error(
            f"{path}: not a readable CLIP checkpoint ({first[:200]}); the file is corrupt or not "
            "a torch checkpoint; re-create it (dvc repro clip_pretrain) or re-copy it"
        ) from None


def _torchscript_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The weights of a TorchScript archive (OpenAI's released CLIP files), as open_clip keys them."""
    try:
        state_dict = torch.jit.load(str(path), map_location="cpu").state_dict()
    except (RuntimeError, ValueError) as err:
        raise Clips4Error(
            f"{path}: not a readable TorchScript archive ({str(err).splitlines()[0]}); re-download or re-copy it"
        ) from None
    for key in ("input_resolution", "context_length", "vocab_size"):  # attributes of OpenAI's module, not weights
        state_dict.pop(key, None)
    return state_dict


def _fit_state_dict(model: CLIP, state_dict: dict[str, torch.Tensor]) -> None:
    """Load OpenAI's state dict into an open_clip model, with open_clip's own key and shape conversions."""
    from open_clip.model import convert_to_custom_text_state_dict, resize_pos_embed, resize_text_pos_embed

    if "positional_embedding" in state_dict and not hasattr(model, "positional_embedding"):
        state_dict = convert_to_custom_text_state_dict(state_dict)
    if "logit_scale" in state_dict and model.logit_scale.ndim != state_dict["logit_scale"].ndim:
        state_dict["logit_scale"] = state_dict["logit_scale"].reshape(model.logit_scale.shape)
    resize_pos_embed(state_dict, model)
    resize_text_pos_embed(state_dict, model)
    model.load_state_dict(state_dict, strict=True)


def uses_quick_gelu(model: torch.nn.Module) -> bool:
    """Whether the model's MLPs use QuickGELU (``x * sigmoid(1.702 x)``), the activation OpenAI's CLIP was
    trained with, rather than exact GELU."""
    return any(isinstance(module, QuickGELU) for module in model.modules())


def require_packaged_model(model_name: str) -> None:
    if model_name not in packaged_models():
        raise Clips4Error(
            f"clip.model: {model_name!r} is not a packaged tiny config ({', '.join(packaged_models())}); "
            "clip.pretrained: synth trains and loads one of those; for a real open_clip model set clip.pretrained "
            "to its tag (e.g. openai) or to a checkpoint file"
        )


def _load_clips4_checkpoint(path: Path, checkpoint: dict[str, Any], model_name: str, sha256: str) -> LoadedClip:
    config, state_dict = checkpoint["model_config"], checkpoint["state_dict"]
    trained_as = checkpoint.get("model_name", model_name)
    if trained_as != model_name:
        raise Clips4Error(
            f"{path}: was trained as {trained_as!r} but clip.model is {model_name!r}; set clip.model to "
            f"{trained_as!r}, or retrain it (dvc repro clip_pretrain)"
        )
    model = build_model(config)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise Clips4Error(f"{path}: weights do not fit their own config ({first}); re-create it") from err
    return LoadedClip(model.eval(), tokenizer_for(config), model_name, str(path), sha256)


def _load_checkpoint_file(
    path: Path,
    model_name: str,
    device: str | torch.device,
    *,
    expected_sha256: str | None = None,
    allow_torchscript: bool = True,
) -> LoadedClip:
    if path.is_dir():
        raise Clips4Error(f"{path}: is a folder, not a checkpoint file; set clip.pretrained to the weights file in it")
    if not path.is_file():
        raise Clips4Error(f"{path}: checkpoint file not found")
    sha256 = file_sha256(path)  # before anything reads the file's contents
    if expected_sha256 is not None and sha256 != expected_sha256:
        raise WeightsMismatchError(
            f"{path}: sha256 {sha256} is not the recorded {expected_sha256}; not loaded: these are other weights",
            path,
            expected_sha256,
            sha256,
        )
    # OpenAI's own TorchScript files hold weights trained with QuickGELU, whatever the config says.
    openai_file = is_torchscript_archive(path)
    if openai_file and not allow_torchscript:
        raise Clips4Error(
            f"{path}: is a TorchScript archive (OpenAI's released format), which clips4 opens only from a path you "
            "name, never from one it found; name it: --clip FILE (Python: clip=...) or clip.pretrained"
        )
    checkpoint = _torchscript_state_dict(path) if openai_file else _read_checkpoint(path)
    if isinstance(checkpoint, dict) and "state_dict" in checkpoint and "model_config" in checkpoint:
        return _load_clips4_checkpoint(path, checkpoint, model_name, sha256)
    if not isinstance(checkpoint, dict):
        raise Clips4Error(f"{path}: holds a {type(checkpoint).__name__}, not a CLIP state dict or checkpoint")
    model_config(model_name)
    model, _, preprocess = open_clip.create_model_and_transforms(model_name, force_quick_gelu=openai_file)
    try:  # open_clip's loader (it converts third-party key layouts), also with weights_only=True
        if openai_file:
            _fit_state_dict(model, checkpoint)
        else:
            open_clip.load_checkpoint(model, str(path), weights_only=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise Clips4Error(
            f"{path}: weights do not fit clip.model {model_name!r} ({first}); set clip.model to the model "
            "these weights were trained as"
        ) from err
    normalize = preprocess.transforms[-1]
    return LoadedClip(
        model=model.eval(),
        tokenizer=open_clip.get_tokenizer(model_name),
        model_name=model_name,
        source=str(path),
        sha256=sha256,
        mean=tuple(normalize.mean),
        std=tuple(normalize.std),
    )


@contextmanager
def _hub_offline() -> Iterator[None]:
    """Force the Hugging Face hub offline while loading. huggingface_hub reads ``HF_HUB_OFFLINE`` once, at import,
    so setting the variable is not enough: the module constant is switched too (and both restored after)."""
    previous_env, previous_constant = os.environ.get("HF_HUB_OFFLINE"), hub_constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = "1"
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = previous_constant
        if previous_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous_env


def _load_tag(model_name: str, tag: str, device: str | torch.device) -> LoadedClip:
    model_config(model_name)
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if tag not in tags:
        raise Clips4Error(
            f"clip.pretrained: {tag!r} is neither a file nor an open_clip tag of {model_name!r} "
            f"(tags: {', '.join(tags) or 'none'}; or 'synth' for the tiny CLIP trained by clip_pretrain)"
        )
    # Weights trained with QuickGELU (OpenAI's, and a few others) say so in their tag; open_clip 3.x would build
    # exact GELU for `ViT-B-16` + `openai` and only warn, which silently changes every feature.
    quick_gelu = bool(open_clip.get_pretrained_cfg(model_name, tag).get("quick_gelu", False))
    try:
        with _hub_offline():
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=tag, device=device, force_quick_gelu=quick_gelu
            )
        tokenizer = open_clip.get_tokenizer(model_name)
    except Exception as err:  # open_clip raises many types for a missing cache; all mean the same here
        raise Clips4Error(
            f"weights {model_name}/{tag} are not in the local cache ({type(err).__name__}). On a machine with "
            f"internet run: python -c \"import open_clip; open_clip.create_model_and_transforms('{model_name}', "
            f"pretrained='{tag}')\" and copy its Hugging Face cache folder (~/.cache/huggingface/hub, or "
            "$HF_HOME/hub) to the same place here; or set clip.pretrained to a local checkpoint file"
        ) from None
    normalize = preprocess.transforms[-1]
    return LoadedClip(
        model=model.eval(),
        tokenizer=tokenizer,
        model_name=model_name,
        source=f"open_clip:{model_name}/{tag}",
        sha256=None,
        mean=tuple(normalize.mean),
        std=tuple(normalize.std),
    )


def load_clip(
    model_name: str,
    pretrained: str,
    device: str | torch.device = "cpu",
    *,
    expected_sha256: str | None = None,
    allow_torchscript: bool = True,
    synth_checkpoint: str | Path = SYNTH_CHECKPOINT,
) -> LoadedClip:
    """Load CLIP for inference.

    ``pretrained`` is ``synth`` (the tiny CLIP that the ``clip_pretrain`` stage wrote to ``synth_checkpoint``), a
    path to a local checkpoint (clips4's format, an open_clip state dict, or OpenAI's TorchScript file), or an
    open_clip pretrained tag such as ``openai`` (read from the local cache, never downloaded). The stages load
    through :func:`load_project_clip`, which finds the tiny CLIP in the project's models/.

    Files are read with ``torch.load(weights_only=True)``. ``expected_sha256``: the sha256 a record holds for the
    file; another file is refused (:class:`WeightsMismatchError`) before it is read. ``allow_torchscript=False``
    for a path that the user did not name (found beside another file): TorchScript archives are then refused.
    """
    checked = {"expected_sha256": expected_sha256}
    if pretrained == "synth":
        require_packaged_model(model_name)
        synth_file = Path(synth_checkpoint)
        if not synth_file.is_file():
            raise Clips4Error(
                f"{synth_file}: not found; clip.pretrained is 'synth', so train the tiny CLIP first: "
                "dvc repro clip_pretrain (or clips4 clip-pretrain)"
            )
        # A fixed place, not a path the user named: clips4's own format, never a TorchScript archive.
        loaded = _load_checkpoint_file(synth_file, model_name, device, **checked, allow_torchscript=False)
    elif Path(pretrained).suffix in WEIGHTS_FILE_SUFFIXES or Path(pretrained).exists():
        loaded = _load_checkpoint_file(
            Path(pretrained), model_name, device, **checked, allow_torchscript=allow_torchscript
        )
    else:
        loaded = _load_tag(model_name, pretrained, device)
    loaded.model.to(device)
    return loaded


def load_project_clip(
    params: Params, device: str | torch.device = "cpu", *, models_dir: str | Path | None = None
) -> LoadedClip:
    """The CLIP that ``clip.model`` and ``clip.pretrained`` name; for ``synth``, clip.pt in ``models_dir`` (default:
    the project's models/, beside the params file, wherever the command runs from)."""
    models = params.project_path(MODELS_DIR) if models_dir is None else Path(models_dir)
    synth_checkpoint = models / SYNTH_CHECKPOINT.name
    return load_clip(params.clip.model, params.clip.pretrained, device, synth_checkpoint=synth_checkpoint)
