"""The processes that only run the model import no media decoder and no torch.

The Lambda handler's imports are its cold start (INIT): PyAV, OpenCV, SciPy and soundfile there
cost most of a second for two dataclasses, and the `[lambda]` and `[worker]` extras do not even
install them. Checked for real: each module is imported in a fresh interpreter and its
`sys.modules` read, so an import reached through any chain of modules counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DECODERS = ("av", "cv2", "scipy", "soundfile", "tokenizers", "matplotlib")
NEVER_IN_SERVING = ("torch", "onnx", "transformers")


def loaded_top_level(module: str, env: dict[str, str] | None = None) -> set[str]:
    """Top-level names of every module in sys.modules after `import module`, in a fresh python."""
    code = (f"import json, sys; import {module}; "
            f"print(json.dumps(sorted({{n.split('.')[0] for n in sys.modules}})))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})}, check=False)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("module", ["libra.runtime.payload", "libra.runtime.recognizer",
                                    "libra.runtime.model_input", "handlers.worker"])
def test_the_model_side_of_the_wire_imports_no_decoder(module: str) -> None:
    loaded = loaded_top_level(module)
    assert module.split(".", maxsplit=1)[0] in loaded  # the import itself happened
    assert loaded.isdisjoint(DECODERS + NEVER_IN_SERVING), sorted(
        loaded & set(DECODERS + NEVER_IN_SERVING))


def test_lambda_init_imports_numpy_and_onnxruntime_only(built_models: tuple[Path, dict]) -> None:
    out, _ = built_models
    loaded = loaded_top_level("handlers.lambda_function",
                              {"LIBRA_MODEL_PATH": str(out / "int8.onnx")})
    assert {"numpy", "onnxruntime", "handlers"} <= loaded  # INIT loaded the model
    assert loaded.isdisjoint(DECODERS + NEVER_IN_SERVING), sorted(
        loaded & set(DECODERS + NEVER_IN_SERVING))


def test_the_decoders_hand_out_the_same_classes_as_the_light_module() -> None:
    from libra.runtime import model_input
    from libra.runtime.inputs import audio, video

    assert audio.AudioInput is model_input.AudioInput
    assert video.VideoInput is model_input.VideoInput
