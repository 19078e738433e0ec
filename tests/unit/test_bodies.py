"""Request bodies: JSON parsed with limits (depth, giant integers), base64 read liberally but
strictly on garbage, server paths kept out of error messages, and a bug answered as JSON."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from libra.serving.api import create_app, error_response
from libra.serving.bodies import (
    MAX_JSON_DEPTH,
    MAX_JSON_INT_DIGITS,
    BodyError,
    decode_base64,
    json_depth,
    parse_json,
    scrub_paths,
)
from libra.serving.metrics import ServeMetrics
from libra.serving.settings import Settings

pytestmark = pytest.mark.unit


def body_error(call: object, *args: object) -> BodyError:
    with pytest.raises(BodyError) as info:
        call(*args)  # type: ignore[operator]
    assert info.value.status == 422
    assert info.value.message
    return info.value


# -------------------------------------------------------------------------------------------- JSON

@pytest.mark.parametrize(("text", "depth"), [
    (b"1", 0), (b"{}", 1), (b'{"a": [1, {"b": []}]}', 4), (b'{"a": "[[[[{{{{"}', 1),
    (b'{"a": "\\"[[[["}', 1), (b"[" * 50 + b"]" * 50, 50), (b"[[[", 3),
])
def test_depth_counts_brackets_outside_strings(text: bytes, depth: int) -> None:
    assert json_depth(text) == depth


def test_nesting_10000_deep_is_refused_naming_the_limit() -> None:
    error = body_error(parse_json, b'{"text": ' + b"[" * 10_000 + b"]" * 10_000 + b"}")
    assert error.code == "json_too_deep"
    assert "10001 levels" in error.message
    assert str(MAX_JSON_DEPTH) in error.message


def test_nesting_at_the_limit_parses() -> None:
    deep = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert parse_json(deep) is not None


def test_a_body_of_25_mib_of_brackets_is_refused_without_recursion() -> None:
    assert body_error(parse_json, b"[" * (25 * 2**20)).code == "json_too_deep"


@pytest.mark.parametrize("digits", [MAX_JSON_INT_DIGITS + 1, 4300, 5000, 1_000_000])
def test_giant_integers_are_refused_naming_the_limit(digits: int) -> None:
    error = body_error(parse_json, b'{"text": -' + b"9" * digits + b"}")
    assert error.code == "json_int_too_long"
    assert f"{digits} digits" in error.message


def test_integers_within_the_limit_parse() -> None:
    assert parse_json(b"[" + b"9" * MAX_JSON_INT_DIGITS + b"]") == [int("9" * MAX_JSON_INT_DIGITS)]


@pytest.mark.parametrize("text", [b"{not json", b'{"text": "\xff"}', b"", b'{"a": 1} x'])
def test_what_is_not_json_is_bad_json(text: bytes) -> None:
    assert body_error(parse_json, text).code == "bad_json"


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers(-10**40, 10**40) | st.text(),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=20))
def test_shallow_json_parses_as_the_standard_library_does(value: object) -> None:
    text = json.dumps(value).encode()
    if json_depth(text) <= MAX_JSON_DEPTH:
        assert parse_json(text) == json.loads(text)


# ------------------------------------------------------------------------------------------ base64

CLIP = bytes(range(256)) * 40


@pytest.mark.parametrize("encoded", [
    base64.b64encode(CLIP).decode(),
    base64.encodebytes(CLIP).decode(),  # MIME: wrapped at 76 columns, \n
    base64.encodebytes(CLIP).decode().replace("\n", "\r\n"),
    "data:audio/wav;base64," + base64.b64encode(CLIP).decode(),
    "DATA:video/mp4;codecs=avc1;base64," + base64.encodebytes(CLIP).decode(),
    base64.urlsafe_b64encode(CLIP).decode(),
    base64.b64encode(CLIP[:-1]).decode().rstrip("="),
    "  " + base64.b64encode(CLIP).decode() + "\n",
])
def test_base64_is_read_liberally(encoded: str) -> None:
    expected = CLIP[:-1] if encoded.endswith(base64.b64encode(CLIP[:-1]).decode().rstrip("=")) \
        else CLIP
    assert decode_base64("audio", encoded) == expected


@pytest.mark.parametrize(("encoded", "words"), [
    ("!!!not base64!!!", "'!' at character 0"),
    ("QUJD RE$F", "'$' at character 6"),
    ("data:audio/wav,RIFF....", "without ';base64'"),
    ("QUJDR", "cannot be a whole number of bytes"),
    ("data:audio/wav;base64,QU*J", "'*' at character 2"),
])
def test_base64_garbage_is_refused_saying_where(encoded: str, words: str) -> None:
    error = body_error(decode_base64, "audio", encoded)
    assert error.code == "bad_base64"
    assert "audio" in error.message
    assert words in error.message


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=300), width=st.integers(4, 100))
def test_any_bytes_wrapped_at_any_width_come_back(data: bytes, width: int) -> None:
    flat = base64.b64encode(data).decode()
    wrapped = "\n".join(flat[i:i + width] for i in range(0, len(flat), width))
    assert decode_base64("video", wrapped) == data


# ------------------------------------------------------------------------------- messages, 500s

@pytest.mark.parametrize("message", [
    'instance exited: File "/work/main/handlers/lambda_function.py", line 3',
    "cannot open /tmp/pytest-of-root/pytest-1/onnx0/int8.onnx: no such file",
    r"worker failed at C:\Users\libra\handlers\worker.py",
])
def test_error_messages_carry_no_server_paths(message: str) -> None:
    body = json.loads(error_response(502, "backend_failed", message, "r1").body)
    for secret in ("/work/", "/tmp/", "pytest-of-root", "Users", "libra\\handlers"):
        assert secret not in body["message"]
    assert "<path>/" in body["message"]  # the file's own name stays: it is what a user needs


def test_urls_and_media_types_are_not_paths() -> None:
    text = "http://127.0.0.1:8000/predict/x gave audio/wav; redis://h:6379/0"
    assert scrub_paths(text) == text


def test_a_bug_is_answered_as_json_without_details() -> None:
    def admit() -> None:
        raise RuntimeError("state file /var/lib/libra/secret/state.json is corrupt")

    async def nothing() -> None:
        return None

    config = Settings()
    service = SimpleNamespace(settings=config, metrics=ServeMetrics(), start=nothing,
                              stop=nothing, gate=SimpleNamespace(admit=admit))
    app = create_app(service, settings=config)  # type: ignore[arg-type]
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.post("/predict", json={"text": "hi"}, headers={"x-request-id": "abc"})
    assert r.status_code == 500
    assert r.json()["code"] == "internal_error"
    assert r.json()["request_id"] == "abc"
    assert "/var" not in r.text
    assert "secret" not in r.text
