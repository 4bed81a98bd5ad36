"""Stream (image, label) samples from WebDataset shards, DDP-exact, with the file pipeline's decode.

:class:`ShardStream` is the ``IterableDataset`` a rank's DataLoader workers iterate. Which
samples each rank and worker reads is decided by :mod:`litvision.datamodules.shards.read_plan`
(sample-level split, so shard counts need not divide by ranks x workers). Each shard is read
and checked against its manifest entry by :mod:`litvision.datamodules.shards.reader`
(WebDataset's ``gopen``: local files, HTTP(S), GCS, AIStore, ``pipe:``); WebDataset also
provides the shuffle buffer; decoding and augmentation are the file DataModules' own
(:class:`~litvision.datamodules.readers.jpeg_pipeline.SamplePipeline`: reduced-size JPEG decode,
Albumentations), as are the uint8 channels-last batches and the bad-image policy.

:class:`ShardLoader` tells the stream the epoch before each pass (Lightning's
``set_epoch`` only reaches samplers, which an ``IterableDataset`` loader does not have);
:class:`ResumableShardLoader` also saves how many batches of the epoch were trained in a
mid-epoch checkpoint, so a resumed run reads exactly the rest of that epoch.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from litvision.datamodules.datasets.array_dataset import image_to_tensor
from litvision.datamodules.datasets.variants import TestHook, apply_hook
from litvision.datamodules.readers.decode import DEFAULT_MAX_IMAGE_PIXELS, BadImageError, BadImageLog, BadImagePolicy
from litvision.datamodules.readers.jpeg_pipeline import SamplePipeline
from litvision.datamodules.shards.manifest import ShardEntry
from litvision.datamodules.shards.read_plan import (
    Piece,
    batches_per_worker,
    delivered_per_worker,
    epoch_order,
    pieces,
    rank_span,
    worker_span,
)
from litvision.datamodules.shards.reader import VERIFY_LEVELS, read_shard
from litvision.datamodules.transforms.pipeline import reseed_once_per_worker
from litvision.utils.errors import DataError


class ShardStream(IterableDataset):
    """The samples of one split of a shard set, as ``(uint8 CHW tensor, label)``.

    Args:
        urls / entries: every shard of the split (what ``webdataset.gopen`` opens) and its
            checked manifest entry (:func:`~litvision.datamodules.shards.manifest.split_entries`: count,
            bytes, SHA-256).
        num_classes: labels must lie in [0, num_classes).
        verify: what a read reaching a shard's end checks besides the sample count and every
            member: ``none``, ``size`` (byte count) or ``sha256`` (byte count and SHA-256), see
            :mod:`~litvision.datamodules.shards.reader`.
        transform: Albumentations pipeline, or None.
        training: shuffle (shard order from (seed, epoch) + a buffer per worker), equal
            batch counts per rank (see :mod:`~litvision.datamodules.shards.read_plan`), replace
            unreadable samples; else index order, exact shares, unreadable samples dropped.
        seed: shared by all ranks; the epoch's stream is a function of (seed, epoch).
        shuffle_buffer: samples held (as undecoded bytes) by each worker's shuffle buffer.
        on_bad_image: ``skip`` or ``raise``, as for the file DataModules.
        name: split name for messages.
        max_image_pixels: pixel budget of the decode (``dataset.max_image_pixels``).
    """

    def __init__(
        self,
        urls: Sequence[str],
        entries: Sequence[ShardEntry],
        num_classes: int,
        verify: str = "size",
        transform: Callable[..., dict[str, Any]] | None = None,
        training: bool = False,
        seed: int = 0,
        shuffle_buffer: int = 1000,
        on_bad_image: BadImagePolicy = "skip",
        name: str = "",
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        if len(urls) != len(entries):
            raise ValueError(f"{len(urls)} shard urls but {len(entries)} entries")
        if verify not in VERIFY_LEVELS:
            raise ValueError(f"verify must be one of {VERIFY_LEVELS}, got {verify!r}")
        self.urls = list(urls)
        self.entries = list(entries)
        self.counts = [e.count for e in self.entries]
        self.first = np.concatenate([[0], np.cumsum(self.counts)]).tolist()  # stream index of each shard's first sample
        self.total = sum(self.counts)
        self.num_classes = int(num_classes)
        self.verify = verify
        if self.total == 0:
            raise DataError(f"split {name!r} of the shard set has no samples")
        self.transform = transform
        self.pipeline = SamplePipeline(transform, max_image_pixels)
        self.training = training
        self.seed = int(seed)
        self.shuffle_buffer = int(shuffle_buffer)
        self.name = name
        # one flag per sample of the split, indexed by its position in the split (sized by the
        # manifest's checked, bounded counts; never by a key read from a shard)
        self.bad_images = BadImageLog(self.total, on_bad_image, name)
        self.world_size, self.rank, self.batch_size, self.drop_last = 1, 0, 1, False
        # [epoch, batches of this epoch already trained]: shared memory, so persistent loader
        # workers see the values the main process sets before each pass
        self._pass = torch.zeros(2, dtype=torch.int64).share_memory_()
        # DataModuleBase.set_test_hook: each sample yielded under every variant, (image, label, variant)
        self.test_hook: TestHook | None = None

    # ---- set-up by the DataModule / loader ---------------------------------------------
    def configure(self, world_size: int, rank: int, batch_size: int, drop_last: bool = False) -> ShardStream:
        self.world_size, self.rank, self.batch_size, self.drop_last = world_size, rank, batch_size, drop_last
        return self

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self._pass[0], self._pass[1] = int(epoch), int(skip_batches)

    def span(self) -> tuple[int, int]:
        """This rank's [start, stop) of the epoch stream."""
        mode = "exact" if not self.training else ("drop" if self.drop_last else "train")
        return rank_span(self.total, self.world_size, self.rank, mode, self.batch_size)

    def __len__(self) -> int:
        start, stop = self.span()
        return (stop - start) * (1 if self.test_hook is None else len(self.test_hook))

    # ---- iteration (in a loader worker) ------------------------------------------------
    def plan(self, epoch: int, worker: int, num_workers: int, skip_batches: int = 0) -> tuple[list[Piece], int]:
        """The shard pieces worker ``worker`` reads this epoch, and how many of its (shuffled)
        samples were already trained on before a mid-epoch resume."""
        start, stop = self.span()
        first, last = worker_span(stop - start, self.batch_size, num_workers, worker)
        order = epoch_order(len(self.urls), self.seed, epoch, shuffle=self.training)
        done = delivered_per_worker(batches_per_worker(stop - start, self.batch_size, num_workers), skip_batches)
        return pieces(order, self.counts, start + first, start + last), min(
            done[worker] * self.batch_size, last - first
        )

    def __iter__(self) -> Iterator[tuple[Any, ...] | None]:
        if reseed_once_per_worker(self, self.transform) and get_worker_info() is not None:
            cv2.setNumThreads(1)  # OpenCV's own threads only oversubscribe the other workers' cores
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch, skip_batches = (int(v) for v in self._pass.tolist())
        parts, already_trained = self.plan(epoch, worker, num_workers, skip_batches)
        samples = self.raw_samples(parts)
        if self.training and self.shuffle_buffer > 1:
            from webdataset.filters import shuffle

            seed = np.random.SeedSequence([self.seed, epoch, self.rank, worker]).generate_state(1)[0]
            samples = shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, rng=random.Random(int(seed)))(samples)
        samples = itertools.islice(samples, already_trained, None)  # resumed: skipped undecoded
        if self.test_hook is not None:  # decoded once, yielded under each variant
            return (item for sample in samples for item in self.variants(sample, self.test_hook))
        decoded = (self.decode(sample) for sample in samples)
        return self._replace_unreadable(decoded) if self.training else iter(decoded)

    def raw_samples(self, parts: list[Piece]) -> Iterator[dict[str, Any]]:
        """Undecoded, checked samples (``__key__``, ``__index__`` in the split, image bytes, ``cls`` as
        an int, ``id.txt``) of ``parts``, in order."""
        for part in parts:
            entry = self.entries[part.shard]
            for sample in read_shard(self.urls[part.shard], entry, self.num_classes, part.skip, part.take, self.verify):
                sample["__index__"] = self.first[part.shard] + sample.pop("__position__")
                yield sample

    def decode(self, sample: dict[str, Any]) -> tuple[torch.Tensor, int] | None:
        """``(image, label)``, or None for an unreadable image under ``on_bad_image=skip``."""
        index = sample["__index__"]
        if self.bad_images.is_bad(index):
            return None
        sample_id = sample["id.txt"].decode("utf-8", "surrogateescape")
        try:
            image = self.pipeline(sample[sample["__image__"]])
        except BadImageError as e:
            self.bad_images.record(index, f"{sample_id} (in {sample['__url__']})", str(e))
            return None
        return image_to_tensor(image), sample["cls"]

    def variants(self, sample: dict[str, Any], hook: TestHook) -> Iterator[tuple[torch.Tensor, int, int] | None]:
        """``sample`` under each of ``hook``'s variants; an unreadable one once, as None (dropped)."""
        item = self.decode(sample)
        if item is None:
            yield None
            return
        sample_id = sample["id.txt"].decode("utf-8", "surrogateescape")
        for variant in range(len(hook)):
            yield apply_hook(hook, item[0], sample_id, variant), item[1], variant

    def _replace_unreadable(self, decoded: Iterator[tuple | None]) -> Iterator[tuple]:
        """Training: each unreadable sample is replaced by the next readable one (or, at the end,
        the last one), so every worker yields the planned count and ranks keep equal batch counts."""
        owed, last = 0, None
        for item in decoded:
            if item is None:
                owed += 1
                continue
            for _ in range(1 + owed):
                yield item
            owed, last = 0, item
        if not owed:
            return
        if last is None:
            raise BadImageError(f"every image of a loader worker's share of split {self.name!r} is unreadable")
        for _ in range(owed):
            yield last


class ShardLoader(DataLoader):
    """A DataLoader over a :class:`ShardStream` that sets the stream's epoch before each pass.

    Args:
        epoch_fn: returns the epoch a pass belongs to (the DataModule passes the trainer's
            ``current_epoch``); None counts passes.
    """

    def __init__(self, dataset: ShardStream, epoch_fn: Callable[[], int] | None = None, **kwargs: Any) -> None:
        super().__init__(dataset, **kwargs)
        self.epoch_fn = epoch_fn
        self._passes = 0
        self._resume: tuple[int, int] | None = None

    def current_epoch(self) -> int:
        return self.epoch_fn() if self.epoch_fn is not None else self._passes

    def __iter__(self):
        epoch = self.current_epoch()
        skip = self._resume[1] if self._resume is not None and self._resume[0] == epoch else 0
        self._resume = None
        self._passes += 1
        self.dataset.set_epoch(epoch, skip)
        return super().__iter__()


class ResumableShardLoader(ShardLoader):
    """:class:`ShardLoader` whose position is saved in checkpoints (Lightning's stateful-loader
    protocol): resuming from a mid-epoch checkpoint skips the batches already trained on.

    Args:
        batches_done_fn: batches of the current epoch trained so far (the DataModule passes
            the trainer's progress counter; the loader cannot count them itself, Lightning
            fetches ahead).
    """

    def __init__(self, dataset: ShardStream, batches_done_fn: Callable[[], int], **kwargs: Any) -> None:
        super().__init__(dataset, **kwargs)
        self.batches_done_fn = batches_done_fn

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.current_epoch(), "batches": int(self.batches_done_fn())}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = (int(state["epoch"]), int(state["batches"]))
