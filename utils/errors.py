"""Errors that mean "the user asked for something wrong": entry scripts print them as one line.

Raise these (not bare ValueError) for bad configs and bad data the user can fix; the
message must say what was wrong and the override or action that fixes it. They subclass
the builtin types, so ``except ValueError`` / ``except FileNotFoundError`` keep working.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Base: a problem with the user's config, data or files, not with litvision."""


class ConfigError(UserError, ValueError):
    """A config value is invalid (wrong range, wrong type, incompatible options)."""


class DataError(UserError, ValueError):
    """The data on disk is not what it must be (bad labels, corrupt file, wrong layout)."""


class MissingDataError(UserError, FileNotFoundError):
    """A file or folder the run needs does not exist."""


class DiskFullError(UserError, OSError):
    """A write failed because its filesystem is full (ENOSPC) or over quota (EDQUOT).

    An ``OSError`` still (``except OSError`` keeps working), but reported as one line naming the
    file, instead of the traceback of whatever library was writing (torch.save, numpy, json).
    """
