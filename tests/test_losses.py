"""Imbalance-aware losses: values against hand computations, schedules, and their configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from litvision.lightning_modules.training import losses

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
COUNTS = [400, 100, 25, 5]


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(32, 4, generator=generator) * 2, torch.randint(0, 4, (32,), generator=generator)


def effective_number_weights(counts: list[int], beta: float) -> torch.Tensor:
    """Cui et al. 2019, eq. (the class-balanced term), normalised to sum to C."""
    n = torch.tensor(counts, dtype=torch.float64)
    w = (1 - beta) / (1 - beta**n)
    return (w * len(counts) / w.sum()).float()


def weighted_ce_by_hand(logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    nll = -logits.log_softmax(-1)[torch.arange(len(targets)), targets]
    return (weight[targets] * nll).sum() / weight[targets].sum()


def test_class_balanced_is_effective_number_weighted_ce(batch) -> None:
    logits, targets = batch
    loss = losses.class_balanced(class_counts=COUNTS, beta=0.99)(logits, targets)
    expected = weighted_ce_by_hand(logits, targets, effective_number_weights(COUNTS, 0.99))
    torch.testing.assert_close(loss, expected)
    # rarer classes weigh more
    weights = effective_number_weights(COUNTS, 0.99)
    assert (weights[1:] > weights[:-1]).all()


def test_focal_reduces_to_ce_at_gamma_zero_and_matches_definition(batch) -> None:
    logits, targets = batch
    for smoothing in (0.0, 0.1):
        focal0 = losses.focal(gamma=0.0, label_smoothing=smoothing)(logits, targets)
        torch.testing.assert_close(focal0, F.cross_entropy(logits, targets, label_smoothing=smoothing))
    p_t = logits.softmax(-1)[torch.arange(len(targets)), targets]
    expected = (-((1 - p_t) ** 2) * p_t.log()).mean()
    torch.testing.assert_close(losses.focal(gamma=2.0)(logits, targets), expected)
    # class-balanced focal: same terms, effective-number weighted mean
    w = effective_number_weights(COUNTS, 0.999)[targets]
    expected_cb = (w * -((1 - p_t) ** 2) * p_t.log()).sum() / w.sum()
    torch.testing.assert_close(losses.focal(COUNTS, gamma=2.0, beta=0.999)(logits, targets), expected_cb)


def test_logit_adjusted_is_ce_on_prior_shifted_logits(batch) -> None:
    logits, targets = batch
    log_prior = torch.log(torch.tensor(COUNTS, dtype=torch.float32) / sum(COUNTS))
    loss = losses.logit_adjusted(class_counts=COUNTS, tau=1.5)(logits, targets)
    torch.testing.assert_close(loss, F.cross_entropy(logits + 1.5 * log_prior, targets))
    torch.testing.assert_close(
        losses.logit_adjusted(COUNTS, tau=0.0)(logits, targets), F.cross_entropy(logits, targets)
    )


def fit_bias(loss_fn: torch.nn.Module, targets: torch.Tensor) -> torch.Tensor:
    """Fit class biases alone (an input-free model): its softmax is what the loss teaches."""
    bias = torch.zeros(len(COUNTS), requires_grad=True)
    optimizer = torch.optim.LBFGS([bias], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = loss_fn(bias.expand(len(targets), -1), targets)
        loss.backward()
        return loss

    optimizer.step(closure)
    return bias.detach().softmax(-1)


def test_logit_adjustment_learns_the_balanced_posterior() -> None:
    """On imbalanced labels plain CE learns the prior; logit adjustment learns uniform (Menon et al.)."""
    targets = torch.repeat_interleave(torch.arange(len(COUNTS)), torch.tensor(COUNTS))
    prior = torch.tensor(COUNTS, dtype=torch.float32) / sum(COUNTS)
    torch.testing.assert_close(fit_bias(losses.cross_entropy(), targets), prior, atol=1e-3, rtol=0)
    uniform = torch.full((len(COUNTS),), 1 / len(COUNTS))
    torch.testing.assert_close(fit_bias(losses.logit_adjusted(COUNTS), targets), uniform, atol=1e-3, rtol=0)


def test_drw_switches_weights_on_at_start_epoch(batch) -> None:
    logits, targets = batch
    criterion = losses.drw(class_counts=COUNTS, start_fraction=0.8, max_epochs=10, beta=0.999)
    assert criterion.start_epoch == 8
    weighted = weighted_ce_by_hand(logits, targets, effective_number_weights(COUNTS, 0.999))
    for epoch, expected in [(0, F.cross_entropy(logits, targets)), (8, weighted), (9, weighted)]:
        criterion.on_epoch_start(epoch)
        torch.testing.assert_close(criterion(logits, targets), expected)
    criterion.on_epoch_start(3)  # a resumed/earlier epoch: the state follows the epoch, not history
    torch.testing.assert_close(criterion(logits, targets), F.cross_entropy(logits, targets))
    assert losses.drw(COUNTS, start_epoch=2, start_fraction=0.9, max_epochs=10).start_epoch == 2


@pytest.mark.parametrize(
    "factory, kwargs",
    [
        (losses.class_balanced, {}),
        (losses.logit_adjusted, {}),
        (losses.drw, {"start_epoch": 1}),
        (losses.focal, {"beta": 0.99}),
    ],
)
def test_losses_needing_counts_say_so(factory, kwargs) -> None:
    with pytest.raises(ValueError, match="class counts"):
        factory(class_counts=None, **kwargs)


def test_bad_arguments_fail_clearly(batch) -> None:
    logits, targets = batch
    with pytest.raises(ValueError, match="start_epoch, or start_fraction"):
        losses.drw(COUNTS)
    with pytest.raises(ValueError, match="label_smoothing"):
        losses.logit_adjusted(COUNTS, label_smoothing=1.0)
    with pytest.raises(ValueError, match="3 classes"):
        losses.logit_adjusted(COUNTS[:3])(logits, targets)
    with pytest.raises(ValueError, match="gamma"):
        losses.focal(gamma=-1)


def test_class_tensors_follow_the_module_but_stay_out_of_checkpoints() -> None:
    for criterion in (losses.class_balanced(COUNTS), losses.logit_adjusted(COUNTS), losses.drw(COUNTS, start_epoch=0)):
        assert criterion.state_dict() == {}
        assert criterion.to(torch.float64) is criterion and len(list(criterion.buffers())) == 1


@pytest.mark.parametrize(
    "name", ["cross_entropy", "class_balanced", "focal", "logit_adjusted", "balanced_softmax", "drw"]
)
def test_every_loss_config_composes_with_the_cpu_recipe(name: str, batch) -> None:
    """experiment=cifar10_cpu sets loss.label_smoothing on whichever loss is chosen."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"loss={name}", "experiment=cifar10_cpu", "trainer.max_epochs=10"])
    criterion = instantiate(cfg.loss)(class_counts=COUNTS)
    logits, targets = batch
    assert torch.isfinite(criterion(logits, targets))
    assert getattr(criterion, "label_smoothing", None) == pytest.approx(0.1)
    if name == "drw":
        assert criterion.start_epoch == 8  # 0.8 * trainer.max_epochs


def test_zero_count_class_keeps_losses_finite(batch) -> None:
    logits, targets = batch
    targets = targets.clamp(max=2)  # class 3 never a target, like a class absent from training
    for criterion in (losses.class_balanced([50, 10, 5, 0]), losses.logit_adjusted([50, 10, 5, 0])):
        assert torch.isfinite(criterion(logits, targets))
    assert np.isfinite(losses.class_balanced([50, 10, 5, 0]).weight.numpy()).all()
