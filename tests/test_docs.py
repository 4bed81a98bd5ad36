"""The documentation site builds clean, and every package folder says what it holds.

- ``mkdocs build --strict`` (mkdocs.yml) from a copy of this checkout in a folder *not* named
  ``litvision``, as CI's clone is: no warning (broken link or anchor, page left out of the nav,
  docstring the API reference cannot parse), the API reference documents that copy (griffe found
  the package through docs/hooks/package_path.py, not some installed copy), the configuration
  reference lists every file of ``conf/``, and the benchmarks page embeds BENCHMARKS.md.
- Every package folder's ``__init__.py`` has a docstring (the one-line "what lives here").
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.repo_layout import package_folders
from tests.helpers.run_helpers import REPO_ROOT

pytest.importorskip("mkdocs", reason="the docs tooling (pip install -e '.[dev]') is not installed")
pytest.importorskip(
    "mkdocstrings_handlers.python", reason="the docs tooling (pip install -e '.[dev]') is not installed"
)

MARKER = "docs-build-marker-7f3a"  # put into the copy's docstring: the API page must show it


def checkout_files(root: Path) -> list[str]:
    """The files of this checkout (tracked or new, not ignored); every file when git cannot say."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        return [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".git" not in p.parts]
    return [name for name in out.split("\0") if name and (root / name).is_file()]


@pytest.fixture(scope="module")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("docs") / "checkout"  # any name but litvision
    for name in checkout_files(REPO_ROOT):
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, copy / name)
    module = copy / "datamodules" / "cifar10.py"
    module.write_text(module.read_text().replace('"""', f'"""{MARKER} ', 1))
    site = copy.parent / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    env.pop("PYTHONPATH", None)  # griffe must find the copy through the hook, not a path to this checkout
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(copy / "mkdocs.yml"), "-d", str(site)],
        cwd=copy.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return site


def test_mkdocs_build_strict_documents_this_checkout(built_site: Path) -> None:
    api = (built_site / "api" / "datamodules" / "index.html").read_text()
    assert MARKER in api, "the API reference does not show the copy's docstrings: griffe documented another copy"
    assert "CIFAR10DataModule" in api
    assert "ImageClassifier" in (built_site / "api" / "lightning-modules" / "index.html").read_text()
    assert "Benchmarks" in (built_site / "benchmarks" / "index.html").read_text()
    first_heading = next(
        line for line in (REPO_ROOT / "BENCHMARKS.md").read_text().splitlines() if line.startswith("## ")
    )
    assert first_heading[3:].split("(")[0].strip() in (built_site / "benchmarks" / "index.html").read_text()


def test_configuration_reference_lists_every_conf_file(built_site: Path) -> None:
    page = (built_site / "configuration-reference" / "index.html").read_text()
    conf = REPO_ROOT / "conf"
    for path in sorted(conf.rglob("*.yaml")):
        relative = path.relative_to(conf).as_posix()
        assert f"conf/{relative}" in page, f"conf/{relative} is missing from the configuration reference"
    internal = list(conf.rglob("_*.yaml"))
    assert internal and page.count("(internal)") >= len(internal)


def test_every_package_folder_has_a_docstring() -> None:
    """Each folder's ``__init__.py`` says in a docstring what lives there (one kind of thing per folder)."""
    missing = [
        str((folder / "__init__.py").relative_to(REPO_ROOT))
        for folder in package_folders(REPO_ROOT)
        if not (ast.get_docstring(ast.parse((folder / "__init__.py").read_text())) or "").strip()
    ]
    assert not missing, f"package folders whose __init__.py has no docstring saying what lives there: {missing}"


def test_no_python_folder_inside_the_package_lacks_an_init() -> None:
    """A folder of modules without ``__init__.py`` would be a namespace package: not installed, not documented."""
    bare = [
        str(sub.relative_to(REPO_ROOT))
        for folder in package_folders(REPO_ROOT)
        if folder != REPO_ROOT
        for sub in folder.iterdir()
        if sub.is_dir() and sub.name != "__pycache__" and any(sub.glob("*.py")) and not (sub / "__init__.py").is_file()
    ]
    assert not bare, f"folders of Python modules without an __init__.py: {bare}"
