#!/usr/bin/env python3
"""Type-check the ``litvision`` package with mypy (``python .ci/mypy.py [mypy options]``).

The repository root IS the package (pyproject.toml: ``package-dir = {"litvision" = "."}``) and a
clone may have any name, so ``mypy -p litvision`` cannot find it from the checkout alone (an
editable install does not help: mypy does not run setuptools' import hooks). This links exactly
what ``pip install`` puts into ``litvision/`` into a folder of its own - the same links the docs
build makes (docs/hooks/package_path.py) - and checks that; tests/, bench/ and docs/ are not in
the package, so they are not checked. Settings: ``[tool.mypy]`` in pyproject.toml.

The folder sits at one place inside mypy's cache (``.mypy_cache/``, git-ignored): mypy caches
each module's errors with its path, so a new temporary folder per run would print stale paths.
Error paths are printed relative to the checkout, as if mypy had run on it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINKS = ROOT / ".mypy_cache" / "package"
sys.path.insert(0, str(ROOT / "docs" / "hooks"))

from package_path import link_package  # noqa: E402  (found through the path set just above)


def main(argv: list[str]) -> int:
    shutil.rmtree(LINKS, ignore_errors=True)  # entries may have come or gone since the last run
    link_package(ROOT, LINKS)
    command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "-p", "litvision"]
    try:
        done = subprocess.run(
            [*command, *argv],
            cwd=ROOT,
            env={**os.environ, "MYPYPATH": str(LINKS)},
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        shutil.rmtree(LINKS, ignore_errors=True)  # links back into the checkout: nothing should walk them
    prefix = f"{(LINKS / 'litvision').relative_to(ROOT)}{os.sep}"
    for stream, text in ((sys.stdout, done.stdout), (sys.stderr, done.stderr)):
        stream.write(text.replace(prefix, ""))
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
