"""``checkpoints/best.ckpt``: the best checkpoint under a fixed name, next to ``best_epochNNN.ckpt``."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import torch

from litvision.callbacks.best_checkpoint import BestCheckpoint
from litvision.utils.atomic_write import link_atomic

SCORES = [0.1, 0.3, 0.2, 0.5, 0.4]  # val/acc_top1 per epoch: new bests at epochs 0, 1 and 3


class ScriptedScore(L.LightningModule):
    """Logs SCORES[epoch] as val/acc_top1; records the best checkpoint files after each epoch."""

    def __init__(self, ckpt_dir: Path) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.ckpt_dir = ckpt_dir
        self.seen: list[tuple[list[str], int]] = []

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def validation_step(self, batch, batch_idx):
        self.log("val/acc_top1", SCORES[self.current_epoch])

    def on_train_epoch_start(self) -> None:
        if self.current_epoch:  # the files the previous epoch's validation left
            best = self.ckpt_dir / "best.ckpt"
            epoch = torch.load(best, weights_only=True)["epoch"]
            self.seen.append((sorted(p.name for p in self.ckpt_dir.glob("best*.ckpt")), epoch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_best_ckpt_follows_every_new_best(tmp_path: Path) -> None:
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(2, 2)), batch_size=2)
    model = ScriptedScore(tmp_path)
    callback = BestCheckpoint(
        dirpath=tmp_path,
        filename="best_epoch{epoch:03d}",
        monitor="val/acc_top1",
        mode="max",
        auto_insert_metric_name=False,
    )
    trainer = L.Trainer(
        max_epochs=len(SCORES),
        callbacks=[callback],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, data, data)
    # after epoch e: best.ckpt is the best so far, and the only other best file is its epoch-numbered twin
    assert model.seen == [
        (["best.ckpt", "best_epoch000.ckpt"], 0),
        (["best.ckpt", "best_epoch001.ckpt"], 1),
        (["best.ckpt", "best_epoch001.ckpt"], 1),
        (["best.ckpt", "best_epoch003.ckpt"], 3),
    ]
    best, named = tmp_path / "best.ckpt", Path(callback.best_model_path)
    assert named.name == "best_epoch003.ckpt" and os.path.samefile(best, named)
    assert not list(tmp_path.glob(".*.tmp"))  # no temp file left behind


def test_link_atomic_replaces_and_falls_back_to_a_copy(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "a").write_bytes(b"first")
    (tmp_path / "b").write_bytes(b"second")
    link_atomic(tmp_path / "a", tmp_path / "best")
    link_atomic(tmp_path / "b", tmp_path / "best")
    assert os.path.samefile(tmp_path / "b", tmp_path / "best")
    assert (tmp_path / "a").read_bytes() == b"first"  # the old target is untouched

    def no_links(*args):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)  # a filesystem without hard links
    link_atomic(tmp_path / "a", tmp_path / "best")
    assert (tmp_path / "best").read_bytes() == b"first" and not os.path.samefile(tmp_path / "a", tmp_path / "best")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "best"]
