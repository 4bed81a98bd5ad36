"""What a user sees in the terminal: the progress bar, the result printed last, no noise, ``--help``."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from litvision.callbacks.progress_bar import RunProgressBar, format_duration, validation_fields
from tests.helpers.run_helpers import REPO_ROOT, TINY_MODEL

# lines a user cannot act on, which used to be printed by every run
NOISE = {
    "W&B's retired anonymous setting": "The anonymous setting has no effect",
    "Lightning's litlogger/litmodels tips": "Tip: For seamless",
    "torch's _pytree deprecation inside Lightning": "isinstance(treespec, LeafSpec)",
    "a FLOPs count nobody made": "Total FLOPs",
    "W&B's warning about our own image lists": "Images sizes do not match",
    "Lightning saying it keeps our model summary callback": "Trainer already configured with model summary",
}


def run_merged(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """A script run as in a terminal: stdout and stderr in one stream, in the order written."""
    env = {**os.environ, "WANDB_MODE": "offline", "NO_ALBUMENTATIONS_UPDATE": "1"}
    for name in ("WANDB_API_KEY", "WANDB_SILENT", "MASTER_PORT", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK"):
        env.pop(name, None)  # W&B's own closing lines are part of what is checked
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def train_run(fake_cifar_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    cwd = tmp_path_factory.mktemp("terminal")
    proc = run_merged(
        [
            str(REPO_ROOT / "train.py"),
            f"dataset.data_dir={fake_cifar_root}",
            *TINY_MODEL,
            "trainer.max_epochs=2",
            "logger=wandb",
            "hydra.run.dir=run",
        ],
        cwd,
    )
    assert proc.returncode == 0, proc.stdout[-5000:]
    return cwd, [line.rstrip() for line in proc.stdout.splitlines() if line.strip()]


def test_the_result_is_the_last_thing_printed_after_wandbs_own_lines(train_run) -> None:
    cwd, lines = train_run
    metrics = json.loads((cwd / "run" / "metrics.json").read_text())
    (offline,) = (cwd / "run" / "wandb").glob("offline-run-*")
    worst = sorted((k.rsplit("/", 1)[1], v) for k, v in metrics.items() if k.startswith("test/worst_recall/"))
    worst = sorted(worst, key=lambda item: item[1])
    assert lines[-5:] == [
        f"Result (test split): top-1 {metrics['test/acc_top1']:.4f}, top-5 {metrics['test/acc_top5']:.4f}, "
        f"balanced accuracy {metrics['test/balanced_acc']:.4f}",
        "Worst classes (recall): " + ", ".join(f"{name} {value:.3f}" for name, value in worst),
        "Run dir: run",
        "Metrics: run/metrics.json",
        f"W&B (offline): wandb sync run/wandb/{offline.name}",
    ]
    wandb_lines = [i for i, line in enumerate(lines) if line.startswith("wandb:")]
    assert wandb_lines and max(wandb_lines) < len(lines) - 5, "W&B's closing lines come before the result"
    assert any("Run summary" in line or "Run history" in line for line in lines), "W&B's summary is still there"


@pytest.mark.parametrize("what", sorted(NOISE))
def test_a_run_prints_no_noise(train_run, what: str) -> None:
    _, lines = train_run
    assert not [line for line in lines if NOISE[what] in line], what


def test_help_lists_options_not_the_shared_bases(tmp_path: Path) -> None:
    proc = run_merged([str(REPO_ROOT / "train.py"), "--help"], tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    groups = proc.stdout[proc.stdout.index("== Configuration groups ==") : proc.stdout.index("== Config ==")]
    assert re.search(
        r"^dataset: cifar10, cifar10_1, cifar10_c, cifar10_device, cifar10_lt, class_folder, imagenet, ", groups, re.M
    )
    assert re.search(r"^model: airbench, cifar_resnet18, resnet18, resnet50, resnet9, small_cnn, timm$", groups, re.M)
    assert not re.search(r"\b_(base|image_files|classifier)\b", groups), groups
    assert "$APP_CONFIG_GROUPS" not in proc.stdout


def test_help_lists_the_users_own_options_too(tmp_path: Path) -> None:
    (tmp_path / "myconf" / "dataset").mkdir(parents=True)
    (tmp_path / "myconf" / "dataset" / "mydata.yaml").write_text("defaults:\n  - cifar10\n  - _self_\n")
    proc = run_merged([str(REPO_ROOT / "train.py"), "--config-dir", "myconf", "--help"], tmp_path, timeout=120)
    assert re.search(r"^dataset: .*\bmydata\b", proc.stdout, re.M), proc.stdout[:3000]


# ---- the progress bar, in process ----------------------------------------------------------------


class ScriptedValidation(L.LightningModule):
    """val/acc_top1 = 0.25 + 0.1 * epoch; val/balanced_acc = ``balanced(epoch)``."""

    def __init__(self, balanced) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.balanced = balanced
        self.shown: list[dict] = []  # what the bar shows at each training epoch's start

    def training_step(self, batch, batch_idx):
        if batch_idx == 1:
            self.shown.append(dict(self.trainer.progress_bar_callback.get_metrics(self.trainer, self)))
        loss = self.layer(batch[0]).sum()
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/acc_top1", 0.25 + 0.1 * self.current_epoch)
        self.log("val/balanced_acc", self.balanced(self.current_epoch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit_with_bar(balanced) -> tuple[ScriptedValidation, str]:
    screen = io.StringIO()
    bar = RunProgressBar(console_kwargs={"file": screen, "force_terminal": True, "width": 250, "color_system": None})
    model = ScriptedValidation(balanced)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(8, 2)), batch_size=2)
    L.Trainer(
        max_epochs=3,
        callbacks=[bar],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    ).fit(model, data, data)
    return model, screen.getvalue()


def test_the_bar_shows_the_latest_val_accuracy_and_the_runs_eta() -> None:
    model, screen = fit_with_bar(lambda epoch: 0.1)
    # epoch 0: nothing validated yet; epochs 1 and 2: the previous epoch's validation
    assert [shown.get("val/acc_top1") for shown in model.shown] == [None, pytest.approx(0.25), pytest.approx(0.35)]
    assert [shown.get("val/balanced_acc") for shown in model.shown] == [None, pytest.approx(0.1), pytest.approx(0.1)]
    assert all(re.fullmatch(r"\d+:\d\d", shown["run ETA"]) and "v_num" not in shown for shown in model.shown)
    last = [line for line in re.split(r"[\r\n]", screen) if "Epoch 2/2" in line][-1]
    assert "val/acc_top1: 0.450" in last and "run ETA: 0:00" in last


def test_balanced_accuracy_is_shown_only_where_it_differs() -> None:
    model, _ = fit_with_bar(lambda epoch: 0.25 + 0.1 * epoch + 0.001)
    assert all("val/balanced_acc" not in shown for shown in model.shown)
    assert validation_fields({"val/acc_top1": 0.5, "val/balanced_acc": 0.45}, 0.01) == {
        "val/acc_top1": 0.5,
        "val/balanced_acc": 0.45,
    }


def test_durations_read_like_the_bars_own_time_column() -> None:
    assert [format_duration(s) for s in (0, 59.6, 61, 3600, 3725)] == ["0:00", "1:00", "1:01", "1:00:00", "1:02:05"]


def test_thumbnails_logged_together_get_one_size_for_wandb() -> None:
    """W&B warns "Images sizes do not match" for an image list of mixed sizes (photos of other aspect
    ratios in test/worst_mistakes_images, the audit's pairs): padded to one size, pixels kept."""
    import numpy as np
    import wandb

    from litvision.utils.thumbnails import same_size

    rng = np.random.default_rng(0)
    thumbs = [
        rng.integers(0, 255, (72, 96, 3), dtype=np.uint8),
        rng.integers(0, 255, (96, 64, 3), dtype=np.uint8),
        rng.integers(0, 255, (50, 50), dtype=np.uint8),
    ]  # a grayscale one
    assert len({wandb.Image(t).image.size for t in thumbs}) == 3  # what W&B warned about
    padded = same_size(thumbs)
    assert {wandb.Image(t).image.size for t in padded} == {(96, 96)}
    assert np.array_equal(padded[0][:72, :96], thumbs[0]) and (padded[0][72:] == 255).all()
    assert np.array_equal(padded[2][:50, :50, 1], thumbs[2])


def test_faiss_loads_without_its_loader_lines(tmp_path: Path) -> None:
    """audit.py's faiss logs at INFO each instruction set it tries (`No module named
    'faiss.swigfaiss_avx512'` on CPUs without it); jobs silence that logger."""
    pytest.importorskip("faiss")
    script = (
        "import logging; logging.basicConfig(level=logging.INFO)\n"
        "from litvision.launch.process import quiet_library_noise; quiet_library_noise()\n"
        "import faiss; print('loaded', faiss.__name__)\n"
    )
    proc = run_merged(["-c", script], tmp_path, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().splitlines() == ["loaded faiss"], proc.stdout
