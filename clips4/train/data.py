"""Training batches read from the caches (never recomputing CLIP): images of the train split, their
superpixels (superpixels.zarr) and CLIP's dense features (clip_dense.zarr).

Order. An epoch visits the train split's chunks in a shuffled order, and the rows of each chunk in a shuffled
order, so a batch decodes only the one or two chunks it spans and peak memory does not grow with the dataset.
Under DDP, rank ``r`` of ``W`` reads chunks ``r, r + W, ...`` of that order: its own share, disjoint from the
others'. Both orders are pure functions of ``(seed, epoch)``, and every sample's augmentation is seeded from
``(seed, global batch, position)``, so batch ``b`` is the same whichever worker builds it, and a resumed run
asks the loader to start at its checkpoint's batch and sees the very batches an uninterrupted run saw.

Speed. A ``torch.utils.data.DataLoader`` with forked worker processes builds batches ahead of the step
(``workers``, ``prefetch`` batches each); benchmarks/bench_train_data.py measures the wait.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

import clips4.cache
from clips4.cache.api import DenseStore, SuperpixelsStore
from clips4.cache.store import StoreError
from clips4.data.layouts import open_dataset
from clips4.errors import Clips4Error


@dataclass(frozen=True)
class RawSample:
    """One train image as cached: ``image`` uint8 ``[H, W, 3]``, ``superpixels`` int ``[H, W]`` (0..n-1),
    ``clip_dense`` float16 ``[h, w, D]`` (one vector per ``feature_stride`` pixels)."""

    row: int
    image: np.ndarray
    superpixels: np.ndarray
    clip_dense: np.ndarray


#: Makes the training views of one sample, drawing from the generator: ``(RawSample, Generator) -> {name: tensor}``.
ViewMaker = Callable[[RawSample, torch.Generator], dict[str, Any]]


class TrainCaches:
    """The train split's rows in superpixels.zarr and clip_dense.zarr, plus its image files.

    Opened lazily (and reopened in each forked worker): a handle holds no data, only Zarr array handles.
    """

    def __init__(
        self,
        dense_path: str | Path,
        superpixels_path: str | Path,
        dataset_name: str,
        dataset_root: str | Path,
        split: str,
    ) -> None:
        self.dense_path, self.superpixels_path = str(dense_path), str(superpixels_path)
        self.dense = _open_typed(self.dense_path, DenseStore, "clip-dense")
        self.superpixels = _open_typed(self.superpixels_path, SuperpixelsStore, "ucm")
        if self.dense.image_ids != self.superpixels.image_ids:
            raise StoreError(
                f"{self.dense_path}: its images differ from those of {self.superpixels_path}; "
                "rebuild both caches from the same dataset (dvc repro)"
            )
        if split not in self.dense.splits:
            raise StoreError(
                f"{self.dense_path}: no split {split!r} (has {', '.join(self.dense.splits)}); "
                "check dataset.train_split or rebuild the caches"
            )
        self.first, self.stop = self.dense.splits[split]
        self.dataset = open_dataset(dataset_name, dataset_root, split)
        if len(self.dataset) != self.stop - self.first:
            raise StoreError(
                f"{self.dense_path}: holds {self.stop - self.first} {split} images but {dataset_root} has "
                f"{len(self.dataset)}; rebuild the caches (dvc repro)"
            )
        # The unit of the read order: a run of rows that decodes whole chunks of both stores.
        self.rows_per_block = max(self.dense.rows_per_chunk, self.superpixels.rows_per_chunk)

    @property
    def num_rows(self) -> int:
        return self.stop - self.first

    @property
    def embed_dim(self) -> int:
        return self.dense.embed_dim

    @property
    def feature_stride(self) -> int:
        return self.dense.feature_stride

    def blocks(self) -> list[range]:
        """The train rows cut into blocks aligned on the store's rows (the last may be shorter)."""
        start = self.first - self.first % self.rows_per_block
        return [
            range(max(self.first, a), min(self.stop, a + self.rows_per_block))
            for a in range(start, self.stop, self.rows_per_block)
        ]

    def read(self, rows: Sequence[int]) -> list[RawSample]:
        """The samples of ``rows`` (in that order); each run of consecutive store rows is decoded once."""
        wanted = sorted(set(rows))
        dense: dict[int, np.ndarray] = {}
        labels: dict[int, np.ndarray] = {}
        for lo, hi in _runs(wanted):
            dense.update((row, view) for row, view in self.dense.iter_rows(lo, hi) if row in rows)
            labels.update((row, view.labels) for row, view in self.superpixels.iter_rows(lo, hi) if row in rows)
        samples = []
        for row in rows:
            if row not in dense or row not in labels:  # iter_rows skips the chunks of an interrupted stage
                bad = self.dense if row not in dense else self.superpixels
                raise StoreError(
                    f"{bad.path}: image {bad.image_ids[row]!r} (row {row}) is not computed yet; "
                    f"rerun `clips4 {bad.stage}` to finish the cache"
                )
            image = self.dataset.read_image(row - self.first)
            image = image if image.flags.writeable else image.copy()  # torch refuses read-only buffers
            if image.shape[:2] != labels[row].shape:
                raise StoreError(
                    f"{self.superpixels_path}: image {self.dense.image_ids[row]!r} is {labels[row].shape} here but "
                    f"{image.shape[:2]} on disk; rebuild the caches (dvc repro)"
                )
            samples.append(RawSample(row, image, labels[row].astype(np.int64), dense[row]))
        return samples


def _open_typed(path: str, kind: type, stage: str) -> Any:
    store = clips4.cache.open(path)
    if not isinstance(store, kind):
        raise StoreError(f"{path}: a {store.kind} store, expected {kind.kind}; check the cache paths")
    if not store.complete:
        raise StoreError(f"{path}: incomplete store (interrupted stage); rerun `clips4 {stage}` to finish it")
    return store


def _runs(rows: Sequence[int]) -> Iterator[tuple[int, int]]:
    """``[lo, hi)`` runs of consecutive values in sorted ``rows``."""
    start = previous = None
    for row in rows:
        if start is None:
            start = previous = row
        elif row == previous + 1:
            previous = row
        else:
            yield start, previous + 1
            start = previous = row
    if start is not None:
        yield start, previous + 1


def epoch_rows(blocks: Sequence[range], seed: int, epoch: int, rank: int = 0, world: int = 1) -> np.ndarray:
    """This rank's rows for one epoch: shuffled blocks (each rank every ``world``-th), rows shuffled within."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(blocks))
    within = [rng.permutation(np.asarray(blocks[b])) for b in order]  # drawn for every block: same on every rank
    return np.concatenate([within[k] for k in range(rank, len(order), world)] or [np.zeros(0, np.int64)])


@dataclass(frozen=True)
class BatchPlan:
    """Which rows make global batch ``b`` on this rank: batch ``b`` is batch ``b % per_epoch`` of epoch
    ``b // per_epoch``. Every rank has the same number of batches per epoch (the smallest share's)."""

    blocks: tuple[range, ...]
    batch_size: int
    seed: int
    rank: int = 0
    world: int = 1

    @property
    def per_epoch(self) -> int:
        # Every rank gets at least len(blocks) // world blocks, whichever they are: the smallest ones bound
        # every rank's share in every epoch.
        sizes = sorted(len(block) for block in self.blocks)
        smallest = sum(sizes[: len(sizes) // self.world])
        per_epoch = smallest // self.batch_size
        if per_epoch < 1:
            raise Clips4Error(
                f"train.batch_size: {self.batch_size} is larger than a rank's share of the train split "
                f"({smallest} images on each of {self.world} ranks); lower train.batch_size"
            )
        return per_epoch

    def rows(self, batch: int) -> np.ndarray:
        epoch, position = divmod(batch, self.per_epoch)
        order = epoch_rows(self.blocks, self.seed, epoch, self.rank, self.world)
        return order[position * self.batch_size : (position + 1) * self.batch_size]


class TrainBatches(Dataset):
    """Map-style dataset whose item ``b`` is global batch ``b``, collated: ``{name: tensor [B, ...]}``."""

    def __init__(self, caches: TrainCaches, plan: BatchPlan, make_views: ViewMaker) -> None:
        self.caches, self.plan, self.make_views = caches, plan, make_views

    def __len__(self) -> int:  # batches are numbered without end; the sampler picks the range
        return 1 << 62

    def __getitem__(self, batch: int) -> dict[str, Any]:
        rows = self.plan.rows(batch)
        views = []
        for position, sample in enumerate(self.caches.read(rows.tolist())):
            generator = torch.Generator().manual_seed(sample_seed(self.plan.seed, self.plan.rank, batch, position))
            views.append(self.make_views(sample, generator))
        collated = default_collate(views)
        collated["rows"] = torch.as_tensor(rows)
        return collated


def sample_seed(seed: int, rank: int, batch: int, position: int) -> int:
    """The augmentation seed of one sample: independent of which worker builds it."""
    return int(np.random.SeedSequence([seed, rank, batch, position]).generate_state(1, np.uint64)[0] >> 1)


def batch_loader(
    batches: TrainBatches, start: int, stop: int, *, workers: int = 1, prefetch: int = 4, pin_memory: bool = False
) -> DataLoader:
    """Batches ``start .. stop - 1`` in order, built ahead by ``workers`` forked processes (0: in this one), in
    page-locked memory with ``pin_memory`` (on CUDA: the copies to the GPU then run asynchronously)."""
    options: dict[str, Any] = {"pin_memory": pin_memory}
    if workers > 0:
        options |= {
            "num_workers": workers,
            "prefetch_factor": prefetch,
            "multiprocessing_context": "fork",
            "persistent_workers": False,
        }
    # Its own generator: creating the loader must not draw from torch's global RNG (a resumed run would shift it).
    generator = torch.Generator().manual_seed(0)
    return DataLoader(batches, batch_size=None, sampler=range(start, stop), generator=generator, **options)
