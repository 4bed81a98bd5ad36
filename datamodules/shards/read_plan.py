"""Who reads which samples of a shard set in an epoch: pure functions of (counts, seed, epoch, ranks, workers).

Shards are split at the *sample* level, not the shard level. An epoch's stream is the
concatenation of all shards in an order drawn from (seed, epoch) (index order for
evaluation); rank r reads one contiguous stretch of it, and its loader workers read
contiguous stretches of whole batches of that. So

* the number of shards need not divide by ranks x workers: a stretch may start or end inside
  a shard (its reader skips the first samples of the shard without decoding them);
* training: every rank must yield the same number of batches (DDP steps in lockstep), and
  each sample is read exactly once per epoch across all ranks and workers. With N samples,
  W ranks and per-rank batches of B: ranks get floor(N/W) or ceil(N/W) samples, the same
  number of batches unless N % W != 0 and floor(N/W) is a multiple of B; only then is the
  stream padded to ceil(N/W)*W by repeating its first samples (< W repeats per epoch, the
  rule of ``torch.utils.data.DistributedSampler``, which pads whenever N % W != 0). With
  ``drop_last`` every rank gets floor(N/W) cut to whole batches (< W + W*B samples left out);
* evaluation: exact, every sample exactly once, ranks' shares differ by at most one sample
  (like Lightning's ``UnrepeatedDistributedSampler``), so metrics equal a single process's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Piece:
    """Read shard ``shard``, skip its first ``skip`` samples, keep the next ``take``."""

    shard: int
    skip: int
    take: int


def epoch_order(num_shards: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """Shard order of an epoch: identical on every rank and worker, new every epoch."""
    if not shuffle:
        return np.arange(num_shards)
    return np.random.default_rng([seed, epoch]).permutation(num_shards)


def rank_span(total: int, world_size: int, rank: int, mode: str, batch_size: int = 1) -> tuple[int, int]:
    """[start, stop) of rank ``rank``'s stretch of the epoch stream (positions may exceed ``total``:
    padding, read from the stream's start again).

    ``mode``: ``train`` (equal batch counts, padded only where they would differ), ``drop``
    (train with drop_last: floor(N/W) whole batches each) or ``exact`` (evaluation).
    """
    low = total // world_size
    if mode == "exact" or (mode == "train" and (total % world_size == 0 or low % batch_size != 0)):
        return total * rank // world_size, total * (rank + 1) // world_size
    if mode == "drop":
        per_rank = low // batch_size * batch_size
    elif mode == "train":
        per_rank = low + 1  # floor(N/W) is a multiple of B: one more sample would be one more batch
    else:
        raise ValueError(f"mode must be train, drop or exact, got {mode!r}")
    return rank * per_rank, (rank + 1) * per_rank


def worker_span(length: int, batch_size: int, num_workers: int, worker: int) -> tuple[int, int]:
    """[start, stop) within a rank's ``length`` samples for loader worker ``worker``: whole batches
    (only the rank's last batch can be short), so the loader yields ceil(length / batch_size) batches."""
    num_batches = -(-length // batch_size)
    first = num_batches * worker // num_workers
    last = num_batches * (worker + 1) // num_workers
    return min(first * batch_size, length), min(last * batch_size, length)


def pieces(order: Sequence[int] | np.ndarray, counts: Sequence[int] | np.ndarray, start: int, stop: int) -> list[Piece]:
    """The shard pieces making up stream positions [start, stop) for shard ``order`` (wrapping around)."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if stop <= start:
        return []
    if total == 0:
        raise ValueError("the split has no samples")
    ordered_counts = counts[np.asarray(order, dtype=np.int64)]
    ends = np.cumsum(ordered_counts)  # stream position where each ordered shard ends
    out: list[Piece] = []
    position = start
    while position < stop:
        offset = position % total
        k = int(np.searchsorted(ends, offset, side="right"))  # the ordered shard holding `offset`
        shard_start = int(ends[k] - ordered_counts[k])
        skip = offset - shard_start
        take = min(int(ordered_counts[k]) - skip, stop - position)
        out.append(Piece(int(order[k]), skip, take))
        position += take
    return out


def batches_per_worker(length: int, batch_size: int, num_workers: int) -> list[int]:
    """How many batches each worker yields for a rank stretch of ``length`` samples."""
    return [
        -(-(stop - start) // batch_size)
        for start, stop in (worker_span(length, batch_size, num_workers, w) for w in range(num_workers))
    ]


def delivered_per_worker(worker_batches: Sequence[int], consumed: int) -> list[int]:
    """How many batches of each worker are among the first ``consumed`` a DataLoader delivered.

    A multi-worker DataLoader over an IterableDataset takes batches from its workers in
    turn, passing over workers that have run out. Resuming mid-epoch after ``consumed``
    batches therefore means each worker skips its first ``delivered[w]`` batches.
    """
    remaining = list(worker_batches)
    delivered = [0] * len(remaining)
    left = consumed
    while left > 0 and any(remaining):
        for w in range(len(remaining)):
            if left == 0:
                break
            if remaining[w]:
                remaining[w] -= 1
                delivered[w] += 1
                left -= 1
    return delivered
