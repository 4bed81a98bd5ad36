"""Whole-or-nothing file writes: a same-folder temp file, fsynced, then renamed over the target.

Readers (other tools, sweep summaries, a resumed run, other DDP ranks) see the old file or
the new one, never half of one, and a node crash after the rename cannot leave an empty
file because the data and the directory entry are both fsynced. A full disk (or quota) is a
one-line :class:`~litvision.utils.errors.DiskFullError` naming the file, whatever library was
writing (torch.save reports it as a RuntimeError with the OSError only in its context); the
temp file is removed and the previous file stays as it was. Used for checkpoints
(``plugins/atomic_checkpoint.py``), ``metrics.json``, sweep summaries, the W&B run id and
the file-index cache.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from litvision.utils.errors import DiskFullError

TMP_SUFFIX = ".tmp"  # not ".ckpt"/".json": nothing mistakes a leftover for the real file
_OUT_OF_SPACE = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}


def out_of_space(error: BaseException | None) -> str | None:
    """What ran out ("no space left on device", ...) if ENOSPC/EDQUOT is in ``error``'s cause chain."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno in _OUT_OF_SPACE:
            return _OUT_OF_SPACE[error.errno]
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], object], *, then: str = "rerun") -> None:
    """Call ``write(handle)`` on a temp file beside ``path``, fsync it and rename it to ``path``.

    Out of disk space: :class:`DiskFullError` naming ``path`` and saying to free space, then
    ``then``; ``path`` itself is untouched.
    """
    path = Path(path)
    existed = path.exists()
    try:
        _write_atomic(path, write)
    except DiskFullError:
        raise
    except BaseException as error:
        reason = out_of_space(error)
        if reason is None:
            raise
        kept = "its previous version is unchanged" if existed else "nothing was written"
        raise DiskFullError(
            f"{reason} while writing {path} ({kept}): free space on that filesystem, then {then}"
        ) from error


def _write_atomic(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the file gets normal permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    # a write of this file that was killed earlier left its temp file behind: garbage now
    for stale in path.parent.glob(f".{path.name}.*{TMP_SUFFIX}"):
        stale.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Small text files (run id, sweep summary, job status): whole or not at all."""
    write_atomic(path, lambda handle: handle.write(text.encode("utf-8")))


def write_json_atomic(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """JSON without NaN/inf (``null`` instead is the caller's job): strict parsers accept it."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n")


def link_atomic(source: str | os.PathLike, path: str | os.PathLike) -> None:
    """Make ``path`` a second name of the file ``source`` (a hard link), replacing ``path`` in one rename.

    Readers of ``path`` see the old file or the new one. Where hard links are not possible
    (another filesystem, a filesystem without them) the file is copied through :func:`write_atomic`.
    """
    import shutil

    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.link{TMP_SUFFIX}"
    try:
        tmp.unlink(missing_ok=True)
        os.link(source, tmp)
    except OSError:
        with open(source, "rb") as src:
            write_atomic(path, lambda handle: shutil.copyfileobj(src, handle))
        return
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (the directory entry); not possible on every OS/filesystem."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
