"""The frozen text encoder equals sentence-transformers' all-MiniLM-L6-v2 and means something."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch", reason="the text encoder needs the `train` extra")
pytest.importorskip("transformers", reason="the text encoder needs the `train` extra")

from tokenizers import Tokenizer

from libra.training.text_encoder import MiniLMEncoder, minilm_dir

pytestmark = pytest.mark.unit

SENTENCES = ["I am so happy today!", "I feel glad and cheerful.", "The train leaves at nine."]


@pytest.fixture(scope="module")
def encoder() -> MiniLMEncoder:
    return MiniLMEncoder()


def tokenize(texts: list[str], length: int = 64) -> tuple[np.ndarray, np.ndarray]:
    tok = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    tok.enable_truncation(length)
    tok.enable_padding(length=length)
    enc = tok.encode_batch(texts)
    return (np.array([e.ids for e in enc], dtype=np.int64),
            np.array([e.attention_mask for e in enc], dtype=np.int64))


def test_embeddings_equal_sentence_transformers(encoder: MiniLMEncoder) -> None:
    st = pytest.importorskip("sentence_transformers")
    reference = st.SentenceTransformer(str(minilm_dir()), device="cpu").encode(SENTENCES)
    ours = encoder.embed(*tokenize(SENTENCES))
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_padding_length_does_not_change_the_embedding(encoder: MiniLMEncoder) -> None:
    np.testing.assert_allclose(encoder.embed(*tokenize(SENTENCES, 16)),
                               encoder.embed(*tokenize(SENTENCES, 64)), atol=1e-5)


def test_similar_feelings_are_closer_than_unrelated_text(encoder: MiniLMEncoder) -> None:
    e = encoder.embed(*tokenize(SENTENCES))
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2
