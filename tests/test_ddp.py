"""2-process DDP on CPU (gloo): exact evaluation and rank-zero hygiene.

The test set is 5 classes x 3 images = 15 (odd), so 2 ranks get 8 and 7 images: a padding
sampler would count one image twice, and a mean over ranks that truncates the sample
count (Lightning's sync_dist mean) would be off by 7.5/7. Both would fail the equality with
a single-process ``eval.py`` of the same checkpoint.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.helpers.fake_cifar import write_fake_cifar
from tests.helpers.gloo_ranks import run_on_ranks
from tests.helpers.run_helpers import read_metrics, run_ddp_sim, run_script

CLASSES = ["a", "b", "c", "d", "e"]
TINY = ["model=small_cnn", "model.backbone.width=8", "dataset.num_workers=0", "dataset.batch_size=8"]


@pytest.fixture(scope="module")
def odd_cifar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 classes: 95 train-pool images (val = 10, train = 85) and 15 test images."""
    root = tmp_path_factory.mktemp("odd_cifar")
    write_fake_cifar(root, n_train_per_class=19, n_test_per_class=3, class_names=CLASSES, seed=1)
    return root


def test_ddp_sim_test_metrics_equal_single_process_eval(odd_cifar_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp"
    proc = run_ddp_sim(
        run_dir,
        "trainer.max_epochs=2",
        "logger=wandb",
        "optimizer.lr=0.02",
        f"dataset.data_dir={odd_cifar_root}",
        *TINY,
        timeout=420,
    )
    out = proc.stdout + proc.stderr
    ddp = read_metrics(run_dir)
    assert ddp["epoch"] == 1

    # rank-zero hygiene: one W&B run, one metrics.json, checkpoints once, INFO logs printed once
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir() if not p.name.startswith("best")) == ["last.ckpt"]
    assert out.count("CIFAR10DataModule: 85 train / 10 val / 15 test images") == 1, "rank 1 printed INFO logs"
    assert (run_dir / "train_ddp_process_1.log").exists()  # rank 1 was a second process writing into this run dir

    best = next((run_dir / "checkpoints").glob("best*.ckpt"))
    eval_dir = tmp_path / "eval"
    run_script(
        "eval.py", f"ckpt_path={best}", f"dataset.data_dir={odd_cifar_root}", f"hydra.run.dir={eval_dir}", *TINY[2:]
    )
    single = read_metrics(eval_dir)

    test_keys = [k for k in single if k.startswith("test/")]
    assert len(test_keys) >= 10 and any("/recall/" in k for k in test_keys)
    assert "test/ece" in test_keys  # calibration from every sample's confidence, gathered from both ranks
    for key in test_keys:
        if key in ("test/loss", "test/ece"):
            # a float sum in another order (two partial sums): equal up to rounding
            assert math.isclose(ddp[key], single[key], rel_tol=1e-5), (key, ddp[key], single[key])
        else:
            # counts-based metrics: bit-for-bit the same numbers
            assert ddp[key] == single[key], (key, ddp[key], single[key])


def test_unpadded_eval_sampler_counts_every_image_once(odd_cifar_root: Path) -> None:
    """What the DataModule hands each rank under DDP: disjoint shards covering all 15 test images."""
    from litvision.datamodules.cifar10 import CIFAR10DataModule

    class FakeTrainer:  # only the two attributes the DataModule reads to know its place
        def __init__(self, rank: int) -> None:
            self.world_size, self.global_rank = 2, rank

    seen: list[int] = []
    for rank in (0, 1):
        dm = CIFAR10DataModule(data_dir=str(odd_cifar_root), batch_size=8, num_workers=0, download=False)
        dm.trainer = FakeTrainer(rank)
        dm.setup("test")
        loader = dm.test_dataloader()
        assert isinstance(loader.sampler, torch.utils.data.DistributedSampler)  # Lightning will not re-wrap it
        seen += list(loader.sampler)
    assert sorted(seen) == list(range(15))


# ---- the metric collections alone, 2 gloo processes (fast) -------------------------------
# Labels/predictions chosen so that rank 0's first batch is all correct and rank 1's is not:
# torchmetrics' automatic compute groups then differ between ranks (top-1 states equal top-5
# states on rank 0 only) and the synced per-class recall came out 0.67 instead of 0.0.
LABELS = [2, 0, 0, 1, 0, 1, 1, 4, 3, 3, 3, 2, 4, 2, 4]
PREDICTED = [2, 0, 0, 1, 0, 1, 1, 1, 3, 3, 3, 2, 1, 2, 1]


def _eval_split(rank: int, world_size: int) -> dict[str, float]:
    from litvision.lightning_modules.metrics.collections import eval_metrics, flatten_results

    metrics = eval_metrics(5, "test/")
    labels, predicted = torch.tensor(LABELS), torch.tensor(PREDICTED)
    indices = torch.arange(rank, len(LABELS), world_size)  # the unpadded split: 8 and 7 items
    for chunk in indices.split(4):
        metrics.update(torch.nn.functional.one_hot(predicted[chunk], 5).float(), labels[chunk])
    return flatten_results(metrics.compute(), "test/", CLASSES)


def test_eval_metric_collections_sync_exactly_across_ranks(tmp_path: Path) -> None:
    results = run_on_ranks(_eval_split, tmp_path)
    single = _eval_split(0, 1)
    assert single["test/recall/e"] == 0.0 and single["test/acc_top1"] == pytest.approx(12 / 15)
    for rank, synced in enumerate(results):
        assert synced == single, rank


def test_ddp_sim_fdr_runs_two_processes(fake_cifar_root: Path, tmp_path: Path) -> None:
    """README's `trainer=ddp_sim debug=fdr` is a DDP plumbing check: debug=fdr keeps the trainer's 2 processes."""
    run_dir = tmp_path / "fdr"
    run_ddp_sim(run_dir, "debug=fdr", "logger=csv", f"dataset.data_dir={fake_cifar_root}", *TINY, timeout=300)
    assert "test/acc_top1" in read_metrics(run_dir)
