"""MkDocs hook: let mkdocstrings (griffe) find the ``litvision`` package in a checkout of any name.

The repository root IS the package (pyproject.toml: ``package-dir = {"litvision" = "."}``).
griffe's static finder looks for a folder named ``litvision`` on its search paths, so it finds
the package only when the clone happens to be called ``litvision``; an editable install does not
help (setuptools maps ``litvision`` to the repo root and griffe searches that folder's parent),
and pointing griffe at the root itself would make it walk everything below it (``.venv/``,
``.git/``, ``data/``) as submodules. So this hook builds a temporary ``litvision/`` folder that
links exactly what the installed package holds - the top-level modules and the package folders
(those with an ``__init__.py``) - and gives it to the python handler as its only search path.
Static analysis then documents this checkout, never another installed copy.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority

REPO_ROOT = Path(__file__).resolve().parents[2]


def package_entries(root: Path) -> list[Path]:
    """What ``pip install`` puts into ``litvision/``: top-level modules and package folders."""
    return sorted(
        path
        for path in root.iterdir()
        if not path.name.startswith(".")
        and ((path.is_file() and path.suffix == ".py") or (path.is_dir() and (path / "__init__.py").is_file()))
    )


def link_package(root: Path, into: Path) -> Path:
    """``into/litvision/<entry>`` -> ``root/<entry>`` for every package entry; returns ``into``."""
    package = into / "litvision"
    package.mkdir(parents=True)
    for entry in package_entries(root):
        try:
            (package / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
        except OSError as err:  # e.g. Windows without the symlink privilege
            raise PluginError(f"docs/hooks/package_path.py: cannot link {entry} for mkdocstrings ({err})") from err
    return into


@event_priority(100)  # before mkdocstrings' own on_config, which creates the python handler
def on_config(config: MkDocsConfig) -> MkDocsConfig:
    folder = Path(tempfile.mkdtemp(prefix="litvision-docs-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    link_package(REPO_ROOT, folder)
    handlers = config.plugins["mkdocstrings"].config.handlers
    handlers.setdefault("python", {})["paths"] = [str(folder)]
    # the snippets include of BENCHMARKS.md (docs/benchmarks.md) reads from the repo top, wherever mkdocs runs
    config.mdx_configs.setdefault("pymdownx.snippets", {})["base_path"] = [str(REPO_ROOT)]
    return config
