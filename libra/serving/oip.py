"""The Open Inference Protocol v2 (KServe v2, Triton HTTP/REST) in JSON: its documents, and the
mapping between an infer request and `/predict`'s (text, audio bytes, video bytes).

Why a second door to the same model: KServe, Triton clients (`tritonclient.http`), Seldon and
their load testers speak this protocol, and none of them can build `/predict`'s body. The door is
thin on purpose: `libra.serving.api` reads the body with the same limits, then runs the same
admission, decode and routing as `/predict`, and errors keep the API's one shape.

What an infer request may carry (a batch of one: a row of several clips would need its own
admission and budget, and no client of ours sends one):

- inputs `text`, `audio`, `video`, any non-empty subset, each `datatype` `BYTES` with one element
  (`shape` `[1]` or `[1, 1]`; `data` `["..."]` or `[["..."]]`);
- `text`: the transcript as a JSON string;
- `audio`, `video`: the file's bytes as a base64 string (read like `/predict`'s JSON: plain,
  wrapped, URL-safe, unpadded or a `data:` URI). JSON cannot carry raw bytes, and the binary
  tensor extension (`Inference-Header-Content-Length`) is refused with 415: send
  `binary_data=False` from `tritonclient`.

The answer has outputs `probabilities` (FP32 `[1, 7]`, in `EMOTIONS` order) and `emotion` (BYTES
`[1]`), or those named in `outputs`; `parameters` carry what `/predict` tells besides (backend,
cold start, latency, modalities used, warnings).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from libra.runtime.labels import EMOTIONS
from libra.serving.bodies import BodyError, decode_base64, parse_json

MODEL_NAME = "libra"
SERVER_NAME = "libra"
PROTOCOL_VERSION = "2"
INPUTS = ("text", "audio", "video")
OUTPUTS: tuple[str, ...] = ("probabilities", "emotion")
Scalar = str | int | float | bool


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ServerMetadata(BaseModel):
    """`GET /v2`."""

    name: str
    version: str
    extensions: list[str]


class ModelMetadata(BaseModel):
    """`GET /v2/models/libra`."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class InferTensor(BaseModel):
    """One input tensor of an infer request."""

    model_config = ConfigDict(extra="forbid")

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Scalar] | None = None
    data: list[Any]


class RequestedOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    parameters: dict[str, Scalar] | None = None


class InferRequest(BaseModel):
    """`POST /v2/models/libra/infer`, JSON (see module docs for what each input carries)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, description="echoed in the answer; the X-Request-ID is kept "
                           "apart")
    parameters: dict[str, Scalar] | None = None
    inputs: list[InferTensor] = Field(description="text (string), audio and video (base64 of "
                                      "the file), each BYTES with one element")
    outputs: list[RequestedOutput] | None = None


class OutputTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class InferResponse(BaseModel):
    """The answer to an infer request."""

    model_name: str
    model_version: str
    id: str
    parameters: dict[str, Scalar]
    outputs: list[OutputTensor]


def server_metadata(version: str) -> ServerMetadata:
    return ServerMetadata(name=SERVER_NAME, version=version, extensions=[])


def model_metadata(model_version: str) -> ModelMetadata:
    """Inputs are BYTES of any length (a batch of one is served, see module docs)."""
    return ModelMetadata(
        name=MODEL_NAME, versions=[model_version], platform="onnxruntime_onnx",
        inputs=[TensorMetadata(name=n, datatype="BYTES", shape=[-1]) for n in INPUTS],
        outputs=[TensorMetadata(name="probabilities", datatype="FP32", shape=[-1, len(EMOTIONS)]),
                 TensorMetadata(name="emotion", datatype="BYTES", shape=[-1])])


class ParsedInfer(BaseModel):
    """What an infer request asks for: the modalities, its `id` and the outputs wanted."""

    text: str | None = None
    audio: bytes | None = None
    video: bytes | None = None
    id: str | None = None
    outputs: tuple[str, ...] = OUTPUTS


def parse_infer(body: bytes) -> ParsedInfer:
    """The request's inputs, or `BodyError` (4xx) naming the input and what is wrong with it."""
    try:
        request = InferRequest.model_validate(parse_json(body))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
                             for e in exc.errors())
        raise BodyError(422, "invalid_field", f"{problems} (send an Open Inference Protocol "
                        f"infer request: inputs with name, shape, datatype, data)") from None
    values: dict[str, str] = {}
    for tensor in request.inputs:
        values[tensor.name] = one_string(tensor, seen=values)
    outputs = OUTPUTS
    if request.outputs is not None:
        unknown = sorted({o.name for o in request.outputs} - set(OUTPUTS))
        if unknown:
            raise BodyError(422, "unknown_output", f"unknown outputs {unknown}; this model "
                            f"has {', '.join(OUTPUTS)}")
        outputs = tuple(o.name for o in request.outputs)
    audio, video = values.get("audio"), values.get("video")
    return ParsedInfer(text=values.get("text"), id=request.id, outputs=outputs,
                       audio=None if audio is None else decode_base64("audio", audio),
                       video=None if video is None else decode_base64("video", video))


def one_string(tensor: InferTensor, *, seen: dict[str, str]) -> str:
    """The single string element of a BYTES input of a batch of one."""
    if tensor.name not in INPUTS:
        raise BodyError(422, "unknown_input", f"unknown input {tensor.name!r}; this model "
                        f"takes {', '.join(INPUTS)}")
    if tensor.name in seen:
        raise BodyError(422, "duplicate_input", f"input {tensor.name!r} is sent twice")
    if tensor.datatype != "BYTES":
        raise BodyError(422, "bad_datatype", f"input {tensor.name!r} is {tensor.datatype}; "
                        f"send BYTES (text as a string, media as base64 of the file)")
    data: Any = tensor.data
    while isinstance(data, list) and len(data) == 1 and isinstance(data[0], list):
        data = data[0]
    elements = 1
    for dim in tensor.shape:
        elements *= dim
    if elements != 1 or not isinstance(data, list) or len(data) != 1:
        raise BodyError(422, "batch_not_supported", f"input {tensor.name!r} has shape "
                        f"{tensor.shape}: send one element (shape [1]); batches are not served")
    if not isinstance(data[0], str):
        raise BodyError(422, "bad_data", f"input {tensor.name!r}: send the element as a JSON "
                        f"string (text, or base64 of the media file)")
    return data[0]


def infer_response(prediction: dict[str, Any], *, oip_id: str | None,
                   outputs: tuple[str, ...]) -> dict[str, Any]:
    """`/predict`'s answer (`Prediction.model_dump()`) as an infer response."""
    tensors = {
        "probabilities": OutputTensor(
            name="probabilities", shape=[1, len(EMOTIONS)], datatype="FP32",
            data=[float(prediction["probabilities"][e]) for e in EMOTIONS]),
        "emotion": OutputTensor(name="emotion", shape=[1], datatype="BYTES",
                                data=[prediction["emotion"]]),
    }
    parameters: dict[str, Scalar] = {
        "request_id": prediction["request_id"], "backend": prediction["backend"],
        "cold_start": bool(prediction["cold_start"]),
        "latency_ms": float(prediction["latency_ms"]),
        "modalities_used": ",".join(prediction["modalities_used"]),
        "retried_on_serverless": bool(prediction.get("retried_on_serverless", False)),
    }
    warnings = prediction.get("warnings") or []
    if warnings:
        parameters["warnings"] = ",".join(w["code"] for w in warnings)
    return InferResponse(model_name=MODEL_NAME, model_version=str(prediction["model_version"]),
                         id=oip_id or prediction["request_id"], parameters=parameters,
                         outputs=[tensors[name] for name in outputs]).model_dump()
