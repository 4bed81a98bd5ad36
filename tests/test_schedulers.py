"""LR schedules: OneCycle for any run length, and resumed with more steps than first planned."""

from __future__ import annotations

import math

import pytest
import torch

from litvision.lightning_modules.training.schedulers import one_cycle, warmup_cosine
from litvision.utils.errors import ConfigError

PEAK = 0.2


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=PEAK, momentum=0.9)


def _run(scheduler, steps: int) -> list[float]:
    """The LR of each of ``steps`` optimizer steps, stepping the scheduler after each (as Lightning does)."""
    lrs = []
    for _ in range(steps):
        lrs.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return lrs


@pytest.mark.parametrize("pct_start", [0.0, 0.1, 0.25, 0.3, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("total_steps", list(range(1, 13)) + [40])
def test_one_cycle_runs_for_any_number_of_steps(total_steps: int, pct_start: float) -> None:
    """4 steps at pct_start=0.25 is a one-step warm-up: torch's OneCycleLR divides by zero there."""
    lrs = _run(one_cycle(_optimizer(), total_steps=total_steps, pct_start=pct_start), total_steps)
    assert all(math.isfinite(lr) and 0 < lr <= PEAK * (1 + 1e-9) for lr in lrs), lrs
    if total_steps >= 3:
        assert lrs[-1] < PEAK  # annealing happened


def test_one_cycle_peaks_at_the_configured_lr_after_the_warm_up() -> None:
    lrs = _run(one_cycle(_optimizer(), total_steps=100, pct_start=0.25), 100)
    assert lrs.index(max(lrs)) == 24 and max(lrs) == pytest.approx(PEAK)
    assert lrs[0] == pytest.approx(PEAK / 25)


def test_one_cycle_resumed_with_more_steps_follows_the_longer_cycle() -> None:
    """A run planned for 10 steps, checkpointed after 6 and resumed with 20 planned steps
    (trainer.max_epochs raised): no "Tried to step" error, and from the restored step on the LR
    is the 20-step cycle's (as documented in OneCycle)."""
    first = one_cycle(_optimizer(), total_steps=10)
    _run(first, 6)
    optimizer_state, scheduler_state = first.optimizer.state_dict(), first.state_dict()

    resumed = one_cycle(_optimizer(), total_steps=20)
    resumed.optimizer.load_state_dict(optimizer_state)  # Lightning restores the optimizer first
    resumed.load_state_dict(scheduler_state)
    after_resume = _run(resumed, 14)  # steps 6..19: 20 in all

    reference = one_cycle(_optimizer(), total_steps=20)
    expected = _run(reference, 20)[6:]
    assert after_resume == pytest.approx(expected)
    assert resumed.optimizer.param_groups[0]["momentum"] == pytest.approx(
        reference.optimizer.param_groups[0]["momentum"]
    )


def test_one_cycle_resumed_with_the_same_length_is_unchanged() -> None:
    first = one_cycle(_optimizer(), total_steps=12)
    _run(first, 5)
    resumed = one_cycle(_optimizer(), total_steps=12)
    resumed.optimizer.load_state_dict(first.optimizer.state_dict())
    resumed.load_state_dict(first.state_dict())
    assert _run(resumed, 7) == pytest.approx(_run(first, 7))


def test_one_cycle_rejects_a_warm_up_share_outside_0_1() -> None:
    with pytest.raises(ConfigError, match="scheduler.pct_start"):
        one_cycle(_optimizer(), total_steps=10, pct_start=1.5)


def test_warmup_cosine_warms_up_then_decays_to_the_floor() -> None:
    lrs = _run(warmup_cosine(_optimizer(), total_steps=20, warmup_steps=4, min_lr_ratio=0.1), 21)
    assert lrs[:4] == pytest.approx([PEAK * k / 4 for k in (1, 2, 3, 4)])
    assert lrs[-1] == pytest.approx(PEAK * 0.1)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False))
