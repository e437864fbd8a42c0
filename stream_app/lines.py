"""Input files: opening (plain or gzip, `-` for stdin), splitting into lines (SPEC §8), and the
errors reading them can raise.

Shared by the shells that read event files (replay, produce), so neither imports the other.
Decoding a line is `validation.decode_line` (the SPEC §8 wrapper, then SPEC §1).
"""

from __future__ import annotations

import gzip
import sys
import zlib
from collections.abc import Iterator
from typing import BinaryIO


class InputError(Exception):
    """A problem with an input as a whole (not with one line): clear message, non-zero exit."""


def iter_lines(stream: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """(physical line number from 1, line) for the lines that are not empty or white space only
    (SPEC §8); drops the newline, one trailing CR and a BOM on line 1. Splits on LF only."""
    for number, line in enumerate(stream, start=1):
        if line.endswith(b"\n"):
            line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
        if number == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        if not line.strip():
            continue
        yield number, line


#: what reading an events file can raise partway through: a truncated or corrupt gzip stream
#: (EOFError, zlib.error, gzip.BadGzipFile) or an I/O error
READ_ERRORS = (OSError, EOFError, zlib.error)


def read_error(path: str, exc: BaseException, after_line: int) -> InputError:
    """The InputError for one of READ_ERRORS raised after `after_line` lines were read."""
    where = f"after line {after_line}" if after_line else "at the start"
    if isinstance(exc, (EOFError, zlib.error, gzip.BadGzipFile)):
        return InputError(f"{path}: truncated or corrupt gzip data ({where})")
    return InputError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc} ({where})")


def open_events(path: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    try:
        with open(path, "rb") as probe:
            gz = probe.read(2) == b"\x1f\x8b"
        return gzip.open(path, "rb") if gz else open(path, "rb")  # type: ignore[return-value]
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
