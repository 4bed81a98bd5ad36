"""prepare_shards (shards/) and dataset=imagenet_shards (datamodules/shard_*.py) on small generated trees."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tarfile
import threading
from collections import Counter
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("webdataset", reason="the shards extra (pip install -e '.[shards]') is not installed")

from litvision.datamodules.class_folder import ClassFolderDataModule
from litvision.datamodules.datasets.file_dataset import collate_skipping_bad
from litvision.datamodules.imagenet import ImageNetDataModule
from litvision.datamodules.readers.decode import BadImageError
from litvision.datamodules.shard_datamodule import ShardDataModule
from litvision.datamodules.shards.prepare import prepare
from litvision.datamodules.shards.stream import ShardLoader
from litvision.utils.errors import ConfigError, DataError, MissingDataError
from tests.helpers.imagenet_trees import age_tree, bad_image_bytes, build_train, build_val, generated_samples

BAD = ("truncated", "empty")  # the planted files that cannot be decoded


def awkward_imagenet_tree(tmp_path: Path, num_classes: int = 4, per_class: int = 5) -> Path:
    """ImageNet layout (Kaggle flat val) with the awkward files of the ImageNet tests planted in train."""
    samples = generated_samples(tmp_path / "gen", num_classes=num_classes, per_class=per_class, size=(40, 56))
    root = tmp_path / "tree"
    build_train(root, samples)
    build_val(root, samples, "kaggle")
    for k, (name, data) in enumerate(bad_image_bytes().items()):
        wnid = samples[per_class * (k % num_classes)][0]
        (root / "train" / wnid / f"{name}.JPEG").write_bytes(data)
    age_tree(root)
    return root


def imagenet_dm(root: Path, **kwargs) -> ImageNetDataModule:
    return ImageNetDataModule(str(root), val_split="val", test_split="val", progress=False, **kwargs)


def tar_samples(path: Path) -> dict[str, dict[str, bytes]]:
    """{key: {field: bytes}} read with the standard library (any tar tool can read the shards)."""
    out: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            key, field = member.name.split(".", 1)
            out.setdefault(key, {})[field] = tar.extractfile(member).read()
    return out


def test_shards_hold_the_original_bytes_labels_ids_and_a_checked_manifest(tmp_path):
    root = awkward_imagenet_tree(tmp_path)
    out = tmp_path / "shards"
    stats = prepare(imagenet_dm(root), out, samples_per_shard=6, workers=1)
    manifest = json.loads((out / "manifest.json").read_text())
    files = imagenet_dm(root)
    files.setup("fit")
    for split, dataset in (("train", files.splits.train), ("val", files.splits.val)):
        # what the file DataModule would read: id -> (bytes, label)
        expected = {
            os.path.relpath(dataset.path(i), root): (Path(dataset.path(i)).read_bytes(), int(dataset.targets[i]))
            for i in range(len(dataset))
        }
        bad = {i for i in expected if Path(i).stem in BAD}
        info = manifest["splits"][split]
        seen = {}
        for shard in info["shards"]:
            path = out / shard["name"]
            assert hashlib.sha256(path.read_bytes()).hexdigest() == shard["sha256"]
            assert path.stat().st_size == shard["bytes"]
            samples = tar_samples(path)
            assert len(samples) == shard["count"]
            for _key, fields in samples.items():
                sample_id = fields["id.txt"].decode()
                assert sample_id not in seen
                seen[sample_id] = (fields["jpg"], int(fields["cls"]))
        assert seen == {i: v for i, v in expected.items() if i not in bad}  # every readable file, byte for byte
        assert {b["id"] for b in info["bad_files"]} == bad
        counts = np.bincount([label for i, (_, label) in expected.items() if i not in bad], minlength=4)
        assert info["class_counts"] == counts.tolist() and info["count"] == counts.sum()
    assert manifest["class_names"] == files.class_names and manifest["classes"] == files.index("train").classes
    assert manifest["default_splits"] == {"val": "val", "test": "val"}
    assert stats["bad_files"] == 2 and stats["written_shards"] == stats["shards"]
    # training shards are pre-shuffled: not in class order
    first = tar_samples(out / "train-000000.tar")
    assert len({fields["cls"] for fields in first.values()}) > 1


def test_raise_policy_stops_with_the_path_and_a_rerun_keeps_the_shards_already_written(tmp_path):
    root = awkward_imagenet_tree(tmp_path)
    out = tmp_path / "shards"
    with pytest.raises(DataError, match=r"(truncated|empty)\.JPEG.*on_bad_image=skip"):
        prepare(imagenet_dm(root, on_bad_image="raise"), out, samples_per_shard=3, workers=1)
    written = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    assert written and not (out / "manifest.json").exists()  # interrupted: some shards, no manifest
    stats = prepare(imagenet_dm(root), out, samples_per_shard=3, workers=1)
    assert stats["reused_shards"] == len(written)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar") if p.name in written} == written
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"]["train"]["count"] == 4 * 5 + 3 and manifest["splits"]["val"]["count"] == 20


# a changed plan on an existing shard set is refused, not rewritten: tests/test_prepare_ownership.py


def test_prepare_refuses_non_file_datasets_and_remote_outputs(tmp_path):
    from omegaconf import OmegaConf

    from litvision.tasks.prepare_shards import prepare_shards

    cfg = OmegaConf.create(
        {
            "dataset": {"_target_": "litvision.datamodules.cifar10.CIFAR10DataModule", "data_dir": str(tmp_path)},
            "out": str(tmp_path / "o"),
            "samples_per_shard": 10,
            "workers": 1,
            "verify": "decode",
            "shuffle_seed": 0,
        }
    )
    with pytest.raises(ConfigError, match="file datasets"):
        prepare_shards(cfg)
    with pytest.raises(ConfigError, match="local folder"):
        prepare(None, "s3://bucket/x")


# ---- reading --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shard_set(tmp_path_factory) -> tuple[Path, Path]:
    """(tree, shards): 5 classes x 7 generated images + 2 unreadable files, 4-sample shards."""
    tmp = tmp_path_factory.mktemp("shardset")
    samples = generated_samples(tmp / "gen", num_classes=5, per_class=7, size=(40, 56))
    root = tmp / "tree"
    build_train(root, samples)
    build_val(root, samples, "folders")
    wnid = samples[0][0]
    (root / "train" / wnid / "truncated.JPEG").write_bytes(bad_image_bytes()["truncated"])
    (root / "val" / wnid / "empty.JPEG").write_bytes(b"")
    age_tree(root)
    out = tmp / "shards"
    prepare(
        ClassFolderDataModule(str(root), val_split="val", test_split="val", progress=False),
        out,
        samples_per_shard=4,
        workers=1,
    )
    return root, out


def resize(size=16):
    from albumentations import Compose, Resize

    return Compose([Resize(size, size)])


def shard_dm(location, **kwargs) -> ShardDataModule:
    args = {"batch_size": 4, "num_workers": 0, "train_transform": resize(), "eval_transform": resize(), "seed": 3}
    return ShardDataModule(str(location), **{**args, **kwargs})


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("num_workers", [0, 2])
def test_ranks_and_workers_read_each_sample_once(shard_set, world_size, num_workers):
    """Real loaders per simulated rank (9 train shards of 4+1 samples: no even split by 2 or 3)."""
    _, out = shard_set
    dm = shard_dm(out, num_workers=num_workers, persistent_workers=False)
    dm.setup("fit")
    manifest = json.loads((out / "manifest.json").read_text())
    for split, stream in (("train", dm.splits.train), ("val", dm.splits.val)):
        labels, batches = [], []
        for rank in range(world_size):
            stream.configure(world_size, rank, 4, drop_last=False)
            loader = ShardLoader(stream, batch_size=4, num_workers=num_workers, collate_fn=collate_skipping_bad)
            rank_labels = [y for _, y in loader]
            batches.append(len(rank_labels))
            assert len(rank_labels) == len(loader)
            labels.append(torch.cat(rank_labels).numpy())
        # 35 samples: 17 or 18 per rank for 2 ranks, 11 or 12 for 3: same batch count, no padding needed
        everything = np.concatenate(labels)
        np.testing.assert_array_equal(np.bincount(everything, minlength=5), manifest["splits"][split]["class_counts"])
        if split == "train":
            assert len(set(batches)) == 1  # DDP steps in lockstep


def test_the_stream_reads_sample_ids_exactly_once_and_shuffles_per_epoch(shard_set):
    """Id level: the undecoded samples each (rank, worker) reads in an epoch."""
    _, out = shard_set
    dm = shard_dm(out)
    dm.setup("fit")
    stream = dm.splits.train
    total = stream.total
    assert total == 35  # the truncated file was left out when writing
    orders = []
    for epoch in (0, 1):
        ids = []
        for rank in range(5):  # 35 = 5 x 7: no padding
            stream.configure(5, rank, 2)
            for worker in range(3):
                parts, _ = stream.plan(epoch, worker, 3)
                ids += [s["id.txt"].decode() for s in stream.raw_samples(parts)]
        assert len(ids) == len(set(ids)) == total
        orders.append(ids)
    assert orders[0] != orders[1]


def test_eval_from_shards_equals_eval_from_files(shard_set):
    """Same decode + transform: the val batches hold the same pixels and labels (as a multiset)."""
    root, out = shard_set
    files = ClassFolderDataModule(
        str(root),
        val_split="val",
        test_split="val",
        progress=False,
        batch_size=4,
        num_workers=0,
        train_transform=resize(),
        eval_transform=resize(),
    )
    files.setup("fit")
    shards = shard_dm(out)
    shards.setup("fit")

    def digests(loader):
        return Counter(
            (hashlib.sha1(x.contiguous().numpy().tobytes()).hexdigest(), int(y))
            for xb, yb in loader
            for x, y in zip(xb, yb, strict=True)
        )

    assert digests(shards.val_dataloader()) == digests(files.val_dataloader())
    assert shards.class_names == files.class_names
    np.testing.assert_array_equal(
        shards.train_class_counts, np.bincount(files.splits.train.targets, minlength=5) - [1, 0, 0, 0, 0]
    )


def test_shards_over_http(shard_set):
    """An object-store-style URL: the same shards served over HTTP, read through WebDataset's gopen (curl)."""
    import shutil

    if shutil.which("curl") is None:
        pytest.skip("curl is needed for WebDataset's http(s) reader")
    _, out = shard_set
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(SimpleHTTPRequestHandler, directory=str(out)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        remote, local = shard_dm(url), shard_dm(out)
        remote.setup("fit")
        local.setup("fit")
        labels = [torch.cat([y for _, y in dm.val_dataloader()]).tolist() for dm in (remote, local)]
        assert labels[0] == labels[1] and len(labels[0]) == 35
        with pytest.raises(MissingDataError):
            shard_dm(url + "/nothing-here").setup("fit")
    finally:
        server.shutdown()


def test_bad_image_policy_applies_when_reading(tmp_path):
    """Shards written without checking (verify=none): unreadable images are dropped in evaluation,
    replaced in training (batches keep their size), or stop the run with on_bad_image=raise."""
    samples = generated_samples(tmp_path / "gen", num_classes=2, per_class=3, size=(40, 56))
    root = tmp_path / "tree"
    build_train(root, samples)
    build_val(root, samples, "folders")
    for split in ("train", "val"):
        (root / split / samples[0][0] / "truncated.JPEG").write_bytes(bad_image_bytes()["truncated"])
    age_tree(root)
    out = tmp_path / "shards"
    prepare(
        ClassFolderDataModule(str(root), val_split="val", test_split="val", progress=False),
        out,
        samples_per_shard=3,
        workers=1,
        verify="none",
    )
    dm = shard_dm(out, batch_size=7)
    dm.setup("fit")
    val = [y for _, y in dm.val_dataloader()]
    train = [y for _, y in dm.train_dataloader()]
    assert sum(len(y) for y in val) == 6 and [len(y) for y in train] == [7]
    assert dm.bad_image_counts() == {"train": 1, "val": 1}
    strict = shard_dm(out, on_bad_image="raise")
    strict.setup("fit")
    with pytest.raises(BadImageError, match=r"truncated\.JPEG"):
        list(strict.val_dataloader())


def test_refusals_are_clear(shard_set, tmp_path):
    _, out = shard_set
    from litvision.datamodules.sampling.samplers import ClassBalancedSampler

    with pytest.raises(ConfigError, match="sampler=none"):
        shard_dm(out, sampler=functools.partial(ClassBalancedSampler))
    with pytest.raises(ConfigError, match="prepare_shards.py dataset.imbalance_factor=10"):
        shard_dm(out, imbalance_factor=10)
    with pytest.raises(ConfigError, match="prepare_shards.py dataset.exclude_ids=ids.txt"):
        shard_dm(out, exclude_ids="ids.txt")
    with pytest.raises(ConfigError, match="repeated_augmentation=1"):
        shard_dm(out, repeated_augmentation=4)
    with pytest.raises(ConfigError, match=r"splits \['train', 'val'\]"):
        shard_dm(out, val_split="holdout").setup("fit")
    with pytest.raises(MissingDataError, match="prepare_shards.py"):
        shard_dm(tmp_path / "missing").setup("fit")


class _Killed(Exception):
    pass


class _RecordLabels:
    """Lightning callback recording the labels of every trained batch (what the loop consumed)."""

    def __new__(cls, stop_at: int | None = None):
        import lightning as L

        class Recorder(L.Callback):
            def __init__(self) -> None:
                self.batches: list[list[int]] = []

            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                if stop_at is not None and batch_idx == stop_at:
                    raise _Killed  # stands in for a kill: Lightning stops, saves nothing more

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                self.batches.append(batch[1].tolist())

        return Recorder()


def step_checkpoints(tmp_path: Path, through_config: bool):
    """Checkpoints every 2 steps and the ``ckpt_path`` resuming from the one at step 4.

    ``through_config``: the README's recipe, ``callbacks.last_checkpoint.every_n_train_steps=N``
    then ``ckpt_path=last`` (the callback comes from conf/, the path from Lightning's own rule).
    """
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import ModelCheckpoint

    if not through_config:
        return lambda: ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2, save_top_k=-1), str(
            tmp_path / "ckpt" / "epoch=0-step=4.ckpt"
        )
    cfg = composed(
        "train",
        ["callbacks.last_checkpoint.every_n_train_steps=2", f"callbacks.model_checkpoint.dirpath={tmp_path / 'ckpt'}"],
    )
    return lambda: instantiate(cfg.callbacks.last_checkpoint), "last"


@pytest.mark.parametrize(
    "num_workers, through_config, schedule",
    [(0, False, False), (0, True, False), (0, False, True), pytest.param(2, False, False, marks=pytest.mark.slow)],
)
def test_resuming_from_a_mid_epoch_checkpoint_trains_the_rest_of_the_epoch(
    tmp_path, num_workers, through_config, schedule
):
    """``schedule``: with an LR schedule (its length is asked for while the optimizers are configured,
    before Lightning restores the loader's position)."""
    import lightning as L

    from litvision.lightning_modules.backbones import build_backbone
    from litvision.lightning_modules.classifier import ImageClassifier

    samples = generated_samples(tmp_path / "gen", num_classes=24, per_class=1, size=(24, 24))  # label = sample
    root = tmp_path / "tree"
    build_train(root, samples)
    build_val(root, samples[:4], "folders")
    age_tree(root)
    prepare(
        ClassFolderDataModule(str(root), val_split="val", test_split="val", progress=False),
        tmp_path / "shards",
        samples_per_shard=5,
        workers=1,
    )

    def fit(callbacks, ckpt_path=None):
        L.seed_everything(0)
        scheduler = {"_target_": "litvision.lightning_modules.training.schedulers.warmup_cosine", "_partial_": True}
        model = ImageClassifier(
            functools.partial(build_backbone, "small_cnn", width=4), scheduler=scheduler if schedule else None
        )
        trainer = L.Trainer(
            max_epochs=2,
            accelerator="cpu",
            logger=False,
            enable_progress_bar=False,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            enable_model_summary=False,
            callbacks=callbacks,
            default_root_dir=tmp_path,
        )
        dm = shard_dm(
            tmp_path / "shards",
            batch_size=3,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
            normalize={"mean": [0.5] * 3, "std": [0.25] * 3},
        )
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)

    reference = _RecordLabels()
    fit([reference])
    assert len(reference.batches) == 16  # 2 epochs x 8 batches
    interrupted = _RecordLabels(stop_at=5)
    checkpoint_callback, resume_from = step_checkpoints(tmp_path, through_config)
    with pytest.raises(_Killed):
        fit([interrupted, checkpoint_callback()])
    assert len(interrupted.batches) == 5
    resumed = _RecordLabels()
    fit([resumed, checkpoint_callback()], ckpt_path=resume_from)
    # epoch 0: the 4 batches before the checkpoint + the resumed rest = each sample once
    epoch0 = interrupted.batches[:4] + resumed.batches[:4]
    assert sorted(sum(epoch0, [])) == list(range(24))
    assert len(resumed.batches) == 4 + 8  # the rest of epoch 0, then all of epoch 1
    if num_workers == 0:  # one stream: the very same batches as the uninterrupted run
        assert epoch0 == reference.batches[:8]
    assert sorted(map(sorted, resumed.batches[4:])) == sorted(map(sorted, reference.batches[8:]))


def composed(config: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from litvision.launch.resolvers import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        return compose(config, overrides=overrides)


def test_configs_compose(shard_set):
    from hydra.utils import instantiate

    _, out = shard_set
    cfg = composed("train", ["dataset=imagenet_shards", f"dataset.shards={out}", "dataset.num_workers=0"])
    assert cfg.dataset._target_ == "litvision.datamodules.shard_datamodule.ShardDataModule"
    assert cfg.model.backbone.name == "resnet50"  # like dataset=imagenet
    assert cfg.augmentation.train.transforms[0]._target_ == "albumentations.RandomResizedCrop"
    dm = instantiate(cfg.dataset)
    dm.setup("fit")
    images, labels = next(iter(dm.val_dataloader()))
    assert images.shape[1:] == (3, 224, 224) and images.dtype == torch.uint8
    with pytest.raises(Exception, match="sampler=none") as refused:  # Hydra wraps it; entry scripts print the cause
        instantiate(
            composed("train", ["dataset=imagenet_shards", f"dataset.shards={out}", "sampler=class_aware"]).dataset
        )
    assert isinstance(refused.value.__cause__, ConfigError)
    prep = composed("prepare_shards", ["dataset=class_folder", "dataset.data_dir=/x", "out=/y"])
    assert prep.dataset._target_.endswith("ClassFolderDataModule") and prep.verify == "decode"
