"""One run per run dir: ``<run dir>/run.lock`` names the holder (pid, host) while a run writes there.

Two runs sharing a run dir would mix their checkpoints, ``metrics.json``, ``.hydra/`` and log
silently, so the second one is refused. The lock file is held two ways:

* an ``fcntl.flock`` on it for the holder's lifetime: the kernel drops it when the holder dies,
  however it dies, and it makes "check the old holder, write ourselves" one atomic step when two
  runs start at once;
* its content, the holder's pid, host and process start time: what the refusal names, and what
  decides on filesystems where a flock from another machine is not seen (NFS without lock
  support). A holder on this host whose pid is dead (or reused by another process) left a stale
  lock after ``kill -9``: taken over with a warning. A holder on another host cannot be checked
  from here: refused, naming the host and the file to delete if that run is gone.

Hand-written on purpose: ``filelock``/``fasteners`` give the flock but neither the holder's
identity in the message nor the stale-pid rule for filesystems where flock is not shared.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from litvision.utils.errors import ConfigError
from litvision.utils.processes import process_exists

log = logging.getLogger(__name__)
LOCK_NAME = "run.lock"
# set by the launcher of a rank that is not the launching process (Lightning's DDP children:
# LOCAL_RANK; torchrun: RANK/LOCAL_RANK/GROUP_RANK; SLURM: SLURM_PROCID; LSF: JSM_NAMESPACE_RANK;
# the other nodes of a multi-node Lightning run: NODE_RANK)
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "GROUP_RANK", "NODE_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def is_launching_process(environ: Mapping[str, str] = os.environ) -> bool:
    """True in the one process of a run that owns its run dir (global rank 0 / the parent).

    The other ranks re-run the same job in the same run dir: they must neither take nor be
    refused the lock their launching process holds.
    """
    for name in _RANK_VARIABLES:
        value = environ.get(name, "").strip()
        if value and value != "0":
            return False
    return True


def _process_start(pid: int) -> str | None:
    """``<boot id>:<start time in ticks>`` of ``pid`` (Linux), to tell a reused pid from the holder."""
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
        return f"{boot_id}:{stat.rsplit(')', 1)[1].split()[19]}"
    except (OSError, IndexError):
        return None


def _describe(holder: Mapping[str, Any]) -> str:
    started = holder.get("started") or "?"
    command = holder.get("command")
    return f"pid {holder.get('pid')} on host {holder.get('host')}, started {started}" + (
        f": {command}" if command else ""
    )


class RunDirLock:
    """The lock of one run dir; :meth:`acquire` refuses with a one-line ``ConfigError`` when held.

    ``setting`` names the option that chose the dir (``hydra.run.dir``), for the message.
    Released by :meth:`release` and, whatever ends the process short of a kill, at exit.
    """

    def __init__(self, run_dir: str | os.PathLike, setting: str = "hydra.run.dir") -> None:
        self.run_dir = Path(run_dir).absolute()
        self.path = self.run_dir / LOCK_NAME
        self.setting = setting
        self._fd: int | None = None
        self._owner = os.getpid()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self.held:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(20):  # another process removed or replaced the file between our open and flock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                if self._try_take(fd):
                    self._fd, self._owner = fd, os.getpid()
                    atexit.register(self.release)
                    return
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        raise ConfigError(
            f"could not lock {self.path}: it keeps being replaced; is another run starting in {self.run_dir}?"
        )

    def _try_take(self, fd: int) -> bool:
        """Take the lock through ``fd`` (True), or False when the file changed under us (retry)."""
        flocked = self._flock(fd)
        if not flocked and flocked is not None:  # a live process holds the flock
            raise self._busy(self._read(fd))
        try:
            if os.fstat(fd).st_ino != os.stat(self.path).st_ino:
                return False
        except FileNotFoundError:
            return False
        holder = self._read(fd)
        if holder is not None:
            self._check_stale(holder)
        elif os.fstat(fd).st_size:
            log.warning("%s is unreadable (a run killed while taking it?): taking it over", self.path)
        self._write(fd)
        return True

    @staticmethod
    def _flock(fd: int) -> bool | None:
        """True: flocked; False: a live process holds it; None: this filesystem has no flock."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                return False
            if error.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                return None  # the pid check alone decides
            raise
        return True

    def _check_stale(self, holder: Mapping[str, Any]) -> None:
        """Refuse a holder that may still run; warn when taking over a dead one's lock."""
        host = socket.gethostname()
        pid = holder.get("pid")
        if holder.get("host") != host:
            raise ConfigError(
                f"{self.setting}={self.run_dir} is locked by another run ({_describe(holder)}); from host "
                f"{host} it cannot be checked whether that run still runs: if it does not, delete {self.path} "
                f"and rerun, or choose another {self.setting}=DIR"
            )
        if isinstance(pid, int) and pid != os.getpid() and process_exists(pid):
            start = holder.get("process_start")
            if start is None or start == _process_start(pid):
                raise self._busy(holder)
        log.warning("%s: taking over the lock of a run that is gone (%s)", self.run_dir, _describe(holder))

    def _busy(self, holder: Mapping[str, Any] | None) -> ConfigError:
        who = _describe(holder) if holder else "a run that is just starting"
        return ConfigError(
            f"{self.setting}={self.run_dir} is in use by another run ({who}): wait for it to end, "
            f"or choose another {self.setting}=DIR (two runs in one dir would mix checkpoints, metrics.json and logs)"
        )

    @staticmethod
    def _read(fd: int) -> dict[str, Any] | None:
        try:
            holder = json.loads(os.pread(fd, 65536, 0).decode("utf-8"))
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) else None

    @staticmethod
    def _write(fd: int) -> None:
        pid = os.getpid()
        record = {
            "pid": pid,
            "host": socket.gethostname(),
            "process_start": _process_start(pid),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv)[:1000],
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode("utf-8"), 0)
        os.fsync(fd)

    def release(self) -> None:
        """Remove the lock file (if it is still ours) and drop the flock; a no-op when not held."""
        if self._fd is None or os.getpid() != self._owner:  # a forked child (loader worker) never releases
            return
        fd, self._fd = self._fd, None
        atexit.unregister(self.release)
        try:
            if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                self.path.unlink()
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)
