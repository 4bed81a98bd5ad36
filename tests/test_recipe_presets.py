"""The recipe presets: experiment=imagenet_resnet50_v2 (torchvision's new ResNet-50 recipe) and
experiment=cifar10_resnet18 (ResNet-18 + Cutout), their building blocks, and a run of each."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from litvision.datamodules.transforms.augment_presets import Cutout, TrivialAugmentWide
from litvision.lightning_modules.training.schedulers import multistep
from litvision.utils.errors import ConfigError
from tests.helpers.run_helpers import TINY_MODEL, read_metrics, run_script

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def compose_train(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "paths.output_dir=.", "paths.root_dir=."])
    return OmegaConf.to_container(cfg, resolve=True)


def test_imagenet_resnet50_v2_mirrors_torchvisions_published_recipe() -> None:
    cfg = compose_train("experiment=imagenet_resnet50_v2")
    # --epochs 600 --batch-size 128 on 8 GPUs --lr 0.5 (SGD, momentum 0.9) --weight-decay 0.00002
    assert cfg["trainer"]["max_epochs"] == 600 and cfg["dataset"]["batch_size"] == 1024
    assert cfg["optimizer"]["_target_"] == "torch.optim.SGD" and cfg["optimizer"]["lr"] == 0.5
    assert cfg["optimizer"]["momentum"] == 0.9 and not cfg["optimizer"]["nesterov"]
    assert cfg["optimizer"]["weight_decay"] == 2e-5 and cfg["model"]["weight_decay_norm_bias"] is False
    # cosine after --lr-warmup-epochs 5, --label-smoothing 0.1, --mixup-alpha 0.2 --cutmix-alpha 1.0
    assert cfg["scheduler"]["_target_"].endswith("warmup_cosine")
    assert cfg["scheduler"]["warmup_fraction"] * 600 == pytest.approx(5)
    assert cfg["loss"]["label_smoothing"] == 0.1
    assert (cfg["mixing"]["mixup_alpha"], cfg["mixing"]["cutmix_alpha"], cfg["mixing"]["switch_prob"]) == (
        0.2,
        1.0,
        0.5,
    )
    # --auto-augment ta_wide --random-erase 0.1 --train-crop-size 176 --val-resize-size 232 (crop 224)
    train = [t["_target_"].split(".")[-1] for t in cfg["augmentation"]["train"]["transforms"]]
    assert train == ["RandomResizedCrop", "HorizontalFlip", "TrivialAugmentWide", "Erasing"]
    assert cfg["augmentation"]["train"]["transforms"][0]["size"] == [176, 176]
    assert cfg["augmentation"]["train"]["transforms"][-1]["p"] == 0.1
    assert [t["_target_"].split(".")[-1] for t in cfg["augmentation"]["eval"]["transforms"]] == [
        "SmallestMaxSize",
        "CenterCrop",
    ]
    assert cfg["augmentation"]["eval"]["transforms"][0]["max_size"] == 232
    assert cfg["augmentation"]["eval"]["transforms"][1]["height"] == 224
    # --model-ema (steps 32, decay 0.99998 adjusted for 8 x 128 x 32 / 600) --ra-sampler --ra-reps 4
    ema = cfg["callbacks"]["ema"]
    assert ema["_target_"] == "litvision.callbacks.ema.EMA" and ema["update_every_n_steps"] == 32
    assert ema["decay"] == pytest.approx(1 - (1 - 0.99998) * 1024 * 32 / 600, abs=1e-8)
    assert ema["update_starting_at_step"] == 5 * 1251
    assert cfg["dataset"]["repeated_augmentation"] == 4
    assert cfg["model"]["backbone"]["name"] == "resnet50"
    # the learning rate follows the global batch (linear scaling)
    assert compose_train("experiment=imagenet_resnet50_v2", "dataset.batch_size=256")["optimizer"]["lr"] == 0.125


def test_imagenet_v2_pipelines_give_176_for_training_and_232_224_for_evaluation() -> None:
    from litvision.datamodules.readers.jpeg_pipeline import SamplePipeline
    from tests.helpers.imagenet_trees import real_samples

    samples = real_samples()[:6]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=imagenet_resnet50_v2"])
    train, evaluate = (
        SamplePipeline(instantiate(cfg.augmentation.train)),
        SamplePipeline(instantiate(cfg.augmentation.eval)),
    )
    assert train.mode == "random_resized_crop"  # reduced-size JPEG decode still applies
    assert isinstance(train.rest[1], TrivialAugmentWide)
    for _, path in samples:
        data = path.read_bytes()
        assert train(data).shape == (176, 176, 3)
        assert evaluate(data).shape == (224, 224, 3)


def test_cifar10_resnet18_is_resnet18_with_cutout_and_step_decay() -> None:
    cfg = compose_train("experiment=cifar10_resnet18")
    assert cfg["model"]["backbone"]["name"] == "cifar_resnet18" and cfg["model"]["weight_decay_norm_bias"] is True
    assert (cfg["trainer"]["max_epochs"], cfg["dataset"]["batch_size"]) == (200, 128)
    assert cfg["optimizer"]["lr"] == 0.1 and cfg["optimizer"]["nesterov"] and cfg["optimizer"]["weight_decay"] == 5e-4
    train = [t["_target_"].split(".")[-1] for t in cfg["augmentation"]["train"]["transforms"]]
    assert train == ["PadIfNeeded", "RandomCrop", "HorizontalFlip", "Cutout", "Erasing"]
    # lr x 0.2 at epochs 60, 120, 160 of 200
    scheduler = instantiate({**cfg["scheduler"]})
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    steps_per_epoch = 10
    schedule = scheduler(optimizer, total_steps=200 * steps_per_epoch)
    lrs = []
    for _ in range(200 * steps_per_epoch):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    per_epoch = np.array(lrs[::steps_per_epoch])
    expected = 0.1 * 0.2 ** np.searchsorted([60, 120, 160], np.arange(200), side="right")
    np.testing.assert_allclose(per_epoch, expected, rtol=1e-6)


def test_cutout_centres_anywhere_and_clips_at_the_border() -> None:
    cutout = Cutout(length=16, fill=[125, 123, 114])
    cutout.set_random_seed(0)
    areas, touched_corner = [], False
    for _ in range(3000):
        out = cutout(image=np.zeros((32, 32, 3), np.uint8))["image"]
        mask = (out != 0).any(axis=2)
        areas.append(mask.sum())
        touched_corner |= bool(mask[0, 0] or mask[31, 31])
        assert (out[mask] == [125, 123, 114]).all()
    # centre uniform over 32 x 32, square clipped: E[side] = 14, so E[area] ~ 196 (not 256)
    assert 180 < np.mean(areas) < 210 and min(areas) <= 81 and max(areas) == 256 and touched_corner
    again = Cutout(length=16)
    again.set_random_seed(0)
    cutout.set_random_seed(0)
    image = np.full((32, 32, 3), 200, np.uint8)
    assert np.array_equal(
        cutout(image=image)["image"],
        Cutout(16, fill=[125, 123, 114]).apply(
            image, box=again.get_params_dependent_on_data({"shape": (32, 32)}, {})["box"]
        ),
    )


def test_multistep_refuses_milestones_that_are_not_fractions() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ConfigError, match="fractions"):
        multistep(optimizer, total_steps=100, milestones=[60, 120])


@pytest.mark.slow
def test_imagenet_resnet50_v2_runs_end_to_end_on_the_sample_tree(tmp_path) -> None:
    from tests.helpers.imagenet_trees import age_tree, build_train, build_val, real_samples

    samples = real_samples()
    root = tmp_path / "imagenet"
    build_train(root, samples)
    build_val(root, samples, "folders")
    age_tree(root)
    run_script(
        "train.py",
        "experiment=imagenet_resnet50_v2",
        f"dataset.data_dir={root}",
        "model=resnet18",
        "trainer=cpu",
        "debug=fdr",
        "logger=csv",
        "augmentation.resolution=64",
        "augmentation.eval_resize=73",
        "augmentation.train_resolution=48",
        "dataset.batch_size=16",
        "dataset.num_workers=0",
        f"hydra.run.dir={tmp_path / 'run'}",
        timeout=900,
    )
    metrics = read_metrics(tmp_path / "run")
    assert "test/acc_top1" in metrics and sum(k.startswith("test/recall/") for k in metrics) == 1000


@pytest.mark.slow
def test_cifar10_resnet18_runs_end_to_end(fake_cifar_root, tmp_path) -> None:
    run_script(
        "train.py",
        "experiment=cifar10_resnet18",
        f"dataset.data_dir={fake_cifar_root}",
        "trainer=cpu",
        "trainer.max_epochs=2",
        *TINY_MODEL,
        "logger=csv",
        f"hydra.run.dir={tmp_path}",
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert "test/balanced_acc" in metrics


@pytest.mark.slow
def test_compile_with_the_recipe_components_through_fit_resume_and_eval(fake_cifar_root, tmp_path) -> None:
    """model.compile=true with Mixup/CutMix, TrivialAugment and EMA: fit, resume (ckpt_path=last), eval.py."""
    common = [
        *TINY_MODEL,
        f"dataset.data_dir={fake_cifar_root}",
        "logger=csv",
        "model.compile=true",
        "mixing=mixup_cutmix",
        "callbacks=[default,ema]",
        "callbacks.ema.decay=0.9",
        "augmentation=cifar_trivialaugment",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    run_script("train.py", *common, "trainer.max_epochs=1", timeout=900)
    resumed = run_script("train.py", *common, "trainer.max_epochs=2", "ckpt_path=last", timeout=900)
    assert "Restored all states" in resumed.stdout + resumed.stderr
    trained = read_metrics(tmp_path / "run")
    assert trained["epoch"] == 1
    (best,) = (tmp_path / "run" / "checkpoints").glob("best_epoch*.ckpt")
    run_script(
        "eval.py",
        *TINY_MODEL,
        f"dataset.data_dir={fake_cifar_root}",
        f"ckpt_path={best}",
        f"hydra.run.dir={tmp_path / 'eval'}",
        timeout=900,
    )
    assert read_metrics(tmp_path / "eval")["test/loss"] == pytest.approx(trained["test/loss"], rel=1e-5)
