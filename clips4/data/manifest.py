"""A dataset folder's manifest: the md5 of every file under it, one ``md5sum`` line per file, sorted by path.

Why: DVC hashes a folder dependency file by file, once for every stage that declares it, and does not share
that walk between stages, so a no-change ``dvc status`` walked the dataset's 13,000 files nine times (docs/scale.md).
The ``dataset_manifest`` stage walks it once and writes this small file; the stages that read the dataset depend on
the manifest instead. Its content changes exactly when a file's bytes, name or presence change, and it is the
same bytes when nothing changed (no times, no absolute paths), so rewriting it does not rerun anything downstream.

The format is ``md5sum``'s (``<md5>  <path relative to the root>``), so ``cd ROOT && md5sum -c MANIFEST``
verifies a copy of the dataset with standard tools.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from clips4.errors import DatasetError
from clips4.io import atomic_write

READ_BYTES = 1 << 20
# Hashing is mostly waiting for the disk (and hashlib releases the GIL on large buffers), so threads overlap reads.
HASH_THREADS = 8
HASH_BATCH = 1024


def _walk_files(root: Path) -> Iterator[str]:
    """Paths (relative, POSIX) of the regular files under ``root``, following links as DVC does."""
    for folder, subfolders, files in os.walk(root, followlinks=True):
        subfolders.sort()
        for name in files:
            path = Path(folder) / name
            if path.is_file():
                yield path.relative_to(root).as_posix()


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as stream:
        while block := stream.read(READ_BYTES):
            digest.update(block)
    return digest.hexdigest()


def dataset_manifest(root: Path, desc: str = "manifest") -> list[tuple[str, str]]:
    """``[(relative path, md5)]`` of every file under ``root``, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        fix = "set dataset.root (or video.root) in params.yaml"
        raise DatasetError(f"{root}: no such dataset folder; {fix}", str(root))
    relative_paths = sorted(_walk_files(root))
    for relative in relative_paths:
        # md5sum escapes such names; no dataset reader expects them, so refuse rather than write an ambiguous line.
        if "\n" in relative or "\\" in relative:
            raise DatasetError(f"{root / relative}: a file name with a newline or backslash; rename it", relative)
    hashes: list[str] = []
    with (
        ThreadPoolExecutor(HASH_THREADS) as pool,
        tqdm(total=len(relative_paths), desc=desc, unit="file", mininterval=1.0) as progress,
    ):
        # A batch of files at a time: `pool.map` over every file would hold a future per file (kilobytes each,
        # gigabytes for a dataset of hundreds of thousands of files).
        for first in range(0, len(relative_paths), HASH_BATCH):
            batch = relative_paths[first : first + HASH_BATCH]
            hashes.extend(pool.map(lambda relative: file_md5(root / relative), batch))
            progress.update(len(batch))
    return list(zip(relative_paths, hashes, strict=True))


def format_manifest(entries: list[tuple[str, str]]) -> str:
    return "".join(f"{md5}  {relative}\n" for relative, md5 in entries)


def write_manifest(root: Path, path: Path, desc: str = "manifest") -> int:
    """Write ``root``'s manifest to ``path`` (through a temporary file, so a killed run leaves the old one or none);
    returns the number of files listed."""
    entries = dataset_manifest(root, desc)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = format_manifest(entries)
    if path.is_file() and path.read_text() == text:
        return len(entries)  # unchanged: keep the file (and its mtime) as it is
    atomic_write(path, text)
    return len(entries)
