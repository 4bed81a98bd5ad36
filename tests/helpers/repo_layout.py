"""The repository's folders as the docs describe them: package folders (subpackages included) and the rest."""

from __future__ import annotations

from pathlib import Path

# top-level folders that are not packages but belong in the Architecture table
NON_PACKAGE_FOLDERS = ("tests", "bench", "docs")


def is_package(folder: Path) -> bool:
    return (folder / "__init__.py").is_file()


def documented_folders(root: Path) -> list[Path]:
    """Every package folder (a folder with ``__init__.py``, at any depth below another package folder
    or below tests/) plus the top-level non-package folders: the rows of docs/architecture.md's table.
    Hidden folders (``.venv/``, ``.git/``) and non-package ones (``data/``, ``logs/``) are not walked."""
    tops = [
        path
        for path in sorted(root.iterdir())
        if path.is_dir() and not path.name.startswith(".") and (is_package(path) or path.name in NON_PACKAGE_FOLDERS)
    ]
    found, stack = [], list(reversed(tops))
    while stack:
        folder = stack.pop()
        found.append(folder)
        stack += [sub for sub in sorted(folder.iterdir(), reverse=True) if sub.is_dir() and is_package(sub)]
    return found


def package_folders(root: Path) -> list[Path]:
    """The folders with an ``__init__.py``, the repository root (the ``litvision`` package itself) first."""
    return [root, *(folder for folder in documented_folders(root) if is_package(folder))]
