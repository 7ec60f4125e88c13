"""What `clips4 segment`, the Python API and the web page accept (issue 22, finding 12): a threshold outside the
range of a cosine, and class names of thousands of characters, are refused with a message; nothing is loaded."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from clips4.cli import app
from clips4.errors import Clips4Error
from clips4.inference import parse_classes
from clips4.inference.names import MAX_CLASS_NAME_CHARS
from clips4.serve.app import Demo, UploadError


def test_segment_refuses_a_threshold_outside_minus_one_to_one(tmp_path):
    args = ["segment", str(tmp_path), "--classes", "cat", "--checkpoint", str(tmp_path / "none.pt")]
    for value in ("2", "-1.5", "nan", "inf"):
        result = CliRunner().invoke(app, [*args, "--threshold", value])
        assert result.exit_code == 2, (value, result.output)
        assert "--threshold:" in result.output and "outside [-1, 1]" in result.output, value
    result = CliRunner().invoke(app, [*args, "--threshold", "-1"])
    assert result.exit_code == 1 and "checkpoint file not found" in result.output  # past the threshold check


def test_class_names_longer_than_the_cap_are_refused_everywhere(tmp_path):
    long_name = "x" * 10_500
    assert len(parse_classes(["a" * MAX_CLASS_NAME_CHARS, "sky"])[0]) == MAX_CLASS_NAME_CHARS
    with pytest.raises(Clips4Error, match=r"--classes: class name 'x{24}\.\.\.' is 10500 characters long; at most"):
        parse_classes(f"cat,{long_name}")
    # the CLI, from --classes and from --classes-file
    args = ["segment", str(tmp_path), "--checkpoint", str(tmp_path / "none.pt")]
    result = CliRunner().invoke(app, [*args, "--classes", f"cat,{long_name}"])
    assert result.exit_code == 1 and "10500 characters long" in result.output
    names = tmp_path / "names.txt"
    names.write_text(f"cat\n{long_name}\n")
    result = CliRunner().invoke(app, [*args, "--classes-file", str(names)])
    assert result.exit_code == 1 and f"{names}: class name" in result.output
    # the web API: a 400 with the message, before the image is read
    with pytest.raises(UploadError, match="10500 characters long") as caught:
        Demo({}).run(b"", "upload.png", f"cat,{long_name}", None)
    assert caught.value.status == 400
