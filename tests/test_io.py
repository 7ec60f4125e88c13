"""clips4.io.atomic_write: a failed write keeps the previous file and leaves no temporary file; durable writes
fsync; the JSON format is the one the project has always written."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from clips4.io import atomic_write, atomic_write_json, temporary_path


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The file descriptors os.fsync was called with (the real fsync still runs)."""
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls


@pytest.mark.parametrize("error", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_a_writer_failing_half_way_keeps_the_previous_file_and_no_temporary(tmp_path, error):
    path = tmp_path / "out.bin"
    atomic_write(path, b"previous content")

    def half_then_fail(handle):
        handle.write(b"new co")
        handle.flush()
        assert temporary_path(path).read_bytes() == b"new co"  # the half-written bytes exist, elsewhere
        raise error

    with pytest.raises(type(error)):
        atomic_write(path, half_then_fail)
    assert path.read_bytes() == b"previous content"
    assert _leftovers(tmp_path) == []


def test_a_failed_first_write_leaves_no_file(tmp_path):
    def fail(handle):
        handle.write(b"x" * 100)
        raise OSError("no space left")

    with pytest.raises(OSError, match="no space left"):
        atomic_write(tmp_path / "new.txt", fail)
    assert list(tmp_path.iterdir()) == []


def test_bytes_text_and_callback_are_written_and_the_folder_created(tmp_path):
    assert atomic_write(tmp_path / "a" / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert (tmp_path / "a" / "c.md").exists() is False
    atomic_write(tmp_path / "a" / "c.md", "mean ± std\n")
    assert (tmp_path / "a" / "c.md").read_bytes() == "mean ± std\n".encode()
    atomic_write(tmp_path / "a" / "d.bin", lambda handle: handle.write(b"from a callback"))
    assert (tmp_path / "a" / "d.bin").read_bytes() == b"from a callback"
    assert _leftovers(tmp_path / "a") == []
    with pytest.raises(TypeError, match="bytes, str or a callable"):
        atomic_write(tmp_path / "e.json", {"not": "serialised"})  # type: ignore[arg-type]


def test_durable_fsyncs_the_file_and_its_folder(tmp_path, fsyncs):
    atomic_write(tmp_path / "fast.txt", "x")
    assert fsyncs == []
    atomic_write(tmp_path / "safe.txt", "x", durable=True)
    assert len(fsyncs) == 2  # the file before the rename, the folder after it
    atomic_write_json(tmp_path / "metrics.json", {"a": 1}, durable=True)
    assert len(fsyncs) == 4


def test_json_format_is_indent_2_with_a_trailing_newline(tmp_path):
    payload = {"clips4": {"miou": 12.5, "per_class": [1, None]}, "name": "é"}
    path = atomic_write_json(tmp_path / "m.json", payload)
    assert path.read_text() == json.dumps(payload, indent=2) + "\n"


def test_the_temporary_name_is_hidden_beside_the_file_and_per_thread(tmp_path):
    path = tmp_path / "clip.pt"
    main = temporary_path(path)
    assert main.parent == tmp_path and main.name == f".clip.pt.tmp{os.getpid()}"
    other: list[Path] = []
    thread = threading.Thread(target=lambda: other.append(temporary_path(path)))
    thread.start()
    thread.join()
    assert other[0] != main and other[0].name.startswith(f".clip.pt.tmp{os.getpid()}-")


def test_the_student_checkpoint_is_written_durably_and_atomically(tmp_path, fsyncs):
    import torch

    from clips4.model.checkpoint import read_checkpoint, save_checkpoint

    path = tmp_path / "models" / "clips4.pt"
    save_checkpoint(path, {"iteration": 1, "weights": torch.ones(3)})
    assert len(fsyncs) == 2
    with pytest.raises(Exception):  # noqa: B017 - whatever pickling raises for a lambda
        save_checkpoint(path, {"iteration": 2, "weights": lambda: None})
    assert read_checkpoint(path)["iteration"] == 1
    assert _leftovers(path.parent) == []


def test_a_figure_that_fails_to_draw_leaves_no_file(tmp_path):
    from clips4.figures import new_figure, save_png

    fig = new_figure(1, 1)
    fig.add_subplot().plot([0, 1], [0, 1])
    path = save_png(fig, tmp_path / "fig.png")
    before = path.read_bytes()
    assert before.startswith(b"\x89PNG")
    fig.add_subplot().set_title("$\\notacommand{$")  # mathtext fails while the PNG is being written
    with pytest.raises(ValueError):
        save_png(fig, path)
    assert path.read_bytes() == before and _leftovers(tmp_path) == []
