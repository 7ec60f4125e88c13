"""The Zarr caches under data/cache/ and their Python API: ``clips4.cache.open(path)`` (see docs/caches.md)."""

from clips4.cache.api import (
    CacheStore,
    ContoursStore,
    DenseStore,
    ImageSegments,
    PrototypesStore,
    SegmentsStore,
    Superpixels,
    SuperpixelsStore,
    describe,
    open,
)
from clips4.cache.store import StoreError

__all__ = [
    "CacheStore",
    "ContoursStore",
    "DenseStore",
    "ImageSegments",
    "PrototypesStore",
    "SegmentsStore",
    "StoreError",
    "Superpixels",
    "SuperpixelsStore",
    "describe",
    "open",
]
