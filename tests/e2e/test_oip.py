"""A Triton client (`tritonclient.http`, the Open Inference Protocol v2 over HTTP) talks to a real
`libra-serve`: health, metadata, and inference that answers what `/predict` answers for the same
input (the real model on the local serverless pool), errors it can read."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from libra.runtime.labels import EMOTIONS
from tests.e2e.test_serve import Server
from tests.helpers import encode_wav

httpclient = pytest.importorskip("tritonclient.http")
utils = pytest.importorskip("tritonclient.utils")
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(built_models: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    server = Server(built_models[0], tmp_path_factory.mktemp("oip"), "--policy", "serverless",
                    "--initial-vms", "0")
    yield server
    server.stop()


def bytes_input(name: str, value: str, binary: bool = False) -> object:
    tensor = httpclient.InferInput(name, [1], "BYTES")
    tensor.set_data_from_numpy(np.array([value], dtype=np.object_), binary_data=binary)
    return tensor


def test_a_triton_client_sees_a_live_ready_model(server: Server) -> None:
    client = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"))
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("libra")
    assert client.get_server_metadata()["name"] == "libra"
    meta = client.get_model_metadata("libra")
    assert [t["name"] for t in meta["inputs"]] == ["text", "audio", "video"]
    assert {t["name"]: t["shape"] for t in meta["outputs"]} == {"probabilities": [-1, 7],
                                                                "emotion": [-1]}


def test_triton_infer_answers_what_predict_answers(server: Server) -> None:
    text, audio = "I can't believe we won, this is wonderful!", encode_wav()
    audio_b64 = base64.b64encode(audio).decode()
    client = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"))
    result = client.infer("libra", [bytes_input("text", text), bytes_input("audio", audio_b64)],
                          outputs=[httpclient.InferRequestedOutput("probabilities",
                                                                   binary_data=False),
                                   httpclient.InferRequestedOutput("emotion",
                                                                   binary_data=False)],
                          request_id="oip-1")
    probs = result.as_numpy("probabilities")
    emotion = result.as_numpy("emotion")
    answer = result.get_response()
    assert answer["id"] == "oip-1"
    assert answer["model_name"] == "libra"
    assert answer["parameters"]["modalities_used"] == "audio,text"
    assert probs.shape == (1, 7)
    assert probs.dtype == np.float32
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-4)
    assert emotion.tolist() == [EMOTIONS[int(np.argmax(probs))]]
    predict = httpx.post(f"{server.url}/predict", json={"text": text, "audio": audio_b64},
                         timeout=60).json()
    assert probs[0] == pytest.approx([predict["probabilities"][e] for e in EMOTIONS], abs=1e-5)


def test_triton_errors_are_readable_4xx(server: Server) -> None:
    client = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"))
    with pytest.raises(utils.InferenceServerException) as caught:
        client.infer("libra", [bytes_input("image", "x")])
    assert caught.value.status() == "422"
    assert "unknown input 'image'" in caught.value.message()
    with pytest.raises(utils.InferenceServerException) as caught:
        client.infer("libra", [bytes_input("text", "hello", binary=True)])
    assert caught.value.status() == "415"
    assert "binary_data=False" in caught.value.message()
    with pytest.raises(utils.InferenceServerException) as caught:
        client.infer("resnet", [bytes_input("text", "hello")])
    assert caught.value.status() == "404"


def test_the_request_id_comes_back_as_a_header(server: Server) -> None:
    body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hi"]}]}
    r = httpx.post(f"{server.url}/v2/models/libra/infer", json=body,
                   headers={"x-request-id": "trace-9"}, timeout=60)
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "trace-9"
    assert r.json()["parameters"]["request_id"] == "trace-9"
    bad = httpx.post(f"{server.url}/v2/models/libra/infer", json={"inputs": []},
                     headers={"x-request-id": "trace-10"})
    assert bad.status_code == 422
    assert bad.headers["x-request-id"] == "trace-10"
    assert bad.json()["error"] == bad.json()["message"]
