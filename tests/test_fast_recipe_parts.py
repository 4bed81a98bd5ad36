"""Pieces of the cifar10_fast recipe: the triangular LR schedule and airbench's SGD parameter groups."""

from __future__ import annotations

import pytest
import torch

from litvision.lightning_modules.backbones.airbench import AirbenchNet
from litvision.lightning_modules.training.optimizers import sgd_scaled_vectors
from litvision.lightning_modules.training.schedulers import triangular
from litvision.utils.errors import ConfigError


def _lrs(total: int, **kwargs) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=2.0, momentum=0.85)
    scheduler = triangular(optimizer, total_steps=total, **kwargs)
    lrs = []
    for _ in range(total):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["momentum"] == 0.85  # never cycled
    return lrs


def test_triangular_rises_to_the_peak_then_falls_to_the_end_value() -> None:
    lrs = _lrs(100, start=0.2, peak_at=0.25, end=0.1)
    assert lrs[0] == pytest.approx(0.4)  # 0.2 x lr
    peak = max(range(100), key=lrs.__getitem__)
    assert peak == 25 and lrs[peak] == pytest.approx(2.0)
    assert all(a < b for a, b in zip(lrs[:25], lrs[1:26], strict=True))  # rising
    assert all(a > b for a, b in zip(lrs[25:-1], lrs[26:], strict=True))  # falling
    assert lrs[-1] == pytest.approx(2.0 * (1 + (0.1 - 1) * 74 / 75))


def test_triangular_refuses_a_peak_outside_the_run() -> None:
    with pytest.raises(ConfigError, match="scheduler.peak_at"):
        _lrs(10, peak_at=1.0)


def test_vectors_get_scaled_lr_and_the_same_decay_per_step() -> None:
    net = AirbenchNet(num_classes=10, widths=(8, 16, 16))
    optimizer = sgd_scaled_vectors(net.parameters(), lr=0.1, weight_decay=0.004, vector_lr_scale=64)
    matrices, vectors = optimizer.param_groups
    assert all(p.ndim > 1 for p in matrices["params"]) and all(p.ndim == 1 for p in vectors["params"])
    trainable = {id(p) for p in net.parameters() if p.requires_grad}
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == trainable  # frozen ones left out
    assert not any(p is net.whiten.weight for p in matrices["params"])
    assert vectors["lr"] == pytest.approx(6.4)
    # decay per step = lr x weight_decay, the same for both groups
    assert vectors["lr"] * vectors["weight_decay"] == pytest.approx(matrices["lr"] * matrices["weight_decay"])


def test_vector_scale_applies_to_the_classifier_groups_too() -> None:
    net = AirbenchNet(num_classes=10, widths=(8, 16, 16))
    decay = [p for p in net.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in net.parameters() if p.requires_grad and p.ndim <= 1]
    optimizer = sgd_scaled_vectors(
        [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], lr=0.1, weight_decay=0.01
    )
    assert [len(g["params"]) for g in optimizer.param_groups] == [len(decay), len(no_decay)]
    assert optimizer.param_groups[1]["weight_decay"] == pytest.approx(0.01 / 64)
