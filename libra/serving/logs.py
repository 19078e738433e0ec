"""Logging for every long-running process (router, worker, serverless instance): one setup, a JSON
option, and a rate-limited way to log swallowed exceptions.

Why rate-limited: a loop that outlives its failures (the controller's tick, a heartbeat, a
keep-warm) can fail every second for an hour while Redis is down; one line with the traceback per
cause per interval tells the operator what broke without filling the disk. Suppressed repeats are
counted and reported on the next line that gets through.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlsplit

LogFormat = Literal["text", "json"]

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"
# LogRecord attributes that are not user-supplied `extra` fields
# ... and uvicorn's ANSI-coloured copy of its message
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, pid, message, any `extra` fields, and the
    traceback as one string (so a log shipper keeps it with its line)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3), "level": record.levelname, "logger": record.name,
            "pid": record.process, "message": record.getMessage()}
        out.update({k: v for k, v in vars(record).items()
                    if k not in _RESERVED and not k.startswith("_")})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def redact_url(url: str) -> str:
    """`url` without user and password, for a start line (a Redis URL may carry its AUTH)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


def setup_logging(level: str | int = "INFO", fmt: LogFormat = "text") -> None:
    """Configure the root logger of this process (stderr). Idempotent: replaces our handler."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_libra", False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._libra = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)


class RateLimitedLog:
    """Log an exception with its traceback at most once per `interval_s` per key.

    `key` names the failing operation ("control tick", "redis heartbeat"); repeats inside the
    interval are counted and the count rides on the next line logged for that key."""

    def __init__(self, logger: logging.Logger, interval_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def failure(self, key: str, message: str, *args: object, level: int = logging.ERROR,
                exc_info: bool = True) -> bool:
        """Call inside an `except` block; returns whether a line was written. `exc_info=False`
        for a refusal that raised nothing (a bad API key, a rate limit): no traceback."""
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now
            repeats = self._suppressed.pop(key, 0)
        if repeats:
            message += f" ({repeats} more since the last report)"
        self.logger.log(level, message, *args, exc_info=exc_info, extra={"failure": key})
        return True
