"""One version: the installed metadata says what ``litvision.__version__`` says."""

from __future__ import annotations

import importlib.metadata

import litvision


def test_installed_metadata_matches_package_version() -> None:
    assert importlib.metadata.version("litvision") == litvision.__version__
