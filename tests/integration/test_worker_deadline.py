"""The VM worker honours the deadline the router sends (`X-Libra-Deadline-Ms`) and tells what it
did on `/metrics`: an expired request is answered at once without running the model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from libra.runtime.inputs.text import TextTokenizer
from libra.runtime.payload import encode_input
from libra.runtime.recognizer import ModelInput
from libra.serving.backends.vm import DEADLINE_HEADER
from libra.serving.provision.worker_process import WorkerProcess

pytestmark = pytest.mark.integration


def payload() -> dict:
    ids, mask = TextTokenizer.from_file().encode(["Well, that went better than expected."])
    return encode_input(ModelInput(text=(ids[0], mask[0])))


def metric(url: str, line_start: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="module")
def worker(built_models: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[WorkerProcess]:
    # a 200 ms batch window: a request with a shorter deadline cannot be taken in time
    proc = WorkerProcess(built_models[0], log_dir=tmp_path_factory.mktemp("logs"), extra_args=(
        "--device", "cpu", "--threads", "1", "--max-batch-delay-ms", "200"))
    proc.wait_ready(120)
    yield proc
    proc.close()


def test_an_expired_request_is_answered_at_once_without_running_the_model(
        worker: WorkerProcess) -> None:
    before = httpx.get(f"{worker.url}/stats").json()
    r = httpx.post(f"{worker.url}/infer", json={"request_id": "late", "inputs": payload()},
                   headers={DEADLINE_HEADER: "0"}, timeout=30)
    assert r.status_code == 504, r.text
    assert r.json()["code"] == "deadline_exceeded"
    assert r.json()["request_id"] == "late"
    after = httpx.get(f"{worker.url}/stats").json()
    assert after["requests"] == before["requests"]  # the model never saw it
    assert metric(worker.url, 'libra_worker_expired_total{where="arrival"}') >= 1
    assert metric(worker.url, 'libra_worker_requests_total{code="deadline_exceeded",'
                              'status="504"}') >= 1


def test_a_deadline_shorter_than_the_batch_window_expires_in_the_queue(
        worker: WorkerProcess) -> None:
    before = httpx.get(f"{worker.url}/stats").json()
    r = httpx.post(f"{worker.url}/infer", json={"request_id": "q", "inputs": payload()},
                   headers={DEADLINE_HEADER: "20"}, timeout=30)
    assert r.status_code == 504, r.text
    # on a slow machine it may expire before it is even queued: either way it did not run
    assert r.json()["code"] in ("queue_timeout", "deadline_exceeded")
    assert httpx.get(f"{worker.url}/stats").json()["requests"] == before["requests"]


def test_a_request_inside_its_deadline_is_served_and_counted(worker: WorkerProcess) -> None:
    before = metric(worker.url, 'libra_worker_requests_total{code="ok",status="200"}')
    r = httpx.post(f"{worker.url}/infer", json={"request_id": "ok", "inputs": payload()},
                   headers={DEADLINE_HEADER: "60000"}, timeout=30)
    assert r.status_code == 200, r.text
    assert len(r.json()["probabilities"]) == 7
    text = httpx.get(f"{worker.url}/metrics").text
    assert metric(worker.url, 'libra_worker_requests_total{code="ok",status="200"}') == before + 1
    assert "libra_worker_batches_total" in text
    assert "libra_worker_request_seconds_bucket" in text


def test_a_deadline_that_is_not_a_number_is_a_400(worker: WorkerProcess) -> None:
    r = httpx.post(f"{worker.url}/infer", json={"request_id": "x", "inputs": payload()},
                   headers={DEADLINE_HEADER: "soon"}, timeout=30)
    assert r.status_code == 400
    assert r.json()["code"] == "bad_deadline"
    assert DEADLINE_HEADER in r.json()["message"]
