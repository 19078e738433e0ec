"""The AWS Lambda handler: the quantized model loaded once per instance, one inference per event.

Deployed as a container image or zip with the `libra` package and one ONNX file; the local
serverless pool runs this same module in its instance processes (`handlers.lambda_local`).

Event (JSON): `{"request_id": "...", "inputs": <libra.runtime.payload>}`, or for inputs too large
for Lambda's 6 MB synchronous payload `{"request_id": "...", "inputs_s3": {"bucket": ..., "key":
...}}` naming a JSON object of the same format. Answer: `{"request_id", "probabilities",
"model_version", "precision", "cold_start", "init_ms", "infer_ms"}`, or on bad input
`{"request_id", "error": {"code", "message"}}` (a handled error, not a function failure, so the
caller can tell the client's fault from ours). A keep-warm ping `{"warmup": true, "hold_ms": 50}`
runs no inference and answers `{"warmup": true, "cold_start", "init_ms", "infer_ms"}`.

Settings (environment): `LIBRA_MODEL_PATH` (default: `int8.onnx` beside this file, then
`/opt/libra/int8.onnx`), `LIBRA_ORT_THREADS` (default 1, a Lambda vCPU).
"""

from __future__ import annotations

import time

_INIT_STARTED = time.perf_counter()  # INIT covers the imports below (numpy, onnxruntime) too

import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from libra.runtime.payload import PayloadError, decode_input  # noqa: E402
from libra.runtime.recognizer import Recognizer  # noqa: E402

_DEFAULT_PATHS = (Path(__file__).resolve().parent / "int8.onnx", Path("/opt/libra/int8.onnx"))


def _model_path() -> Path:
    configured = os.environ.get("LIBRA_MODEL_PATH")
    if configured:
        return Path(configured)
    for path in _DEFAULT_PATHS:
        if path.is_file():
            return path
    return _DEFAULT_PATHS[0]


# INIT: Lambda runs module code once per instance, before the first event (the cold start)
MODEL = Recognizer(_model_path(), threads=int(os.environ.get("LIBRA_ORT_THREADS", "1")))
INIT_MS = 1000 * (time.perf_counter() - _INIT_STARTED)
_invocations = itertools.count(1)


def _load_s3(ref: Any) -> Any:
    import boto3

    if not isinstance(ref, dict) or not {"bucket", "key"} <= ref.keys():
        raise PayloadError("inputs_s3 must be an object with bucket and key")
    body = boto3.client("s3").get_object(Bucket=ref["bucket"], Key=ref["key"])["Body"].read()
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"s3://{ref['bucket']}/{ref['key']} is not JSON ({exc})") from None


MAX_WARMUP_HOLD_MS = 1000.0


def _warmup(event: dict[str, Any], cold: bool, started: float) -> dict[str, Any]:
    """A keep-warm ping: no inference. `hold_ms` keeps this instance busy a moment so that
    concurrent pings land on distinct instances (Lambda gives a busy instance no second event)."""
    try:
        hold_ms = min(max(float(event.get("hold_ms", 0.0)), 0.0), MAX_WARMUP_HOLD_MS)
    except (TypeError, ValueError):
        hold_ms = 0.0
    if hold_ms:
        time.sleep(hold_ms / 1000)
    return {"warmup": True, "cold_start": cold, "init_ms": INIT_MS if cold else 0.0,
            "infer_ms": 1000 * (time.perf_counter() - started)}


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """One inference. Bad input is answered with an `error` object, never raised."""
    cold = next(_invocations) == 1
    request_id = event.get("request_id") if isinstance(event, dict) else None
    started = time.perf_counter()
    if isinstance(event, dict) and event.get("warmup"):
        return _warmup(event, cold, started)
    try:
        if not isinstance(event, dict):
            raise PayloadError("the event must be a JSON object")
        data = _load_s3(event["inputs_s3"]) if "inputs_s3" in event else event.get("inputs")
        row = decode_input(data)
    except PayloadError as exc:
        return {"request_id": request_id, "cold_start": cold,
                "error": {"code": "bad_payload", "message": str(exc)}}
    probs = MODEL.predict([row])[0]
    return {
        "request_id": request_id, "probabilities": [float(p) for p in probs],
        "model_version": MODEL.info.version, "precision": MODEL.info.precision,
        "cold_start": cold, "init_ms": INIT_MS if cold else 0.0,
        "infer_ms": 1000 * (time.perf_counter() - started),
    }
