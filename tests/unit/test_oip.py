"""The Open Inference Protocol door and the API's conventions, on the real app (a stand-in for
the running platform: these paths need only its model version and readiness). Inference itself
through this door runs against a real `libra-serve` in tests/e2e/test_oip.py."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from libra.runtime.labels import EMOTIONS
from libra.serving.api import ERROR_STATUSES, create_app
from libra.serving.bodies import BodyError
from libra.serving.keys import hash_key
from libra.serving.metrics import ServeMetrics
from libra.serving.oip import infer_response, parse_infer
from libra.serving.settings import Settings

KEY = "k" * 32


def stand_in(settings: Settings, ready: str | None = None) -> SimpleNamespace:
    async def nothing() -> None:
        return None

    return SimpleNamespace(settings=settings, metrics=ServeMetrics(), start=nothing,
                           stop=nothing, model_version="m-7", not_ready=lambda: ready)


def client(settings: Settings | None = None, ready: str | None = None) -> TestClient:
    settings = settings or Settings()
    return TestClient(create_app(stand_in(settings, ready), settings=settings),  # type: ignore[arg-type]
                      raise_server_exceptions=False)


def infer_body(**inputs: str) -> bytes:
    return json.dumps({"id": "q1", "inputs": [
        {"name": n, "shape": [1], "datatype": "BYTES", "data": [v]}
        for n, v in inputs.items()]}).encode()


# ---- metadata and health ----------------------------------------------------------------------

def test_server_and_model_metadata_follow_the_protocol() -> None:
    with client() as c:
        server = c.get("/v2").json()
        model = c.get("/v2/models/libra").json()
        assert c.get("/v2/health/live").json() == {"live": True}
    assert server["name"] == "libra"
    assert server["version"]
    assert server["extensions"] == []
    assert model["name"] == "libra"
    assert model["versions"] == ["m-7"]
    assert {(t["name"], t["datatype"], tuple(t["shape"])) for t in model["inputs"]} == {
        ("text", "BYTES", (-1,)), ("audio", "BYTES", (-1,)), ("video", "BYTES", (-1,))}
    assert {(t["name"], t["datatype"], tuple(t["shape"])) for t in model["outputs"]} == {
        ("probabilities", "FP32", (-1, 7)), ("emotion", "BYTES", (-1,))}


def test_readiness_is_200_when_ready_and_503_with_the_reason_when_not() -> None:
    with client() as c:
        assert c.get("/v2/health/ready").status_code == 200
        assert c.get("/v2/models/libra/ready").status_code == 200
    with client(ready="the only VM is booting") as c:
        for path in ("/v2/health/ready", "/v2/models/libra/ready"):
            r = c.get(path)
            assert r.status_code == 503
            assert r.json()["error"] == "the only VM is booting"


def test_an_unknown_model_is_404_in_the_one_error_shape() -> None:
    with client() as c:
        for r in (c.get("/v2/models/resnet"), c.post("/v2/models/resnet/infer", json={}),
                  c.get("/no/such/path")):
            assert r.status_code == 404
            assert set(r.json()) == {"code", "message", "request_id", "error"}
            assert r.json()["code"] == "not_found"


def test_v2_needs_a_key_like_predict_when_keys_are_configured() -> None:
    settings = Settings(api_keys=f"alice {hash_key(KEY)}")
    with client(settings) as c:
        assert c.get("/v2/models/libra").status_code == 401
        assert c.post("/v2/models/libra/infer", content=infer_body(text="hi")).status_code == 401
        assert c.get("/v2/models/libra", headers={"authorization": f"Bearer {KEY}"}
                     ).status_code == 200


# ---- conventions ------------------------------------------------------------------------------

def test_x_request_id_is_echoed_on_success_and_on_every_kind_of_error() -> None:
    settings = Settings(api_keys=f"alice {hash_key(KEY)}")
    with client(settings) as c:
        sent = {"x-request-id": "trace-42"}
        assert c.get("/healthz", headers=sent).headers["x-request-id"] == "trace-42"
        refused = c.post("/predict", json={"text": "hi"}, headers=sent)  # the gate's 401
        assert refused.status_code == 401
        assert refused.headers["x-request-id"] == "trace-42"
        lost = c.get("/nowhere", headers={**sent, "authorization": f"Bearer {KEY}"})
        assert lost.status_code == 404
        assert lost.headers["x-request-id"] == "trace-42"
        assert lost.json()["request_id"] == "trace-42"
        made = c.get("/nowhere", headers={"authorization": f"Bearer {KEY}"})
        assert made.headers["x-request-id"] == made.json()["request_id"]
        assert len(made.headers["x-request-id"]) == 32
        odd = c.get("/healthz", headers={"x-request-id": "a b"})  # not a token: replaced
        assert odd.headers["x-request-id"] != "a b"


def test_openapi_declares_every_error_status_with_the_error_schema() -> None:
    with client() as c:
        spec = c.get("/openapi.json").json()
    for path in ("/predict", "/v2/models/{model_name}/infer"):
        responses = spec["paths"][path]["post"]["responses"]
        assert set(ERROR_STATUSES) <= {int(s) for s in responses}, path
        for status in ERROR_STATUSES:
            schema = responses[str(status)]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}
    assert set(spec["components"]["schemas"]["ErrorBody"]["required"]) == {
        "code", "message", "request_id", "error"}
    metrics = spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain; version=0.0.4"]


# ---- the infer request and answer ---------------------------------------------------------------

def test_an_infer_request_gives_text_and_base64_media() -> None:
    got = parse_infer(infer_body(text="I am fine", audio=base64.b64encode(b"RIFFxx").decode(),
                                 video="data:video/mp4;base64," +
                                 base64.b64encode(b"\0\1mp4").decode()))
    assert (got.text, got.audio, got.video, got.id) == ("I am fine", b"RIFFxx", b"\0\1mp4", "q1")
    nested = json.dumps({"inputs": [{"name": "text", "shape": [1, 1], "datatype": "BYTES",
                                     "data": [["hello"]]}]}).encode()
    assert parse_infer(nested).text == "hello"


@pytest.mark.parametrize(("tensor", "code", "words"), [
    ({"name": "image", "shape": [1], "datatype": "BYTES", "data": ["x"]}, "unknown_input",
     "image"),
    ({"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}, "bad_datatype", "FP32"),
    ({"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]},
     "batch_not_supported", "[2]"),
    ({"name": "text", "shape": [1], "datatype": "BYTES", "data": [3]}, "bad_data", "string"),
    ({"name": "audio", "shape": [1], "datatype": "BYTES", "data": ["%%%"]}, None, "audio"),
])
def test_a_bad_input_is_a_4xx_naming_it(tensor: dict, code: str | None, words: str) -> None:
    with pytest.raises(BodyError) as caught:
        parse_infer(json.dumps({"inputs": [tensor]}).encode())
    assert 400 <= caught.value.status < 500
    assert code is None or caught.value.code == code
    assert words in caught.value.message


def test_the_body_must_be_an_infer_request() -> None:
    for body in (b'{"text": "hi"}', b"[1]", b'{"inputs": [{"name": "text"}]}'):
        with pytest.raises(BodyError) as caught:
            parse_infer(body)
        assert caught.value.status == 422
        assert "inputs" in caught.value.message
    duplicate = json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                        "data": ["a"]}] * 2}).encode()
    with pytest.raises(BodyError, match="twice"):
        parse_infer(duplicate)


def test_the_answer_carries_the_prediction_as_tensors() -> None:
    probs = dict(zip(EMOTIONS, [0.1, 0.2, 0.3, 0.1, 0.1, 0.1, 0.1], strict=True))
    prediction = {"request_id": "r", "emotion": EMOTIONS[2], "probabilities": probs,
                  "modalities_used": ["text"], "warnings": [{"code": "no_face", "message": "."}],
                  "backend": "vm", "cold_start": False, "latency_ms": 3.0,
                  "model_version": "m-7", "retried_on_serverless": False}
    out = infer_response(prediction, oip_id=None, outputs=("probabilities", "emotion"))
    assert out["model_name"] == "libra"
    assert out["id"] == "r"
    assert out["model_version"] == "m-7"
    tensors = {t["name"]: t for t in out["outputs"]}
    assert tensors["probabilities"]["shape"] == [1, 7]
    assert tensors["probabilities"]["data"] == [probs[e] for e in EMOTIONS]
    assert tensors["emotion"] == {"name": "emotion", "shape": [1], "datatype": "BYTES",
                                  "data": [EMOTIONS[2]]}
    assert out["parameters"]["warnings"] == "no_face"
    only = infer_response(prediction, oip_id="q", outputs=("emotion",))
    assert [t["name"] for t in only["outputs"]] == ["emotion"]
    assert only["id"] == "q"
