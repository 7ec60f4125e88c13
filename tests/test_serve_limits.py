"""`clips4 serve` segments a large upload within a stated bound, and answers every failure with a status and a
message (issue 22, finding 7): a 30-megapixel upload, inside the 40 MP limit, needed one 15 GB allocation and got a
bare 500; a 4 MP image took 73 s and 6.9 GB. The segmenters here are stand-ins that record what they are given."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from clips4.cli import app
from clips4.inference import SegmentResult
from clips4.serve import app as serve_app
from clips4.serve.app import Demo, create_app, decode_upload


class RecordingSegmenter:
    """Labels the left half class 0 and the right half class 1; keeps the shapes it was given; may fail."""

    def __init__(self, failure: BaseException | None = None) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.failure = failure

    def segment(self, image, classes, threshold=None, *, scores=True):
        self.shapes.append(image.shape)
        if self.failure is not None:
            raise self.failure
        labels = np.zeros(image.shape[:2], np.uint8)
        labels[:, image.shape[1] // 2 :] = 1
        best = np.ones(image.shape[:2], np.float32)
        return SegmentResult(labels, None, best, tuple(classes), threshold, "clips4")


def encoded(width: int, height: int, fmt: str) -> bytes:
    small = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(small).resize((width, height), Image.Resampling.NEAREST).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_large_upload_is_scaled_to_the_longer_side_bound(fmt):
    upload = decode_upload(encoded(3000, 2000, fmt), f"big.{fmt.lower()}", 50 * 2**20, max_side=300)
    assert upload.size == (3000, 2000) and upload.segmented_size == (300, 200)
    assert upload.image.dtype == np.uint8 and upload.image.shape == (200, 300, 3)
    assert upload.note(300) == "scaled from 3000x2000 to 300x200 pixels (longer side at most 300) before segmenting"
    small = decode_upload(encoded(120, 80, fmt), "small", 2**20, max_side=300)
    assert small.segmented_size == small.size == (120, 80) and small.note(300) is None
    assert serve_app.DEFAULT_MAX_SIDE == 1024


def test_a_16_bit_upload_is_not_read_as_white():
    buffer = io.BytesIO()
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)).save(buffer, format="PNG")
    image = decode_upload(buffer.getvalue(), "gray16.png", 2**20).image
    assert image.min() == 0 and 250 <= image.max() <= 255 and len(np.unique(image)) > 200


def test_the_segmenters_see_at_most_max_side_and_the_response_says_so():
    segmenters = {"CLIP-S4": RecordingSegmenter(), "MaskCLIP": RecordingSegmenter()}
    demo = Demo(segmenters, max_upload_bytes=50 * 2**20, max_side=256)
    body = demo.run(encoded(4000, 3000, "JPEG"), "photo.jpg", "sky, grass", None)
    for segmenter in segmenters.values():
        assert segmenter.shapes == [(192, 256, 3)]
    assert body["size"] == [4000, 3000] and body["segmented_size"] == [256, 192]
    assert "scaled from 4000x3000 to 256x192" in body["note"]
    for result in body["results"]:
        assert [entry["percent"] for entry in result["legend"]] == [50.0, 50.0]
        overlay = Image.open(io.BytesIO(__import__("base64").b64decode(result["overlay"].split(",", 1)[1])))
        assert overlay.height == 2 * 192  # the segmented size (doubled to MIN_OVERLAY_SIDE for the legend), not 3000


def test_serve_takes_max_side(monkeypatch):
    calls = {}
    monkeypatch.setattr("clips4.serve.app.serve_forever", lambda checkpoint, **kw: calls.update(kw))
    result = CliRunner().invoke(app, ["serve", "--max-side", "512"])
    assert result.exit_code == 0, result.output
    assert calls["max_side"] == 512


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def serving():
    """Serve a Demo of stand-in segmenters on a free port; yields a function that posts one upload."""
    import uvicorn

    servers = []

    def start(demo: Demo) -> str:
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(demo), host="127.0.0.1", port=port, log_level="critical"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
            time.sleep(0.05)
        servers.append((server, thread))
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


def _post(url: str, data: bytes, classes: str = "sky,grass") -> tuple[int, dict]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="classes"\r\n\r\n{classes}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="photo.png"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    request = urllib.request.Request(f"{url}/api/segment", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())  # JSON with a message, not a bare "Internal Server Error"


@pytest.mark.parametrize(
    ("failure", "status", "words"),
    [
        (MemoryError(), 507, "out of memory while segmenting it at up to 1024 pixels a side; restart the server"),
        (RuntimeError("DefaultCPUAllocator: can't allocate memory: 15 GB"), 507, "smaller --max-side"),
        (ValueError("something broke"), 500, "photo.png: segmenting failed (ValueError: something broke)"),
    ],
)
def test_a_failure_while_segmenting_is_answered_with_a_status_and_a_message(serving, failure, status, words):
    url = serving(Demo({"CLIP-S4": RecordingSegmenter(failure)}))
    code, body = _post(url, encoded(64, 48, "PNG"))
    assert code == status and words in body["error"], body
    code, body = _post(url, b"not an image")  # the server goes on serving
    assert code == 415 and "not a readable image" in body["error"]


def test_docs_state_the_bound():
    text = (Path(__file__).resolve().parents[1] / "docs" / "inference.md").read_text()
    assert "--max-side" in text and "segmented_size" in text
