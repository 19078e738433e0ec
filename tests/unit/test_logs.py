"""Logging helpers: JSON lines carry the traceback; repeated failures are rate-limited per key."""

from __future__ import annotations

import json
import logging

import pytest

from libra.serving.logs import JsonFormatter, RateLimitedLog


class Clock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def test_rate_limited_log_writes_once_per_interval_per_key_and_counts_repeats(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = RateLimitedLog(logging.getLogger("t"), interval_s=10, clock=clock)
    written = []
    with caplog.at_level(logging.ERROR):
        for t in (0.0, 1.0, 2.0, 11.0):
            clock.now_s = t
            try:
                raise ConnectionError("redis down")
            except ConnectionError:
                written.append(log.failure("redis", "rate store write failed"))
        try:
            raise TimeoutError("other")
        except TimeoutError:
            written.append(log.failure("tick", "tick failed"))
    assert written == [True, False, False, True, True]
    lines = [r for r in caplog.records if r.name == "t"]
    assert "(2 more since the last report)" in lines[1].getMessage()
    assert all(r.exc_info for r in lines)
    assert lines[0].failure == "redis"  # type: ignore[attr-defined]


def test_json_formatter_puts_the_traceback_and_extras_on_one_line() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed %s", ("once",), exc_info=__import__(
                "sys").exc_info(), extra={"failure": "tick"})
    line = JsonFormatter().format(record)
    assert "\n" not in line
    out = json.loads(line)
    assert out["message"] == "failed once"
    assert out["failure"] == "tick"
    assert "ValueError: bad" in out["exc"]
