"""The router over real backends: a VM that dies mid-request costs a retry, never a request."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from libra.core.lifecycle import FunctionState
from libra.core.policies.base import Decision
from libra.runtime.inputs.text import TextTokenizer
from libra.runtime.payload import encode_input
from libra.runtime.recognizer import ModelInput
from libra.serving.backends.local_pool import LocalServerlessPool, PoolConfig
from libra.serving.backends.vm import VMBackend
from libra.serving.provision.worker_process import WorkerProcess
from libra.serving.router import NoBackendError, Routed, Router, RouterConfig
from libra.serving.state.registry import WorkerInfo

pytestmark = pytest.mark.integration


def event(i: int) -> dict:
    ids, mask = TextTokenizer.from_file().encode(["You did what?"])
    return {"request_id": f"f{i}", "inputs": encode_input(ModelInput(text=(ids[0], mask[0])))}


def test_requests_on_a_worker_that_dies_are_answered_by_serverless(
        built_models: tuple[Path, dict], tmp_path: Path) -> None:
    out = built_models[0]
    worker = WorkerProcess(out, log_dir=tmp_path, extra_args=(
        "--device", "cpu", "--threads", "1", "--max-batch-delay-ms", "400"))
    url = worker.wait_ready(120)
    info = WorkerInfo(worker.worker_id or "w", url)

    async def scenario() -> tuple[list, dict]:
        pool = LocalServerlessPool(PoolConfig(out / "int8.onnx", max_concurrency=2))
        router = Router(lambda: [info], VMBackend(timeout_s=20), pool,
                        RouterConfig(request_timeout_s=120),  # a busy box: slow cold starts
                        decision=Decision(1, "one VM, spill when needed"))
        try:
            tasks = [asyncio.ensure_future(router.route(event(i))) for i in range(4)]
            await asyncio.sleep(0.15)  # all four sit in the worker's 400 ms batch window
            worker.kill()
            results = await asyncio.gather(*tasks)
            return list(results), dict(router.counts)
        finally:
            await pool.aclose()
            await router.vm.aclose()

    try:
        results, counts = asyncio.run(scenario())
    finally:
        worker.close()
    assert [r.body["request_id"] for r in results] == [f"f{i}" for i in range(4)]
    assert all(r.backend == "serverless" and r.retried for r in results)
    assert counts["retried"] == 4
    assert counts["vm"] == 0


def test_without_vms_or_spilling_a_request_is_refused_not_queued_forever() -> None:
    router = Router(list, VMBackend(), LocalServerlessPool(PoolConfig(Path("unused"))),
                    decision=Decision(0, "vm only", spill_to_serverless=False))
    with pytest.raises(NoBackendError, match="does not spill"):
        asyncio.run(router.route(event(0)))
    assert router.counts["dropped"] == 1


def test_a_serverless_instance_killed_under_a_request_is_retried_on_another(
        built_models: tuple[Path, dict]) -> None:
    out = built_models[0]

    async def scenario() -> tuple[Routed, dict, int]:
        pool = LocalServerlessPool(PoolConfig(out / "int8.onnx", max_concurrency=2))
        router = Router(list, VMBackend(), pool, RouterConfig(request_timeout_s=120),
                        decision=Decision(0, "serverless only", use_vms=False))
        try:
            await router.route(event(0))  # one warm instance
            victim = pool.instances[0]
            os.kill(victim.proc.pid, signal.SIGSTOP)  # it will take the request and hang
            task = asyncio.ensure_future(router.route(event(1)))
            deadline = time.monotonic() + 60
            while not (pool.in_flight == 1 and victim.state == FunctionState.WARM):
                assert time.monotonic() < deadline, "the request never reached the instance"
                await asyncio.sleep(0.01)
            os.kill(victim.proc.pid, signal.SIGKILL)  # dies under the request
            routed = await task
            return routed, dict(router.counts), len(pool.instances)
        finally:
            await pool.aclose()
            await router.vm.aclose()

    routed, counts, instances = asyncio.run(scenario())
    assert routed.body["request_id"] == "f1"
    assert routed.retried is True
    assert routed.cold_start is True  # on a new instance
    assert counts["retried"] == 1
    assert instances == 1  # the dead one is gone, its replacement serves
