"""EMA of the weights: the averaged weights differ from the raw ones, are the ones validated,
checkpointed and tested, and a resumed run continues the same average."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir

from litvision.callbacks.ema import EMA
from litvision.tasks.build import build_run, metrics_of
from tests.helpers.run_helpers import TINY_MODEL, read_metrics, run_script

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def build(data_dir: Path, out_dir: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                *TINY_MODEL,
                "augmentation=none",
                "logger=none",
                "callbacks=[default,ema]",
                "callbacks.ema.decay=0.9",
                "~callbacks.rich_progress_bar",
                "+trainer.enable_progress_bar=false",
                "trainer.max_epochs=3",
                "scheduler=onecycle",
                f"dataset.data_dir={data_dir}",
                f"paths.output_dir={out_dir}",
                f"paths.data_dir={data_dir}",
                "paths.root_dir=.",
                "paths.log_dir=.",
                *overrides,
            ],
        )
    run = build_run(cfg)
    return run.datamodule, run.model, run.trainer


def ema_callback(trainer: L.Trainer) -> EMA:
    (callback,) = [cb for cb in trainer.callbacks if isinstance(cb, EMA)]
    return callback


class StopAfterEpoch(L.Callback):
    """Ends fit after ``epoch`` (its checkpoints are written): a run cut short, to be resumed."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            trainer.should_stop = True


def net_state(state_dict: dict) -> dict:
    return {k: v for k, v in state_dict.items() if k.startswith("net.")}


def test_ema_weights_differ_from_raw_and_are_the_ones_tested(fake_cifar_root, tmp_path) -> None:
    datamodule, model, trainer = build(
        fake_cifar_root, tmp_path, "trainer.max_epochs=2", "callbacks.model_checkpoint.save_top_k=-1"
    )  # keep every epoch's checkpoint
    trainer.fit(model, datamodule=datamodule)
    best = trainer.checkpoint_callback.best_model_path
    checkpoint = torch.load(best, map_location="cpu", weights_only=True)
    averaged, raw = net_state(checkpoint["state_dict"]), net_state(checkpoint["current_model_state"])
    assert averaged.keys() == raw.keys()
    differing = [k for k in averaged if averaged[k].is_floating_point() and not torch.equal(averaged[k], raw[k])]
    assert len(differing) > len(averaged) // 2, "the average should differ from the raw weights"

    # what train.py does after fit: test the best checkpoint; the module must hold the average
    trainer.test(model, datamodule=datamodule, ckpt_path=best, weights_only=True, verbose=False)
    tested = net_state(model.state_dict())
    for key in averaged:
        torch.testing.assert_close(tested[key], averaged[key], msg=f"{key}: tested weights are not the average")
    test_loss_avg = metrics_of(trainer)["test/loss"]

    # validating an earlier checkpoint after fit evaluates that checkpoint's average (not the final one)
    (first,) = (tmp_path / "checkpoints").glob("best_epoch000*.ckpt")
    first_average = net_state(torch.load(first, map_location="cpu", weights_only=True)["state_dict"])
    (validated,) = trainer.validate(
        model, datamodule=datamodule, ckpt_path=str(first), weights_only=True, verbose=False
    )
    plain = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    model.load_state_dict(torch.load(first, map_location="cpu", weights_only=True)["state_dict"])
    (reference,) = plain.validate(model, datamodule=datamodule, verbose=False)  # no EMA callback: just these weights
    assert validated["val/loss"] == pytest.approx(reference["val/loss"], rel=1e-6)
    assert any(not torch.equal(first_average[k], averaged[k]) for k in averaged if averaged[k].is_floating_point())

    # the same test on the raw weights gives another loss: the metric really depends on which
    model.load_state_dict(checkpoint["current_model_state"])
    trainer.test(model, datamodule=datamodule, verbose=False)
    assert metrics_of(trainer)["test/loss"] != pytest.approx(test_loss_avg, rel=1e-6)


def test_a_resumed_run_continues_the_average(fake_cifar_root, tmp_path) -> None:
    datamodule, model, trainer = build(fake_cifar_root, tmp_path / "straight")
    trainer.fit(model, datamodule=datamodule)
    straight = ema_callback(trainer)._average_model.module.state_dict()
    straight_raw = model.state_dict()

    datamodule, model, trainer = build(fake_cifar_root, tmp_path / "cut")
    trainer.callbacks.append(StopAfterEpoch(0))
    trainer.fit(model, datamodule=datamodule)
    assert trainer.current_epoch == 1  # stopped after epoch 0 of 3
    last = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    datamodule, model, trainer = build(fake_cifar_root, tmp_path / "cut")
    trainer.fit(model, datamodule=datamodule, ckpt_path=str(last), weights_only=True)
    resumed = ema_callback(trainer)._average_model.module.state_dict()

    for key, value in straight.items():
        if value.is_floating_point():
            torch.testing.assert_close(resumed[key], value, msg=f"{key}: the resumed average differs")
    # the raw weights agree too (the order is a function of (seed, epoch)), so the check is meaningful
    for key in net_state(straight_raw):
        torch.testing.assert_close(model.state_dict()[key], straight_raw[key])


@pytest.mark.slow
def test_train_then_eval_report_the_averaged_weights(fake_cifar_root, tmp_path) -> None:
    """metrics.json of train.py (the best checkpoint, tested after fit) equals eval.py of that checkpoint."""
    common = [*TINY_MODEL, f"dataset.data_dir={fake_cifar_root}", "logger=csv", "augmentation=none"]
    run_script(
        "train.py",
        *common,
        "callbacks=[default,ema]",
        "callbacks.ema.decay=0.9",
        "trainer.max_epochs=2",
        f"hydra.run.dir={tmp_path / 'train'}",
    )
    trained = read_metrics(tmp_path / "train")
    (best,) = (tmp_path / "train" / "checkpoints").glob("best_epoch*.ckpt")
    run_script("eval.py", *common, f"ckpt_path={best}", f"hydra.run.dir={tmp_path / 'eval'}")
    evaluated = read_metrics(tmp_path / "eval")
    for key in ("test/acc_top1", "test/balanced_acc", "test/loss"):
        assert evaluated[key] == pytest.approx(trained[key], rel=1e-5), key
