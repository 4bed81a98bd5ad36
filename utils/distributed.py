"""Which process this is in a distributed job: shared by the tasks, the sweeps and the job wrapper."""

from __future__ import annotations


def global_rank() -> int:
    """This process's rank as Lightning sees it before the Trainer exists (env vars), later exact."""
    from lightning.pytorch.utilities import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)
