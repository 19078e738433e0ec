"""The Lambda handler called as Lambda calls it: model at INIT, events, S3 references (moto)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from libra.runtime.inputs.text import TextTokenizer
from libra.runtime.payload import encode_input
from libra.runtime.recognizer import ModelInput, Recognizer

pytestmark = pytest.mark.unit


@pytest.fixture
def handler_module(built_models: tuple[Path, dict], monkeypatch: pytest.MonkeyPatch
                   ) -> ModuleType:
    """A fresh INIT of the handler module with the built INT8 model (a new instance)."""
    monkeypatch.setenv("LIBRA_MODEL_PATH", str(built_models[0] / "int8.onnx"))
    import handlers.lambda_function as module

    return importlib.reload(module)


def inputs(text: str = "Why would you do that to me?") -> dict:
    ids, mask = TextTokenizer.from_file().encode([text])
    return encode_input(ModelInput(text=(ids[0], mask[0])))


def test_the_first_event_of_an_instance_is_its_cold_start(handler_module: ModuleType,
                                                         built_models: tuple[Path, dict]) -> None:
    first = handler_module.handler({"request_id": "a", "inputs": inputs()}, None)
    second = handler_module.handler({"request_id": "b", "inputs": inputs()}, None)
    assert (first["cold_start"], second["cold_start"]) == (True, False)
    assert first["init_ms"] > 0
    assert second["init_ms"] == 0
    assert first["precision"] == "int8"
    assert first["model_version"] == built_models[1]["model_version"]
    ids, mask = TextTokenizer.from_file().encode(["Why would you do that to me?"])
    want = Recognizer(built_models[0] / "int8.onnx").predict(
        [ModelInput(text=(ids[0], mask[0]))])[0]
    np.testing.assert_allclose(first["probabilities"], want, atol=1e-5)


@pytest.mark.parametrize(("event", "words"), [
    ({"request_id": "x"}, "format"),
    ({"request_id": "x", "inputs": {"format": "libra.runtime.inputs/1"}}, "no modality"),
    ({"request_id": "x", "inputs_s3": "s3://bucket/key"}, "bucket and key"),
])
def test_bad_events_are_answered_with_an_error(handler_module: ModuleType, event: dict,
                                               words: str) -> None:
    answer = handler_module.handler(event, None)
    assert answer["error"]["code"] == "bad_payload"
    assert words in answer["error"]["message"]
    assert answer["request_id"] == "x"


def test_large_inputs_come_by_s3_reference(handler_module: ModuleType,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    moto = pytest.importorskip("moto", reason="the S3 path is tested with moto")
    boto3 = pytest.importorskip("boto3")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto.mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="libra-inputs")
        s3.put_object(Bucket="libra-inputs", Key="r9.json", Body=json.dumps(inputs()).encode())
        by_ref = handler_module.handler(
            {"request_id": "r9", "inputs_s3": {"bucket": "libra-inputs", "key": "r9.json"}}, None)
        inline = handler_module.handler({"request_id": "r9", "inputs": inputs()}, None)
    assert by_ref["probabilities"] == inline["probabilities"]


def test_a_warmup_ping_warms_the_instance_without_inference(handler_module: ModuleType) -> None:
    ping = handler_module.handler({"warmup": True, "hold_ms": 30}, None)
    assert ping["warmup"] is True
    assert ping["cold_start"] is True  # the ping paid the instance's cold start...
    assert ping["init_ms"] > 0
    assert "probabilities" not in ping
    assert ping["infer_ms"] >= 30  # held so concurrent pings land on distinct instances
    real = handler_module.handler({"request_id": "a", "inputs": inputs()}, None)
    assert real["cold_start"] is False  # ...so the first real request did not
    assert handler_module.handler({"warmup": True, "hold_ms": "x"}, None)["warmup"] is True
