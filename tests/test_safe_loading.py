"""Loading weights never runs code from a file (issue 22, finding 4): every ``torch.load`` reads tensors and plain
values only, a file whose sha256 is not the recorded one is refused unread, and a TorchScript archive is opened only
from a path the user named."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest
import torch
from segment_world import build_segment_project
from typer.testing import CliRunner

from clips4.cli import app
from clips4.clip import build_model, load_clip, model_config
from clips4.clip.loading import file_sha256
from clips4.errors import Clips4Error
from clips4.inference import Segmenter
from clips4.model.checkpoint import CheckpointError, read_checkpoint, save_checkpoint

PACKAGE = Path(__file__).resolve().parents[1] / "clips4"


class Payload:
    """Unpickled with ``weights_only=False``, it writes ``marker``: proof that a checkpoint ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('the payload ran')",))


def crafted_clip(path: Path, marker: Path) -> Path:
    """A file in clips4's CLIP checkpoint format whose state dict is a payload."""
    path.parent.mkdir(parents=True, exist_ok=True)
    config = model_config("clips4-test-vit")
    torch.save({"model_name": "clips4-test-vit", "model_config": config, "state_dict": Payload(marker)}, path)
    return path


def rewrite_checkpoint(source: Path, target: Path, **changes) -> Path:
    checkpoint = read_checkpoint(source)
    checkpoint.update(changes)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(target, {k: v for k, v in checkpoint.items() if k not in ("format", "format_version")})
    return target


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_segment_project(tmp_path_factory.mktemp("safe"))


def test_every_torch_load_in_clips4_reads_weights_only():
    unsafe = []
    for file in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"):
                continue
            if not (isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"):
                continue
            keywords = {k.arg: k.value for k in node.keywords}
            flag = keywords.get("weights_only")
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                unsafe.append(f"{file.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not unsafe, f"torch.load without weights_only=True: {unsafe}"


def test_a_crafted_clip_file_runs_nothing_through_load_clip(tmp_path):
    marker = tmp_path / "marker"
    crafted = crafted_clip(tmp_path / "clip.pt", marker)
    with pytest.raises(Clips4Error, match=r"clip\.pt: holds Python objects \(exec\).*never unpickles"):
        load_clip("clips4-test-vit", str(crafted))
    assert not marker.exists()


def test_a_crafted_clip_beside_a_genuine_student_runs_nothing(project, tmp_path, monkeypatch):
    """The reported attack: a crafted clip.pt next to a genuine clips4.pt, under `clips4 segment --checkpoint`."""
    marker = tmp_path / "marker"
    evil = tmp_path / "evil"
    (evil / "models").mkdir(parents=True)
    checkpoint = evil / "models" / "clips4.pt"
    shutil.copy(project / "models" / "clips4.pt", checkpoint)
    crafted_clip(evil / "models" / "clip.pt", marker)
    monkeypatch.chdir(evil)
    with pytest.raises(CheckpointError, match=r"holds other weights .*not loaded"):
        Segmenter.from_checkpoint(checkpoint, device="cpu")
    assert not marker.exists()
    image = tmp_path / "x.png"
    image.write_bytes((project / "data/synth/JPEGImages").glob("*.jpg").__next__().read_bytes())
    for extra in ([], ["--clip", str(evil / "models" / "clip.pt")]):
        args = ["segment", str(image), "--classes", "a,b", "--checkpoint", str(checkpoint), "--out", "out", *extra]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1 and "not loaded" in result.output and "Traceback" not in result.output, extra
        assert not marker.exists(), extra


def test_a_crafted_clip_with_the_recorded_sha256_still_runs_nothing(project, tmp_path, monkeypatch):
    """A student checkpoint (itself read with weights_only=True) that records the crafted file's own sha256."""
    marker = tmp_path / "marker"
    crafted = crafted_clip(tmp_path / "models" / "clip.pt", marker)
    good = read_checkpoint(project / "models" / "clips4.pt")
    clip = {**good["clip"], "weights_sha256": file_sha256(crafted)}
    checkpoint = rewrite_checkpoint(project / "models" / "clips4.pt", tmp_path / "models" / "clips4.pt", clip=clip)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match=r"holds Python objects \(exec\)"):
        Segmenter.from_checkpoint(checkpoint, device="cpu")
    with pytest.raises(CheckpointError, match=r"holds Python objects"):
        Segmenter.from_checkpoint(checkpoint, device="cpu", clip=str(crafted))
    assert not marker.exists()
    # The student checkpoint itself is read the same way.
    torch.save({"format": "clips4-student", "format_version": 1, "state_dict": Payload(marker)}, checkpoint)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        Segmenter.from_checkpoint(checkpoint, device="cpu")
    assert not marker.exists()


def _torchscript_clip(path: Path) -> Path:
    """A TorchScript archive of the test CLIP, as OpenAI releases theirs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    traced = build_model(model_config("clips4-test-vit")).eval()
    del traced._buffers["attn_mask"]  # a plain attribute in OpenAI's model: not among the archive's weights
    torch.jit.trace_module(traced, {"encode_image": torch.zeros(1, 3, 32, 32)}).save(str(path))
    return path


def test_a_torchscript_archive_opens_only_from_a_path_the_user_named(project, tmp_path, monkeypatch):
    archive = _torchscript_clip(tmp_path / "models" / "clip.pt")
    good = read_checkpoint(project / "models" / "clips4.pt")
    clip = {**good["clip"], "weights_sha256": file_sha256(archive)}
    checkpoint = rewrite_checkpoint(project / "models" / "clips4.pt", tmp_path / "models" / "clips4.pt", clip=clip)
    monkeypatch.chdir(tmp_path)
    # Found through the checkpoint's record (beside it), even with the recorded sha256: refused, with the way out.
    with pytest.raises(CheckpointError, match=r"is a TorchScript archive .* --clip FILE"):
        Segmenter.from_checkpoint(checkpoint, device="cpu")
    with pytest.raises(Clips4Error, match="TorchScript archive"):
        load_clip("clips4-test-vit", str(archive), allow_torchscript=False)
    # Named by the user: opened (and still checked against the record).
    named = Segmenter.from_checkpoint(checkpoint, device="cpu", clip=str(archive))
    assert named.clip.quick_gelu and named.clip.sha256 == file_sha256(archive)
    assert load_clip("clips4-test-vit", str(archive)).quick_gelu  # clip.pretrained: a path in the params
