"""Mixup/CutMix on the batch: the documented convex combinations, soft-target losses, metrics."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch import nn

from litvision.lightning_modules.training import losses
from litvision.lightning_modules.training.mixing import BatchMixer, MixParams, cutmix_params, require_soft_target_loss
from litvision.utils.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
COUNTS = [400, 100, 25, 5]


def batch(n: int = 6, classes: int = 4, size: int = 8):
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, size, size, generator=generator)
    targets = torch.randint(0, classes, (n,), generator=generator)
    return images, targets


def test_mixup_is_the_convex_combination_with_the_previous_image() -> None:
    images, targets = batch()
    lam = 0.3
    mixed = BatchMixer.apply(images, targets, 4, MixParams("mixup", lam))
    for i in range(len(images)):
        j = i - 1  # partner: the batch rolled by one (image 0 mixes with the last)
        torch.testing.assert_close(mixed.images[i], lam * images[i] + (1 - lam) * images[j])
        expected = lam * F.one_hot(targets[i], 4).float() + (1 - lam) * F.one_hot(targets[j], 4).float()
        torch.testing.assert_close(mixed.targets[i], expected)
        assert mixed.dominant[i] == targets[j]  # lam < 0.5: the partner dominates
    assert torch.allclose(mixed.targets.sum(1), torch.ones(len(images)))


def test_cutmix_pastes_the_box_and_weights_labels_by_area() -> None:
    images, targets = batch(size=8)
    box = (2, 6, 1, 4)  # rows 2..5, columns 1..3: 12 of 64 pixels
    lam = 1 - 12 / 64
    mixed = BatchMixer.apply(images, targets, 4, MixParams("cutmix", lam, box))
    partner = images.roll(1, 0)
    inside = torch.zeros(8, 8, dtype=torch.bool)
    inside[2:6, 1:4] = True
    assert torch.equal(mixed.images[..., inside], partner[..., inside])
    assert torch.equal(mixed.images[..., ~inside], images[..., ~inside])
    expected = (
        lam * F.one_hot(targets, 4).float() + (1 - lam) * F.one_hot(partner_targets := targets.roll(1, 0), 4).float()
    )
    torch.testing.assert_close(mixed.targets, expected)
    assert torch.equal(mixed.dominant, targets)  # lam > 0.5: the image itself dominates
    assert not torch.equal(mixed.dominant, partner_targets)


def test_cutmix_lambda_is_recomputed_from_the_clipped_box() -> None:
    torch.manual_seed(3)
    for _ in range(200):
        params = cutmix_params(0.2, 32, 24)
        y0, y1, x0, x1 = params.box
        assert 0 <= y0 <= y1 <= 32 and 0 <= x0 <= x1 <= 24
        assert params.lam == pytest.approx(1 - (y1 - y0) * (x1 - x0) / (32 * 24))
        assert params.lam >= 0.2 - 1e-9  # clipping only shrinks the box


def test_sampling_follows_prob_and_switch_prob() -> None:
    torch.manual_seed(0)
    assert {BatchMixer(mixup_alpha=1.0, prob=0.0).sample(8, 8).kind for _ in range(20)} == {"none"}
    assert {BatchMixer(mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=1.0).sample(8, 8).kind for _ in range(20)} == {
        "cutmix"
    }
    assert {BatchMixer(mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=0.0).sample(8, 8).kind for _ in range(20)} == {
        "mixup"
    }
    kinds = [BatchMixer(mixup_alpha=0.2, cutmix_alpha=1.0).sample(8, 8).kind for _ in range(400)]
    assert 0.4 < kinds.count("cutmix") / 400 < 0.6
    lams = torch.tensor([BatchMixer(mixup_alpha=0.2).sample(8, 8).lam for _ in range(2000)])
    assert abs(float(lams.mean()) - 0.5) < 0.03  # Beta(a, a) is symmetric about 0.5
    assert float(((lams < 0.1) | (lams > 0.9)).float().mean()) > 0.5  # alpha 0.2: mostly near 0 or 1
    with pytest.raises(ConfigError, match="mixing=none"):
        BatchMixer(0.0, 0.0)
    # a clean batch keeps its images and gets one-hot targets
    images, targets = batch()
    clean = BatchMixer.apply(images, targets, 4, MixParams("none", 1.0))
    assert clean.images is images and torch.equal(clean.targets, F.one_hot(targets, 4).float())


def every_loss(smoothing: float) -> dict[str, nn.Module]:
    drw_on = losses.drw(COUNTS, start_epoch=0, label_smoothing=smoothing)
    drw_on.on_epoch_start(0)
    return {
        "cross_entropy": losses.cross_entropy(label_smoothing=smoothing),
        "class_balanced": losses.class_balanced(COUNTS, beta=0.999, label_smoothing=smoothing),
        "focal": losses.focal(gamma=2.0, label_smoothing=smoothing),
        "focal_cb": losses.focal(COUNTS, gamma=2.0, beta=0.999, label_smoothing=smoothing),
        "logit_adjusted": losses.logit_adjusted(COUNTS, tau=1.5, label_smoothing=smoothing),
        "balanced_softmax": losses.logit_adjusted(COUNTS, tau=1.0, label_smoothing=smoothing),
        "drw_before": losses.drw(COUNTS, start_epoch=5, label_smoothing=smoothing),
        "drw_after": drw_on,
    }


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_every_loss_with_one_hot_soft_targets_equals_its_hard_form(smoothing: float) -> None:
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(64, 4, generator=generator) * 3
    targets = torch.randint(0, 4, (64,), generator=generator)
    for name, loss in every_loss(smoothing).items():
        require_soft_target_loss(loss)  # all of conf/loss/ accept mixed targets
        hard = loss(logits, targets)
        soft = loss(logits, F.one_hot(targets, 4).float())
        torch.testing.assert_close(soft, hard, msg=f"{name} (smoothing {smoothing})")


def test_unweighted_losses_are_linear_in_the_mixed_target() -> None:
    """For losses without class weights, loss(lam a + (1-lam) b) = lam loss(a) + (1-lam) loss(b)."""
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(32, 4, generator=generator)
    a, b = torch.randint(0, 4, (32,), generator=generator), torch.randint(0, 4, (32,), generator=generator)
    lam = 0.35
    mixed = lam * F.one_hot(a, 4).float() + (1 - lam) * F.one_hot(b, 4).float()
    for name in ("cross_entropy", "focal", "logit_adjusted", "drw_before"):
        loss = every_loss(0.1)[name]
        torch.testing.assert_close(loss(logits, mixed), lam * loss(logits, a) + (1 - lam) * loss(logits, b), msg=name)


def test_a_loss_without_a_soft_form_is_refused() -> None:
    with pytest.raises(ConfigError, match="mixing=none"):
        require_soft_target_loss(nn.CrossEntropyLoss(weight=torch.ones(4)))  # torch would average by N
    with pytest.raises(ConfigError, match="soft-target"):
        require_soft_target_loss(nn.NLLLoss())


def test_mixing_group_composes_for_every_model() -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for model in sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml") if not p.stem.startswith("_")):
            cfg = compose("train", overrides=[f"model={model}", "mixing=mixup_cutmix"])
            assert cfg.model.mixing.cutmix_alpha == 1.0, f"conf/model/{model}.yaml does not pass mixing through"
        cfg = compose("train", overrides=["mixing=cutmix", "model=small_cnn", "model.backbone.width=4"])
        model = instantiate(cfg.model, num_classes=10)
        assert isinstance(model.mixing, BatchMixer) and model.mixing.cutmix_alpha == 1.0
        assert "mixing" not in model.hparams  # training-only: not in the checkpoint
        assert instantiate(compose("train").model, num_classes=10).mixing is None  # mixing=none


def test_training_with_mixing_logs_mixed_accuracy_under_its_own_name(tmp_path) -> None:
    from functools import partial

    from litvision.lightning_modules.backbones import build_backbone
    from litvision.lightning_modules.classifier import ImageClassifier

    L.seed_everything(0)
    images = torch.rand(32, 3, 32, 32)
    targets = torch.arange(32) % 8
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, targets), batch_size=8)
    model = ImageClassifier(
        backbone=partial(build_backbone, "small_cnn", width=4),
        num_classes=8,
        loss=partial(losses.focal, gamma=2.0, label_smoothing=0.1),
        mixing=BatchMixer(mixup_alpha=1.0, cutmix_alpha=1.0),
    )
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, loader)
    logged = set(trainer.callback_metrics)
    assert {"train/mixed_acc_top1", "train/mixed_acc_top5"} <= logged
    assert "train/acc_top1" not in logged  # nobody can compare mixed-batch accuracy with clean accuracy
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
