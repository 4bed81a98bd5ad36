r"""How sample ids and class names are written as text, and read back to the same file.

Ids and class names come from file and folder names, and a file name is bytes: the bytes that
are not UTF-8 (old archives, other locales) reach Python as lone surrogates (``os.fsdecode``,
``surrogateescape``), which no UTF-8 writer accepts; names may also hold a tab, a newline, a
backslash, a leading ``#`` or spaces. Every file litvision writes (CSV, JSON, id lists, W&B
tables and keys, logs, metric names) therefore holds ``escape_name(name)``, one rule for all:

- ``\\`` is a backslash;
- ``\xNN`` is the byte NN of the name: NN in 80..ff is a byte that is not part of valid UTF-8,
  NN below 80 the ASCII character (control characters such as tab ``\x09`` and newline ``\x0a``,
  a leading ``#`` or space);
- ``\uXXXX``: the character U+XXXX (other control characters, line/paragraph separators, a
  surrogate that is not an undecodable byte, whitespace at the start or end of the name);
- every other character is itself (UTF-8). There are no short forms such as ``\n``: a pasted
  Windows path (``train\n01440764\x.JPEG``) is refused, not read as a name with a newline.

Escaped, a name is valid UTF-8 on one line, has no surrounding whitespace and does not start with
``#``: the same text is a CSV cell, a JSON string and an id-list line. ``unescape_name`` is the
exact inverse (``unescape_name(escape_name(s)) == s`` for every ``str``), and
``name_bytes(written)`` gives the file name's bytes: ``os.path.join(data_dir, name_bytes(id))`` is
the file. It is the inverse of Python's ``backslashreplace`` for undecodable bytes.

Free text that may carry a file name (log lines, error messages, report.md) gets the same
``\xNN`` for undecodable bytes (:func:`escape_surrogates`; log streams use the codec error handler
``litvision-names``) but no other escaping: it is read by people, not parsed back.

CSV cells get one more, CSV-only step (:func:`csv_cell`, OWASP's advice against formula injection):
a text cell that begins with ``=``, ``+``, ``-``, ``@``, tab, carriage return, NUL or ``'`` gets a
``'`` in front, so a spreadsheet shows it as text instead of running it; numbers (and text that is a
plain decimal number, e.g. ``-0.5``) are left alone. :func:`read_csv_cell` drops that quote and
unescapes.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
from collections.abc import Iterable
from typing import Any

from litvision.utils.errors import DataError

# characters escaped wherever they are: backslash, C0/DEL/C1 controls, line/paragraph separators, surrogates
_ALWAYS = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_SEQUENCE = re.compile(r"\\(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|(.)|$)", re.DOTALL)
_SURROGATE = re.compile("[\ud800-\udfff]")
_UNDECODABLE = range(0xDC80, 0xDD00)  # what surrogateescape makes of the bytes 0x80..0xff

# OWASP CSV injection: cells starting with these run as formulas in spreadsheets (plus NUL, per ASVS 1.2.10,
# and the quote itself, so that the added quote can always be told from a name's own)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\0", "'")
_PLAIN_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def _escape_char(char: str) -> str:
    if char == "\\":
        return "\\\\"
    code = ord(char)
    if code in _UNDECODABLE:
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x80:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def escape_name(name: str) -> str:
    """``name`` as litvision writes it (see the module docstring); plain names come back unchanged."""
    name = str(name)
    edges = bool(name) and (name[0] == "#" or name[0].isspace() or name[-1].isspace())
    if not edges and _ALWAYS.search(name) is None:
        return name
    last = len(name) - 1
    return "".join(
        _escape_char(char)
        if _ALWAYS.match(char) or (i == 0 and (char == "#" or char.isspace())) or (i == last and char.isspace())
        else char
        for i, char in enumerate(name)
    )


def unescape_name(text: str) -> str:
    """The name ``text`` was written for; a DataError for a backslash that starts no escape."""
    if "\\" not in text:
        return text

    def one(match: re.Match) -> str:
        byte, short, wide, other = match.group(1), match.group(2), match.group(3), match.group(4)
        if byte is not None:
            value = int(byte, 16)
            return chr(value) if value < 0x80 else chr(0xDC00 + value)
        if short is not None or wide is not None:
            value = int(short or wide, 16)
            if value > 0x10FFFF:
                raise DataError(f"{text!r}: \\U{wide} is beyond U+10FFFF")
            return chr(value)
        if other == "\\":
            return "\\"
        where = "a trailing backslash" if other is None else f"'\\{other}'"
        raise DataError(
            f"{text!r}: {where} starts no escape; a backslash in a name is written \\\\ "
            "(other escapes: \\xNN, \\uXXXX), and ids use '/' separators"
        )

    return _SEQUENCE.sub(one, text)


def escape_surrogates(text: str) -> str:
    """Free text (a log line, an error message) with its undecodable bytes as ``\\xNN``, the rest untouched."""
    return _SURROGATE.sub(lambda match: _escape_char(match.group()), text)


def _escape_unencodable(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler ``litvision-names``: what a text stream cannot encode is written escaped."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    return "".join(_escape_char(char) for char in error.object[error.start : error.end]), error.end


UNENCODABLE_ERRORS = "litvision-names"
codecs.register_error(UNENCODABLE_ERRORS, _escape_unencodable)


def name_bytes(text: str) -> bytes:
    """The file name (bytes) a written id or name stands for."""
    name = unescape_name(text)
    try:
        return os.fsencode(name)
    except UnicodeEncodeError as e:
        raise DataError(f"{text!r} is no file name: {name[e.start]!r} cannot be encoded") from None


class Escaped(str):
    """Text already in the written form (e.g. escaped names joined by a separator): :func:`csv_cell`
    only guards it against formulas."""


def csv_cell(value: Any) -> Any:
    """A cell as litvision's CSV files hold it: text escaped and guarded against formulas, numbers as they are."""
    if not isinstance(value, str):
        return value
    text = str(value) if isinstance(value, Escaped) else escape_name(value)
    if text.startswith(_FORMULA_START) and _PLAIN_NUMBER.fullmatch(text) is None:
        return "'" + text
    return text


def read_csv_cell(cell: str) -> str:
    """The text a cell of one of litvision's CSV files was written for (inverse of :func:`csv_cell`)."""
    return unescape_name(cell.removeprefix("'"))


def csv_text(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    """A whole CSV file (``\\n`` line ends), every cell through :func:`csv_cell`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([csv_cell(name) for name in header])
    writer.writerows([csv_cell(value) for value in row] for row in rows)
    return buffer.getvalue()
