"""Training and evaluation: balanced incomplete-multimodal batches, a seeded run that writes its
config, metrics and weights, evaluation that reproduces them, the feature cache, the baselines."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs the `train` extra (torch==2.13.0)")

from click.testing import CliRunner  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from libra.training import features as feats  # noqa: E402
from libra.training.batches import BalancedSampler, encode_batch, make_batch  # noqa: E402
from libra.training.checkpoint import build_model, load_checkpoint, save_checkpoint  # noqa: E402
from libra.training.cli import main  # noqa: E402
from libra.training.drkf import AUDIO, TEXT, VIDEO  # noqa: E402
from libra.training.evaluate import (  # noqa: E402
    classification_metrics,
    evaluate,
    pseudo_pairs,
)
from libra.training.features import FeatureSet, cache_path, load_features  # noqa: E402
from libra.training.late_fusion import LateFusion  # noqa: E402
from libra.training.train import TrainConfig, cosine_with_warmup, train  # noqa: E402

pytestmark = pytest.mark.unit

TINY = {"max_train_examples_per_source": 96, "max_eval_examples_per_source": 48, "epochs": 1,
        "batch_size": 48, "progress": False}


# ------------------------------------------------------------------------ synthetic, no data


def synthetic(source: str, n: int, seed: int = 0) -> FeatureSet:
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % 7
    arrays: dict[str, np.ndarray] = {
        "meld": lambda: {"text_emb": rng.normal(size=(n, 384)).astype(np.float32)},
        "ravdess": lambda: {"audio_mel": rng.normal(size=(n, 64, 96)).astype(np.float16),
                            "audio_frames": rng.integers(40, 97, n)},
        "fer": lambda: {"faces": rng.random((n, 1, 48, 48), dtype=np.float32)},
    }[source]()
    return FeatureSet(source, "train", labels, arrays)


def test_every_batch_takes_each_source_equally_and_cycles_the_small_one() -> None:
    meld, ravdess, fer = synthetic("meld", 700), synthetic("ravdess", 21), synthetic("fer", 350)
    sampler = BalancedSampler([meld, ravdess, fer], per_source=7, seed=0)
    clips: list[float] = []
    for _ in range(30):
        batch = sampler.next_batch(augment=False)
        assert len(batch) == 21
        assert batch.presence.sum(0).tolist() == [7.0, 7.0, 7.0]  # one modality per row
        assert (batch.presence.sum(1) == 1).all()
        clips.extend(batch.inputs[AUDIO][0][:, 0, 0].tolist())  # a clip's first value names it
    # 30 batches draw 210 clips: each of RAVDESS's 21 exactly 10 times (reshuffled rounds)
    first_values = ravdess.arrays["audio_mel"][:, 0, 0].astype(np.float32).tolist()
    assert sorted(clips) == sorted(first_values * 10)


def test_pseudo_pairs_join_examples_with_the_same_label() -> None:
    sources = [synthetic("meld", 70), synthetic("ravdess", 35), synthetic("fer", 49)]
    sampler = BalancedSampler(sources, per_source=8, seed=1, pair_fraction=1.0)
    batch = sampler.next_batch(augment=False)
    assert (batch.presence.sum(1) >= 2).all()  # every row got at least one partner
    assert batch.presence.sum() > 24
    audio_rows = batch.rows[AUDIO]
    # the audio inputs are in row order: recover each row's clip through its mel values
    mels = batch.inputs[AUDIO][0]
    for row, mel in zip(audio_rows.tolist(), mels, strict=True):
        clip = next(i for i in range(35) if torch.equal(
            torch.from_numpy(sources[1].arrays["audio_mel"][i].astype(np.float32)), mel))
        assert sources[1].labels[clip] == batch.labels[row]


def test_pair_fraction_ramps_up_from_zero() -> None:
    sampler = BalancedSampler([synthetic("meld", 14), synthetic("fer", 14)], per_source=7,
                              seed=0, pair_fraction=0.5, pair_ramp_steps=10)
    assert sampler.current_pair_fraction() == 0.0
    first = sampler.next_batch(augment=False)
    assert (first.presence.sum(1) == 1).all()
    sampler.step = 5
    assert sampler.current_pair_fraction() == pytest.approx(0.25)
    sampler.step = 50
    assert sampler.current_pair_fraction() == pytest.approx(0.5)


def test_an_absent_modality_never_runs_its_encoder_or_touches_batch_norm() -> None:
    torch.manual_seed(0)
    model = build_model("drkf").train()
    before = model.face.cnn[0][1].running_mean.clone()
    text = synthetic("meld", 8)
    batch = make_batch([(text, np.arange(8), np.arange(8))], text.labels[:8])
    features = encode_batch(model, batch)
    assert torch.equal(model.face.cnn[0][1].running_mean, before)
    assert features[:, [AUDIO, VIDEO]].abs().sum() == 0
    assert features[:, TEXT].abs().sum() > 0


def test_training_augmentation_is_seeded_and_keeps_shapes() -> None:
    fer, ravdess = synthetic("fer", 16), synthetic("ravdess", 16)
    parts = [(fer, np.arange(8), np.arange(8)), (ravdess, np.arange(8, 16), np.arange(8))]
    labels = np.zeros(16)
    a = make_batch(parts, labels, torch.Generator().manual_seed(3))
    b = make_batch(parts, labels, torch.Generator().manual_seed(3))
    plain = make_batch(parts, labels)
    assert torch.equal(a.inputs[VIDEO][0], b.inputs[VIDEO][0])
    assert a.inputs[VIDEO][0].shape == plain.inputs[VIDEO][0].shape == (8, 1, 48, 48)
    assert not torch.equal(a.inputs[AUDIO][0], plain.inputs[AUDIO][0])
    # padding frames stay untouched by the masks
    frames = plain.inputs[AUDIO][1]
    for i in range(8):
        valid = int(frames[i])
        assert torch.equal(a.inputs[AUDIO][0][i, :, valid:], plain.inputs[AUDIO][0][i, :, valid:])


def test_metrics_match_a_hand_computed_case() -> None:
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 1, 0])
    m = classification_metrics(y_true, y_pred)
    assert m["accuracy"] == pytest.approx(4 / 6)
    f1 = {0: 2 * 2 / (3 + 3), 1: 2 * 2 / (2 + 3), 2: 0.0}  # 2TP / (support + predicted)
    assert m["macro_f1"] == pytest.approx(np.mean(list(f1.values())))
    assert m["weighted_f1"] == pytest.approx((3 * f1[0] + 2 * f1[1] + 1 * f1[2]) / 6)
    assert m["confusion_matrix"][0][:3] == [2, 1, 0]
    assert np.sum(m["confusion_matrix"]) == 6


def test_numpy_f1_agrees_with_sklearn() -> None:
    pytest.importorskip("sklearn", reason="the comparison needs scikit-learn")
    from libra.training.metrics import _f1_numpy

    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 7, 300), rng.integers(0, 6, 300)
    m = classification_metrics(y_true, y_pred)
    cm = np.array(m["confusion_matrix"])
    weighted, macro = _f1_numpy(cm, np.union1d(y_true, y_pred))
    assert weighted == pytest.approx(m["weighted_f1"])
    assert macro == pytest.approx(m["macro_f1"])


def test_pseudo_pairs_anchor_on_the_smallest_source_with_matching_labels() -> None:
    small, big = synthetic("ravdess", 14), synthetic("meld", 70)
    index = pseudo_pairs([big, small])
    assert len(index[0]) == len(index[1]) == 14
    assert (big.labels[index[0]] == small.labels[index[1]]).all()
    assert pseudo_pairs([big, small])[0].tolist() == index[0].tolist()  # fixed seed


def test_cosine_schedule_warms_up_then_decays_to_zero() -> None:
    f = cosine_with_warmup(total_steps=100, warmup_steps=10)
    assert f(0) == pytest.approx(0.1)
    assert f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5)
    assert f(100) == pytest.approx(0.0)


def test_config_errors_name_the_values() -> None:
    with pytest.raises(ValidationError, match="batch_size"):
        TrainConfig(batch_size=2)
    with pytest.raises(ValidationError, match="repeat"):
        TrainConfig(sources=("meld", "meld"))
    with pytest.raises(ValueError, match="valid: audio, video, text"):
        TrainConfig.only("smell")
    assert TrainConfig(sources=("fer", "meld")).sources == ("meld", "fer")
    assert TrainConfig.only("audio").sources == ("ravdess",)


def test_cli_defaults_are_the_config_defaults() -> None:
    params = {p.name: p.default for p in main.commands["train"].params}
    fields = TrainConfig.model_fields
    for option in ("seed", "batch_size", "lr", "weight_decay", "pair_fraction", "select_metric"):
        assert params[option] == fields[option].default, option
    weights = fields["loss_weights"].default
    assert (params["w_unimodal"], params["w_contrastive"], params["w_separation"],
            params["temperature"]) == (weights.unimodal, weights.contrastive,
                                       weights.separation, weights.temperature)
    assert params["model_kind"] == fields["model"].default
    assert params["dropout"] == fields["spec"].default.dropout


@pytest.mark.parametrize("kind", ["drkf", "late-fusion"])
def test_checkpoint_round_trip_rebuilds_the_same_model(tmp_path: Path, kind: str) -> None:
    torch.manual_seed(0)
    model = build_model(kind).eval()
    model.face.to(memory_format=torch.channels_last)
    save_checkpoint(tmp_path / "model.pt", model, ["text"])
    loaded, meta = load_checkpoint(tmp_path / "model.pt")
    assert meta["kind"] == kind
    assert meta["trained_modalities"] == ["text"]
    x = (torch.randn(2, 64, 96), torch.tensor([50, 96]), torch.rand(2, 3, 48, 48),
         torch.randn(2, 384), torch.tensor([[1.0, 1, 0], [0, 0, 1]]))
    with torch.no_grad():
        torch.testing.assert_close(model(*x)["logits"], loaded(*x)["logits"])


def test_late_fusion_averages_present_modalities_only() -> None:
    torch.manual_seed(0)
    model = LateFusion().eval()
    feats_a, feats_b = torch.randn(4, 3, 128), torch.randn(4, 3, 128)
    mixed = feats_a.clone()
    mixed[:, VIDEO] = feats_b[:, VIDEO]
    presence = torch.tensor([[1.0, 0, 1]] * 4)
    with torch.no_grad():
        a, b = model.fuse(feats_a, presence), model.fuse(mixed, presence)
        torch.testing.assert_close(a["logits"], b["logits"])
        probs = torch.softmax(a["unimodal_logits"], -1)
        torch.testing.assert_close(a["logits"].exp(), (probs[:, AUDIO] + probs[:, TEXT]) / 2)


# ------------------------------------------------------------------------ real data (../shared)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("features")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runs")


def tiny(data_dir: Path, cache_dir: Path, runs: Path, name: str, **kw: Any) -> TrainConfig:
    return TrainConfig(name=name, data_dir=data_dir, cache_dir=cache_dir, out_dir=runs,
                       **(TINY | kw))


@pytest.fixture(scope="module")
def quick_run(data_dir: Path, cache_dir: Path, runs: Path) -> tuple[Path, float]:
    """`libra-model train --quick` as a user runs it, timed (features built from scratch)."""
    started = time.perf_counter()
    result = CliRunner().invoke(main, [
        "train", "--quick", "--name", "quick", "--no-progress", "--data-dir", str(data_dir),
        "--cache-dir", str(cache_dir), "--out-dir", str(runs)])
    assert result.exit_code == 0, result.output
    assert "meld (text)" in result.output
    return runs / "quick", time.perf_counter() - started


def without_timings(metrics: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in metrics.items() if k not in ("wall_s",)}
    out["history"] = [{k: v for k, v in h.items() if not k.endswith("_s")}
                      for h in metrics["history"]]
    return out


@pytest.mark.shared
def test_quick_run_writes_config_metrics_and_weights(quick_run: tuple[Path, float]) -> None:
    run_dir, _ = quick_run  # its time is not asserted: the machines are shared (see bench/)
    assert {p.name for p in run_dir.iterdir()} >= {"config.json", "metrics.json", "model.pt"}
    config = TrainConfig.model_validate_json((run_dir / "config.json").read_text())
    assert config.max_train_examples_per_source == 300
    assert config.epochs == 1
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for split in ("val", "test"):
        assert set(metrics[split]) == {"meld", "ravdess", "fer"}
        for m in metrics[split].values():
            assert {"accuracy", "weighted_f1", "macro_f1", "confusion_matrix"} <= set(m)
            assert np.sum(m["confusion_matrix"]) == m["n"]
    assert set(metrics["subsets"]["test"]) == {"audio+text", "text+video", "audio+video",
                                               "audio+text+video"}
    _, meta = load_checkpoint(run_dir / "model.pt")
    assert meta["trained_modalities"] == ["text", "audio", "video"]


@pytest.mark.shared
def test_eval_reproduces_the_val_metrics_from_the_saved_weights(
        quick_run: tuple[Path, float]) -> None:
    run_dir, _ = quick_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    again = evaluate(run_dir, "val", progress=False)
    assert again["sources"] == metrics["val"]
    assert again["subsets"] == metrics["subsets"]["val"]
    result = CliRunner().invoke(main, ["eval", str(run_dir), "--split", "val"])
    assert result.exit_code == 0, result.output
    assert f"{metrics['val']['fer']['accuracy']:.4f}" in result.output


@pytest.mark.shared
def test_the_same_seed_gives_identical_metrics(data_dir: Path, cache_dir: Path,
                                               runs: Path) -> None:
    a = train(tiny(data_dir, cache_dir, runs, "seed-a"))
    b = train(tiny(data_dir, cache_dir, runs, "seed-b"))
    c = train(tiny(data_dir, cache_dir, runs, "seed-c", seed=1))
    ma, mb, mc = (json.loads((r / "metrics.json").read_text()) for r in (a, b, c))
    assert without_timings(ma) == without_timings(mb)
    assert ma["history"][0]["loss"] != mc["history"][0]["loss"]


@pytest.mark.shared
def test_loss_goes_down(data_dir: Path, cache_dir: Path, runs: Path) -> None:
    run_dir = train(tiny(data_dir, cache_dir, runs, "loss", epochs=4, augment=False))
    losses = [h["loss"]["total"] for h in json.loads(
        (run_dir / "metrics.json").read_text())["history"]]
    assert losses[-1] < losses[0] * 0.9, losses


@pytest.mark.shared
def test_an_existing_run_is_not_overwritten_by_accident(data_dir: Path, cache_dir: Path,
                                                        runs: Path) -> None:
    config = tiny(data_dir, cache_dir, runs, "twice", max_train_examples_per_source=24,
                  max_eval_examples_per_source=12, batch_size=24)
    train(config)
    with pytest.raises(FileExistsError, match="overwrite"):
        train(config)
    train(config, overwrite=True)


@pytest.mark.shared
@pytest.mark.parametrize(("model", "only"), [("late-fusion", None), ("late-fusion", "audio"),
                                             ("drkf", "video")])
def test_late_fusion_and_unimodal_modes_run(data_dir: Path, cache_dir: Path, runs: Path,
                                            model: str, only: str | None) -> None:
    args = ["train", "--model", model, "--name", f"{model}-{only}", "--no-progress",
            "--max-train-examples", "96", "--max-eval-examples", "48", "--epochs", "1",
            "--batch-size", "48", "--data-dir", str(data_dir), "--cache-dir", str(cache_dir),
            "--out-dir", str(runs)] + (["--only", only] if only else [])
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    run_dir = runs / f"{model}-{only}"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    expected = {"audio": ["ravdess"], "video": ["fer"], None: ["meld", "ravdess", "fer"]}[only]
    assert list(metrics["test"]) == expected
    assert ("subsets" in metrics) == (only is None)
    _, meta = load_checkpoint(run_dir / "model.pt")
    assert meta["kind"] == model
    assert meta["trained_modalities"] == [feats.SOURCE_MODALITY[s] for s in expected]
    assert evaluate(run_dir, "val", progress=False)["sources"] == metrics["val"]


@pytest.mark.shared
def test_features_have_the_model_shapes_and_the_cache_is_hit_the_second_time(
        data_dir: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = {s: load_features(s, "val", limit=40, root=data_dir, cache_dir=cache_dir,
                               progress=False) for s in feats.SOURCES}
    text = loaded["meld"].arrays["text_emb"]
    assert text.shape == (40, 384)
    assert text.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    audio = loaded["ravdess"].arrays
    assert audio["audio_mel"].shape == (40, 64, 798)
    assert audio["audio_mel"].dtype == np.float16
    assert (audio["audio_frames"] > 100).all()
    assert (audio["audio_frames"] <= 798).all()
    faces = loaded["fer"].arrays["faces"]
    assert faces.shape == (40, 1, 48, 48)
    assert faces.dtype == np.float32
    assert 0.0 <= faces.min() < faces.max() <= 1.0
    for f in loaded.values():
        assert f.labels.dtype == np.int64
        assert ((f.labels >= 0) & (f.labels < 7)).all()
        assert cache_path(f.source, "val", 40, cache_dir).is_file()

    def refuse(*_: Any) -> None:
        raise AssertionError("rebuilt features that were cached")

    for source in feats.SOURCES:
        monkeypatch.setitem(feats._BUILDERS, source, refuse)
        again = load_features(source, "val", limit=40, root=data_dir, cache_dir=cache_dir)
        for key, value in loaded[source].arrays.items():
            np.testing.assert_array_equal(again.arrays[key], value)
    # another subset is another cache entry, not a slice of the cached one
    with pytest.raises(AssertionError, match="rebuilt"):
        load_features("fer", "val", limit=41, root=data_dir, cache_dir=cache_dir)


@pytest.mark.shared
def test_length_sorted_text_batches_equal_full_padding(data_dir: Path) -> None:
    from libra.runtime.inputs.text import TextTokenizer
    from libra.training.datasets import load_meld
    from libra.training.text_encoder import MiniLMEncoder

    texts = [e.text for e in load_meld(data_dir / "meld", "val")[:40]]
    fast = feats.embed_texts(texts, batch_size=16, progress=False)
    ids, mask = TextTokenizer.from_file().encode(texts)
    with torch.no_grad():
        full = MiniLMEncoder()(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(fast, full, atol=1e-5)


def test_a_missing_data_folder_says_where_to_point(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="LIBRA_DATA_DIR"):
        load_features("fer", "val", root=tmp_path / "nowhere", cache_dir=tmp_path)
