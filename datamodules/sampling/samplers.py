"""Class-rebalancing training samplers that stay correct under DDP.

Both samplers draw ONE global index stream per epoch from a generator seeded by
``(seed, epoch)``; every rank builds the identical stream and keeps the positions
``rank, rank + R, rank + 2R, ...`` of it. So per epoch the ranks' shares are disjoint
positions of one stream whose union follows the target distribution, the stream changes
with ``set_epoch``, and the same seed reproduces it (also after a resume).

Why subclass ``torch.utils.data.DistributedSampler`` (checked in Lightning 2.6.6):

* ``DataConnector._requires_distributed_sampler`` only replaces a loader's sampler when
  it is *not* a ``DistributedSampler``. A plain sampler gets wrapped in
  ``DistributedSamplerWrapper``, which materialises the inner sampler's full list on every
  rank and shards it. That is only right if every rank's inner sampler produces the same
  list: ``WeightedRandomSampler`` without an explicit generator draws from the global
  torch RNG, which drifts apart between ranks as soon as they consume random numbers
  differently (augmentation, dropout), and the inner ``num_samples`` must then be the
  *global* count. Being a ``DistributedSampler`` we are left alone, with or without
  ``use_distributed_sampler``, and we own the sharding explicitly.
* ``fabric.utilities.data._set_sampler_epoch`` calls ``set_epoch`` on the loader's
  sampler at every epoch start (fit loop) whatever its class, so inheriting
  ``DistributedSampler.set_epoch`` is all it takes to get a new stream per epoch.

Sampling is with replacement (that is what re-balancing means), so "padding" a stream to a
multiple of the world size is simply drawing a few more indices; no rank ever gets a
short share and nothing is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any, cast

import numpy as np
from torch.utils.data import DistributedSampler

from litvision.utils.class_weights import class_weights

log = logging.getLogger(__name__)


class _GlobalStreamSampler(DistributedSampler):
    """One global stream per (seed, epoch), sharded by stride; subclasses draw the stream.

    Args:
        targets: integer label of every training item (the dataset's ``targets``).
        num_replicas / rank: world size and this process's global rank.
        seed: shared by all ranks; the stream of epoch e is a pure function of (seed, e).
        num_samples: indices drawn per epoch over ALL ranks (default: dataset length);
            each rank yields ``ceil(num_samples / num_replicas)``.
    """

    def __init__(
        self,
        targets: Sequence[int] | np.ndarray,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int | None = 0,
        num_samples: int | None = None,
    ) -> None:
        targets = np.asarray(targets)
        if targets.ndim != 1 or len(targets) == 0:
            raise ValueError(f"targets must be a non-empty 1-D array of labels, got shape {targets.shape}")
        if not np.issubdtype(targets.dtype, np.integer) or targets.min() < 0:
            raise ValueError("targets must be non-negative integer class labels")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(
                f"need num_replicas >= 1 and 0 <= rank < num_replicas, got rank={rank}, num_replicas={num_replicas}"
            )
        if seed is None:
            if num_replicas > 1:
                raise ValueError(
                    "a distributed sampler needs an integer seed shared by all ranks (they must draw the "
                    "same global stream); set seed=<int> in the config"
                )
            seed = int(cast(int, np.random.SeedSequence().entropy) % 2**31)  # single process: any seed will do
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        total = len(targets) if num_samples is None else int(num_samples)
        if total < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        # ``targets`` stands in for the dataset: DistributedSampler only needs its len().
        super().__init__(targets, num_replicas=num_replicas, rank=rank, shuffle=True, seed=int(seed))  # type: ignore[arg-type]
        self.targets = targets.astype(np.int64)
        self.class_counts = np.bincount(self.targets)
        self.num_samples = -(-total // num_replicas)  # per rank, rounded up
        self.total_size = self.num_samples * num_replicas
        self._prepare()

    def _prepare(self) -> None:
        """Per-sampler precomputation from ``targets``/``class_counts`` (subclasses)."""

    def _rng(self) -> np.random.Generator:
        # SeedSequence mixes (seed, epoch) properly: neighbouring epochs/seeds give unrelated streams.
        return np.random.default_rng([self.seed, self.epoch])

    def global_stream(self) -> np.ndarray:
        """The ``total_size`` dataset indices all ranks draw this epoch (identical on every rank)."""
        raise NotImplementedError

    def class_probabilities(self) -> np.ndarray:
        """Probability that one draw has class c: the distribution the stream follows."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[int]:
        stream = self.global_stream()
        assert len(stream) == self.total_size
        return iter(stream[self.rank : self.total_size : self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples


class ClassBalancedSampler(_GlobalStreamSampler):
    """Draw items with replacement, item weight = class weight of its label.

    ``power=1`` (default) gives every class the same expected share per epoch; ``power=0.5``
    (square-root sampling) rebalances halfway; ``beta`` switches to effective-number
    weights (Cui et al. 2019). The expected share of class c is n_c * w_c / sum_k n_k * w_k.
    """

    def __init__(
        self, targets: Sequence[int] | np.ndarray, *, power: float = 1.0, beta: float | None = None, **common: Any
    ) -> None:
        """``common``: ``num_replicas``, ``rank``, ``seed``, ``num_samples`` as in the base class."""
        super().__init__(targets, **common)
        self.power = power
        self.beta = beta
        weights = class_weights(self.class_counts, power=power, beta=beta)
        item_weights = weights[self.targets]
        self.item_probabilities = item_weights / item_weights.sum()

    def class_probabilities(self) -> np.ndarray:
        return np.bincount(self.targets, weights=self.item_probabilities, minlength=len(self.class_counts))

    def global_stream(self) -> np.ndarray:
        return self._rng().choice(len(self.targets), size=self.total_size, replace=True, p=self.item_probabilities)


class ClassAwareSampler(_GlobalStreamSampler):
    """Pick a class uniformly at random, then the next image of that class (Shen et al. 2016).

    Each class walks through its own shuffled list and reshuffles when it runs out, so a
    rare class's images are repeated evenly instead of at random (Kang et al. 2020's
    ``ClassAwareSampler``). The per-class cycles restart every epoch from (seed, epoch)
    rather than carrying over, so that an epoch's stream depends on nothing but its seed
    and a resumed run replays it exactly.
    """

    def _prepare(self) -> None:
        self.present_classes = np.flatnonzero(self.class_counts)
        self.members = {int(c): np.flatnonzero(self.targets == c) for c in self.present_classes}

    def class_probabilities(self) -> np.ndarray:
        probs = np.zeros(len(self.class_counts))
        probs[self.present_classes] = 1.0 / len(self.present_classes)
        return probs

    def global_stream(self) -> np.ndarray:
        rng = self._rng()
        drawn_classes = self.present_classes[rng.integers(len(self.present_classes), size=self.total_size)]
        stream = np.empty(self.total_size, dtype=np.int64)
        for c, members in self.members.items():
            slots = np.flatnonzero(drawn_classes == c)
            if len(slots) == 0:
                continue
            cycles = -(-len(slots) // len(members))
            stream[slots] = np.concatenate([rng.permutation(members) for _ in range(cycles)])[: len(slots)]
        return stream
