"""Bad input gets ONE clear line on stderr (what is wrong + the override that fixes it), not a traceback.

Each case runs train.py/eval.py as a user does and fails at construction, before any data is
read. In a sweep the same error fails only its job (the summary marks it FAILED) and the
sweep goes on; ``HYDRA_FULL_ERROR=1`` still shows the traceback.
"""

from __future__ import annotations

import csv
import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from litvision.lightning_modules.backbones import build_backbone
from litvision.lightning_modules.classifier import ImageClassifier
from tests.helpers.fake_cifar import CIFAR10_CLASSES
from tests.helpers.run_helpers import REPO_ROOT, TINY_MODEL, run_script

ERROR_LINE = re.compile(r"^(ConfigError|DataError|MissingDataError): \S")


def assert_one_error_line(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Non-zero exit; stderr ends with exactly one error line (holding ``fragments``); no traceback."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    last = lines[-1]
    assert ERROR_LINE.match(last), proc.stderr[-3000:]
    assert [line for line in lines[-6:] if "Error" in line] == [last]
    for fragment in fragments:
        assert fragment in last, (fragment, last)
    return last


def train(data_dir: Path, run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    return run_script(
        "train.py",
        "logger=csv",
        f"dataset.data_dir={data_dir}",
        f"hydra.run.dir={run_dir}",
        *TINY_MODEL,
        *overrides,
        check=False,
        timeout=240,
    )


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        pytest.param(["dataset.batch_size=0"], ["dataset.batch_size=0", "dataset.batch_size=128"], id="batch_size"),
        pytest.param(["optimizer.lr=-0.1"], ["optimizer.lr=-0.1", "Invalid learning rate"], id="lr"),
        pytest.param(
            ["optimizer=adamw", "optimizer.weight_decay=-1"],
            ["optimizer.weight_decay=-1"],
            id="adamw_weight_decay",
            marks=pytest.mark.slow,
        ),
        pytest.param(["dataset.num_workers=-1"], ["dataset.num_workers=-1", "or auto"], id="num_workers"),
        pytest.param(
            ["dataset.download=false", "dataset.data_dir=/nonexistent/cifar"],
            ["dataset.data_dir=/nonexistent/cifar", "dataset.download=true"],
            id="missing_data_dir",
        ),
        pytest.param(
            ["ckpt_path=/nonexistent/last.ckpt"],
            ["ckpt_path=/nonexistent/last.ckpt"],
            id="missing_ckpt",
            marks=pytest.mark.slow,
        ),
        pytest.param(["seed=-1"], ["seed=-1"], id="seed", marks=pytest.mark.slow),
    ],
)
def test_bad_train_input_is_one_line(
    fake_cifar_root: Path, tmp_path: Path, overrides: list[str], fragments: list[str]
) -> None:
    proc = train(fake_cifar_root, tmp_path / "run", *overrides)
    assert_one_error_line(proc, *fragments)
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_debug_fdr_without_data_offline_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's `python train.py debug=fdr`, as written, on a machine without internet: the CIFAR
    download into ./data fails, and the user gets one line naming dataset.data_dir (it was ~114 lines of
    three chained tracebacks). The download goes through a proxy nobody listens on, so CI with internet
    fails it too."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for name in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{port}")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    proc = run_script("train.py", "debug=fdr", check=False, cwd=tmp_path)
    last = assert_one_error_line(
        proc, f"dataset.data_dir={tmp_path / 'data'}", "set dataset.data_dir=PATH", "cifar-10-python.tar.gz"
    )
    assert last.startswith("MissingDataError: CIFAR-10 is not in dataset.data_dir=")
    assert not any((tmp_path / "data").iterdir()), "a failed download leaves nothing behind"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: trainer=gpu is valid here")
def test_gpu_trainer_without_a_gpu_says_to_use_cpu(fake_cifar_root: Path, tmp_path: Path) -> None:
    assert_one_error_line(train(fake_cifar_root, tmp_path / "run", "trainer=gpu"), "trainer=cpu")


def test_full_traceback_on_request(fake_cifar_root: Path, tmp_path: Path) -> None:
    env = {**os.environ, "HYDRA_FULL_ERROR": "1", "WANDB_MODE": "offline", "NO_ALBUMENTATIONS_UPDATE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "train.py"),
            "logger=csv",
            "dataset.batch_size=0",
            f"dataset.data_dir={fake_cifar_root}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "dataset.batch_size=0" in proc.stderr


def test_a_bad_job_in_a_sweep_fails_alone(fake_cifar_root: Path, tmp_path: Path) -> None:
    """MULTIRUN: the error reaches Hydra (job FAILED in the sweep summary), the next job still runs."""
    sweep = tmp_path / "sweep"
    proc = run_script(
        "train.py",
        "-m",
        "optimizer.lr=-0.1,0.05",
        "debug=fdr",
        "logger=csv",
        f"dataset.data_dir={fake_cifar_root}",
        f"hydra.sweep.dir={sweep}",
        *TINY_MODEL,
        check=False,
        timeout=300,
    )
    assert proc.returncode != 0  # Hydra: a sweep with a failed job exits non-zero after all jobs ran
    with open(sweep / "summary.csv") as handle:
        rows = {row["optimizer.lr"]: row for row in csv.DictReader(handle)}
    assert rows["-0.1"]["status"] == "FAILED" and "optimizer.lr=-0.1" in rows["-0.1"]["error"]
    assert rows["0.05"]["status"] == "COMPLETED"
    assert (sweep / "1" / "metrics.json").exists()


# ---- eval.py -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (Lightning-written) checkpoint of a tiny CIFAR-10 classifier, trained one step."""
    model = ImageClassifier(
        backbone=functools.partial(build_backbone, "small_cnn", width=4), class_names=CIFAR10_CLASSES
    )
    data = torch.utils.data.TensorDataset(torch.rand(8, 3, 32, 32), torch.arange(8))
    root = tmp_path_factory.mktemp("ckpt")
    trainer = L.Trainer(
        max_steps=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=root,
    )
    trainer.fit(model, torch.utils.data.DataLoader(data, batch_size=4))
    trainer.save_checkpoint(root / "tiny.ckpt")
    return root / "tiny.ckpt"


def evaluate(ckpt: Path, data_dir: Path, run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    return run_script(
        "eval.py",
        f"ckpt_path={ckpt}",
        f"dataset.data_dir={data_dir}",
        f"hydra.run.dir={run_dir}",
        "dataset.num_workers=0",
        *overrides,
        check=False,
        timeout=240,
    )


def test_eval_on_data_with_unknown_class_names_is_one_line(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from tests.helpers.fake_cifar import write_fake_cifar

    other = tmp_path / "other"
    write_fake_cifar(other, n_train_per_class=2, n_test_per_class=1, class_names=[*CIFAR10_CLASSES[:9], "zebra"])
    last = assert_one_error_line(
        evaluate(tiny_checkpoint, other, tmp_path / "eval"), "'zebra'", "evaluate it on the dataset it was trained on"
    )
    assert "unknown to the model" in last
    assert not (tmp_path / "eval" / "metrics.json").exists()


@pytest.mark.slow
def test_eval_on_the_same_classes_in_another_order_is_one_line(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from tests.helpers.fake_cifar import write_fake_cifar

    other = tmp_path / "shuffled"
    write_fake_cifar(other, n_train_per_class=2, n_test_per_class=1, class_names=list(reversed(CIFAR10_CLASSES)))
    assert_one_error_line(evaluate(tiny_checkpoint, other, tmp_path / "eval"), "another order")


def test_eval_of_a_checkpoint_carrying_code_is_refused_in_one_line(
    tiny_checkpoint: Path, fake_cifar_root: Path, tmp_path: Path
) -> None:
    checkpoint = torch.load(tiny_checkpoint, weights_only=True)
    checkpoint["hyper_parameters"]["backbone"] = functools.partial(build_backbone, "small_cnn", width=4)
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    assert_one_error_line(evaluate(old, fake_cifar_root, tmp_path / "eval"), "convert_trusted_checkpoint", str(old))


@pytest.mark.slow
def test_eval_of_a_missing_checkpoint_is_one_line(fake_cifar_root: Path, tmp_path: Path) -> None:
    assert_one_error_line(evaluate(tmp_path / "nope.ckpt", fake_cifar_root, tmp_path / "eval"), "ckpt_path=")


# ---- num_workers=auto on every dataset ------------------------------------------------------
def test_num_workers_auto_works_for_cifar(fake_cifar_root: Path) -> None:
    """auto was a class-folder feature; CIFAR failed with a TypeError when building its loaders."""
    from litvision.datamodules.base import default_num_workers
    from litvision.datamodules.cifar10 import CIFAR10DataModule

    dm = CIFAR10DataModule(data_dir=str(fake_cifar_root), download=False, batch_size=16, num_workers="auto")
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert loader.num_workers == default_num_workers(1) >= 1
    images, labels = next(iter(loader))
    assert images.shape[0] == labels.shape[0] == 16


# ---- the classifier checks its backbone and optimizer when it is built ----------------------
@pytest.mark.parametrize(
    ("backbone", "fragment"),
    [({"name": "resnet_9"}, "model.backbone.name=resnet_9"), ({"name": "small_cnn", "widht": 8}, "'widht'")],
)
def test_bad_backbone_settings_fail_at_construction(backbone: dict, fragment: str) -> None:
    from litvision.utils.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(fragment)):
        ImageClassifier(backbone={"_target_": "litvision.lightning_modules.backbones.build_backbone", **backbone})


def test_bad_optimizer_settings_fail_at_construction() -> None:
    from litvision.utils.errors import ConfigError

    with pytest.raises(ConfigError, match=r"optimizer\.momentum=-0\.5"):
        ImageClassifier(
            backbone=functools.partial(build_backbone, "small_cnn"),
            optimizer={"_target_": "torch.optim.SGD", "lr": 0.1, "momentum": -0.5},
        )


def test_train_false_without_a_checkpoint_is_refused(tmp_path: Path) -> None:
    """train=false used to test untrained weights (and ignored ckpt_path): now it needs a checkpoint."""
    from hydra import compose, initialize_config_dir

    from litvision.tasks.train import train as train_task
    from litvision.utils.errors import ConfigError

    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["train=false", "logger=csv", f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path}"],
        )
    with pytest.raises(ConfigError, match="pass ckpt_path="):
        train_task(cfg)
