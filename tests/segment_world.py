"""A tiny project for the inference tests: a synthetic world of 48-px images, the random 32-d test CLIP at
models/clip.pt and a student checkpoint at models/clips4.pt in the format `clips4 train` writes (random weights:
inference only has to reproduce the evaluate stage's labels, whatever the weights)."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures import make_tiny_project

TINY_SEGMENT = {
    "synth": {"image_size": 48, "train_images": 2, "val_images": 4},
    "clip": {"model": "clips4-test-vit", "pretrained": "synth", "window": 48, "stride": 16},
    "train": {"model": "pspnet-test"},
}


def write_student_checkpoint(root: Path, seed: int = 0) -> Path:
    """models/clips4.pt with the keys ``clips4.train.loop`` writes that inference reads."""
    import torch

    import clips4
    from clips4.clip.loading import file_sha256
    from clips4.model import create_student
    from clips4.model.checkpoint import save_checkpoint
    from clips4.params import load_params

    params = load_params(root / "params.yaml")
    torch.manual_seed(seed)
    student = create_student("pspnet-test", 32).eval()
    path = root / "models" / "clips4.pt"
    save_checkpoint(
        path,
        {
            "clips4_version": clips4.__version__,
            "model_name": "pspnet-test",
            "config": student.config,
            "embed_dim": student.embed_dim,
            "mean": list(student.mean),
            "std": list(student.std),
            "clip": {
                "model_name": "clips4-test-vit",
                "weights_sha256": file_sha256(root / "models" / "clip.pt"),
                "source": "models/clip.pt",
            },
            "params": params.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in student.state_dict().items()},
        },
    )
    return path


def build_segment_project(root: Path) -> Path:
    make_tiny_project(root, TINY_SEGMENT)
    write_student_checkpoint(root)
    return root
