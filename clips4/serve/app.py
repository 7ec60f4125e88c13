"""``clips4 serve``: a local web page that segments an uploaded image with typed class names, CLIP-S4 and the
MaskCLIP baseline side by side.

FastAPI serves one static page (``page.html``) and one JSON endpoint, ``POST /api/segment`` (multipart: ``image``,
``classes``, optional ``threshold``), which answers ``{"results": [{"method", "overlay" (a PNG data URL),
"legend": [{"name", "colour", "percent"}]}, ...], "size", "segmented_size", "note"}`` or, for a bad request,
``{"error": "..."}`` with status 400 (no class names, bad threshold), 413 (an upload over the size limit, or an image
over :data:`MAX_PIXELS`) or 415 (not an image); a failure while segmenting is answered too (507 out of memory, 500
otherwise), with a message. A bad request never stops the server. Requests run one at a time (one model, one
device). It listens on 127.0.0.1 unless told otherwise.

Memory: an image whose longer side is over ``max_side`` (:data:`DEFAULT_MAX_SIDE`, ``clips4 serve --max-side``) is
scaled down to it (aspect ratio kept; JPEGs are decoded at a reduced scale) before it is segmented, so a request
segments at most ``max_side`` x ``max_side`` pixels whatever the upload's size; the overlays are drawn at that size,
and ``note`` says so (``size``: the upload's width and height, ``segmented_size``: those segmented). Decoding holds
at most the upload (``--max-upload-mb``) and :data:`MAX_PIXELS` pixels of 4 bytes.
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

from clips4.errors import Clips4Error, DatasetError

log = logging.getLogger(__name__)

#: Largest image accepted, in pixels (decoding a larger one would take minutes and gigabytes).
MAX_PIXELS = 40_000_000
DEFAULT_MAX_UPLOAD_BYTES = 20 * 2**20
#: Longest image side segmented, in pixels: larger uploads are scaled down to it first (``clips4 serve --max-side``).
DEFAULT_MAX_SIDE = 1024

#: How torch words running out of memory (its RuntimeErrors): CUDA's "out of memory", the CPU allocator's "can't
#: allocate memory"; numpy raises MemoryError.
OUT_OF_MEMORY = ("out of memory", "can't allocate memory")

log = logging.getLogger(__name__)


class UploadError(Clips4Error):
    """A request the page can answer with a message: ``status`` is its HTTP status code."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Upload:
    """A decoded upload: ``image`` uint8 RGB ``[h, w, 3]`` as it is segmented, ``size`` its (width, height) as
    uploaded (larger than ``image`` when it was scaled down)."""

    image: np.ndarray
    size: tuple[int, int]

    @property
    def segmented_size(self) -> tuple[int, int]:
        return int(self.image.shape[1]), int(self.image.shape[0])

    def note(self, max_side: int) -> str | None:
        if self.segmented_size == self.size:
            return None
        (width, height), (w, h) = self.size, self.segmented_size
        return f"scaled from {width}x{height} to {w}x{h} pixels (longer side at most {max_side}) before segmenting"


def scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) with the longer side at most ``max_side``, the aspect ratio kept (unchanged when smaller)."""
    longer = max(width, height)
    if longer <= max_side:
        return width, height
    return max(1, round(width * max_side / longer)), max(1, round(height * max_side / longer))


def decode_upload(data: bytes, filename: str, max_bytes: int, max_side: int = DEFAULT_MAX_SIDE) -> Upload:
    """An uploaded file, scaled so that its longer side is at most ``max_side``, or :class:`UploadError` saying what
    is wrong with it."""
    from clips4.data.images import rgb_array

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
            size = (image.width, image.height)
            target = scaled_size(*size, max_side)
            if target != size:
                image.draft("RGB", target)  # JPEG: decode at 1/2, 1/4 or 1/8 scale, no smaller than the target
            image.load()
            picture = Image.fromarray(rgb_array(image, filename))  # 16-bit images scaled to 8 bits, not clipped
            if picture.size != target:
                picture = picture.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
            return Upload(np.asarray(picture, dtype=np.uint8), size)
    except Image.DecompressionBombError:
        raise UploadError(f"{filename}: over Pillow's image size limit; upload a smaller image", 413) from None
    except DatasetError as err:
        raise UploadError(str(err), 415) from None
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
    max_side: int = DEFAULT_MAX_SIDE

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
        upload = decode_upload(data, filename, self.max_upload_bytes, self.max_side)
        image = upload.image
        results = []
        with self.lock:
            for title, segmenter in self.methods.items():
                result = segmenter.segment(image, names, cutoff, scores=False)
                legend = [
                    {"name": e.name, "colour": e.hex, "percent": round(100 * e.fraction, 1)}
                    for e in legend_entries(result)
                ]
                results.append({"method": title, "overlay": png_data_url(overlay(image, result)), "legend": legend})
        return {
            "results": results,
            "size": list(upload.size),
            "segmented_size": list(upload.segmented_size),
            "note": upload.note(self.max_side),
        }


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
        name = image.filename or "upload"
        try:
            return JSONResponse(demo.run(data, name, classes, threshold))
        except UploadError as err:
            return JSONResponse({"error": str(err)}, status_code=err.status)
        except Clips4Error as err:
            return JSONResponse({"error": str(err)}, status_code=400)
        except Exception as err:  # a bare 500 tells the user nothing: answer with what failed; the server goes on
            if isinstance(err, MemoryError) or any(words in str(err).lower() for words in OUT_OF_MEMORY):
                log.exception("out of memory segmenting %s", name)
                return JSONResponse({"error": _out_of_memory(name, demo.max_side)}, status_code=507)
            log.exception("segmenting %s failed", name)
            first = (str(err).strip().splitlines() or [""])[0][:200]
            failed = f"{name}: segmenting failed ({type(err).__name__}: {first}); the server's log has the details"
            return JSONResponse({"error": failed}, status_code=500)

    return app


def _out_of_memory(name: str, max_side: int) -> str:
    return (
        f"{name}: out of memory while segmenting it at up to {max_side} pixels a side; restart the server with a "
        "smaller --max-side, or upload a smaller image"
    )


def load_demo(
    checkpoint: str | Path,
    clip: str | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_side: int = DEFAULT_MAX_SIDE,
) -> Demo:
    """The student of ``checkpoint`` and the MaskCLIP baseline of its CLIP (loaded once, shared)."""
    from clips4.inference.segmenter import Segmenter

    student = Segmenter.from_checkpoint(checkpoint, clip=clip)
    return Demo({"CLIP-S4": student, "MaskCLIP": student.teacher()}, max_upload_bytes, max_side)


def serve_forever(
    checkpoint: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    clip: str | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_side: int = DEFAULT_MAX_SIDE,
) -> None:
    """Load the models, then serve the page until interrupted."""
    import uvicorn

    demo = load_demo(checkpoint, clip, max_upload_bytes, max_side)
    log.info(demo.methods["CLIP-S4"].describe())
    log.info(f"clips4 serve: open http://{host}:{port}/ (Ctrl-C stops)")
    uvicorn.run(create_app(demo), host=host, port=port, log_level="warning")
