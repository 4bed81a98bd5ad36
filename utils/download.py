"""Dependency-free (no torchvision) download, checksum and safe-extraction helpers.

Shared by the data side (the CIFAR-10 archive, ``datamodules/readers/cifar_download.py``) and the
model side (published weights, ``lightning_modules/weights/fetch.py``), so it lives here, below both.
Every step writes to a temporary name in the destination folder and is moved
into place with ``os.replace`` only once complete, so an interrupted or
corrupted download never leaves something that looks like a usable dataset.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

__all__ = [
    "DownloadError",
    "download_and_extract",
    "download_url",
    "extract_archive",
    "md5sum",
    "sha256sum",
]

_MANUAL_HINT = (
    "Retry, or download the file manually, extract it, and point the Hydra override "
    "dataset.data_dir=PATH at the folder that contains the extracted data."
)


class DownloadError(RuntimeError):
    """A download, checksum or extraction failed; nothing partial was left behind."""


def md5sum(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex MD5 of a file (integrity check, not security)."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def sha256sum(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def _progress(total: int | None, description: str, enabled: bool):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        # its own console: rich's global one may still hold a live display that an earlier
        # Lightning progress bar left behind in this process, and a bar nested in it never shows
        console=Console(),
    )
    return progress, progress.add_task(description, total=total)


def download_url(
    url: str,
    dest_path: str | Path,
    md5: str | None = None,
    chunk_size: int = 1 << 20,
    progress: bool = True,
    timeout: float = 60.0,
    sha256_prefix: str | None = None,
    manual_hint: str = _MANUAL_HINT,
) -> Path:
    """Stream ``url`` to ``dest_path`` via a ``.part`` file; verify MD5 and/or the SHA-256 prefix; move into place.

    ``sha256_prefix``: the leading hex digits the file's SHA-256 must start with (published
    weights carry them in their file names, e.g. ``resnet50-11ad3fa6.pth``). ``manual_hint``:
    what the error messages tell the user to do instead. On any failure the partial file is removed. Ordinary exceptions become
    :class:`DownloadError`; KeyboardInterrupt/SystemExit are re-raised unchanged
    (after cleanup) so Ctrl-C still stops the program.
    """
    dest = Path(dest_path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Unique temp name in the same folder: same filesystem for os.replace, and
    # concurrent processes (e.g. DDP ranks) never write into each other's file.
    fd, tmp_name = tempfile.mkstemp(prefix=f"{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        hasher = hashlib.md5(usedforsecurity=False)
        sha256 = hashlib.sha256()
        request = urllib.request.Request(url, headers={"User-Agent": "litvision"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            received = 0
            bar, task = _progress(total, f"Downloading {dest.name}", progress)
            with bar:
                while chunk := resp.read(chunk_size):
                    out.write(chunk)
                    hasher.update(chunk)
                    sha256.update(chunk)
                    received += len(chunk)
                    bar.update(task, advance=len(chunk))
        if total is not None and received != total:
            raise DownloadError(f"Download of {url} was cut off: got {received} of {total} bytes. {manual_hint}")
        if md5 is not None and hasher.hexdigest() != md5.lower():
            raise DownloadError(
                f"MD5 mismatch for {url}: expected {md5.lower()}, got {hasher.hexdigest()}. "
                f"The file is corrupt, truncated or was changed upstream. {manual_hint}"
            )
        if sha256_prefix is not None and not sha256.hexdigest().startswith(sha256_prefix.lower()):
            raise DownloadError(
                f"SHA-256 mismatch for {url}: expected {sha256_prefix.lower()}..., got {sha256.hexdigest()[:16]}...; "
                f"the file was not kept. It is corrupt, truncated or not the published file. {manual_hint}"
            )
        os.replace(tmp, dest)
        return dest
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, urllib.error.HTTPError):
            e.close()  # release the error response's socket
        if isinstance(e, (DownloadError, KeyboardInterrupt, SystemExit)):
            raise
        raise DownloadError(f"Download of {url} failed: {e}. {manual_hint}") from e


def _check_zip_members(zf: zipfile.ZipFile, archive: Path) -> None:
    """Reject absolute paths, '..' components and symlinks before extracting anything."""
    for info in zf.infolist():
        parts = PurePosixPath(info.filename.replace("\\", "/")).parts
        if info.filename.startswith(("/", "\\")) or ":" in info.filename or ".." in parts:
            raise DownloadError(f"{archive}: unsafe path in zip member {info.filename!r}")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DownloadError(f"{archive}: refusing symlink zip member {info.filename!r}")


def _extract_to(archive: Path, target: Path) -> None:
    if tarfile.is_tarfile(archive):
        if not hasattr(tarfile, "data_filter"):
            raise DownloadError(
                "Safe tar extraction needs Python >= 3.10.12 / 3.11.4 (tarfile filter='data'). "
                f"Upgrade Python or extract {archive} manually."
            )
        with tarfile.open(archive, "r:*") as tf:
            tf.errorlevel = 1  # filter violations and OS errors raise
            tf.extractall(target, filter="data")
    elif zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            _check_zip_members(zf, archive)
            zf.extractall(target)
    else:
        raise DownloadError(f"{archive}: not a tar or zip archive")


def extract_archive(archive_path: str | Path, dest_dir: str | Path) -> list[Path]:
    """Safely extract a tar(.gz/.bz2/.xz) or zip into ``dest_dir``; return the new top-level paths.

    Extraction happens in ``dest_dir/.tmp-extract-*``; top-level entries are then
    moved with ``os.replace``. Existing entries are never overwritten, and on any
    failure nothing new is left in ``dest_dir``.
    """
    archive = Path(archive_path)
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-extract-", dir=dest))
    moved: list[tuple[Path, Path]] = []
    try:
        try:
            _extract_to(archive, tmp)
        except DownloadError:
            raise
        except Exception as e:  # tarfile/zipfile/gzip/zlib/lzma errors, OSError, filter violations
            raise DownloadError(f"Could not safely extract {archive}: {e}") from e
        entries = sorted(tmp.iterdir())
        clashes = [str(dest / p.name) for p in entries if os.path.lexists(dest / p.name)]
        if clashes:
            raise DownloadError(f"Refusing to overwrite existing {clashes} while extracting {archive}")
        for src in entries:
            os.replace(src, dest / src.name)
            moved.append((src, dest / src.name))
        return [target for _, target in moved]
    except BaseException:
        for src, target in reversed(moved):  # roll back a partially completed move
            os.replace(target, src)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def download_and_extract(
    url: str,
    data_dir: str | Path,
    md5: str | None,
    expected_dirname: str,
    progress: bool = True,
) -> Path:
    """Ensure ``data_dir/expected_dirname`` exists, downloading and extracting ``url`` if not.

    An existing folder is used as is. A pre-existing archive with the right MD5 is
    reused (and kept); a downloaded one is removed afterwards. On failure neither
    ``expected_dirname`` nor any partial file is left behind.
    """
    data_dir = Path(data_dir)
    target = data_dir / expected_dirname
    if target.exists():
        return target
    name = PurePosixPath(urllib.parse.urlparse(url).path).name or "download"
    archive = data_dir / name
    downloaded = False
    created: list[Path] = []
    try:
        if not (archive.is_file() and md5 is not None and md5sum(archive) == md5.lower()):
            download_url(url, archive, md5=md5, progress=progress)
            downloaded = True
        created = extract_archive(archive, data_dir)
        if not target.is_dir():
            raise DownloadError(
                f"{url}: archive did not contain the expected folder {expected_dirname!r} "
                f"(found {[p.name for p in created]})"
            )
        return target
    except BaseException:
        for path in created:
            _remove(path)
        raise
    finally:
        if downloaded:
            archive.unlink(missing_ok=True)
