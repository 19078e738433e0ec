"""The local serverless pool: real instance processes, real cold starts, keep-alive, a cap."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from libra.core.lifecycle import FunctionState
from libra.runtime.inputs.text import TextTokenizer
from libra.runtime.payload import decode_input, encode_input
from libra.runtime.recognizer import ModelInput, Recognizer
from libra.serving.backends.local_pool import LocalServerlessPool, PoolConfig
from libra.serving.backends.serverless import ServerlessError

pytestmark = pytest.mark.integration


@dataclass
class FakeClock:
    """The pool's keep-alive clock, moved by the test: no test here waits on wall time."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def event(i: int = 0, text: str = "Oh my God, that's amazing!") -> dict:
    ids, mask = TextTokenizer.from_file().encode([text])
    return {"request_id": f"req-{i}", "inputs": encode_input(ModelInput(text=(ids[0], mask[0])))}


@pytest.fixture(scope="module")
def int8_model(built_models: tuple[Path, dict]) -> Path:
    return built_models[0] / "int8.onnx"


def test_first_call_is_cold_then_warm_and_answers_like_the_model(int8_model: Path) -> None:
    async def scenario() -> list:
        pool = LocalServerlessPool(PoolConfig(int8_model, max_concurrency=2))
        try:
            return [await pool.invoke(event(i)) for i in range(3)] + [pool.cold_starts]
        finally:
            await pool.aclose()

    first, second, third, cold_starts = asyncio.run(scenario())
    assert (first.cold_start, second.cold_start, third.cold_start) == (True, False, False)
    assert cold_starts == 1
    assert first.body["cold_start"] is True
    assert first.body["init_ms"] > 0
    assert first.latency_s > second.latency_s  # the cold start is real: a process and a model
    want = Recognizer(int8_model).predict([decode_input(event()["inputs"])])[0]
    np.testing.assert_allclose(second.body["probabilities"], want, atol=1e-5)
    assert second.body["precision"] == "int8"


def test_concurrency_is_capped_and_every_call_is_answered(int8_model: Path) -> None:
    async def scenario() -> tuple[list, int, int]:
        pool = LocalServerlessPool(PoolConfig(int8_model, max_concurrency=2))
        try:
            results = await asyncio.gather(*(pool.invoke(event(i)) for i in range(6)))
            return list(results), pool.cold_starts, len(pool.instances)
        finally:
            await pool.aclose()

    results, cold_starts, instances = asyncio.run(scenario())
    assert [r.body["request_id"] for r in results] == [f"req-{i}" for i in range(6)]
    assert cold_starts == 2
    assert instances == 2


def test_idle_instances_are_reaped_after_the_keep_alive(int8_model: Path) -> None:
    clock = FakeClock()

    async def scenario() -> tuple[int, int, int, bool]:
        pool = LocalServerlessPool(PoolConfig(int8_model, keep_alive_s=0.2), clock=clock)
        try:
            await pool.invoke(event())
            warm_before = pool.warm_instances
            clock.now += 0.15  # inside the keep-alive: kept
            kept = await pool.reap()
            clock.now += 0.1  # 0.25 s idle: past it
            reaped = await pool.reap()
            again = await pool.invoke(event())
            return warm_before, kept, reaped, again.cold_start
        finally:
            await pool.aclose()

    warm_before, kept, reaped, cold_again = asyncio.run(scenario())
    assert warm_before == 1
    assert (kept, reaped) == (0, 1)
    assert cold_again is True


def test_bad_input_is_an_answer_not_a_crash(int8_model: Path) -> None:
    async def scenario() -> tuple[dict, dict]:
        pool = LocalServerlessPool(PoolConfig(int8_model))
        try:
            bad = await pool.invoke({"request_id": "bad", "inputs": {"format": "nope"}})
            good = await pool.invoke(event())
            return bad.body, good.body
        finally:
            await pool.aclose()

    bad, good = asyncio.run(scenario())
    assert bad["error"]["code"] == "bad_payload"
    assert "format" in bad["error"]["message"]
    assert len(good["probabilities"]) == 7


def test_a_crashed_idle_instance_is_replaced_by_a_cold_one(int8_model: Path) -> None:
    async def scenario() -> tuple[bool, FunctionState]:
        pool = LocalServerlessPool(PoolConfig(int8_model))
        try:
            await pool.invoke(event())
            victim = pool.instances[0]
            victim.proc.kill()
            await victim.proc.wait()
            after = await pool.invoke(event())
            return after.cold_start, victim.state
        finally:
            await pool.aclose()

    cold, victim_state = asyncio.run(scenario())
    assert cold is True
    assert victim_state == FunctionState.REAPED


def test_a_missing_model_is_an_init_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        pool = LocalServerlessPool(PoolConfig(tmp_path / "none.onnx", start_timeout_s=60))
        try:
            await pool.invoke(event())
        finally:
            await pool.aclose()

    with pytest.raises(ServerlessError, match=r"init_failed.*libra-model build"):
        asyncio.run(scenario())


def test_keep_warm_starts_ahead_and_pings_so_bursts_meet_no_cold_start(int8_model: Path) -> None:
    clock = FakeClock()

    async def scenario() -> dict:
        pool = LocalServerlessPool(PoolConfig(int8_model, max_concurrency=3, keep_alive_s=1.0),
                                   clock=clock)
        try:
            started = await pool.keep_warm(2)
            alive_after_start = pool.instances_alive
            for _ in range(10):  # 2.5 s idle on the pool's clock: more than twice the keep-alive
                clock.now += 0.25
                await pool.keep_warm(2)
                await pool.reap()
            burst = await asyncio.gather(*(pool.invoke(event(i)) for i in range(2)))
            capped = await pool.keep_warm(10)
            return {"started": started, "alive_after_start": alive_after_start,
                    "burst_cold": [r.cold_start for r in burst], "reaped": pool.reaped,
                    "pings": pool.warm_pings, "cold_starts": pool.cold_starts,
                    "capped": capped, "warm_starts": pool.warm_starts}
        finally:
            await pool.aclose()

    out = asyncio.run(scenario())
    assert out["alive_after_start"] == 2
    assert len(out["started"]) == 2
    assert all(s > 0 for s in out["started"])  # a warm start bills its INIT
    assert out["reaped"] == 0  # pinged before the keep-alive ran out
    assert out["pings"] == 6  # each member pinged whenever its idle time passed half the
    # keep-alive: at 0.75, 1.5 and 2.25 s
    assert out["burst_cold"] == [False, False]
    assert out["cold_starts"] == 0  # no request waited for a cold start
    assert len(out["capped"]) == 1  # keep_warm(10) is capped by max_concurrency (3)
    assert out["warm_starts"] == 3


def test_without_pings_the_keep_alive_reaps_the_warm_set(int8_model: Path) -> None:
    """The counterpart of the test above: the same idle time with no keep-warm reaps both, so
    the pings are what kept them (on the pool's own clock, whatever the machine's load)."""
    clock = FakeClock()

    async def scenario() -> tuple[int, int]:
        pool = LocalServerlessPool(PoolConfig(int8_model, max_concurrency=3, keep_alive_s=1.0),
                                   clock=clock)
        try:
            await pool.keep_warm(2)
            for _ in range(10):
                clock.now += 0.25
                await pool.reap()
            return pool.reaped, pool.instances_alive
        finally:
            await pool.aclose()

    assert asyncio.run(scenario()) == (2, 0)
