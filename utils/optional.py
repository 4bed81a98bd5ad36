"""Optional dependencies (the install extras): import one, or stop with the pip line that adds it."""

from __future__ import annotations

import importlib
from types import ModuleType

from litvision.utils.errors import ConfigError


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module``; when it is missing, one line saying which extra installs it.

    The audit and shard features pull packages (faiss, cleanlab, scikit-learn, webdataset)
    that a plain training install does not need, so they live in extras.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"{purpose} needs the `{extra}` extra ({e}): pip install 'litvision[{extra}]'") from e
