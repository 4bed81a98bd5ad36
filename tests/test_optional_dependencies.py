"""A feature whose extra is not installed stops with one line naming the extra to install."""

from __future__ import annotations

import pytest

from litvision.utils.errors import ConfigError
from litvision.utils.optional import require


def test_missing_module_names_the_extra_and_the_pip_line() -> None:
    with pytest.raises(ConfigError, match=r"the audit's search needs the `audit` extra .*pip install 'litvision\[audit\]'"):
        require("litvision_no_such_module", "audit", "the audit's search")


def test_present_module_is_returned() -> None:
    assert require("json", "audit", "x").dumps([1]) == "[1]"
