"""Bad input is reported as one line on stderr, not as a traceback.

A :class:`~litvision.utils.errors.UserError` (raised directly, or wrapped, e.g. by Hydra's
``InstantiationException`` when a constructor refuses its arguments) means the user can fix
it with an override: in a single run (Hydra's RUN mode) it is printed as one line and the
process exits with status 1. In a sweep (MULTIRUN) it is re-raised so that Hydra records
the job as failed (the sweep summary marks it FAILED) and the sweep goes on.
``HYDRA_FULL_ERROR=1`` re-raises it too, so the full traceback is still one variable away.
The line also goes to the run's log file (``train.log``), so the log says how the run ended.
Anything that is not a UserError is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from litvision.utils.errors import UserError
from litvision.utils.names import escape_surrogates


def find_user_error(error: BaseException | None) -> UserError | None:
    """``error`` itself or the first UserError in its ``__cause__``/``__context__`` chain."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UserError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def one_line(error: UserError) -> str:
    """``ConfigError: <message>`` on one line (a multi-line message is joined)."""
    text = str(error)
    # torch re-raises an error from a DataLoader worker with the worker's traceback as its
    # message ("Caught DataError in DataLoader worker process 0. Original Traceback ...
    # litvision.utils.errors.DataError: <message>"): keep the original message only
    marker = f"{type(error).__name__}: "
    if text.startswith(f"Caught {type(error).__name__} in DataLoader worker") and marker in text:
        text = text[text.rfind(marker) + len(marker) :]
    message = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return escape_surrogates(f"{type(error).__name__}: {message}")  # a file name's undecodable bytes as \xNN


def record_in_log_files(line: str) -> None:
    """Write ``line`` to the log *files* only (the console gets it once, on stderr).

    Best effort: on a full disk the log file may not take it either, and logging's own
    "--- Logging error ---" traceback must not replace the one line.
    """
    record = logging.LogRecord("litvision", logging.ERROR, __file__, 0, line, None, None)
    raise_exceptions, logging.raiseExceptions = logging.raiseExceptions, False
    try:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler):
                handler.handle(record)  # emit() flushes, and reports its own errors via handleError
    finally:
        logging.raiseExceptions = raise_exceptions


@contextmanager
def user_errors_as_one_line(single_run: bool) -> Iterator[None]:
    """In a single run, turn a UserError into one stderr line and exit status 1 (see module doc)."""
    try:
        yield
    except Exception as error:
        user_error = find_user_error(error)
        if user_error is None or not single_run or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        line = one_line(user_error)
        record_in_log_files(line)
        print(line, file=sys.stderr, flush=True)
        sys.exit(1)
