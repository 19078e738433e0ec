"""The dynamic batching loop: when it cuts a batch, how it fails, that it keeps going."""

from __future__ import annotations

import asyncio

import pytest

from libra.runtime.batching import BatchError, BatchTimeoutError, DynamicBatcher

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def test_a_batch_is_cut_when_full_or_when_the_oldest_waited_long_enough() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        batcher: DynamicBatcher[int, int] = DynamicBatcher(
            lambda xs: xs, max_batch_size=3, max_batch_delay_s=0.010, clock=clock)
        assert not batcher.ready(clock.now_s)
        assert batcher.wake_in_s(clock.now_s) is None
        tasks = [asyncio.ensure_future(batcher.submit(i)) for i in range(2)]
        await asyncio.sleep(0)
        assert not batcher.ready(clock.now_s)
        assert batcher.wake_in_s(clock.now_s) == pytest.approx(0.010)
        clock.now_s += 0.004
        assert batcher.wake_in_s(clock.now_s) == pytest.approx(0.006)
        clock.now_s += 0.006
        assert batcher.ready(clock.now_s)  # the oldest waited its 10 ms
        clock.now_s -= 0.006
        tasks.append(asyncio.ensure_future(batcher.submit(2)))
        await asyncio.sleep(0)
        assert batcher.ready(clock.now_s)  # full before the delay
        assert [p.item for p in batcher.take(clock.now_s)] == [0, 1, 2]
        for t in tasks:
            t.cancel()

    asyncio.run(scenario())


def test_requests_past_their_deadline_are_answered_alone_with_a_timeout() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        batcher: DynamicBatcher[int, int] = DynamicBatcher(lambda xs: xs, clock=clock)
        late = asyncio.ensure_future(batcher.submit(1, timeout_s=0.5))
        on_time = asyncio.ensure_future(batcher.submit(2, timeout_s=5.0))
        await asyncio.sleep(0)
        clock.now_s += 1.0
        assert [p.item for p in batcher.take(clock.now_s)] == [2]
        with pytest.raises(BatchTimeoutError, match="past its deadline"):
            await late
        assert batcher.stats.timeouts == 1
        on_time.cancel()

    asyncio.run(scenario())


def test_concurrent_requests_are_batched_and_each_gets_its_own_result() -> None:
    sizes: list[int] = []

    def square(xs: list[int]) -> list[int]:
        sizes.append(len(xs))
        return [x * x for x in xs]

    async def scenario() -> list[int]:
        batcher = DynamicBatcher(square, max_batch_size=4, max_batch_delay_s=0.05)
        loop_task = asyncio.ensure_future(batcher.serve())
        results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
        loop_task.cancel()
        batcher.close()
        return list(results)

    assert asyncio.run(scenario()) == [i * i for i in range(10)]
    assert sizes == [4, 4, 2]


@pytest.mark.parametrize(("model", "message"), [
    (lambda xs: xs[:-1], "returned 1 results for a batch of 2"),
    (lambda xs: 1 / 0, "ZeroDivisionError"),
])
def test_a_failing_model_fails_its_batch_and_the_loop_goes_on(model, message: str) -> None:  # type: ignore[no-untyped-def]
    calls = {"n": 0}

    def flaky(xs: list[int]) -> list[int]:
        calls["n"] += 1
        return model(xs) if calls["n"] == 1 else xs

    async def scenario() -> None:
        batcher = DynamicBatcher(flaky, max_batch_size=2, max_batch_delay_s=0.05)
        loop_task = asyncio.ensure_future(batcher.serve())
        first = await asyncio.gather(batcher.submit(1), batcher.submit(2),
                                     return_exceptions=True)
        assert all(isinstance(r, BatchError) and message in str(r) for r in first)
        assert await batcher.submit(7) == 7
        assert batcher.stats.errors == 2
        loop_task.cancel()
        batcher.close()

    asyncio.run(scenario())
