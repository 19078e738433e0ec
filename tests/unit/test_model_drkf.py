"""The DRKF recognizer: any modality subset works, absent inputs do not leak, it learns, exports."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the model needs the `train` extra (torch==2.13.0)")

from libra.training.drkf import (  # noqa: E402
    DRKF,
    N_CLASSES,
    LossWeights,
    ModelSpec,
    drkf_losses,
    supervised_info_nce,
)

pytestmark = pytest.mark.unit

SUBSETS = [s for r in (1, 2, 3) for s in itertools.combinations(range(3), r)]
N_FRAMES, N_FACES = 200, 4


def inputs(batch: int, seed: int = 0, frames: int = N_FRAMES,
           faces: int = N_FACES) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "audio_mel": torch.randn(batch, 64, frames, generator=g),
        "audio_frames": torch.randint(20, frames + 1, (batch,), generator=g),
        "faces": torch.rand(batch, faces, 48, 48, generator=g),
        "text_emb": torch.randn(batch, 384, generator=g),
    }


def presence(subset: tuple[int, ...], batch: int) -> torch.Tensor:
    p = torch.zeros(batch, 3)
    p[:, list(subset)] = 1.0
    return p


@pytest.fixture(scope="module")
def model() -> DRKF:
    torch.manual_seed(0)
    return DRKF(ModelSpec()).eval()


@pytest.mark.parametrize("subset", SUBSETS)
def test_every_non_empty_subset_gives_a_distribution(model: DRKF, subset: tuple[int, ...]) -> None:
    with torch.no_grad():
        out = model(**inputs(5), presence=presence(subset, 5))
    assert out["logits"].shape == (5, N_CLASSES)
    assert torch.isfinite(out["logits"]).all()
    weights = out["weights"]
    assert torch.allclose(weights.sum(-1), torch.ones(5))
    absent = [m for m in range(3) if m not in subset]
    assert (weights[:, absent] < 1e-6).all()  # the dominant modality is always a present one


@pytest.mark.parametrize("subset", SUBSETS)
def test_absent_modalities_do_not_change_the_answer(model: DRKF, subset: tuple[int, ...]) -> None:
    a, b = inputs(3, seed=1), inputs(3, seed=2)
    mixed = {k: (a[k] if m in subset else b[k]) for k, m in
             (("audio_mel", 0), ("audio_frames", 0), ("faces", 1), ("text_emb", 2))}
    with torch.no_grad():
        first = model(**a, presence=presence(subset, 3))["logits"]
        second = model(**mixed, presence=presence(subset, 3))["logits"]
    assert torch.allclose(first, second, atol=1e-5)


def test_padding_beyond_valid_audio_frames_is_ignored(model: DRKF) -> None:
    x = inputs(2, seed=3)
    x["audio_frames"] = torch.tensor([80, 120])
    noisy = {**x, "audio_mel": x["audio_mel"].clone()}
    noisy["audio_mel"][0, :, 96:] = 50.0  # past the valid part, beyond the conv receptive field
    noisy["audio_mel"][1, :, 136:] = -50.0
    with torch.no_grad():
        a = model(**x, presence=presence((0,), 2))["logits"]
        b = model(**noisy, presence=presence((0,), 2))["logits"]
    assert torch.allclose(a, b, atol=1e-4)


def test_a_row_with_nothing_present_stays_finite(model: DRKF) -> None:
    with torch.no_grad():
        out = model(**inputs(2), presence=torch.zeros(2, 3))
    assert torch.isfinite(out["logits"]).all()


def test_info_nce_is_lower_when_same_labels_share_a_direction() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    present = torch.ones(4, 3)
    aligned = torch.zeros(4, 3, 8)
    aligned[:2, :, 0] = 1.0
    aligned[2:, :, 1] = 1.0
    shuffled = aligned[torch.tensor([0, 2, 1, 3])]
    good = supervised_info_nce(aligned, present, labels, 0.1)
    bad = supervised_info_nce(shuffled, present, labels, 0.1)
    assert good < bad


def test_losses_are_finite_and_reach_every_part() -> None:
    torch.manual_seed(0)
    model = DRKF(ModelSpec()).train()
    x = inputs(8)
    p = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1],
                      [1, 1, 1], [1, 0, 0]], dtype=torch.float32)
    labels = torch.arange(8) % N_CLASSES
    losses = drkf_losses(model(**x, presence=p), labels, LossWeights(),
                         consistent=torch.ones(8))
    assert set(losses) == {"ce", "unimodal", "contrastive", "separation", "consistency", "total"}
    assert all(torch.isfinite(v) for v in losses.values())
    losses["total"].backward()
    for name in ("audio", "face", "text", "shared", "specific", "fusion", "unimodal", "classify",
                 "consistency", "dominance"):
        grads = [q.grad for q in getattr(model, name).parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name


def test_it_learns_a_separable_problem_from_any_single_modality() -> None:
    """Labels written into each modality's input: a few steps must fit them, each modality alone."""
    torch.manual_seed(0)
    model = DRKF(ModelSpec(dropout=0.0))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    n = 28
    labels = torch.arange(n) % N_CLASSES
    x = inputs(n, frames=48, faces=1)
    x["text_emb"][:, :N_CLASSES] += 4.0 * torch.nn.functional.one_hot(labels, N_CLASSES)
    x["audio_mel"][:, :N_CLASSES, :] += 4.0 * torch.nn.functional.one_hot(
        labels, N_CLASSES).float()[:, :, None]
    p = torch.zeros(n, 3)
    p[torch.arange(n), torch.arange(n) % 2 * 2] = 1.0  # audio or text, one per sample
    for _ in range(40):
        opt.zero_grad()
        drkf_losses(model(**x, presence=p), labels)["total"].backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(**x, presence=p)["logits"].argmax(-1) == labels).float().mean()
    assert accuracy > 0.9


def test_onnx_export_matches_torch_with_a_dynamic_batch(tmp_path: Path, model: DRKF) -> None:
    pytest.importorskip("onnxscript", reason="ONNX export needs the `train` extra (onnxscript)")
    ort = pytest.importorskip("onnxruntime")

    class Probs(torch.nn.Module):
        def __init__(self, m: DRKF) -> None:
            super().__init__()
            self.m = m

        def forward(self, audio_mel, audio_frames, faces, text_emb, presence):  # type: ignore[no-untyped-def]
            out = self.m(audio_mel, audio_frames, faces, text_emb, presence)
            return torch.softmax(out["logits"], -1), out["weights"]

    wrapper = Probs(model).eval()
    x = inputs(4)
    p = presence((0, 2), 4)
    batch = torch.export.Dim("batch", min=1, max=512)
    path = tmp_path / "drkf.onnx"
    torch.onnx.export(wrapper, (*x.values(), p), str(path), dynamo=True, opset_version=18,
                      input_names=[*x, "presence"], output_names=["probs", "weights"],
                      dynamic_shapes=tuple({0: batch} for _ in range(5)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 3, 7):
        xn, pn = inputs(n, seed=n), presence((1,), n)
        feeds = {k: v.numpy() for k, v in xn.items()} | {"presence": pn.numpy()}
        got = session.run(["probs"], feeds)[0]
        with torch.no_grad():
            want = wrapper(*xn.values(), pn)[0].numpy()
        np.testing.assert_allclose(got, want, atol=1e-5)
