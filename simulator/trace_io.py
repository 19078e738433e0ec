"""Opening trace files: plain or gzip'd text, read a line at a time, errors naming the file.

A gzip'd file is recognised by its first two bytes (the gzip magic ``1f 8b``), not its name, so a
``.gz`` left unnamed or a ``.txt`` that was compressed both read. Lines are streamed: nothing here
holds more than one line of the file, so the readers built on it keep memory flat in the trace's
length.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from simulator.errors import TraceFormatError

__all__ = ["GZIP_MAGIC", "is_gzip", "numbered_lines", "open_text", "reading"]

GZIP_MAGIC = b"\x1f\x8b"


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turn the OS's (and gzip's) reasons for not reading a file into a TraceFormatError."""
    try:
        yield
    except FileNotFoundError:
        raise TraceFormatError(str(path), None, "no such file; check the path") from None
    except IsADirectoryError:
        raise TraceFormatError(str(path), None, "is a directory; expected a trace file") from None
    except PermissionError:
        raise TraceFormatError(str(path), None, "cannot read: permission denied") from None
    except UnicodeDecodeError as exc:
        raise TraceFormatError(
            str(path), None,
            f"not UTF-8 text (byte {exc.start}); is it compressed in a format other than gzip? "
            "unpack it first",
        ) from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise TraceFormatError(str(path), None, f"gzip data is damaged or cut short ({exc}); "
                               "check the download") from None


def is_gzip(path: Path) -> bool:
    """Whether the file starts with the gzip magic bytes."""
    with reading(path), path.open("rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def open_text(path: Path) -> IO[str]:
    """The file as UTF-8 text (a BOM dropped), gunzipped on the fly when it is gzip'd.

    Universal newlines are off (``newline=""``) so the csv module sees quoted line breaks as
    they are; callers strip ``\\r\\n`` themselves.
    """
    with reading(path):
        if is_gzip(path):
            return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
        return path.open(encoding="utf-8-sig", newline="")


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its end) for every line, streamed; OS, decoding and
    gzip errors become TraceFormatErrors naming the file."""
    with reading(path):
        handle = open_text(path)
        with handle:
            for line_no, line in enumerate(handle, start=1):
                yield line_no, line.rstrip("\r\n")
