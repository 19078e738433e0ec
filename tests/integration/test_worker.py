"""The VM worker as a real process: readiness, inference, batching, typed errors, drain."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from libra.runtime.inputs.audio import audio_features
from libra.runtime.inputs.text import TextTokenizer
from libra.runtime.payload import decode_input, encode_input
from libra.runtime.recognizer import ModelInput, Recognizer
from libra.serving.provision.worker_process import WorkerProcess, WorkerStartError
from tests.helpers import encode_wav

pytestmark = pytest.mark.integration


def request_row(text: str = "I can't believe you did that!") -> ModelInput:
    ids, mask = TextTokenizer.from_file().encode([text])
    return ModelInput(audio=audio_features(encode_wav()), text=(ids[0], mask[0]))


@pytest.fixture(scope="module")
def worker(built_models: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[WorkerProcess]:
    out, _ = built_models
    proc = WorkerProcess(out, log_dir=tmp_path_factory.mktemp("logs"), extra_args=(
        "--device", "cpu", "--threads", "1", "--max-batch-size", "8",
        "--max-batch-delay-ms", "30"))
    proc.wait_ready(120)
    yield proc
    proc.close()


def test_ready_only_with_the_model_loaded(worker: WorkerProcess,
                                          built_models: tuple[Path, dict]) -> None:
    _, manifest = built_models
    ready = httpx.get(f"{worker.url}/readyz").json()
    assert ready["ready"] is True
    assert ready["model_version"] == manifest["model_version"]
    assert ready["precision"] == "fp32"
    assert ready["device"] == "cpu"


def test_infer_answers_what_the_model_answers_in_process(
        worker: WorkerProcess, built_models: tuple[Path, dict]) -> None:
    row = request_row()
    payload = encode_input(row)
    got = httpx.post(f"{worker.url}/infer", json={"request_id": "r1", "inputs": payload})
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["request_id"] == "r1"
    want = Recognizer(built_models[0] / "fp32.onnx").predict([decode_input(payload)])[0]
    np.testing.assert_allclose(body["probabilities"], want, atol=1e-5)
    assert sum(body["probabilities"]) == pytest.approx(1.0, abs=1e-5)


def test_concurrent_requests_are_batched(worker: WorkerProcess) -> None:
    payload = encode_input(request_row())

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*(client.post(
                f"{worker.url}/infer", json={"request_id": f"b{i}", "inputs": payload})
                for i in range(16)))

    before = httpx.get(f"{worker.url}/stats").json()
    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [200] * 16
    after = httpx.get(f"{worker.url}/stats").json()
    batches = after["batches"] - before["batches"]
    assert after["requests"] - before["requests"] == 16
    assert batches <= 8  # 16 requests inside one 30 ms window: batches of up to 8, not 16 calls


@pytest.mark.parametrize(("body", "status", "code", "words"), [
    (b"not json", 400, "bad_json", "not JSON"),
    (b'{"request_id": "x", "inputs": {"format": "libra.runtime.inputs/1"}}', 400, "bad_payload",
     "no modality"),
    (b'{"request_id": "y", "inputs": {"format": "v0"}}', 400, "bad_payload", "format"),
])
def test_bad_requests_get_typed_errors(worker: WorkerProcess, body: bytes, status: int,
                                       code: str, words: str) -> None:
    r = httpx.post(f"{worker.url}/infer", content=body,
                   headers={"content-type": "application/json"})
    assert r.status_code == status
    assert r.json()["code"] == code
    assert words in r.json()["message"]


def test_sigterm_drains_in_flight_requests_then_exits(
        built_models: tuple[Path, dict], tmp_path: Path) -> None:
    proc = WorkerProcess(built_models[0], log_dir=tmp_path, extra_args=(
        "--device", "cpu", "--threads", "1", "--max-batch-size", "4",
        "--max-batch-delay-ms", "300"))
    try:
        url = proc.wait_ready(120)
        payload = encode_input(request_row())

        async def scenario() -> tuple[list[int], int | str]:
            async with httpx.AsyncClient(timeout=30) as client:
                in_flight = [asyncio.ensure_future(client.post(
                    f"{url}/infer", json={"request_id": f"d{i}", "inputs": payload}))
                    for i in range(6)]
                await asyncio.sleep(0.1)  # accepted, waiting in the 300 ms batch window
                proc.drain()
                await asyncio.sleep(0.05)
                try:
                    late = (await client.get(f"{url}/readyz")).status_code
                except httpx.TransportError as exc:
                    late = type(exc).__name__  # the listener is already closed: also a refusal
                done = await asyncio.gather(*in_flight)
                return [r.status_code for r in done], late

        statuses, late = asyncio.run(scenario())
        assert statuses == [200] * 6
        assert late in (503, "ConnectError")
        assert proc.wait(30) == 0
    finally:
        proc.close()


def test_a_missing_model_fails_fast_with_the_reason(tmp_path: Path) -> None:
    proc = WorkerProcess(tmp_path / "nothing", log_dir=tmp_path)
    with pytest.raises(WorkerStartError, match="libra-model build"):
        proc.wait_ready(60)
    proc.close()
