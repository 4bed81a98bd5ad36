"""Checkpoint file IO both sides call: the atomic save and the safe load (``weights_only=True`` always).

Kept low, as Lightning keeps ``_atomic_save``/``_load`` in ``fabric/utilities/cloud_io.py``: the
CheckpointIO plugin (:mod:`litvision.plugins.atomic_checkpoint`) and the model loader
(:mod:`litvision.lightning_modules.checkpoints`) both call down to it, never to each other.
A checkpoint someone shared must not be able to run code when it is opened, which is why every
load here is ``torch.load(weights_only=True)``; what a loaded checkpoint may *build* is decided
one level up (:mod:`litvision.lightning_modules.checkpoint_targets`).
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from litvision.utils.atomic_write import write_atomic
from litvision.utils.errors import DataError, MissingDataError

# how torch's weights_only unpickler names what it refused to load
UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def atomic_torch_save(obj: Any, path: str | os.PathLike, then: str = "rerun") -> None:
    """``torch.save`` to ``path`` via a same-folder temp file, fsync and rename."""
    write_atomic(path, lambda handle: torch.save(obj, handle), then=then)


def load_checkpoint(path: str | Path, map_location: Any = "cpu", key: str = "ckpt_path") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with one-line errors for missing, unreadable or unsafe files.

    ``key``: the option that named the file, for the messages (e.g. ``model.backbone.weights``)."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"{key}={path} does not exist (pass {key}=<run dir>/checkpoints/<file>.ckpt)")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if UNSAFE_GLOBAL.search(str(err)) is None:  # not a refusal: the file is damaged or not a checkpoint
            raise DataError(f"{key}={path} is not a readable checkpoint ({_what_it_is(path)})") from err
        raise DataError(
            f"{key}={path} holds pickled Python objects ({_unsafe_global(err)}), so loading it could run code: "
            f'refused. If you trust where it came from, convert it once: python -c "from '
            f"litvision.lightning_modules.checkpoints import convert_trusted_checkpoint as c; "
            f"c('{path}', '{converted_name(path)}')\" and use the new file"
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        raise DataError(f"{key}={path} is not a readable checkpoint ({_what_it_is(path)}): {first_line(err)}") from err
    except Exception as err:
        raise DataError(f"{key}={path} is not a readable checkpoint ({_what_it_is(path)})") from err
    if not isinstance(checkpoint, dict):
        raise DataError(f"{key}={path} holds a {type(checkpoint).__name__}, not a Lightning checkpoint")
    return checkpoint


def converted_name(path: str | Path) -> str:
    path = Path(path)
    return str(path.with_name(f"{path.stem}.plain{path.suffix}"))


def _unsafe_global(err: BaseException) -> str:
    """What torch refused, e.g. "functools.partial", from its long weights_only message."""
    found = UNSAFE_GLOBAL.search(str(err))
    return f"e.g. {found.group(1)}" if found else "not tensors and plain values"


def _what_it_is(path: Path) -> str:
    """ "a text file starting 'epoch: 3'" for a file that is text; else "truncated or not a torch file"."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(256)
        text = head.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return "truncated or not a torch file"
    if not text or not all(char.isprintable() or char in "\n\r\t" for char in text):
        return "truncated or not a torch file"
    first = text.strip().splitlines()[0][:40] if text.strip() else ""
    return f"it is a text file, starting {first!r}; pass the .ckpt file a run wrote"


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
