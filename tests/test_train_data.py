"""The training data order: chunk order, disjoint rank shares, determinism from (seed, epoch), and the new params'
validation."""

from __future__ import annotations

import numpy as np
import pytest

from clips4.params import ParamsError, params_from_dict
from clips4.train.data import BatchPlan, _runs, epoch_rows, sample_seed

BLOCKS = tuple(range(a, min(a + 5, 47)) for a in range(0, 47, 5))  # 10 blocks of 5 rows, the last of 2


def test_an_epoch_reads_whole_blocks_one_after_another():
    order = epoch_rows(BLOCKS, seed=3, epoch=0)
    assert sorted(order.tolist()) == list(range(47))
    # each block's rows are contiguous in the order (one chunk decoded at a time) but shuffled within
    starts = [int(np.flatnonzero(np.isin(order, list(block)))[0]) for block in BLOCKS]
    for block, start in zip(BLOCKS, starts, strict=True):
        assert sorted(order[start : start + len(block)].tolist()) == list(block)
    assert order.tolist() != sorted(order.tolist())


def test_order_is_a_function_of_seed_and_epoch():
    assert np.array_equal(epoch_rows(BLOCKS, 3, 1), epoch_rows(BLOCKS, 3, 1))
    assert not np.array_equal(epoch_rows(BLOCKS, 3, 1), epoch_rows(BLOCKS, 3, 2))
    assert not np.array_equal(epoch_rows(BLOCKS, 3, 1), epoch_rows(BLOCKS, 4, 1))


def test_ranks_read_disjoint_shares_that_cover_the_split():
    shares = [set(epoch_rows(BLOCKS, 0, 5, rank, 3).tolist()) for rank in range(3)]
    assert not (shares[0] & shares[1]) and not (shares[1] & shares[2]) and not (shares[0] & shares[2])
    assert set().union(*shares) == set(range(47))


def test_batch_plan_gives_every_rank_the_same_number_of_full_batches():
    plans = [BatchPlan(BLOCKS, 4, seed=1, rank=rank, world=3) for rank in range(3)]
    assert len({plan.per_epoch for plan in plans}) == 1
    for plan in plans:
        epoch_one = [plan.rows(b) for b in range(plan.per_epoch)]
        assert all(len(rows) == 4 for rows in epoch_one)
        assert len(set(np.concatenate(epoch_one).tolist())) == 4 * plan.per_epoch  # no row twice in an epoch
        # the next epoch starts a new order
        assert not np.array_equal(plan.rows(plan.per_epoch), plan.rows(0))


def test_batch_larger_than_a_share_is_a_clear_error():
    from clips4.errors import Clips4Error

    with pytest.raises(Clips4Error, match=r"train\.batch_size: 64 is larger"):
        _ = BatchPlan(BLOCKS, 64, seed=0).per_epoch


def test_sample_seeds_differ_per_sample_and_repeat_per_position():
    seeds = {sample_seed(0, 0, batch, position) for batch in range(20) for position in range(8)}
    assert len(seeds) == 160 and sample_seed(0, 0, 7, 3) == sample_seed(0, 0, 7, 3)
    assert sample_seed(0, 1, 7, 3) != sample_seed(0, 0, 7, 3)


def test_runs_of_consecutive_rows():
    assert list(_runs([1, 2, 3, 7, 9, 10])) == [(1, 4), (7, 8), (9, 11)]
    assert list(_runs([])) == []


@pytest.mark.parametrize(
    ("raw", "key", "hint"),
    [
        ({"losses": {"contrastive": False, "embedding": False, "semantic": False}}, "losses", "at least one"),
        ({"losses": {"semantic_temperature": 0}}, "losses.semantic_temperature", "(0.0, 10.0]"),
        ({"losses": {"embedding_weight": -1}}, "losses.embedding_weight", "> 0"),
        ({"losses": {"semantic_targets": "captions"}}, "losses.semantic_targets", "prototypes, text"),
        ({"train": {"crop_size": 8}}, "train.crop_size", ">= 16"),
        ({"train": {"crop_scale_min": 0.9, "crop_scale_max": 0.5}}, "train.crop_scale_min", "crop_scale_max"),
        ({"train": {"checkpoint_every": 0}}, "train.checkpoint_every", ">= 1"),
        ({"train": {"lr_power": -1}}, "train.lr_power", ">= 0"),
        ({"train": {"random_init": "no"}}, "train.random_init", "true or false"),
        ({"train": {"modle": "x"}}, "train.modle", "unknown key"),
    ],
)
def test_train_and_loss_params_are_validated(raw, key, hint):
    with pytest.raises(ParamsError) as err:
        params_from_dict(raw)
    assert str(err.value).startswith(key), str(err.value)
    assert hint in str(err.value), str(err.value)


def test_one_loss_alone_is_allowed():
    params = params_from_dict({"losses": {"contrastive": False, "semantic": False}})
    assert params.losses.embedding and not params.losses.semantic
