"""Which sample goes into which shard: a pure function of the file index, so a re-run after a
kill plans exactly the same shards and can keep every one already written.

Training samples are shuffled once (``shuffle_seed``) before being cut into shards: a
sequential reader then sees a random mix of classes in every shard, where class-ordered
shards would fill a batch with one or two classes. Evaluation splits keep index order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from litvision.datamodules.shards.manifest import shard_name


@dataclass(frozen=True)
class Member:
    """One sample: its id (path relative to the dataset root), label and file on disk."""

    id: str
    label: int
    path: str


@dataclass(frozen=True)
class ShardTask:
    """Shard ``index`` of ``split``: its members, and the position of the first in the split."""

    split: str
    index: int
    first_key: int
    members: tuple[Member, ...]

    @property
    def name(self) -> str:
        return shard_name(self.split, self.index)

    @property
    def digest(self) -> str:
        """Identifies the planned content: a shard written for another plan is rewritten."""
        text = "\n".join(f"{self.first_key + k}\t{m.id}\t{m.label}" for k, m in enumerate(self.members))
        return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def plan_split(split: str, members: list[Member], samples_per_shard: int, shuffle_seed: int | None) -> list[ShardTask]:
    """Cut ``members`` (shuffled by ``shuffle_seed`` unless None) into shards of ``samples_per_shard``."""
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
    order = np.arange(len(members))
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(members))
    ordered = [members[i] for i in order]
    return [
        ShardTask(split, k, start, tuple(ordered[start : start + samples_per_shard]))
        for k, start in enumerate(range(0, len(ordered), samples_per_shard))
    ]
