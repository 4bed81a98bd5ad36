"""Resume after SIGKILL with ckpt_path=last, and checkpoints that a kill cannot corrupt."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers.fake_cifar import write_fake_cifar
from tests.helpers.run_helpers import REPO_ROOT, read_metrics, run_script
from tests.helpers.wandb_offline import read_run

MAX_EPOCHS = 3
# augmentation=none and num_workers=0: no random draws outside the checkpointed state, so a
# resumed run must end with exactly the weights of a run that was never interrupted.
COMMON = [
    "model=small_cnn",
    "model.backbone.width=8",
    "augmentation=none",
    "dataset.num_workers=0",
    "dataset.batch_size=16",
    f"trainer.max_epochs={MAX_EPOCHS}",
    "scheduler=onecycle",
    "optimizer.lr=0.05",
    "trainer.log_every_n_steps=1",
]
# W&B (run id under test) plus a CSV log to read the epochs from
WANDB_AND_CSV = [
    "logger=wandb",
    "+logger.csv._target_=lightning.pytorch.loggers.CSVLogger",
    "+logger.csv.save_dir=${paths.output_dir}",
    "+logger.csv.name=csv",
    "+logger.csv.flush_logs_every_n_steps=1",  # metrics.csv on disk after every step: we watch it
]


@pytest.fixture(scope="module")
def resume_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resume_cifar")
    write_fake_cifar(root, n_train_per_class=40, n_test_per_class=2, seed=3)  # 360 train: 23 steps per epoch
    return root


def _env() -> dict[str, str]:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "NO_ALBUMENTATIONS_UPDATE": "1"}
    env.pop("WANDB_API_KEY", None)
    return env


def _epochs_logged(run_dir: Path, version: int) -> list[int]:
    """Epochs with at least one logged training step in the CSV log of one (re)start."""
    import csv

    with open(run_dir / "csv" / f"version_{version}" / "metrics.csv") as handle:
        return sorted({int(row["epoch"]) for row in csv.DictReader(handle) if row.get("train/loss_step")})


def _training_epoch_in_progress(run_dir: Path) -> int:
    try:
        return max(_epochs_logged(run_dir, 0), default=-1)
    except (FileNotFoundError, KeyError, ValueError):  # not written yet, or caught mid-rewrite
        return -1


@pytest.fixture(scope="module")
def killed_and_resumed(resume_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Start a run, SIGKILL it mid-epoch after its first checkpoint, resume it with ckpt_path=last."""
    run_dir = tmp_path_factory.mktemp("resume") / "run"
    overrides = [*COMMON, *WANDB_AND_CSV, f"dataset.data_dir={resume_data}", f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "train.py"), *overrides],
        cwd=REPO_ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    try:
        # kill as soon as epoch 1 has logged a training step: after the epoch-0 checkpoint, mid-epoch
        deadline = time.monotonic() + 300
        while not (last.exists() and _training_epoch_in_progress(run_dir) >= 1):
            assert proc.poll() is None, "training ended before the kill"
            assert time.monotonic() < deadline, "epoch 1 did not start within 300 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    saved_epoch = torch.load(last, map_location="cpu", weights_only=True)["epoch"]
    assert saved_epoch < MAX_EPOCHS - 1, "the run finished before the kill; nothing to resume"
    first_id = (run_dir / "wandb_run_id.txt").read_text().strip()
    run_script("train.py", *overrides, "ckpt_path=last", timeout=400)
    return {"run_dir": run_dir, "saved_epoch": saved_epoch, "first_id": first_id}


def test_resume_after_sigkill_continues_from_the_saved_epoch(killed_and_resumed: dict) -> None:
    run_dir, saved_epoch = killed_and_resumed["run_dir"], killed_and_resumed["saved_epoch"]
    # continued from the saved epoch (not from 0) and reached the same final epoch count
    assert _epochs_logged(run_dir, 1)[0] == saved_epoch + 1
    assert _epochs_logged(run_dir, 1)[-1] == MAX_EPOCHS - 1
    assert read_metrics(run_dir)["epoch"] == MAX_EPOCHS - 1

    # the same W&B run id in both offline run folders (``offline-run-<time>-<id>``); the resumed
    # one continues the step count. (The killed process's own folder may hold no records: the
    # W&B service had not flushed them when the kill came.)
    first_id = killed_and_resumed["first_id"]
    folders = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(folders) == 2 and {f.name.rsplit("-", 1)[-1] for f in folders} == {first_id}
    resumed = read_run(folders[-1])
    assert resumed.run_id == first_id and resumed.exit_code == 0
    steps_per_epoch = -(-360 // 16)  # ceil: 23 optimizer steps per epoch
    assert min(resumed.steps) == (saved_epoch + 1) * steps_per_epoch


@pytest.mark.slow
def test_resumed_run_ends_identical_to_an_uninterrupted_one(
    killed_and_resumed: dict, resume_data: Path, tmp_path: Path
) -> None:
    """Optimizer, LR schedule, sampler epoch and val/acc_best all restored: bit-identical weights."""
    run_dir = killed_and_resumed["run_dir"]
    reference = tmp_path / "reference"
    run_script(
        "train.py", *COMMON, "logger=csv", f"dataset.data_dir={resume_data}", f"hydra.run.dir={reference}", timeout=400
    )
    resumed_state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    reference_state = torch.load(reference / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert resumed_state["global_step"] == reference_state["global_step"]
    for key, value in reference_state["state_dict"].items():
        assert torch.equal(resumed_state["state_dict"][key], value), key
    assert read_metrics(run_dir) == read_metrics(reference)


def test_ckpt_path_last_follows_the_checkpoint_callback_and_onecycle_gets_more_epochs(
    fake_cifar_root: Path, tmp_path: Path
) -> None:
    """ckpt_path=last is Lightning's resolution (the ModelCheckpoint's dirpath, here moved out of the
    run dir: a hand-built <run dir>/checkpoints/last.ckpt restarted from scratch), a fresh start when
    there is none yet; resuming under OneCycle with a larger max_epochs continues (it stopped with
    "Tried to step N times"). The train task runs in-process, as train.py runs it."""
    from hydra import compose, initialize_config_dir

    from litvision.tasks.train import train
    from tests.helpers.run_helpers import TINY_MODEL

    run_dir, ckpt_dir = tmp_path / "run", tmp_path / "elsewhere"
    common = [
        *TINY_MODEL,
        "scheduler=onecycle",
        "logger=csv",
        "test=false",
        "ckpt_path=last",
        "trainer.log_every_n_steps=1",
        "callbacks=[model_checkpoint,metrics_summary]",
        "+trainer.enable_progress_bar=false",
        f"dataset.data_dir={fake_cifar_root}",
        f"paths.root_dir={tmp_path}",
        f"paths.output_dir={run_dir}",
        f"callbacks.model_checkpoint.dirpath={ckpt_dir}",
    ]

    def run(*overrides: str) -> None:
        with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
            train(compose("train", overrides=[*common, *overrides]))

    run("trainer.max_epochs=1")  # no checkpoint yet: a fresh start
    first = torch.load(ckpt_dir / "last.ckpt", map_location="cpu", weights_only=True)
    assert first["epoch"] == 0
    run("trainer.max_epochs=2")
    assert _epochs_logged(run_dir, 1) == [1]  # the second start trained epoch 1 only: it resumed
    second = torch.load(ckpt_dir / "last.ckpt", map_location="cpu", weights_only=True)
    assert second["epoch"] == 1 and second["global_step"] == 2 * first["global_step"]
    assert second["lr_schedulers"][0]["total_steps"] == second["global_step"]  # the cycle planned for 2 epochs


# ---- atomic checkpoint writes ---------------------------------------------------------------
WRITER = """
import sys, torch
from litvision.plugins.atomic_checkpoint import AtomicCheckpointIO
io = AtomicCheckpointIO()
i = 0
while True:
    i += 1
    io.save_checkpoint({"i": i, "weights": torch.full((4_000_000,), float(i))}, sys.argv[1])  # 16 MB
"""


def test_sigkill_during_checkpoint_saves_never_leaves_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints" / "last.ckpt"
    for round_ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=REPO_ROOT, env=_env())
        try:
            deadline = time.monotonic() + 120
            while not path.exists():
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.02)
            time.sleep(0.15 + 0.2 * round_)  # land somewhere inside a later save
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        state = torch.load(path, map_location="cpu", weights_only=True)  # a torn file would raise here
        assert torch.equal(state["weights"], torch.full((4_000_000,), float(state["i"])))
    # what a kill leaves is at most our own temp files, never a second "*.ckpt"
    assert [p.name for p in path.parent.glob("*.ckpt")] == ["last.ckpt"]
