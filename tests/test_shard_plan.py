"""Who reads what from a shard set: every sample once per epoch across ranks and workers,
whatever the shard counts (datamodules/shards/read_plan.py), checked against a real DataLoader."""

from __future__ import annotations

import numpy as np
import pytest
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from litvision.datamodules.shards import read_plan as plan


def positions_read(counts, order, start, stop):
    """Global sample ids (shard, offset) of stream positions [start, stop), via plan.pieces()."""
    out = []
    for piece in plan.pieces(order, counts, start, stop):
        assert 0 <= piece.skip and piece.skip + piece.take <= counts[piece.shard]
        out += [(piece.shard, piece.skip + k) for k in range(piece.take)]
    return out


def read_by_all(counts, world_size, num_workers, batch_size, mode, epoch=3, seed=7):
    order = plan.epoch_order(len(counts), seed, epoch, shuffle=mode != "exact")
    per_rank, batches = [], []
    for rank in range(world_size):
        start, stop = plan.rank_span(sum(counts), world_size, rank, mode, batch_size)
        rank_samples, rank_batches = [], 0
        for worker in range(num_workers):
            first, last = plan.worker_span(stop - start, batch_size, num_workers, worker)
            rank_samples += positions_read(counts, order, start + first, start + last)
            rank_batches += -(-(last - first) // batch_size)
        per_rank.append(rank_samples)
        batches.append(rank_batches)
    return per_rank, batches


COUNTS = [
    [7],  # one shard, more ranks than shards
    [5, 3, 8, 1, 6],  # uneven shard sizes, 5 shards (not a multiple of 2, 3, 4 or 8)
    [100] * 13 + [37],  # ImageNet-like: equal shards and a short last one
    [0, 4, 0, 9],  # empty shards (every image of a shard unreadable)
]


@pytest.mark.parametrize("counts", COUNTS)
@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
@pytest.mark.parametrize("num_workers", [1, 2, 5])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_evaluation_reads_every_sample_exactly_once(counts, world_size, num_workers, batch_size):
    per_rank, _ = read_by_all(counts, world_size, num_workers, batch_size, "exact")
    everything = [s for rank in per_rank for s in rank]
    expected = [(shard, k) for shard, n in enumerate(counts) for k in range(n)]
    assert sorted(everything) == expected
    assert max(map(len, per_rank)) - min(map(len, per_rank)) <= 1


@pytest.mark.parametrize("counts", COUNTS)
@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
@pytest.mark.parametrize("num_workers", [1, 3])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_training_gives_every_rank_the_same_batches_and_each_sample_once(counts, world_size, num_workers, batch_size):
    total = sum(counts)
    per_rank, batches = read_by_all(counts, world_size, num_workers, batch_size, "train")
    assert len(set(batches)) == 1, batches  # DDP: equal steps on every rank
    seen = np.zeros(total, dtype=int)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    for shard, k in (s for rank in per_rank for s in rank):
        seen[offsets[shard] + k] += 1
    assert seen.min() == 1  # nothing lost
    repeats = seen.sum() - total
    if total % world_size and (total // world_size) % batch_size == 0:
        # the one case where exact shares would differ by a batch: padded, < world_size repeats
        assert len(set(map(len, per_rank))) == 1 and 0 < repeats < world_size
    else:
        assert repeats == 0  # each sample exactly once

    per_rank, batches = read_by_all(counts, world_size, num_workers, batch_size, "drop")
    assert len(set(batches)) == 1 and len(set(map(len, per_rank))) == 1
    flat = [s for rank in per_rank for s in rank]
    assert (
        len(flat) == len(set(flat)) == total // world_size // batch_size * batch_size * world_size
    )  # whole batches, never repeated


def test_epoch_order_is_shared_by_ranks_and_new_every_epoch():
    a, b = plan.epoch_order(50, 1, 0, True), plan.epoch_order(50, 1, 0, True)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, plan.epoch_order(50, 1, 1, True))
    np.testing.assert_array_equal(plan.epoch_order(5, 1, 4, False), np.arange(5))


class _WorkerBatches(IterableDataset):
    """Yields (worker id, batch number) per sample, with the per-worker batch counts of worker_span."""

    def __init__(self, length: int, batch_size: int) -> None:
        self.length, self.batch_size = length, batch_size

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        info = get_worker_info()
        first, last = plan.worker_span(self.length, self.batch_size, info.num_workers, info.id)
        return iter([(info.id, (i - first) // self.batch_size) for i in range(first, last)])


@pytest.mark.parametrize("length, batch_size, num_workers", [(23, 4, 2), (40, 4, 3), (9, 2, 4), (5, 4, 3)])
def test_resume_model_matches_the_order_a_real_dataloader_delivers(length, batch_size, num_workers):
    """plan.delivered_per_worker() predicts which worker's batches a real multi-worker DataLoader
    hands out first: what a mid-epoch resume must skip per worker."""
    loader = DataLoader(_WorkerBatches(length, batch_size), batch_size=batch_size, num_workers=num_workers)
    delivered = [(int(w[0]), int(b[0])) for w, b in loader]
    assert len(delivered) == len(loader) == -(-length // batch_size)
    counts = plan.batches_per_worker(length, batch_size, num_workers)
    for consumed in range(len(delivered) + 1):
        expected = [sum(1 for w, _ in delivered[:consumed] if w == worker) for worker in range(num_workers)]
        assert plan.delivered_per_worker(counts, consumed) == expected
    # each worker's batches come in its own order
    for worker in range(num_workers):
        assert [b for w, b in delivered if w == worker] == list(range(counts[worker]))
