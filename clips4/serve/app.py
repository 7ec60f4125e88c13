"""``clips4 serve``: a local web page that segments an uploaded image with typed class names, CLIP-S4 and the
MaskCLIP baseline side by side.

FastAPI serves one static page (``page.html``) and one JSON endpoint, ``POST /api/segment`` (multipart: ``image``,
``classes``, optional ``threshold``), which answers ``{"results": [{"method", "overlay" (a PNG data URL),
"legend": [{"name", "colour", "percent"}]}, ...]}`` or, for a bad request, ``{"error": "..."}`` with status 400
(no class names, bad threshold), 413 (an upload over the size limit, or an image over :data:`MAX_PIXELS`) or 415
(not an image). A bad request never stops the server. Requests run one at a time (one model, one device).
It listens on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import base64
import io
import logging
import threading
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Form, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image, UnidentifiedImageError

from clips4.errors import Clips4Error

log = logging.getLogger(__name__)

#: Largest image accepted, in pixels (decoding a larger one would take minutes and gigabytes).
MAX_PIXELS = 40_000_000
DEFAULT_MAX_UPLOAD_BYTES = 20 * 2**20


class UploadError(Clips4Error):
    """A request the page can answer with a message: ``status`` is its HTTP status code."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def decode_upload(data: bytes, filename: str, max_bytes: int) -> np.ndarray:
    """An uploaded file as uint8 RGB ``[H, W, 3]``, or :class:`UploadError` saying what is wrong with it."""
    if len(data) > max_bytes:
        raise UploadError(
            f"{filename}: {len(data) / 2**20:.1f} MB is over the {max_bytes / 2**20:.1f} MB limit; upload a smaller "
            "image (or restart with --max-upload-mb)",
            413,
        )
    if not data:
        raise UploadError(f"{filename or 'upload'}: the file is empty; choose an image file", 400)
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise UploadError(
                    f"{filename}: {image.width}x{image.height} pixels is over the {MAX_PIXELS / 1e6:.0f} megapixel "
                    "limit; upload a smaller image",
                    413,
                )
            image.load()
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except Image.DecompressionBombError:
        raise UploadError(f"{filename}: over Pillow's image size limit; upload a smaller image", 413) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise UploadError(
            f"{filename}: not a readable image ({type(err).__name__}); upload a PNG or JPEG", 415
        ) from None


def png_data_url(picture: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def parse_threshold(text: str | None) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise UploadError(f"threshold: {text!r} is not a number; leave it empty or give e.g. 0.2", 400) from None
    if not -1.0 <= value <= 1.0:
        raise UploadError(f"threshold: {value} is outside [-1, 1], the range of a cosine similarity", 400)
    return value


@dataclass
class Demo:
    """The two segmenters the page compares, and the lock that runs one request at a time."""

    methods: dict[str, Any]  # display name -> clips4.inference.Segmenter
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES

    def __post_init__(self) -> None:
        self.lock = threading.Lock()

    def run(self, data: bytes, filename: str, classes: str, threshold: str | None) -> dict[str, Any]:
        from clips4.inference.render import legend_entries, overlay
        from clips4.inference.segmenter import parse_classes

        try:
            names = parse_classes(classes, where="class names")
        except Clips4Error as err:
            raise UploadError(str(err), 400) from None
        cutoff = parse_threshold(threshold)
        image = decode_upload(data, filename, self.max_upload_bytes)
        results = []
        with self.lock:
            for title, segmenter in self.methods.items():
                result = segmenter.segment(image, names, cutoff, scores=False)
                legend = [
                    {"name": e.name, "colour": e.hex, "percent": round(100 * e.fraction, 1)}
                    for e in legend_entries(result)
                ]
                results.append({"method": title, "overlay": png_data_url(overlay(image, result)), "legend": legend})
        return {"results": results, "size": [int(image.shape[1]), int(image.shape[0])]}


def create_app(demo: Demo) -> FastAPI:
    """The FastAPI application of ``demo``."""
    app = FastAPI(title="clips4", docs_url=None, redoc_url=None)
    page = files("clips4.serve").joinpath("page.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.post("/api/segment")
    def segment(
        image: Annotated[UploadFile, File()],
        classes: Annotated[str, Form()] = "",
        threshold: Annotated[str | None, Form()] = None,
    ) -> JSONResponse:
        # Read one byte past the limit: enough to refuse an oversized upload without holding all of it.
        data = image.file.read(demo.max_upload_bytes + 1)
        try:
            return JSONResponse(demo.run(data, image.filename or "upload", classes, threshold))
        except UploadError as err:
            return JSONResponse({"error": str(err)}, status_code=err.status)
        except Clips4Error as err:
            return JSONResponse({"error": str(err)}, status_code=400)

    return app


def load_demo(
    checkpoint: str | Path, clip: str | None = None, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
) -> Demo:
    """The student of ``checkpoint`` and the MaskCLIP baseline of its CLIP (loaded once, shared)."""
    from clips4.inference.segmenter import Segmenter

    student = Segmenter.from_checkpoint(checkpoint, clip=clip)
    return Demo({"CLIP-S4": student, "MaskCLIP": student.teacher()}, max_upload_bytes)


def serve_forever(
    checkpoint: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    clip: str | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
) -> None:
    """Load the models, then serve the page until interrupted."""
    import uvicorn

    demo = load_demo(checkpoint, clip, max_upload_bytes)
    log.info(demo.methods["CLIP-S4"].describe())
    log.info(f"clips4 serve: open http://{host}:{port}/ (Ctrl-C stops)")
    uvicorn.run(create_app(demo), host=host, port=port, log_level="warning")
