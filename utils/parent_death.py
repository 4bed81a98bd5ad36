"""Worker processes that die with their parent.

A process pool's workers outlive a parent killed with SIGKILL: nothing runs in the parent to stop
them, and they go on with the tasks already queued to them (prepare_shards' writers were seen
writing shards 86 s after a ``kill -9``, past the end of the re-run). Two layers:

* :func:`die_with_parent`: Linux's parent-death signal (``prctl(PR_SET_PDEATHSIG)``, through
  ctypes: no library wraps it in what litvision installs); the kernel kills the worker the moment
  its parent exits, however it exits.
* :class:`ParentWatch`: the portable fallback, for other systems and for a parent that died
  before the signal was set up: a worker whose parent is gone has been re-parented, so its
  ``os.getppid()`` changes; callers check it between units of work.

Under the ``forkserver`` start method a worker's parent is the fork server, not the process it
works for; the fork server exits when its client's pipe reaches end-of-file, but every process it
forks inherits a copy of that pipe (to start processes through it itself), so neither ever sees
the end: the workers of a killed run wait forever. :func:`exit_with` watches the process the
worker works for instead.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import sys
import threading
import time

from litvision.utils.processes import process_exists

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Have the kernel send ``sig`` to this process when its parent exits (Linux); True if set."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):  # no libc symbol (e.g. a static or unusual build)
        return False


def exit_with(pid: int, poll_s: float = 0.1) -> None:
    """End this process (``os._exit``) the moment process ``pid`` exits, from a daemon thread.

    For a worker whose parent is not the process it works for (under ``forkserver`` the parent is
    the fork server, which outlives the run while any worker holds its pipe). Waits on a pidfd
    (Linux >= 5.3: immune to pid reuse, no polling), else polls ``pid`` every ``poll_s`` seconds.
    """
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux, an old kernel, or pid already gone
        fd = None

    def wait() -> None:
        if fd is not None:
            select.select([fd], [], [])  # readable once the process has exited
        else:
            while process_exists(pid):
                time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=wait, name=f"exit-with-{pid}", daemon=True).start()


class ParentWatch:
    """Remembers this process's parent; :meth:`gone` once the parent has exited."""

    def __init__(self) -> None:
        self.parent = os.getppid()

    def gone(self) -> bool:
        return os.getppid() != self.parent
