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
    return WandbLogger(mode=resolved, **kwargs)


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
    offline = run.settings.mode == "offline" if hasattr(run.settings, "mode") else False
    run_dir = getattr(run, "dir", None)
    wandb.finish(exit_code=exit_code)
    if offline and run_dir:
        log.info("W&B offline run saved; upload it with: wandb sync %s", os.path.dirname(run_dir))
