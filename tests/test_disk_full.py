"""Out of disk space: one line naming the file, recorded in train.log, and nothing that claims more than was saved.

The full disk is real at the OS boundary: the atomic writer's temp file is swapped, at
``os.fdopen``, for a handle on ``/dev/full``, whose writes fail with ENOSPC from the kernel
(tests/helpers/disk_full.py); torch.save, json, Lightning and our code above it run unchanged.
"""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel

from litvision.callbacks.metrics_summary import MetricsSummary
from litvision.plugins.atomic_checkpoint import AtomicCheckpointIO
from litvision.utils.atomic_write import write_atomic, write_json_atomic
from litvision.utils.checkpoint_io import atomic_torch_save
from litvision.utils.errors import DiskFullError
from tests.helpers.disk_full import fill_disk_at
from tests.helpers.run_helpers import TINY_MODEL, run_script

pytestmark = pytest.mark.skipif(
    not os.path.exists("/dev/full") or not os.path.isdir("/proc/self/fd"), reason="needs Linux /dev/full and /proc"
)


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(os, "fdopen", os.fdopen)  # restored after the test
    return fill_disk_at


def test_a_write_that_runs_out_of_space_names_the_file_and_keeps_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    target.write_text("old")

    def write(handle) -> None:
        handle.write(b"half of it")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(DiskFullError) as raised:
        write_atomic(target, write)
    assert isinstance(raised.value, OSError)  # `except OSError` keeps working
    assert str(raised.value).startswith(f"no space left on device while writing {target} (its previous version")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp file left


def test_other_write_errors_keep_their_type(tmp_path: Path) -> None:
    def denied(handle) -> None:
        raise PermissionError(errno.EACCES, "denied")

    with pytest.raises(PermissionError) as raised:
        write_atomic(tmp_path / "x", denied)
    assert not isinstance(raised.value, DiskFullError)

    def quota(handle) -> None:
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    with pytest.raises(DiskFullError, match="disk quota exceeded while writing .*nothing was written"):
        write_atomic(tmp_path / "y", quota)


def test_torch_save_on_a_full_disk_is_one_disk_full_error(tmp_path: Path, full_disk) -> None:
    """torch.save turns the ENOSPC into "RuntimeError: unexpected pos": the cause is found in its chain."""
    target = tmp_path / "last.ckpt"
    atomic_torch_save({"epoch": 0, "w": torch.ones(3)}, target)
    full_disk("last.ckpt", nth=1)
    with pytest.raises(DiskFullError, match=re.escape(f"no space left on device while writing {target}")):
        atomic_torch_save({"epoch": 1, "w": torch.zeros(100_000)}, target)
    assert torch.load(target, weights_only=True)["epoch"] == 0
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_metrics_json_on_a_full_disk_leaves_no_half_written_file(tmp_path: Path, full_disk) -> None:
    full_disk("metrics.json", nth=1)
    with pytest.raises(DiskFullError, match="nothing was written"):
        write_json_atomic(tmp_path / "metrics.json", {"val/acc": 0.5})
    assert list(tmp_path.iterdir()) == []


class _ValAcc(BoringModel):
    def validation_step(self, batch, batch_idx):
        out = super().validation_step(batch, batch_idx)
        self.log("val/acc_top1", 1.0 / (1 + self.current_epoch))
        return out


@pytest.mark.parametrize("every_epoch_end", [True, False], ids=["save_on_train_epoch_end", "save_on_validation_end"])
def test_metrics_json_claims_no_epoch_beyond_the_last_saved_checkpoint(
    tmp_path: Path, full_disk, every_epoch_end: bool
) -> None:
    """The epoch-1 last.ckpt save fails: metrics.json must still say epoch 0, what last.ckpt holds."""
    summary = MetricsSummary(tmp_path / "metrics.json", print_table=False)
    last = ModelCheckpoint(
        dirpath=tmp_path,
        filename="last",
        monitor=None,
        save_top_k=1,
        enable_version_counter=False,
        save_on_train_epoch_end=every_epoch_end,
    )
    trainer = L.Trainer(
        max_epochs=3,
        limit_train_batches=2,
        limit_val_batches=1,
        callbacks=[summary, last],
        plugins=[AtomicCheckpointIO()],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    full_disk("last.ckpt", nth=2)
    with pytest.raises(DiskFullError, match="while writing .*last.ckpt"):
        trainer.fit(_ValAcc())
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["epoch"] == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["epoch"] == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["val/acc_top1"] == 1.0


def _last_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr[-3000:]
    return lines[-1]


def test_train_out_of_disk_at_a_checkpoint_save(fake_cifar_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_script(
        "train.py",
        "logger=csv",
        f"dataset.data_dir={fake_cifar_root}",
        f"hydra.run.dir={run_dir}",
        *TINY_MODEL,
        "trainer.max_epochs=2",
        "+trainer.limit_train_batches=2",
        "+callbacks.disk_full._target_=tests.helpers.disk_full.DiskFullAt",
        "+callbacks.disk_full.name=last.ckpt",
        "+callbacks.disk_full.nth=2",
        check=False,
    )
    assert proc.returncode == 1
    last = run_dir / "checkpoints" / "last.ckpt"
    line = _last_line(proc.stderr)
    assert line.startswith(
        f"DiskFullError: no space left on device while writing {last} (its previous version is unchanged)"
    )
    assert "ckpt_path=last" in line
    assert line in (run_dir / "train.log").read_text()
    assert torch.load(last, weights_only=True)["epoch"] == 0
    assert json.loads((run_dir / "metrics.json").read_text())["epoch"] == 0
    assert not list(run_dir.rglob("*.tmp"))


@pytest.mark.slow  # the same one-line path as above; the in-process test covers the file
def test_train_out_of_disk_writing_metrics_json(fake_cifar_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_script(
        "train.py",
        "logger=csv",
        f"dataset.data_dir={fake_cifar_root}",
        f"hydra.run.dir={run_dir}",
        *TINY_MODEL,
        "debug=fdr",
        "+callbacks.disk_full._target_=tests.helpers.disk_full.DiskFullAt",
        "+callbacks.disk_full.name=metrics.json",
        check=False,
    )
    assert proc.returncode == 1
    line = _last_line(proc.stderr)
    assert line.startswith(f"DiskFullError: no space left on device while writing {run_dir / 'metrics.json'}")
    assert line in (run_dir / "train.log").read_text()
    assert not (run_dir / "metrics.json").exists() and not list(run_dir.rglob("*.tmp"))
