"""A WandbLogger that goes online only when the user has W&B credentials."""

from __future__ import annotations

import logging
import netrc
import os
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import WandbLogger

log = logging.getLogger(__name__)
MODES = ("online", "offline", "disabled")


def has_wandb_credentials() -> bool:
    """True with WANDB_API_KEY set or a netrc entry written by ``wandb login``."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_wandb_mode(mode: str = "auto") -> str:
    """``mode`` from the config wins; then ``WANDB_MODE``; then credentials decide."""
    if mode != "auto":
        if mode not in MODES:
            raise ValueError(f"logger.wandb.mode must be auto or one of {MODES}, got {mode!r}")
        return mode
    env_mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if env_mode == "dryrun":
        env_mode = "offline"
    if env_mode in MODES:
        return env_mode
    return "online" if has_wandb_credentials() else "offline"


def make_wandb_logger(mode: str = "auto", **kwargs: Any) -> WandbLogger:
    """Build a WandbLogger in the resolved mode.

    The mode goes to ``wandb.init(mode=...)`` rather than Lightning's ``offline=True``,
    which would set WANDB_MODE for the whole process (and every later sweep job).
    """
    resolved = resolve_wandb_mode(mode)
    if resolved == "offline":
        log.info("W&B: no credentials found, logging offline (sync later with `wandb sync <run dir>/wandb`)")
    logger = WandbLogger(mode=resolved, **kwargs)
    # Lightning 2.6 always passes anonymous=None to wandb.init, and wandb >= 0.19 warns about any
    # value of that retired setting ("The anonymous setting has no effect ..."): leave it out.
    init_kwargs = getattr(logger, "_wandb_init", None)
    if isinstance(init_kwargs, dict) and init_kwargs.get("anonymous") is None:
        init_kwargs.pop("anonymous", None)
    return logger


def finish_wandb(exit_code: int | None = None) -> None:
    """Close the active W&B run, if any, so the next job in this process gets its own run.

    ``exit_code=1`` marks the run as failed in W&B (a crashed job of a sweep).
    """
    try:
        import wandb
    except ImportError:
        return
    run = wandb.run
    if run is None:
        return
    # W&B prints the `wandb sync` command of an offline run itself; the run's final summary
    # repeats it last (launch/final_summary.py)
    wandb.finish(exit_code=exit_code)
