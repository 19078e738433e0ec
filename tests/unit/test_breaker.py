"""The circuit breaker as a timeline on a fake clock: closed -> open -> half-open -> closed/open."""

from __future__ import annotations

import pytest

from libra.serving.state.breaker import BreakerState, CircuitBreaker, CircuitOpenError

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def boom() -> None:
    raise ConnectionError("redis down")


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(ConnectionError):
            breaker.call(boom)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def changes() -> list[tuple[BreakerState, BreakerState]]:
    return []


@pytest.fixture
def breaker(clock: Clock, changes: list) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=3, reset_timeout_s=2.0, clock=clock,
                          on_change=lambda old, new: changes.append((old, new)))


def test_it_opens_after_threshold_failures_in_a_row_and_then_refuses_without_calling(
        breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    assert breaker.state == BreakerState.CLOSED
    fail(breaker)
    assert breaker.state == BreakerState.OPEN
    calls = []
    with pytest.raises(CircuitOpenError):
        breaker.call(lambda: calls.append(1))
    assert calls == []  # refused before touching the dependency


def test_a_success_resets_the_count_of_failures(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    assert breaker.call(lambda: "ok") == "ok"
    fail(breaker, 2)
    assert breaker.state == BreakerState.CLOSED


def test_after_the_timeout_one_trial_goes_out_and_its_success_closes(
        breaker: CircuitBreaker, clock: Clock, changes: list) -> None:
    fail(breaker, 3)
    clock.now_s += 1.99
    assert not breaker.allow()
    clock.now_s += 0.02
    assert breaker.state == BreakerState.HALF_OPEN
    assert breaker.allow()  # the trial
    assert not breaker.allow()  # only one trial at a time: the others are still refused
    breaker.success()
    assert breaker.state == BreakerState.CLOSED
    assert breaker.allow()
    assert changes == [(BreakerState.CLOSED, BreakerState.OPEN),
                       (BreakerState.OPEN, BreakerState.HALF_OPEN),
                       (BreakerState.HALF_OPEN, BreakerState.CLOSED)]


def test_a_failed_trial_opens_it_again_for_a_full_timeout(breaker: CircuitBreaker,
                                                          clock: Clock) -> None:
    fail(breaker, 3)
    clock.now_s += 2.0
    fail(breaker)  # the trial, one failure is enough in half-open
    assert breaker.state == BreakerState.OPEN
    clock.now_s += 1.5
    assert not breaker.allow()
    clock.now_s += 0.5
    assert breaker.call(lambda: 42) == 42
    assert breaker.state == BreakerState.CLOSED


def test_bad_parameters_name_the_value() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker(failure_threshold=0)
    with pytest.raises(ValueError, match="reset_timeout_s"):
        CircuitBreaker(reset_timeout_s=0)
