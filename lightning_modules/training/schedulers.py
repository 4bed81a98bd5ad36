"""Step-wise LR schedules that take the run's total step count.

The classifier calls ``scheduler(optimizer, total_steps=trainer.estimated_stepping_batches)``
so a schedule config never repeats the epoch count or the dataset size.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Literal

import torch
from torch.optim.lr_scheduler import LambdaLR, OneCycleLR

from litvision.utils.errors import ConfigError


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_fraction: float = 0.0,
    warmup_steps: int | None = None,
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """Linear warm-up from 0, then cosine decay to ``min_lr_ratio * lr``."""
    warmup = warmup_steps if warmup_steps is not None else int(round(warmup_fraction * total_steps))
    warmup = min(max(warmup, 0), max(total_steps - 1, 0))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


class OneCycle(OneCycleLR):
    """``OneCycleLR`` that keeps the length it was built with when a checkpoint is loaded.

    Resuming with a larger ``trainer.max_epochs`` (more steps than the checkpointed run
    planned) continues on the cycle planned for the NEW length, at the restored step: the
    classifier builds the scheduler for the run's current total and the checkpoint only
    restores the step count. If the run was already annealing, the LR moves to where the
    longer cycle is at that step (it rises). This is also what ``warmup_cosine`` does on
    resume (its length is not in its state). torch's own ``load_state_dict`` would restore
    the old total too and stop the run with "Tried to step N times" past it.
    """

    def load_state_dict(self, state_dict: dict) -> None:
        planned = {"total_steps": self.total_steps, "_schedule_phases": self._schedule_phases}
        super().load_state_dict(state_dict)
        if state_dict.get("total_steps") == planned["total_steps"]:
            return  # the same plan: nothing to change (a resume stays bit-exact)
        self.__dict__.update(planned)
        # The optimizer was restored (Lightning loads it first) with the old plan's LR and
        # momentum for this step; the next optimizer step must already use the new plan's.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # get_lr() outside step() warns; here it is deliberate
            lrs = self.get_lr()  # also sets the momentum/betas of the new plan
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


def one_cycle(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    pct_start: float = 0.25,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    anneal_strategy: Literal["cos", "linear"] = "linear",
) -> OneCycle:
    """OneCycle with peak LR = the optimizer's configured LR (Smith & Topin 2019).

    Works for any number of steps: the warm-up is a whole number of steps (see
    :func:`whole_step_warmup`). On resume with a different length: see :class:`OneCycle`.
    """
    if not 0.0 <= pct_start <= 1.0:
        raise ConfigError(f"scheduler.pct_start={pct_start} must be in [0, 1] (the warm-up share of the steps)")
    total = max(int(total_steps), 1)
    max_lr = [group["lr"] for group in optimizer.param_groups]
    return OneCycle(
        optimizer,
        max_lr=max_lr,
        total_steps=total,
        pct_start=whole_step_warmup(pct_start, total) / total,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
        anneal_strategy=anneal_strategy,
    )


def whole_step_warmup(pct_start: float, total_steps: int) -> int:
    """Warm-up steps for OneCycle: ``pct_start * total_steps`` rounded, at least 2, or 0 if the run is too short.

    ``OneCycleLR`` divides by each phase's length, ``pct_start * total - 1`` steps for the
    warm-up and the rest for the annealing: a warm-up of exactly one step (4 steps at
    pct_start=0.25) or no annealing step raises ZeroDivisionError. Two warm-up steps and
    one annealing step are the least it can interpolate.
    """
    warmup = round(pct_start * total_steps)
    if pct_start > 0 and total_steps >= 3:
        warmup = max(warmup, 2)
    warmup = min(warmup, total_steps - 1)
    return warmup if warmup >= 2 else 0


def multistep(
    optimizer: torch.optim.Optimizer, total_steps: int, milestones: Sequence[float] = (0.5, 0.75), gamma: float = 0.1
) -> LambdaLR:
    """Step decay: lr x gamma at each milestone, given as a fraction of the run (0.3 = 60 of 200 epochs).

    Fractions rather than epochs so that the schedule follows ``trainer.max_epochs`` and the
    dataset size (the classifier passes ``total_steps``); stepped every optimizer step.
    """
    if any(not 0.0 < m < 1.0 for m in milestones) or list(milestones) != sorted(milestones):
        raise ConfigError(
            f"scheduler.milestones must be increasing fractions of the run in (0, 1), got {list(milestones)}"
        )
    boundaries = [round(m * total_steps) for m in milestones]
    return LambdaLR(optimizer, lambda step: gamma ** sum(step >= b for b in boundaries))


def triangular(
    optimizer: torch.optim.Optimizer, total_steps: int, start: float = 0.2, peak_at: float = 0.23, end: float = 0.07
) -> LambdaLR:
    """Linear up from ``start x lr`` to ``lr`` at ``peak_at`` of the run, then linear down to ``end x lr``.

    airbench's schedule (0.2 -> 1 at 23% -> 0.07). Unlike ``one_cycle`` (torch's OneCycleLR,
    which also cycles the momentum between 0.85 and 0.95) the optimizer's momentum is left alone.
    """
    if not 0.0 < peak_at < 1.0:
        raise ConfigError(f"scheduler.peak_at={peak_at} must be in (0, 1) (the share of the run spent rising)")
    total = max(int(total_steps), 1)
    peak = peak_at * total

    def factor(step: int) -> float:
        if step < peak:
            return start + (1.0 - start) * step / peak
        return 1.0 + (end - 1.0) * min(1.0, (step - peak) / max(total - peak, 1))

    return LambdaLR(optimizer, factor)
