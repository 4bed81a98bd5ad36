"""A real 2-process DDP run (CPU, gloo) through train.py with the class-balanced sampler.

The labels come from a callback recording what each rank actually trained on
(tests/helpers/label_recorder.py), not from the sampler, so the test also catches Lightning
wrapping/replacing the sampler or never calling its set_epoch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.stats import chisquare

from litvision.datamodules.cifar10 import CIFAR10DataModule
from litvision.datamodules.sampling.samplers import ClassBalancedSampler
from tests.helpers.fake_cifar import write_fake_cifar
from tests.helpers.run_helpers import run_ddp_sim

NUM_SAMPLES = 1000  # per epoch over both ranks
SEED = 5
IMBALANCE = 10


def test_two_process_ddp_run_trains_on_balanced_disjoint_streams(tmp_path: Path) -> None:
    write_fake_cifar(tmp_path / "data", n_train_per_class=60, n_test_per_class=4)
    record = tmp_path / "labels"
    run_ddp_sim(
        tmp_path / "run",
        "trainer.max_epochs=2",
        "sampler=class_balanced",
        f"sampler.num_samples={NUM_SAMPLES}",
        f"seed={SEED}",
        f"dataset.data_dir={tmp_path / 'data'}",
        f"dataset.imbalance_factor={IMBALANCE}",
        "dataset.download=false",
        "dataset.num_workers=0",
        "dataset.batch_size=64",
        "augmentation=none",
        "model=small_cnn",
        "model.backbone.width=8",
        "logger=none",
        "~callbacks.rich_progress_bar",
        "+callbacks.label_recorder._target_=tests.helpers.label_recorder.LabelRecorder",
        f"+callbacks.label_recorder.out_dir={record}",
    )
    assert (tmp_path / "run" / "metrics.json").is_file()

    # The training split both ranks built: long-tailed, 54 -> 5 images per class.
    datamodule = CIFAR10DataModule(data_dir=str(tmp_path / "data"), imbalance_factor=IMBALANCE, download=False)
    datamodule.setup("fit")
    targets = datamodule.splits.train.targets
    train_counts = np.bincount(targets, minlength=10)
    assert train_counts[0] >= IMBALANCE * train_counts[-1] * 0.9

    seen = {}
    for epoch in (0, 1):
        ranks = [np.load(record / f"labels_epoch{epoch}_rank{rank}.npy") for rank in (0, 1)]
        assert [len(r) for r in ranks] == [NUM_SAMPLES // 2] * 2
        union = np.bincount(np.concatenate(ranks), minlength=10)
        # Balanced within sampling noise, and clearly not the training distribution.
        assert chisquare(union).pvalue > 1e-3, union
        assert chisquare(union, train_counts / train_counts.sum() * NUM_SAMPLES).pvalue < 1e-12
        assert union.min() > NUM_SAMPLES / 10 * 0.6, union
        assert not np.array_equal(ranks[0], ranks[1])  # ranks do not replay one stream
        seen[epoch] = ranks
        # Interleaved, the two processes' shares are, position for position, the stream ONE
        # process draws for (seed, epoch): disjoint shares (no position trained twice, none
        # skipped), and Lightning neither wrapped the sampler nor skipped set_epoch. (Comparing
        # each rank with a 2-replica sampler would accept any sharding bug the sampler has.)
        single = ClassBalancedSampler(targets, num_replicas=1, rank=0, seed=SEED, num_samples=NUM_SAMPLES)
        single.set_epoch(epoch)
        interleaved = np.empty(NUM_SAMPLES, dtype=np.int64)
        for rank in (0, 1):
            interleaved[rank::2] = ranks[rank]
        np.testing.assert_array_equal(interleaved, targets[list(single)])
    assert not np.array_equal(seen[0][0], seen[1][0])  # a new stream every epoch
