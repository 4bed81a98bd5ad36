"""Whether a process is alive: what the lock files' stale-holder rules and the worker watchdogs ask."""

from __future__ import annotations

import os


def process_exists(pid: int) -> bool:
    """``pid`` names a live process on this host (one of another user's counts too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
