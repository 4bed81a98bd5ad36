"""``experiment=cifar10_fast`` end to end: the preset composes and trains, DDP evaluation is exact,
and a resumed run replays the uninterrupted one (augmentation included)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.helpers.fake_cifar import write_fake_cifar
from tests.helpers.run_helpers import read_metrics, run_ddp_sim, run_script

CLASSES = ["a", "b", "c", "d", "e"]
# tiny airbench widths and batches: seconds per run on a CPU
TINY = ["model.backbone.widths=[8,16,16]", "dataset.batch_size=16", "callbacks.whitening_init.num_images=64"]


@pytest.fixture(scope="module")
def odd_cifar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 classes: 95 train-pool images (val = 10, train = 85) and 15 test images (odd: 8 + 7 over 2 ranks)."""
    root = tmp_path_factory.mktemp("odd_cifar_fast")
    write_fake_cifar(root, n_train_per_class=19, n_test_per_class=3, class_names=CLASSES, seed=1)
    return root


def test_preset_composes_the_device_resident_recipe() -> None:
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="litvision.conf", version_base="1.3"):
        cfg = compose("train", overrides=["experiment=cifar10_fast"])
    assert cfg.dataset._target_.endswith("DeviceCIFAR10DataModule") and cfg.dataset.num_workers == 0
    assert cfg.augmentation.train is None and cfg.augmentation.batched.flip == "alternating"
    assert cfg.model.backbone.name == "airbench" and cfg.model.backbone.tta in ("flip", "flip_translate")
    assert "whitening_init" in cfg.callbacks and cfg.loss.label_smoothing > 0


@pytest.mark.slow  # two training processes + eval.py: ~30 s on a quiet 2-core machine, minutes on a loaded one
def test_ddp_sim_test_metrics_equal_single_process_eval(odd_cifar_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp"
    run_ddp_sim(
        run_dir,
        "experiment=cifar10_fast",
        "trainer.max_epochs=2",
        "logger=csv",
        f"dataset.data_dir={odd_cifar_root}",
        *TINY,
    )
    ddp = read_metrics(run_dir)

    # the same checkpoint through the STANDARD loader path (dataset=cifar10), one process
    best = next((run_dir / "checkpoints").glob("best*.ckpt"))
    eval_dir = tmp_path / "eval"
    run_script(
        "eval.py",
        f"ckpt_path={best}",
        f"dataset.data_dir={odd_cifar_root}",
        f"hydra.run.dir={eval_dir}",
        "dataset.num_workers=0",
        "dataset.batch_size=16",
        "trainer.precision=bf16-mixed",
    )
    single = read_metrics(eval_dir)
    test_keys = [k for k in single if k.startswith("test/")]
    assert len(test_keys) >= 10 and len([k for k in test_keys if "/recall/" in k]) == len(CLASSES)
    for key in test_keys:
        if key == "test/loss":
            assert math.isclose(ddp[key], single[key], rel_tol=1e-4), (key, ddp[key], single[key])
        else:
            assert ddp[key] == single[key], (key, ddp[key], single[key])


@pytest.mark.slow
def test_resumed_run_ends_with_the_same_weights(odd_cifar_root: Path, tmp_path: Path) -> None:
    """Augmentation is a function of (seed, epoch): killing after epoch 1 and resuming replays epoch 2."""
    common = [
        "experiment=cifar10_fast",
        f"dataset.data_dir={odd_cifar_root}",
        "logger=none",
        "test=false",
        "trainer.max_epochs=3",
        *TINY,
    ]
    run_script("train.py", *common, f"hydra.run.dir={tmp_path / 'straight'}")
    stop = ["+callbacks.stop._target_=tests.helpers.stop_after_epoch.StopAfterEpoch", "+callbacks.stop.epoch=0"]
    run_script("train.py", *common, *stop, f"hydra.run.dir={tmp_path / 'resumed'}")
    assert torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0
    run_script("train.py", *common, "ckpt_path=last", f"hydra.run.dir={tmp_path / 'resumed'}")

    def weights(run: str) -> dict[str, torch.Tensor]:
        return torch.load(tmp_path / run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]

    straight, resumed = weights("straight"), weights("resumed")
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


@pytest.mark.slow
def test_ddp_ranks_train_on_disjoint_strides_of_the_class_aware_stream(odd_cifar_root: Path, tmp_path: Path) -> None:
    """What each of 2 real processes trained on (labels recorded after the on-device gather) is
    exactly its stride of the sampler's (seed, epoch) stream: Lightning neither wrapped nor
    replaced the sampler of the index loader, and set_epoch reached it."""
    import numpy as np

    from litvision.datamodules.device_resident import DeviceCIFAR10DataModule
    from litvision.datamodules.sampling.samplers import ClassAwareSampler

    record = tmp_path / "labels"
    run_script(
        "train.py",
        "experiment=cifar10_fast",
        "trainer=ddp_sim",
        "trainer.max_epochs=2",
        "logger=none",
        "test=false",
        "sampler=class_aware",
        "sampler.num_samples=96",
        "seed=5",
        "dataset.drop_last=false",
        "+callbacks.label_recorder._target_=tests.helpers.label_recorder.LabelRecorder",
        f"+callbacks.label_recorder.out_dir={record}",
        f"dataset.data_dir={odd_cifar_root}",
        f"hydra.run.dir={tmp_path / 'run'}",
        *TINY,
        timeout=600,
    )
    datamodule = DeviceCIFAR10DataModule(data_dir=str(odd_cifar_root), download=False)
    datamodule.setup("fit")
    targets = datamodule.splits.train.targets
    for epoch in (0, 1):
        for rank in (0, 1):
            seen = np.load(record / f"labels_epoch{epoch}_rank{rank}.npy")
            sampler = ClassAwareSampler(targets, num_replicas=2, rank=rank, seed=5, num_samples=96)
            sampler.set_epoch(epoch)
            np.testing.assert_array_equal(seen, targets[list(sampler)])
