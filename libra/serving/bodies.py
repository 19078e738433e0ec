"""What a request body may hold, read cheaply and told back clearly.

- JSON is parsed with limits before pydantic sees it: nesting deeper than `MAX_JSON_DEPTH` and
  integers longer than `MAX_JSON_INT_DIGITS` digits are refused with a 422 naming the limit.
  Python's own parser would raise `RecursionError` (about 1,000 deep) or, on Python 3.11+,
  `ValueError` for an integer over 4,300 digits: both became plain 500s. Depth is measured on the
  raw bytes first (brackets outside strings, in C and numpy), so a 25 MiB body of `[` costs
  milliseconds and no recursion.
- Base64 is read liberally (Postel): a `data:<type>;base64,` prefix, whitespace anywhere (MIME
  wraps at 76 columns), the URL-safe alphabet and missing padding are accepted; anything else
  outside the alphabet is refused, naming the first bad character and where it is.
- `scrub_paths` takes server file paths out of a message before a client reads it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

import numpy as np

MAX_JSON_DEPTH = 16
"""Deepest nesting of arrays/objects a JSON body may have; a request needs 1."""
MAX_JSON_INT_DIGITS = 64
"""Longest integer literal (in digits) a JSON body may hold; a request needs none."""

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = b"[]{}"
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _BRACKETS)
_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # opens +1, closes -1 (as int8)
_CHUNK = 1 << 20

_DATA_URI = re.compile(r"data:([^,;]*)((?:;[^,;]*)*),", re.IGNORECASE)
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/=]")
_URL_SAFE = str.maketrans("-_", "+/")


class BodyError(ValueError):
    """A body the client must fix: HTTP `status`, a stable `code`, a sentence to read."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def json_depth(body: bytes) -> int:
    """How deep arrays and objects nest in `body` (0 for a scalar), counting brackets outside
    strings. Meant for bodies about to be parsed: on invalid JSON it still gives a number."""
    skeleton = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    steps = np.frombuffer(skeleton.translate(_STEP), dtype=np.int8)
    deepest, level = 0, 0
    for start in range(0, steps.size, _CHUNK):  # chunks: a body of brackets needs no 100 MB
        run = np.cumsum(steps[start:start + _CHUNK], dtype=np.int64) + level
        deepest = max(deepest, int(run.max()))
        level = int(run[-1])
    return deepest


class _IntTooLongError(ValueError):
    def __init__(self, digits: int) -> None:
        super().__init__(digits)
        self.digits = digits


def _parse_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_JSON_INT_DIGITS:
        raise _IntTooLongError(digits)
    return int(text)


def parse_json(body: bytes) -> Any:
    """The JSON value in `body`, or `BodyError` 422: `json_too_deep`, `json_int_too_long`,
    `bad_json` (not JSON at all)."""
    openers = body.count(b"[") + body.count(b"{")  # memchr speed; base64 has none
    depth = json_depth(body) if openers > MAX_JSON_DEPTH else 0
    if depth > MAX_JSON_DEPTH:
        raise BodyError(422, "json_too_deep", f"the JSON body nests {depth} levels deep; the "
                        f"limit is {MAX_JSON_DEPTH} (a request is one flat object: "
                        f'{{"text": ..., "audio": ..., "video": ...}})')
    try:
        return json.loads(body, parse_int=_parse_int)
    except _IntTooLongError as exc:
        raise BodyError(422, "json_int_too_long", f"the JSON body holds an integer of "
                        f"{exc.digits} digits; the limit is {MAX_JSON_INT_DIGITS} (no field of a "
                        f"request is a number)") from None
    except RecursionError:  # the depth check should have caught it; never a 500
        raise BodyError(422, "json_too_deep", f"the JSON body nests too deep; the limit is "
                        f"{MAX_JSON_DEPTH}") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise BodyError(422, "bad_json", f"the body is not valid JSON ({exc})") from None


def decode_base64(field: str, value: str) -> bytes:
    """`value`'s bytes: plain base64, or with a `data:` prefix, whitespace, the URL-safe alphabet
    or no padding; `BodyError` 422 `bad_base64` names what is wrong."""
    text = value
    prefix = _DATA_URI.match(text, 0, 512) if text[:5].lower() == "data:" else None
    if prefix is not None:
        if ";base64" not in prefix.group(2).lower():
            raise BodyError(422, "bad_base64", f"{field} is a data: URI without ';base64': send "
                            f"data:<type>;base64,<base64> or the base64 alone")
        text = text[prefix.end():]
    try:
        return base64.b64decode(text, validate=True)  # the common case, at C speed
    except (binascii.Error, ValueError):
        pass
    compact = "".join(text.split()).translate(_URL_SAFE)
    bad = _NOT_BASE64.search(compact)
    if bad is not None:
        shown = text.strip()[:12]
        raise BodyError(422, "bad_base64", f"{field} is not valid base64: {bad.group()!r} at "
                        f"character {bad.start()} (after removing whitespace) of "
                        f"{shown!r}...; send standard base64, optionally as a data: URI")
    unpadded = compact.rstrip("=")
    if len(unpadded) % 4 == 1:
        raise BodyError(422, "bad_base64", f"{field} is not valid base64: {len(unpadded)} "
                        f"characters cannot be a whole number of bytes (cut short?)")
    try:
        return base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BodyError(422, "bad_base64", f"{field} is not valid base64 ({exc})") from None


_PATH = re.compile(r"(?<![\w.:/])(?:/[\w.@+-]+){2,}/?|[A-Za-z]:\\(?:[\w.@+ -]+\\)+[\w.@+-]*")


def scrub_paths(message: str) -> str:
    """`message` with server file paths (absolute POSIX or Windows paths of two or more
    components) replaced by their last component: what a client needs, nothing about our disk."""

    def last_part(match: re.Match[str]) -> str:
        parts = [p for p in re.split(r"[/\\]", match.group()) if p]
        return f"<path>/{parts[-1]}" if parts else "<path>"

    return _PATH.sub(last_part, message)
