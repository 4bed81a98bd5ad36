"""Train and evaluate from WebDataset shards written by ``prepare_shards.py`` (``dataset=imagenet_shards``).

For multi-node jobs: sequential reads of ~100 MB tar files instead of 1.28M small-file
opens on a shared filesystem, and shards can live in an object store. Everything else is
the file DataModules' (same decode and Albumentations pipelines, same class names and
per-class metrics, same ``on_bad_image`` policy, uint8 batches normalised on the device).

* Each training sample is read once per epoch across all ranks and loader workers, and
  evaluation is exact (every sample once, metrics equal to a single process's), whatever the
  number of shards: see :mod:`litvision.datamodules.shards.read_plan` for how, and for the < world-size
  padding when the training count does not divide by the number of ranks.
* Resuming mid-epoch: a checkpoint saved inside an epoch (e.g.
  ``callbacks.last_checkpoint.every_n_train_steps=N``, resumed with ``ckpt_path=last``)
  records how many batches of the epoch were trained; the resumed run reads exactly the
  remaining samples. (WebDataset itself has
  no resumable state; this works because the epoch's stream is a function of (seed, epoch).)
  Random augmentation draws are not restored, as for files; with several loader workers the
  remaining batches may come in another order than in an uninterrupted run.
* Shard sets are checked, not trusted (``verify_shards``): the manifest when it is read
  (:func:`~litvision.datamodules.shards.manifest.check_manifest`), local shard sizes against it at setup,
  and every shard as it streams (:mod:`~litvision.datamodules.shards.reader`: members, labels,
  sample counts, byte counts, SHA-256).
* Class-balanced sampling is refused: ``sampler=class_balanced|class_aware`` draw samples by
  index, with replacement, which a sequential stream cannot do. Use a re-weighting loss
  (``loss=logit_adjusted|balanced_softmax|class_balanced|drw``) with shards, or the file
  DataModule (``dataset=imagenet``) for re-sampling.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from litvision.datamodules.base import DataModuleBase, Splits
from litvision.datamodules.datasets.file_dataset import collate_skipping_bad
from litvision.datamodules.readers.decode import DEFAULT_MAX_IMAGE_PIXELS, POLICIES, BadImagePolicy, check_pixel_budget
from litvision.datamodules.shards.manifest import REWRITE, is_remote
from litvision.utils.errors import ConfigError, DataError, MissingDataError
from litvision.utils.names import unescape_name
from litvision.utils.optional import require

log = logging.getLogger(__name__)
VERIFY_SHARDS = ("auto", "none", "size", "sha256")


class ShardDataModule(DataModuleBase):
    """A shard set (``manifest.json`` + ``<split>-NNNNNN.tar``) as train/val/test loaders.

    Args:
        shards: the folder ``prepare_shards.py`` wrote, or a URL of its copy in an object store
            (``https://...``, ``gs://...``, ``s3://...`` via the AWS CLI, ``ais://...``, or a
            ``pipe:`` command prefix): anything WebDataset's ``gopen`` opens.
        val_split / test_split: split names in the manifest (``val``, ``test``, ``holdout``:
            whatever prepare_shards wrote); None = what the shards were prepared with.
        num_workers: loader processes per device, or ``auto`` (cores per device - 1).
        shuffle_buffer: training samples each loader worker holds (undecoded, ~110 KB each
            for ImageNet) to shuffle; shards are also pre-shuffled and read in a new order
            every epoch.
        on_bad_image: ``skip`` or ``raise`` for images that fail to decode while reading
            (prepare_shards already left out the files it found unreadable).
        verify_shards: what is checked against the manifest besides every member, label and
            sample count: ``none``, ``size`` (local shards stat'ed at setup, every shard's
            bytes counted as it streams) or ``sha256`` (``size`` + each shard hashed as it
            streams, compared at its end); ``auto`` = ``size`` for training, ``sha256`` for
            validation/test (the numbers a run reports come from intact data).
        max_image_pixels: images whose header claims more pixels (or sides more than 100:1)
            are bad images, refused before decoding, as for the file DataModules.
        sampler / imbalance_factor / exclude_ids / repeated_augmentation: options of the map-style
            DataModules, named here only to be refused in one line with what to do instead: a
            sequential stream cannot draw by index (a re-weighting loss works with shards), and
            prepare_shards.py applies the long-tail cut and the exclusions when it writes.
        **kwargs: the thin base's (:class:`~litvision.datamodules.base.DataModuleBase`): ``batch_size``
            (global), ``seed``, transforms, ``normalize``, ``pin_memory``, ``drop_last``, ...
    """

    def __init__(
        self,
        shards: str,
        val_split: str | None = None,
        test_split: str | None = None,
        num_workers: int | str = "auto",
        shuffle_buffer: int = 1000,
        on_bad_image: BadImagePolicy = "skip",
        verify_shards: str = "auto",
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
        sampler: Any = None,
        imbalance_factor: float | None = None,
        exclude_ids: str | None = None,
        repeated_augmentation: int = 1,
        **kwargs: Any,
    ) -> None:
        require("webdataset", "shards", "dataset=imagenet_shards")  # before any data is read
        kwargs.pop("data_dir", None)
        super().__init__(data_dir=str(shards), num_workers=num_workers, **kwargs)
        if sampler:
            raise ConfigError(
                "class-balanced sampling (sampler=class_balanced|class_aware) draws images by index with "
                "replacement, which sequential shards cannot do: use sampler=none with dataset=imagenet_shards "
                "(and a re-weighting loss, e.g. loss=logit_adjusted or loss=balanced_softmax), or train from "
                "files (dataset=imagenet) to re-sample"
            )
        _refuse_map_style_options(imbalance_factor, exclude_ids, repeated_augmentation)
        if on_bad_image not in POLICIES:
            raise ConfigError(f"dataset.on_bad_image must be one of {POLICIES}, got {on_bad_image!r}")
        if verify_shards not in VERIFY_SHARDS:
            raise ConfigError(f"dataset.verify_shards must be one of {VERIFY_SHARDS}, got {verify_shards!r}")
        if shuffle_buffer < 0:
            raise ConfigError(f"dataset.shuffle_buffer must be >= 0, got {shuffle_buffer}")
        self.train_on_eval_preprocessing_if_unset()  # as the file DataModules: images still need resizing
        self.shards = str(shards)
        self.val_split = val_split
        self.test_split = test_split
        self.shuffle_buffer = shuffle_buffer
        self.on_bad_image = on_bad_image
        self.verify_shards = verify_shards
        self.max_image_pixels = check_pixel_budget(max_image_pixels)
        self._manifest: dict[str, Any] | None = None
        self._resume_position: dict[str, int] | None = None  # from a checkpoint (load_state_dict)

    # ---- the manifest -------------------------------------------------------------------
    @property
    def manifest(self) -> dict[str, Any]:
        if self._manifest is None:
            from litvision.datamodules.shards.manifest import read_manifest

            self._manifest = read_manifest(self.shards)
        return self._manifest

    def load_class_names(self) -> list[str]:
        return [unescape_name(name) for name in self.manifest["class_names"]]  # written escaped (utils/names.py)

    def split_source(self, role: str) -> str:
        """Manifest split serving as ``role`` (``val``/``test``)."""
        chosen = self.val_split if role == "val" else self.test_split
        name = chosen or self.manifest.get("default_splits", {}).get(role)
        available = sorted(self.manifest["splits"])
        if name not in self.manifest["splits"]:
            raise ConfigError(
                f"dataset.{role}_split={name!r}: the shard set {self.shards} has the splits {available}; choose one "
                f"of them, or write the split with prepare_shards.py dataset.{role}_split={name}"
            )
        return name

    def verify_level(self, training: bool) -> str:
        if self.verify_shards != "auto":
            return self.verify_shards
        return "size" if training else "sha256"

    def stream(self, split: str, training: bool) -> Any:
        from litvision.datamodules.shards.manifest import shard_url, split_entries
        from litvision.datamodules.shards.reader import read_shard
        from litvision.datamodules.shards.stream import ShardStream

        if split not in self.manifest["splits"]:
            raise DataError(
                f"the shard set {self.shards} has no {split!r} split (it has {sorted(self.manifest['splits'])}); "
                "re-run prepare_shards.py to write it"
            )
        verify = self.verify_level(training)
        entries = split_entries(self.manifest, split, self.shards)
        urls = [shard_url(self.shards, e.name) for e in entries]
        if verify != "none":
            self._check_local_sizes(urls, entries)
        for url, entry in zip(urls, entries, strict=True):
            if entry.count == 0:  # no stream reads an empty shard: check here that it is one
                for _ in read_shard(url, entry, self.num_classes, verify=verify):
                    pass
        return ShardStream(
            [u for u, e in zip(urls, entries, strict=True) if e.count > 0],
            [e for e in entries if e.count > 0],
            num_classes=self.num_classes,
            verify=verify,
            transform=self.train_transform if training else self.eval_transform,
            training=training,
            seed=self.seed if self.seed is not None else 0,
            shuffle_buffer=self.shuffle_buffer,
            on_bad_image=self.on_bad_image,
            name=split,
            max_image_pixels=self.max_image_pixels,
        )

    def _check_local_sizes(self, urls: list[str], entries: list[Any]) -> None:
        """Local shards: the size of every file against the manifest, before any process forks (a stat each)."""
        if is_remote(self.shards):
            return  # counted as the shards stream
        for url, entry in zip(urls, entries, strict=True):
            try:
                size = os.stat(url).st_size
            except FileNotFoundError as e:
                raise MissingDataError(f"shard {url} listed in the manifest does not exist; {REWRITE}") from e
            except OSError as e:
                raise DataError(f"cannot read shard {url} ({e})") from e
            if size != entry.bytes:
                raise DataError(f"shard {url} is {size} bytes, its manifest entry {entry.bytes}; {REWRITE}")

    # ---- Lightning hooks ----------------------------------------------------------------
    def prepare_data(self) -> None:
        """Read the manifest once per node (checks the location before any process forks)."""
        _ = self.manifest

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        self.resolve_num_workers()
        if self.seed is None and self._world()[0] > 1:
            raise ConfigError("training from shards on several processes needs a shared seed: set seed=<int>")
        val, test = self.split_source("val"), self.split_source("test")
        if val == test:
            log.warning("val_split and test_split are both %r: test metrics are not an independent estimate", val)
        val_stream = self.stream(val, training=False)
        self.splits = Splits(
            train=self.stream("train", training=True),
            val=val_stream,
            test=val_stream if test == val else self.stream(test, training=False),
        )
        left_out = {s: len(i.get("bad_files", [])) for s, i in self.manifest["splits"].items() if i.get("bad_files")}
        if left_out:
            log.info("unreadable files left out when the shards were written (listed in the manifest): %s", left_out)
        log.info(
            "%s: %d train / %d val / %d test images in shards at %s, %d classes",
            type(self).__name__,
            self.splits.train.total,
            self.splits.val.total,
            self.splits.test.total,
            self.shards,
            self.num_classes,
        )

    @property
    def train_class_counts(self) -> np.ndarray:
        return np.asarray(self.manifest["splits"]["train"]["class_counts"], dtype=np.int64)

    def bad_image_counts(self) -> dict[str, int]:
        """Images that failed to decode while reading, per split (the epoch log reports these)."""
        if self.splits is None:
            return {}
        return {
            stream.name: stream.bad_images.count() for stream in (self.splits.train, self.splits.val, self.splits.test)
        }

    def train_dataloader(self) -> DataLoader:
        from litvision.datamodules.shards.stream import ResumableShardLoader

        self._require_setup()
        stream = self._configured(self.splits.train, drop_last=self.drop_last)
        loader = ResumableShardLoader(
            stream, batches_done_fn=self._batches_done, epoch_fn=self._epoch_fn(), **self._loader_args()
        )
        if self._resume_position is not None:  # the first train loader after a resume starts where the run stopped
            loader.load_state_dict(self._resume_position)
            self._resume_position = None
        return loader

    def state_dict(self) -> dict[str, Any]:
        """The mid-epoch position, also kept by the DataModule (Lightning restores it before the model's
        optimizers are configured). Lightning's own loader-state path alone misses it when the train
        loader is built early (an LR schedule asks for the epoch length in ``configure_optimizers``,
        before the loops are restored): then the resumed epoch would re-read what was trained."""
        trainer = getattr(self, "trainer", None)
        if trainer is None or self.splits is None:
            return {}
        return {"resume_position": {"epoch": int(trainer.current_epoch), "batches": int(self._batches_done())}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        position = state_dict.get("resume_position")
        self._resume_position = (
            {"epoch": int(position["epoch"]), "batches": int(position["batches"])} if position else None
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.splits.val)

    def test_dataloader(self) -> DataLoader:
        self._require_setup()
        self.splits.test.test_hook = self.test_hook  # set_test_hook: every sample under every variant
        if self.test_hook is None:
            return self._eval_loader(self.splits.test)
        from litvision.datamodules.datasets.variants import collate_variants

        return self._eval_loader(self.splits.test, collate_fn=collate_variants)

    # ---- helpers ------------------------------------------------------------------------
    def _eval_loader(self, stream: Any, **overrides: Any) -> DataLoader:
        from litvision.datamodules.shards.stream import ShardLoader

        self._require_setup()
        args = {**self._loader_args(), **overrides}
        return ShardLoader(self._configured(stream), epoch_fn=self._epoch_fn(), **args)

    def _configured(self, stream: Any, drop_last: bool = False) -> Any:
        world_size, rank = self._world()
        return stream.configure(world_size, rank, self.per_device_batch_size(), drop_last=drop_last)

    def _loader_args(self) -> dict[str, Any]:
        import torch

        return {
            "batch_size": self.per_device_batch_size(),
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory and torch.cuda.is_available(),
            "persistent_workers": self.persistent_workers and self.num_workers > 0,
            "collate_fn": collate_skipping_bad,
        }

    def _epoch_fn(self):
        """The trainer's epoch counter; without a trainer (plain Python) the loader counts its passes."""
        trainer = getattr(self, "trainer", None)
        return (lambda: trainer.current_epoch) if trainer is not None else None

    def _batches_done(self) -> int:
        trainer = getattr(self, "trainer", None)
        return trainer.fit_loop.epoch_loop.batch_progress.current.processed if trainer is not None else 0


def _refuse_map_style_options(imbalance_factor: float | None, exclude_ids: str | None, repeated: int) -> None:
    """The map-style options a shard set cannot apply while streaming, refused with the fix."""
    if imbalance_factor is not None:
        raise ConfigError(
            "dataset.imbalance_factor is applied when the shards are written: python prepare_shards.py "
            f"dataset.imbalance_factor={imbalance_factor} ... out=DIR, then train on DIR with "
            "dataset.imbalance_factor=null"
        )
    if exclude_ids:
        raise ConfigError(
            f"dataset.exclude_ids is applied when the shards are written: python prepare_shards.py "
            f"dataset.exclude_ids={exclude_ids} ... out=DIR, then train on DIR with dataset.exclude_ids=null"
        )
    if int(repeated) != 1:
        raise ConfigError(
            f"dataset.repeated_augmentation={repeated} places each image several times per "
            "global batch by index, which sequential shards cannot do: use dataset.repeated_augmentation=1 with "
            "dataset=imagenet_shards, or train from files (dataset=imagenet)"
        )
