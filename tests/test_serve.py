"""`clips4 serve`: the API's answers to bad uploads (the server keeps serving), and the page driven in a real
headless Chromium (skipped where none is installed: `apt-get install chromium`)."""

from __future__ import annotations

import io
import json
import shutil
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
from segment_world import build_segment_project
from typer.testing import CliRunner

from clips4.cli import app
from clips4.serve.app import create_app, load_demo

MAX_UPLOAD = 200_000


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_segment_project(tmp_path_factory.mktemp("serve"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(project: Path):
    import uvicorn

    demo = load_demo(project / "models" / "clips4.pt", max_upload_bytes=MAX_UPLOAD)
    port = _free_port()
    config = uvicorn.Config(create_app(demo), host="127.0.0.1", port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not instance.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(10)


def _png(height: int = 40, width: int = 56) -> bytes:
    buffer = io.BytesIO()
    image = np.zeros((height, width, 3), np.uint8)
    image[: height // 2] = (40, 90, 220)
    image[height // 2 :] = (30, 160, 40)
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _post(url: str, data: bytes, filename: str, classes: str, threshold: str = "") -> tuple[int, dict]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="classes"\r\n\r\n{classes}\r\n'.encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="threshold"\r\n\r\n{threshold}\r\n'.encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n",
        f"--{boundary}--\r\n".encode(),
    ]
    request = urllib.request.Request(
        f"{url}/api/segment",
        data=b"".join(parts),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_bad_uploads_get_a_message_and_the_server_keeps_serving(server):
    status, body = _post(server, b"just some text", "notes.txt", "grass,sky")
    assert status == 415 and "notes.txt: not a readable image" in body["error"]
    status, body = _post(server, b"\x89PNG" + bytes(MAX_UPLOAD), "huge.png", "grass,sky")
    assert status == 413 and "huge.png" in body["error"] and "limit" in body["error"]
    status, body = _post(server, _png(), "ok.png", " , ")
    assert status == 400 and "no class names" in body["error"]
    status, body = _post(server, _png(), "ok.png", "grass", threshold="high")
    assert status == 400 and "threshold" in body["error"]

    status, body = _post(server, _png(), "ok.png", "grass, sky", threshold="-1")
    assert status == 200, body
    assert [result["method"] for result in body["results"]] == ["CLIP-S4", "MaskCLIP"]
    for result in body["results"]:
        assert [entry["name"] for entry in result["legend"]] == ["grass", "sky", "unlabelled (< -1)"]
        assert sum(entry["percent"] for entry in result["legend"]) == pytest.approx(100, abs=0.2)
        picture = Image.open(io.BytesIO(__import__("base64").b64decode(result["overlay"].split(",", 1)[1])))
        assert picture.height >= 40 and picture.width > 56


def test_serve_listens_on_localhost_by_default(monkeypatch):
    calls = {}
    monkeypatch.setattr("clips4.serve.app.serve_forever", lambda checkpoint, **kw: calls.update(kw, path=checkpoint))
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 0, result.output
    assert calls["host"] == "127.0.0.1" and calls["port"] == 7860 and calls["path"] == Path("models/clips4.pt")


def _chromium() -> str | None:
    return next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="no Chromium installed (apt-get install chromium)")
def test_the_page_in_a_real_headless_browser(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
    image, text = tmp_path / "field.png", tmp_path / "notes.txt"
    image.write_bytes(_png(64, 96))
    text.write_text("not an image")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(server)
            page.set_input_files("#image", str(text))
            page.fill("#classes", "grass, sky")
            page.click("#run")
            page.wait_for_function("document.getElementById('message').textContent.includes('not a readable')")
            assert page.locator("section.method").count() == 0

            page.set_input_files("#image", str(image))
            page.click("#run")
            page.wait_for_selector("section.method >> nth=1", timeout=60_000)
            page.screenshot(path=str(tmp_path / "page.png"))
            assert page.locator("section.method h2").all_inner_texts() == ["CLIP-S4", "MaskCLIP"]
            for panel in page.locator("section.method").all():
                assert panel.locator("li").evaluate_all("items => items.map(i => i.dataset.name)") == ["grass", "sky"]
                size = panel.locator("img").evaluate("img => [img.complete, img.naturalWidth, img.naturalHeight]")
                assert size[0] and size[1] > 96 and size[2] >= 256  # decoded: enlarged image plus the legend
            assert page.locator("#message").inner_text() == ""
        finally:
            browser.close()
