"""Locate CIFAR-10 on disk, downloading the official archive only when it is absent.

Kept apart from ``cifar_pickle`` (pure file format) and ``utils/download`` (generic
transport) so neither depends on the other.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from litvision.datamodules.readers.cifar_pickle import (
    CIFAR10_DIRNAME,
    expected_layout,
    missing_files,
    resolve_cifar_dir,
)
from litvision.utils.download import DownloadError, download_and_extract
from litvision.utils.errors import MissingDataError

__all__ = ["CIFAR10_MD5", "CIFAR10_URL", "ensure_cifar10"]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"


def ensure_cifar10(
    data_dir: str | Path,
    download: bool = True,
    url: str = CIFAR10_URL,
    md5: str | None = CIFAR10_MD5,
    progress: bool = True,
) -> Path:
    """Return the ``cifar-10-batches-py`` folder under ``data_dir``, downloading it if allowed.

    An existing, complete folder is used as is, without an MD5 check: user-made
    subsets are legitimate. A folder that exists but lacks files is an error
    (we never download over a user's data).
    """
    data_dir = Path(data_dir).expanduser()
    cdir = resolve_cifar_dir(data_dir)
    missing = missing_files(data_dir)
    if not missing:
        return cdir
    if cdir.exists():
        raise MissingDataError(
            f"{cdir} exists but is incomplete: missing {missing}. Expected layout: "
            f"{expected_layout(data_dir)}. Fix or remove that folder."
        )
    if not download:
        raise MissingDataError(
            f"CIFAR-10 not found under {data_dir} and downloading is disabled. "
            f"Expected layout: {expected_layout(data_dir)}, or enable downloading."
        )
    try:
        download_and_extract(url, data_dir, md5, CIFAR10_DIRNAME, progress=progress)
    except DownloadError as e:
        # one line (a MissingDataError, launch/user_errors.py): the data is missing and the fix is
        # to point at a copy; the network's own words, without download_url's generic hint
        reason = e.__cause__ or e
        raise MissingDataError(
            f"CIFAR-10 is not in dataset.data_dir={data_dir} and its download failed ({reason}): "
            f"set dataset.data_dir=PATH where PATH/{CIFAR10_DIRNAME}/ exists, or fetch {url} "
            f"(md5 {md5}) yourself and extract it into PATH"
        ) from e
    still_missing = missing_files(data_dir)
    if still_missing:
        shutil.rmtree(resolve_cifar_dir(data_dir), ignore_errors=True)  # we just created it
        raise DownloadError(
            f"Downloaded archive from {url} lacks {still_missing}. Expected layout: {expected_layout(data_dir)}."
        )
    return resolve_cifar_dir(data_dir)
