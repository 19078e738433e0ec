"""The AWS Lambda driver against botocore's Stubber: the same boto3 calls production makes."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time

import pytest

boto3 = pytest.importorskip("boto3", reason="the AWS driver needs boto3 (the `aws` extra)")
from botocore.response import StreamingBody  # noqa: E402
from botocore.stub import Stubber  # noqa: E402

from libra.serving.backends.serverless import AwsLambdaDriver, ServerlessError  # noqa: E402

pytestmark = pytest.mark.unit

EVENT = {"request_id": "r1", "inputs": {"format": "libra.runtime.inputs/1"}}
EXPECTED = {"FunctionName": "libra-infer", "InvocationType": "RequestResponse",
            "Payload": json.dumps(EVENT).encode()}


def body(data: dict) -> StreamingBody:
    raw = json.dumps(data).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


@pytest.fixture
def client():  # type: ignore[no-untyped-def]
    return boto3.client("lambda", region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="x")


def driver(client, **kw) -> AwsLambdaDriver:  # type: ignore[no-untyped-def]
    return AwsLambdaDriver("libra-infer", client=client, backoff_base_s=0.001,
                           backoff_max_s=0.01, **kw)


def test_throttles_are_retried_with_backoff_then_answered(client) -> None:  # type: ignore[no-untyped-def]
    answer = {"request_id": "r1", "probabilities": [1 / 7] * 7, "cold_start": True}
    with Stubber(client) as stub:
        for _ in range(2):
            stub.add_client_error("invoke", "TooManyRequestsException", "Rate exceeded", 429,
                                  expected_params=EXPECTED)
        stub.add_response("invoke", {"StatusCode": 200, "Payload": body(answer)}, EXPECTED)
        d = driver(client)
        result = asyncio.run(d.invoke(EVENT))
        stub.assert_no_pending_responses()
    assert result.body == answer
    assert result.cold_start is True
    assert d.throttles == 2
    assert d.cold_starts == 1


def test_throttled_past_the_attempts_is_a_typed_error(client) -> None:  # type: ignore[no-untyped-def]
    with Stubber(client) as stub:
        for _ in range(3):
            stub.add_client_error("invoke", "TooManyRequestsException", "Rate exceeded", 429)
        with pytest.raises(ServerlessError, match="throttled") as info:
            driver(client, max_attempts=3).invoke_sync(EVENT)
    assert info.value.code == "throttled"


def test_a_function_error_is_not_retried(client) -> None:  # type: ignore[no-untyped-def]
    crash = {"errorType": "MemoryError", "errorMessage": "out of memory"}
    with Stubber(client) as stub:
        stub.add_response("invoke", {"StatusCode": 200, "FunctionError": "Unhandled",
                                     "Payload": body(crash)}, EXPECTED)
        with pytest.raises(ServerlessError, match="MemoryError") as info:
            driver(client).invoke_sync(EVENT)
        stub.assert_no_pending_responses()
    assert info.value.code == "function_error"


def test_a_permanent_client_error_fails_at_once(client) -> None:  # type: ignore[no-untyped-def]
    with Stubber(client) as stub:
        stub.add_client_error("invoke", "ResourceNotFoundException", "Function not found", 404)
        with pytest.raises(ServerlessError, match="ResourceNotFoundException") as info:
            driver(client).invoke_sync(EVENT)
        stub.assert_no_pending_responses()
    assert info.value.code == "invoke_failed"


def test_keep_warm_sends_concurrent_pings_and_repeats_only_when_due(client) -> None:  # type: ignore[no-untyped-def]
    ping = {"FunctionName": "libra-infer", "InvocationType": "RequestResponse",
            "Payload": json.dumps({"warmup": True, "hold_ms": 100.0}).encode()}
    with Stubber(client) as stub:
        for cold in (True, False, True):
            stub.add_response("invoke", {"StatusCode": 200, "Payload": body(
                {"warmup": True, "cold_start": cold, "init_ms": 900.0 if cold else 0.0,
                 "infer_ms": 100.0})}, ping)
        d = driver(client, warm_every_s=3600)
        billed = asyncio.run(d.keep_warm(3))
        again = asyncio.run(d.keep_warm(3))  # not due: the same set, well inside the interval
        stub.assert_no_pending_responses()
    assert sorted(billed) == pytest.approx([0.1, 1.0, 1.0])
    assert again == []
    assert d.instances_alive == 3
    assert d.cold_starts == 0  # warm-up cold starts are not requests' cold starts


def test_invocations_run_as_many_at_once_as_the_configured_concurrency(client) -> None:  # type: ignore[no-untyped-def]
    """60 invocations of 100 ms each (the real boto3 client, answered by the Stubber after a
    100 ms hold in botocore's own event hooks): at least 30 in flight at once. asyncio's default
    executor held them to about 6 (1.01 s for 60)."""
    answer = {"request_id": "r1", "probabilities": [1 / 7] * 7}
    lock = threading.Lock()
    flight = {"now": 0, "max": 0}

    def hold(**_: object) -> None:
        with lock:
            flight["now"] += 1
            flight["max"] = max(flight["max"], flight["now"])
        time.sleep(0.1)

    def done(**_: object) -> None:
        with lock:
            flight["now"] -= 1

    client.meta.events.register("before-parameter-build.lambda.Invoke", hold)
    client.meta.events.register("after-call.lambda.Invoke", done)
    with Stubber(client) as stub:
        for _ in range(60):
            stub.add_response("invoke", {"StatusCode": 200, "Payload": body(answer)})
        d = driver(client, max_concurrency=64)

        async def burst() -> list:
            try:
                return list(await asyncio.gather(*(d.invoke(EVENT) for _ in range(60))))
            finally:
                await d.aclose()

        results = asyncio.run(burst())
        stub.assert_no_pending_responses()
    assert len(results) == 60
    assert all(r.body == answer for r in results)
    assert flight["max"] >= 30
    assert d.capacity == 64


def test_a_runtime_that_died_under_the_request_is_a_crash_the_router_retries(client) -> None:  # type: ignore[no-untyped-def]
    died = {"errorType": "Runtime.ExitError",
            "errorMessage": "RequestId: 1 Error: Runtime exited with error: signal: killed"}
    with Stubber(client) as stub:
        stub.add_response("invoke", {"StatusCode": 200, "FunctionError": "Unhandled",
                                     "Payload": body(died)}, EXPECTED)
        with pytest.raises(ServerlessError) as info:
            driver(client).invoke_sync(EVENT)
    assert info.value.code == "crashed"


def test_throttles_are_counted_and_retried_only_while_the_deadline_lasts(client) -> None:  # type: ignore[no-untyped-def]
    counted: list[int] = []
    with Stubber(client) as stub:
        for _ in range(5):
            stub.add_client_error("invoke", "TooManyRequestsException", "Rate exceeded", 429)
        d = AwsLambdaDriver("libra-infer", client=client, backoff_base_s=0.2, backoff_max_s=0.2,
                            max_attempts=5, on_throttle=lambda: counted.append(1))
        with pytest.raises(ServerlessError, match="throttled"):
            d.invoke_sync(EVENT, timeout_s=0.0)  # no time left: the first throttle is final
    assert len(counted) == 1
    assert d.throttles == 1
