"""Published weights downloaded once into a cache, checked against the SHA-256 prefix their name carries.

Cache: ``~/.cache/litvision/weights`` (``$LITVISION_CACHE/weights`` when ``LITVISION_CACHE`` is
set; ``$XDG_CACHE_HOME/litvision/weights`` when only that is, like the file index cache). The
download goes to a temporary file in the cache folder and is renamed into place only once complete and matching its hash (:func:`litvision.utils.download.download_url`), so a cut-off
or tampered download is never kept and never mistaken for the real file. A cached file is
checked again before it is used; one that no longer matches is removed and fetched again.

``LITVISION_WEIGHTS_URL_BASE`` replaces the download server (a mirror, or a server on
127.0.0.1 in the tests): the file name and its hash check stay the catalog's.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from litvision.lightning_modules.weights.catalog import TORCHVISION_URL_BASE, PublishedWeights
from litvision.utils.download import DownloadError, download_url, sha256sum
from litvision.utils.errors import DataError

log = logging.getLogger(__name__)

CACHE_ENV = "LITVISION_CACHE"
URL_BASE_ENV = "LITVISION_WEIGHTS_URL_BASE"


def cache_dir() -> Path:
    """``$LITVISION_CACHE/weights``, else ``$XDG_CACHE_HOME/litvision/weights`` (``~/.cache/litvision/weights``)."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser() / "weights"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "litvision" / "weights"


def url_of(weights: PublishedWeights) -> str:
    base = os.environ.get(URL_BASE_ENV) or TORCHVISION_URL_BASE
    return base.rstrip("/") + "/" + weights.file_name


def cached_path(weights: PublishedWeights) -> Path:
    return cache_dir() / weights.file_name


def fetch(weights: PublishedWeights, progress: bool = True) -> Path:
    """The local file of ``weights``: from the cache, else downloaded (with a progress bar) and checked."""
    path = cached_path(weights)
    if path.is_file():
        if sha256sum(path).startswith(weights.sha256_prefix):
            return path
        log.warning(
            "%s: the cached %s does not match its SHA-256 prefix %s: fetching it again",
            weights.name,
            path,
            weights.sha256_prefix,
        )
        path.unlink(missing_ok=True)
    url = url_of(weights)
    log.info("%s: downloading %s into %s", weights.name, url, path.parent)
    hint = (
        f"Or download {weights.file_name} yourself and pass model.backbone.weights=<the file> "
        f"(or put it in {path.parent}; {CACHE_ENV} moves the cache)"
    )
    try:
        download_url(url, path, sha256_prefix=weights.sha256_prefix, progress=progress, manual_hint=hint)
    except DownloadError as err:
        raise DataError(f"model.backbone.weights={weights.name}: {err}") from err
    return path
