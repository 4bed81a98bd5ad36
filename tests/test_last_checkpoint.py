"""last.ckpt is the last completed epoch even when val accuracy stops improving.

Lightning 2.6's ModelCheckpoint(monitor=..., save_last=True) writes last.ckpt only in a step
where it also saved a top-k checkpoint; with our old single callback a run whose best epoch
was 0 kept last.ckpt at epoch 0, and ``ckpt_path=last`` silently re-ran every later epoch.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tests.helpers.run_helpers import TINY_MODEL, run_script


def test_last_checkpoint_follows_every_epoch_not_the_best(fake_cifar_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # lr=0: the weights never change, so val/acc_top1 never improves after epoch 0
    run_script(
        "train.py",
        "trainer.max_epochs=3",
        "optimizer.lr=0.0",
        "logger=none",
        "test=false",
        f"dataset.data_dir={fake_cifar_root}",
        f"hydra.run.dir={run_dir}",
        *TINY_MODEL,
    )
    ckpt_dir = run_dir / "checkpoints"
    best = sorted(p.name for p in ckpt_dir.glob("best_*.ckpt"))
    assert best == ["best_epoch000.ckpt"], best
    last = torch.load(ckpt_dir / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 2, f"last.ckpt holds epoch {last['epoch']}, not the last completed epoch 2"

    # and ckpt_path=last resumes from there: one more epoch, not three
    resumed = run_script(
        "train.py",
        "trainer.max_epochs=4",
        "optimizer.lr=0.0",
        "logger=none",
        "test=false",
        "ckpt_path=last",
        f"dataset.data_dir={fake_cifar_root}",
        f"hydra.run.dir={run_dir}",
        *TINY_MODEL,
    )
    assert "Restored all states from the checkpoint" in resumed.stdout + resumed.stderr
    last = torch.load(ckpt_dir / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 3
    assert not list(ckpt_dir.glob("last-v*.ckpt")), "a versioned second last checkpoint would confuse ckpt_path=last"
