"""Whose folder ``out=`` is, and which process may write into it (``prepare_shards.py``).

``out=`` may be a folder that holds other people's files (another project's ``laion-000123.tar``).
prepare_shards only writes, replaces or deletes what it recorded as its own:

* **The claim**, ``.parts/plan.json``: written before anything else, into a new or empty folder
  only. A non-empty folder without it is refused in one line, with nothing in it touched. Once the
  plan is known (after indexing) the claim records it (its digest and every shard name); a later
  run of *another* plan is refused too: its shards would replace a set someone may be reading.
* **What it may delete**: the temp files (``.<name>.<random>.tmp``) of the names its plan records
  (shards, their records in ``.parts/``, the manifest, the claim), and a ``manifest.json`` whose
  SHA-256 is the one it recorded before writing it. Nothing else, ever: a foreign file dropped into
  the folder later stays.
* **One writer at a time**: ``.parts/prepare.lock`` is held (``flock``, exclusive) by the running
  prepare and names its pid and host; a second prepare on the same folder is refused while it is
  held. The kernel releases it when the holder dies, even by ``kill -9``: no stale lock to clear.
* **No leftover writer**: every writer process holds ``.parts/writers.lock`` (shared) from before
  it writes anything until it exits; a new run takes it exclusively first, waiting a little for
  the writers of a killed run to die (they die with their parent, :mod:`litvision.utils.parent_death`),
  and refuses if they do not.

``flock`` works on local filesystems and NFSv4; where a filesystem refuses it, the run goes on
with a warning (and without these two guarantees).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from litvision.datamodules.shards.manifest import MANIFEST_NAME, PARTS_DIRNAME
from litvision.utils.atomic_write import TMP_SUFFIX, write_json_atomic
from litvision.utils.errors import ConfigError
from litvision.utils.processes import process_exists

log = logging.getLogger(__name__)

CLAIM_NAME = "plan.json"
CLAIM_FORMAT = "litvision-prepare/1"
RUN_LOCK_NAME = "prepare.lock"
WRITERS_LOCK_NAME = "writers.lock"
# how long a new run waits for the writer processes of a killed one to exit
LEFTOVER_WRITER_WAIT_S = 30.0
_NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def plan_digest(names_and_digests: list[tuple[str, str]]) -> str:
    """Identifies a plan: its shard names and what each holds (:attr:`ShardTask.digest`)."""
    text = "\n".join(f"{name}\t{digest}" for name, digest in names_and_digests)
    return hashlib.sha256(text.encode()).hexdigest()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _temp_of(entry: str) -> str | None:
    """``name`` for a temp file ``.<name>.<random>.tmp`` as :func:`write_atomic` names them, else None."""
    if not (entry.startswith(".") and entry.endswith(TMP_SUFFIX)):
        return None
    stem = entry[1 : -len(TMP_SUFFIX)]
    return stem.rsplit(".", 1)[0] if "." in stem else None


class OutputFolder:
    """``out=`` claimed, locked and cleaned as described above; use as a context manager.

    Entering checks the folder is ours (new, empty, or claimed by an earlier prepare), takes the
    run lock and waits out leftover writers; :meth:`claim` then records (or checks) the plan.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.parts = out / PARTS_DIRNAME
        self.claim_path = self.parts / CLAIM_NAME
        self._lock_fd: int | None = None
        self._record: dict[str, Any] = {}

    # ---- entering: ownership, run lock, leftover writers --------------------------------
    def __enter__(self) -> OutputFolder:
        self._refuse_if_not_ours()
        self.parts.mkdir(parents=True, exist_ok=True)
        self._take_run_lock()
        try:
            self._refuse_if_not_ours()  # again, under the lock: nobody else starts between the two
            self._wait_for_leftover_writers()
            self._record = _read_json(self.claim_path) or {}
            if not self._record:
                self._write_claim({"format": CLAIM_FORMAT, "plan": None, "shards": [], "manifest_sha256": None})
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def _refuse_if_not_ours(self) -> None:
        if not self.out.exists():
            return
        if not self.out.is_dir():
            raise ConfigError(f"out={self.out} is a file, not a folder: pass a new or empty folder as out=")
        entries = set(os.listdir(self.out))
        if not entries:
            return
        claim = _read_json(self.claim_path)
        if claim is not None and claim.get("format") == CLAIM_FORMAT:
            return
        if entries == {PARTS_DIRNAME} and self._only_our_start_up_files():
            return  # a run killed between taking its lock and writing its claim
        raise ConfigError(
            f"out={self.out} is not empty and is not a shard set prepare_shards.py started (no {PARTS_DIRNAME}/"
            f"{CLAIM_NAME} in it): nothing there was touched; pass a new or empty folder as out="
        )

    def _only_our_start_up_files(self) -> bool:
        try:
            parts = os.listdir(self.parts)
        except OSError:
            return False
        return all(e in (RUN_LOCK_NAME, WRITERS_LOCK_NAME) or _temp_of(e) == CLAIM_NAME for e in parts)

    def _take_run_lock(self) -> None:
        fd = os.open(self.parts / RUN_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_json(self.parts / RUN_LOCK_NAME) or {}
            os.close(fd)
            raise ConfigError(
                f"out={self.out} is being written by another prepare_shards.py (pid {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')}, since {holder.get('started', '?')}): wait for it to finish or stop it; "
                "two on one folder would mix their shards"
            ) from None
        except OSError as e:
            if e.errno not in _NO_FLOCK:
                os.close(fd)
                raise
            log.warning(
                "cannot lock %s (%s): make sure no other prepare_shards.py writes to out=%s",
                self.parts / RUN_LOCK_NAME,
                e.strerror,
                self.out,
            )
        os.ftruncate(fd, 0)
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        os.write(fd, json.dumps(holder).encode())
        self._lock_fd = fd

    def _wait_for_leftover_writers(self) -> None:
        fd = os.open(self.parts / WRITERS_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            deadline = time.monotonic() + LEFTOVER_WRITER_WAIT_S
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(fd, fcntl.LOCK_UN)  # no writer alive; ours take it shared
                    return
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise ConfigError(
                            f"writer processes of an earlier prepare_shards.py still hold {self.parts / WRITERS_LOCK_NAME} "
                            f"after {LEFTOVER_WRITER_WAIT_S:.0f} s: stop them (fuser -k {self.parts / WRITERS_LOCK_NAME}) "
                            "and run again"
                        ) from None
                    time.sleep(0.1)
                except OSError as e:
                    if e.errno not in _NO_FLOCK:
                        raise
                    return
        finally:
            os.close(fd)

    # ---- the plan ----------------------------------------------------------------------
    def claim(self, plan: str, shard_names: list[str]) -> None:
        """Record this run's plan, or refuse if the folder holds the shards of another one."""
        recorded = self._record.get("plan")
        if recorded is not None and recorded != plan:
            raise ConfigError(
                f"out={self.out} holds the shards of another plan (the dataset, its splits, samples_per_shard or "
                "shuffle_seed changed since it was written): nothing was changed; write to a new folder, or "
                f"delete {self.out} to rewrite it"
            )
        if recorded is None:
            self._write_claim({**self._record, "plan": plan, "shards": list(shard_names)})

    def _write_claim(self, record: dict[str, Any]) -> None:
        write_json_atomic(self.claim_path, record)
        self._record = record

    def our_names(self) -> set[str]:
        """Files of this folder the claim records (shard names, records, manifest, claim)."""
        shards = set(self._record.get("shards", []))
        return shards | {f"{name}.json" for name in shards} | {MANIFEST_NAME, CLAIM_NAME}

    def remove_partial_files(self) -> int:
        """Delete the temp files of our names left by killed writers; returns how many."""
        ours, removed = self.our_names(), 0
        for folder in (self.out, self.parts):
            for entry in os.listdir(folder):
                if _temp_of(entry) in ours:
                    (folder / entry).unlink(missing_ok=True)
                    removed += 1
        return removed

    # ---- the manifest -------------------------------------------------------------------
    def remove_manifest(self) -> None:
        """Delete ``manifest.json`` if it is the one we wrote; refuse to go on if it is not."""
        path = self.out / MANIFEST_NAME
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return
        if hashlib.sha256(data).hexdigest() != self._record.get("manifest_sha256"):
            raise ConfigError(
                f"{path} is not the manifest prepare_shards.py wrote there (changed since?): nothing was changed; "
                "move it away and run again"
            )
        path.unlink()

    def record_manifest(self, data: bytes) -> None:
        """Before ``manifest.json`` is written: its SHA-256, so that a later run knows it as ours."""
        self._write_claim({**self._record, "manifest_sha256": hashlib.sha256(data).hexdigest()})


# ---- in the writer processes ----------------------------------------------------------------


def hold_writers_lock(out: Path) -> int | None:
    """Take ``writers.lock`` shared until this process exits (the fd is never closed); None if unsupported."""
    fd = os.open(out / PARTS_DIRNAME / WRITERS_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except OSError as e:
        os.close(fd)
        if e.errno not in _NO_FLOCK:
            raise
        return None
    return fd


def run_is_alive(out: Path, pid: int) -> bool:
    """Whether the prepare ``pid`` still holds ``out``'s run lock (a new run writes its own pid there)."""
    holder = _read_json(out / PARTS_DIRNAME / RUN_LOCK_NAME) or {}
    if holder.get("pid") != pid or holder.get("host") != socket.gethostname():
        return False
    return process_exists(pid)
