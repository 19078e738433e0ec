"""The text branch trained for transfer (issue 17): the training mix, the retrained DRKF text path
(audio and face answers untouched), the embedding path and the corpus row selection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="training needs the `train` extra")

import torch

from libra.runtime.labels import EMOTIONS
from libra.training.build import BUNDLE_DIR
from libra.training.checkpoint import load_checkpoint
from libra.training.text_corpora import NEUTRAL, TextSet, read_corpus
from libra.training.text_transfer import (
    TEXT_PARAMETER_PREFIXES,
    DRKFTextHead,
    Recipe,
    score,
    text_only_logits,
    training_mix,
)

pytestmark = pytest.mark.unit

BASE = BUNDLE_DIR / "model.pt"


def fake_set(corpus: str, labels: list[int], seed: int = 0) -> TextSet:
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(len(labels), 384)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return TextSet(corpus, "train", emb, np.array(labels, np.int64),
                   tuple(f"{corpus} {i}" for i in range(len(labels))))


def test_the_mix_caps_neutral_and_weighs_corpora_equally() -> None:
    joy, anger = EMOTIONS.index("joy"), EMOTIONS.index("anger")
    mostly_neutral = fake_set("a", [NEUTRAL] * 90 + [joy] * 10)
    small = fake_set("b", [anger] * 5 + [joy] * 5, seed=1)
    mix = training_mix([mostly_neutral, small], Recipe(neutral_cap=1.0, class_power=0.0))
    from_a = np.array([t.startswith("a ") for t in mix.texts])
    assert (mix.labels[from_a] == NEUTRAL).sum() == 10  # capped at its largest emotion (joy 10)
    assert len(mix.labels) == 20 + 10
    # class_power 0: each corpus carries the same total weight whatever its size
    assert mix.weights[from_a].sum() == pytest.approx(mix.weights[~from_a].sum())
    balanced = training_mix([mostly_neutral, small], Recipe(neutral_cap=1.0, class_power=1.0))
    mass = np.bincount(balanced.labels, weights=balanced.weights, minlength=len(EMOTIONS))
    present = mass[mass > 0]
    assert present == pytest.approx(np.full(len(present), present.mean()))


def test_score_counts_neutral_answers_on_emotional_rows_only() -> None:
    joy = EMOTIONS.index("joy")
    labels = np.array([NEUTRAL, joy, joy, joy, joy])
    probs = np.zeros((5, len(EMOTIONS)))
    probs[[0, 1], NEUTRAL] = 1.0
    probs[2:, joy] = 1.0
    row = score(probs, labels, 2.0)
    assert row["neutral_on_emotional"] == pytest.approx(0.25)
    assert row["accuracy"] == pytest.approx(0.8)
    assert row["temperature"] == 2.0


@pytest.fixture(scope="module")
def served() -> tuple[torch.nn.Module, dict]:
    if not BASE.is_file():
        pytest.skip(f"no bundled weights at {BASE}")
    return load_checkpoint(BASE)


def random_inputs(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    emb = torch.nn.functional.normalize(torch.randn(n, 384, generator=g), dim=-1)
    return {"audio_mel": torch.randn(n, 64, 120, generator=g),
            "audio_frames": torch.full((n,), 120, dtype=torch.int64),
            "faces": torch.rand(n, 2, 48, 48, generator=g), "text_emb": emb}


def test_text_only_logits_are_the_models_own_text_answer(served: tuple) -> None:
    model, _ = served
    x = random_inputs(6)
    presence = torch.tensor([[0.0, 0.0, 1.0]] * 6)
    with torch.no_grad():
        full = model(**x, presence=presence)["logits"]
        ours = text_only_logits(model, x["text_emb"])["logits"]
    torch.testing.assert_close(ours, full, atol=1e-5, rtol=1e-5)


def test_retraining_the_text_path_leaves_audio_and_face_answers_bit_for_bit(served: tuple
                                                                           ) -> None:
    model, _ = served
    joy, anger = EMOTIONS.index("joy"), EMOTIONS.index("anger")
    mix = training_mix([fake_set("a", [joy] * 40 + [anger] * 40 + [NEUTRAL] * 40)],
                       Recipe(epochs=2, batch_size=32, lr=3e-3))
    head = DRKFTextHead(Recipe(epochs=2, batch_size=32, lr=3e-3), BASE).fit(mix)
    x = random_inputs(8, seed=3)
    changed = [name for name, p in head.model.state_dict().items()
               if not torch.equal(p, model.state_dict()[name])]
    assert changed
    assert all(n.startswith(TEXT_PARAMETER_PREFIXES) for n in changed)
    with torch.no_grad():
        for presence in ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]):
            p = torch.tensor([presence] * 8)
            assert torch.equal(head.model(**x, presence=p)["logits"],
                               model(**x, presence=p)["logits"])
        text = torch.tensor([[0.0, 0.0, 1.0]] * 8)
        assert not torch.equal(head.model(**x, presence=text)["logits"],
                               model(**x, presence=text)["logits"])


@pytest.mark.shared
def test_dailydialog_keeps_every_emotional_turn_and_a_fixed_share_of_neutral(
        data_dir: Path) -> None:
    texts, labels = read_corpus(data_dir, "dailydialog", "train")
    again, labels_again = read_corpus(data_dir, "dailydialog", "train")
    assert texts == again
    assert np.array_equal(labels, labels_again)
    counts = np.bincount(labels, minlength=len(EMOTIONS))
    assert counts[NEUTRAL] == 5000
    assert counts[EMOTIONS.index("joy")] == 8704  # every one (SOURCES.md: train joy 8704)
    dair, dair_labels = read_corpus(data_dir, "dair-emotion", "test")
    assert len(dair) == 2000
    assert not (dair_labels == NEUTRAL).any()


def test_the_onnx_embedding_equals_the_torch_encoder() -> None:
    from libra.runtime.inputs.text import TextTokenizer
    from libra.training.text_corpora import embed
    from libra.training.text_encoder import MiniLMEncoder

    sentences = ["I am so happy today!", "Leave me alone, I hate this.", "ok", "The train " * 30]
    ids, mask = TextTokenizer.from_file().encode(sentences)
    reference = MiniLMEncoder().embed(ids, mask)
    np.testing.assert_allclose(embed(sentences), reference, atol=1e-5)
