"""How many CPU cores this process may use: what ``num_workers: auto`` and ``workers=auto`` are sized by."""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """Cores this process may run on (respects taskset/cgroup CPU sets; every core where unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def loader_workers_per_device(devices_per_node: int) -> int:
    """Usable cores per device on this node, minus one for the device's main process (max 16).

    Past ~16 workers per GPU a JPEG pipeline is limited by storage, not by decoding.
    """
    return max(1, min(16, usable_cpus() // max(1, devices_per_node) - 1))
