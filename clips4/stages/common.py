"""What the cache stages share: the image list they cover, its fingerprint, and the chunk-filling loop.

Every image store covers the train split then the val split of ``dataset`` (rows in that order), so a row
index means the same image in contours.zarr, superpixels.zarr and clip_dense.zarr.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from clips4.cache.store import ChunkedStore
from clips4.data.images import MIN_IMAGE_SIDE, check_image_size
from clips4.data.layouts import open_dataset
from clips4.data.segmentation import SegmentationDataset
from clips4.data.splits import require_images
from clips4.errors import Clips4Error
from clips4.params import Params
from clips4.paths import DEFAULT_CACHE_DIR, REPORTS_DIR
from clips4.workers import worker_count

#: The stores' names in the cache folder (the project's data/cache, or ``--cache-dir``).
CONTOURS_STORE = "contours.zarr"
SUPERPIXELS_STORE = "superpixels.zarr"
DENSE_STORE = "clip_dense.zarr"
SEGMENTS_STORE = "segments.zarr"
PROTOTYPES_STORE = "prototypes.zarr"


def store_or_default(params: Params, path: str | Path | None, store: str) -> str | Path:
    """``path`` when given (as given: relative to the current folder, or a URL), else ``store`` in the project's
    cache folder: data/cache beside the params file, wherever the stage runs from."""
    return path if path is not None else params.project_path(DEFAULT_CACHE_DIR) / store


def reports_dir_for_cache(params: Params, cache_dir: str | Path | None) -> Path:
    """The reports folder of a stage whose stores are in ``cache_dir`` (``None``: the project's): the project's
    reports/ for the project's cache folder, else a reports folder beside it (``/x/cache`` -> ``/x/reports``), so a
    run on caches elsewhere never writes into the project. A URL cache folder has none: name ``--reports-dir``."""
    if cache_dir is None:
        return params.project_path(REPORTS_DIR)
    if "://" in str(cache_dir):
        raise Clips4Error(f"--cache-dir {cache_dir} is a URL: give --reports-dir DIR for the stage's reports")
    folder = Path(str(cache_dir).rstrip("/"))
    if folder.resolve() == params.project_path(DEFAULT_CACHE_DIR).resolve():
        return params.project_path(REPORTS_DIR)
    return folder.parent / REPORTS_DIR


def reports_beside(params: Params, store: str | Path) -> Path:
    """:func:`reports_dir_for_cache` of the cache folder that holds ``store`` (a path or a URL)."""
    text = str(store)
    return reports_dir_for_cache(params, text.rsplit("/", 1)[0] if "://" in text else Path(text).parent)


@dataclass(frozen=True)
class StageResult:
    """What a cache stage did: its store, how many chunks it computed now, and whether the store is complete."""

    path: str
    rows: int
    computed_chunks: int
    total_chunks: int
    complete: bool


@dataclass
class ImageList:
    """The images a store covers: ``splits[k]`` holds rows ``[offsets[k], offsets[k + 1])``."""

    datasets: list[SegmentationDataset]
    split_names: list[str]

    @property
    def offsets(self) -> list[int]:
        return [0, *np.cumsum([len(d) for d in self.datasets]).tolist()]

    def __len__(self) -> int:
        return self.offsets[-1]

    @property
    def ids(self) -> list[str]:
        return [image_id for dataset in self.datasets for image_id in dataset.ids]

    @property
    def splits(self) -> dict[str, list[int]]:
        """``{split: [first_row, stop_row]}`` for the store attributes."""
        offsets = self.offsets
        return {name: [offsets[k], offsets[k + 1]] for k, name in enumerate(self.split_names)}

    def locate(self, row: int) -> tuple[SegmentationDataset, int]:
        split = int(np.searchsorted(self.offsets, row, side="right")) - 1
        return self.datasets[split], row - self.offsets[split]

    def read_image(self, row: int) -> np.ndarray:
        dataset, index = self.locate(row)
        return dataset.read_image(index)

    def image_size(self, row: int) -> tuple[int, int]:
        """(height, width) from the file header, without decoding the image."""
        from PIL import Image

        dataset, index = self.locate(row)
        path = dataset.image_files[index]
        try:
            with Image.open(path) as image:
                return image.height, image.width
        except (OSError, ValueError) as err:
            raise Clips4Error(f"{path}: unreadable image ({err}); re-download or regenerate it") from err

    def max_size(self) -> tuple[int, int]:
        """(height, width) of the largest image: the padded extent of the image stores. An image below
        :data:`~clips4.data.images.MIN_IMAGE_SIDE` on a side is an error naming its file."""
        sizes = np.array([self.image_size(row) for row in range(len(self))])
        small = np.flatnonzero(sizes.min(axis=1) < MIN_IMAGE_SIDE) if len(sizes) else []
        if len(small):  # one line naming the file, not a traceback from the first detector that meets it
            dataset, index = self.locate(int(small[0]))
            check_image_size(dataset.image_files[index], *map(int, sizes[small[0]]))
        return int(sizes[:, 0].max()), int(sizes[:, 1].max())

    def identity(self) -> dict[str, str]:
        """``{split: hash}`` of the split's image ids and the bytes of its image files.

        Content, not modification times: a dataset copied without ``-p`` or extracted again keeps its
        fingerprint, and an edited image changes it. Files are read streamed (see docs/caches.md for the cost).
        """
        return {
            name: _files_digest(dataset.ids, dataset.image_files)
            for name, dataset in zip(self.split_names, self.datasets, strict=True)
        }


def _files_digest(ids: Sequence[str], files: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for image_id, path in zip(ids, files, strict=True):
        try:
            with open(path, "rb") as handle:
                content = hashlib.file_digest(handle, "sha256").digest()
        except OSError as err:
            raise Clips4Error(f"{path}: image file cannot be read ({err}); check dataset.root") from err
        digest.update(image_id.encode() + b"\0" + content)
    return digest.hexdigest()[:24]


def image_list(params: Params) -> ImageList:
    """The train split, then the val split, then the tune split (when ``dataset.tune_split`` names one) of the
    configured dataset; an empty split is refused."""
    keys = {"train_split": params.dataset.train_split, "val_split": params.dataset.val_split}
    if params.dataset.tune_split is not None:
        keys["tune_split"] = params.dataset.tune_split
    datasets = []
    for key, split in keys.items():
        dataset = open_dataset(params.dataset.name, params.dataset.root, split)
        require_images(params.dataset.name, dataset, split, key)
        datasets.append(dataset)
    return ImageList(datasets, list(keys.values()))


#: Where a launcher says which process this is: (rank variable, world-size variable), first match wins.
#: torchrun sets RANK/WORLD_SIZE; srun sets SLURM_PROCID/SLURM_NTASKS for each task of a step (SLURM_STEP_ID).
#: A batch script itself also has SLURM_NTASKS but is not one of several tasks, hence the step check.
SHARD_VARIABLES = (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS"))


def parse_shard(shard: str | None, environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``"1/4"`` -> (1, 4). Without ``--shard``, torchrun's RANK/WORLD_SIZE or, inside an srun step, SLURM's
    SLURM_PROCID/SLURM_NTASKS; else (0, 1). Rank is 0-based."""
    environ = os.environ if environ is None else environ
    source = "--shard"
    if shard is None:
        for rank_name, world_name in SHARD_VARIABLES:
            if rank_name.startswith("SLURM") and "SLURM_STEP_ID" not in environ:
                continue
            if rank_name in environ and world_name in environ:
                shard, source = f"{environ[rank_name]}/{environ[world_name]}", f"{rank_name}/{world_name}"
                break
        else:
            return 0, 1
    try:
        rank, world = (int(part) for part in shard.split("/"))
    except ValueError:
        raise Clips4Error(f"{source}: expected RANK/WORLD such as 0/2, got {shard!r}") from None
    if not (world >= 1 and 0 <= rank < world):
        raise Clips4Error(f"{source}: need 0 <= RANK < WORLD, got {shard!r}")
    return rank, world


#: What forked workers compute: ``compute(start, stop) -> {array: rows}`` (inherited through fork, never pickled).
_COMPUTE: Callable[[int, int], dict[str, np.ndarray]] | None = None
#: Pieces a worker process computes before it is replaced by a fresh fork (see fill_units).
WORKER_CHUNKS = 16


def _run_piece(piece: tuple[int, int, int]) -> tuple[int, int, dict[str, np.ndarray]]:
    assert _COMPUTE is not None
    unit, start, stop = piece
    return unit, start, _COMPUTE(start, stop)


def unit_pieces(store: ChunkedStore, pending: Sequence[int], processes: int) -> list[tuple[int, int, int]]:
    """``(unit, start, stop)`` pieces of whole chunks: each pending unit cut into about ``processes`` pieces, so
    that all processes work even when a store has fewer work units (shards) than processes."""
    layout = store.layout
    step = layout.rows_per_chunk * max(1, math.ceil(layout.chunks_per_shard / max(1, processes)))
    pieces = []
    for unit in pending:
        first, stop = layout.unit_rows(unit)
        pieces.extend((unit, start, min(start + step, stop)) for start in range(first, stop, step))
    return pieces


def fill_units(
    store: ChunkedStore,
    pending: Sequence[int],
    compute: Callable[[int, int], dict[str, np.ndarray]],
    *,
    workers: int,
    desc: str,
) -> None:
    """Compute the rows of every pending work unit with ``compute(start, stop)`` over forked processes, and write
    each unit (a whole shard of every array) from this process once all its rows are in.

    Workers compute pieces of units and send their rows back; only this process writes, and only whole units, so
    no shard is ever written in parts or by two processes. ``compute`` is inherited through ``fork`` (no
    pickling of models or datasets).
    """
    global _COMPUTE
    layout = store.layout
    processes = worker_count(workers)
    pieces = unit_pieces(store, pending, processes)
    remaining = {unit: layout.unit_rows(unit)[1] - layout.unit_rows(unit)[0] for unit in pending}
    buffers: dict[int, dict[str, np.ndarray]] = {}

    def collect(unit: int, start: int, data: dict[str, np.ndarray]) -> None:
        first, stop = layout.unit_rows(unit)
        if unit not in buffers:  # one buffer per unit, filled in place (no second copy when it is written)
            buffers[unit] = {name: np.empty((stop - first, *v.shape[1:]), v.dtype) for name, v in data.items()}
        rows = next(iter(data.values())).shape[0]
        for name, values in data.items():
            buffers[unit][name][start - first : start - first + rows] = values
        remaining[unit] -= rows
        progress.update(rows)
        if remaining[unit] == 0:
            store.write_unit(unit, buffers.pop(unit))

    done_rows = layout.rows - sum(remaining.values())
    progress = tqdm(total=layout.rows, initial=done_rows, desc=desc, unit="image", mininterval=1.0)
    with progress:
        if min(processes, len(pieces)) <= 1:
            for unit, start, stop in pieces:
                collect(unit, start, compute(start, stop))
            return
        _COMPUTE = compute
        try:
            # Workers are replaced every WORKER_CHUNKS pieces: allocator fragmentation (glibc grows an arena per
            # zarr decoding thread) then cannot make a worker's memory grow with the size of the dataset.
            with get_context("fork").Pool(min(processes, len(pieces)), maxtasksperchild=WORKER_CHUNKS) as pool:
                for unit, start, data in pool.imap(_run_piece, pieces):
                    collect(unit, start, data)
        finally:
            _COMPUTE = None


def pad_to(array: np.ndarray, shape: tuple[int, ...], fill: float | int = 0) -> np.ndarray:
    """``array`` placed at the top-left of a ``shape`` array filled with ``fill`` (variable image sizes)."""
    out = np.full(shape, fill, dtype=array.dtype)
    out[tuple(slice(0, s) for s in array.shape)] = array
    return out
