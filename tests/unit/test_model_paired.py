"""Pluggable encoders under one fusion class, the paired readers on the real files, and
`libra-model eval --paired` end to end on a tiny subset."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the model needs the `train` extra (torch==2.13.0)")

from click.testing import CliRunner  # noqa: E402

from libra.training.build import BUNDLE_DIR  # noqa: E402
from libra.training.checkpoint import load_checkpoint  # noqa: E402
from libra.training.cli import PAIRED_MODELS, main  # noqa: E402
from libra.training.datasets import ravdess_label  # noqa: E402
from libra.training.drkf import (  # noqa: E402
    DRKF,
    AudioEncoder,
    FaceEncoder,
    FeatureProjection,
    ModelSpec,
    TextProjection,
    drkf_losses,
)
from libra.training.early_fusion import EarlyFusion  # noqa: E402
from libra.training.paired_data import (  # noqa: E402
    MOSI_FILE,
    RAVDESS_AV_FILE,
    PairedDataset,
    PairedSplit,
    load_mosi,
    load_ravdess_av,
    ravdess_av_labels,
)
from libra.training.paired_eval import MODELS, late_fusion_probs, run_paired  # noqa: E402
from libra.training.paired_train import (  # noqa: E402
    PairedConfig,
    Recipe,
    all_subsets,
    fit,
    gather,
    sample_presence,
)

pytestmark = pytest.mark.unit

SPEC = ModelSpec(d_model=32, n_heads=4, dropout=0.0)
RECORD_FIELDS = {"dataset": str, "model": str, "subset": str, "seeds": list,
                 "accuracy_mean": float, "accuracy_std": float, "weighted_f1_mean": float,
                 "weighted_f1_std": float}


def feature_drkf(n_classes: int = 5, **kw: Any) -> DRKF:
    encoders = {"audio": FeatureProjection("audio_features", 12, SPEC.d_model, 0.0),
                "video": FeatureProjection("video_features", 7, SPEC.d_model, 0.0)}
    return DRKF(SPEC, encoders, n_classes, **kw)


def feature_inputs(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"audio_features": torch.randn(n, 12, generator=g),
            "video_features": torch.randn(n, 7, generator=g)}


# ------------------------------------------------------------------ one fusion class, any encoders


def test_the_served_model_and_a_feature_model_are_the_same_fusion_class() -> None:
    served, _ = load_checkpoint(BUNDLE_DIR / "model.pt")  # strict: every parameter name matches
    assert type(served) is DRKF
    assert [type(e) for e in served.encoders()] == [AudioEncoder, FaceEncoder, TextProjection]
    features = feature_drkf()
    assert type(features) is DRKF
    assert [type(e) for e in features.encoders()] == [FeatureProjection, FeatureProjection]
    # the fusion code is literally the same function, whatever the encoders
    assert type(served).fuse is type(features).fuse
    with torch.no_grad():
        out = features.eval()(**feature_inputs(4), presence=torch.ones(4, 2))
    assert out["logits"].shape == (4, 5)
    assert out["unimodal_logits"].shape == (4, 2, 5)


def test_a_feature_model_learns_from_either_modality_and_ignores_absent_ones() -> None:
    """Labels written into each feature vector: a few steps fit them from each modality alone,
    and what an absent modality's input holds never changes the answer."""
    torch.manual_seed(0)
    model = feature_drkf()
    n, c = 40, 5
    labels = torch.arange(n) % c
    x = feature_inputs(n)
    x["audio_features"][:, :c] += 4.0 * torch.nn.functional.one_hot(labels, c)
    x["video_features"][:, :c] += 4.0 * torch.nn.functional.one_hot(labels, c)
    presence = torch.zeros(n, 2)
    presence[torch.arange(n), torch.arange(n) % 2] = 1.0
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        opt.zero_grad()
        drkf_losses(model(**x, presence=presence), labels)["total"].backward()
        opt.step()
    model.eval()
    noisy = {**x, "video_features": torch.randn(n, 7) * 10}
    audio_only = torch.tensor([[1.0, 0.0]]).repeat(n, 1)
    with torch.no_grad():
        for p in (audio_only, audio_only.flip(-1)):
            assert (model(**x, presence=p)["logits"].argmax(-1) == labels).float().mean() > 0.9
        torch.testing.assert_close(model(**x, presence=audio_only)["logits"],
                                   model(**noisy, presence=audio_only)["logits"])


def test_without_emotion_discrimination_the_ed_parts_are_gone_and_it_trains() -> None:
    model = feature_drkf(emotion_discrimination=False)
    assert not hasattr(model, "unimodal")
    assert not hasattr(model, "consistency")
    out = model(**feature_inputs(6), presence=torch.ones(6, 2))
    losses = drkf_losses(out, torch.arange(6) % 5)
    assert "unimodal" not in losses
    losses["total"].backward()
    assert all(p.grad is not None for p in model.classify.parameters())


def test_an_encoder_named_like_a_fusion_part_is_refused() -> None:
    with pytest.raises(ValueError, match="fusion"):
        DRKF(SPEC, {"fusion": FeatureProjection("x", 3, SPEC.d_model, 0.0)}, 2)
    with pytest.raises(ValueError, match="unique"):
        DRKF(SPEC, {"a": FeatureProjection("x", 3, SPEC.d_model, 0.0),
                    "b": FeatureProjection("x", 3, SPEC.d_model, 0.0)}, 2)


def test_early_fusion_zeroes_absent_modalities() -> None:
    torch.manual_seed(0)
    model = EarlyFusion(SPEC, {"a": FeatureProjection("a", 4, SPEC.d_model, 0.0),
                               "b": FeatureProjection("b", 4, SPEC.d_model, 0.0)}, 3).eval()
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    p = torch.tensor([[1.0, 0.0]] * 5)
    with torch.no_grad():
        torch.testing.assert_close(model(a, b, p)["logits"], model(a, b * 7, p)["logits"])
        assert not torch.allclose(model(a, b, torch.ones(5, 2))["logits"],
                                  model(a, b * 7, torch.ones(5, 2))["logits"])


def test_cutting_log_mel_after_the_longest_valid_clip_gives_the_same_embedding() -> None:
    from libra.training.paired_data import PairedSplit

    rng = np.random.default_rng(0)
    mel = rng.normal(size=(3, 64, 400)).astype(np.float16)
    frames = np.array([120, 203, 90])
    split = PairedSplit(np.zeros(3, np.int64), {"audio": (mel, frames)}, np.zeros(3),
                        np.zeros(3))
    cut_mel, cut_frames = gather(split, "audio", np.arange(3), None)
    assert cut_mel.shape[-1] == 224  # 203 + 16 frames of the convolutions' reach, to a hop of 8
    torch.manual_seed(0)
    encoder = AudioEncoder(ModelSpec()).eval()
    with torch.no_grad():
        full = encoder(torch.from_numpy(mel.astype(np.float32)), torch.from_numpy(frames))
        torch.testing.assert_close(encoder(cut_mel, cut_frames), full, atol=1e-5, rtol=1e-5)


def test_modality_sampling_draws_every_non_empty_subset() -> None:
    rng = np.random.default_rng(0)
    presence = sample_presence(rng, 4000, 3, full_fraction=0.4)
    assert (presence.sum(1) > 0).all()
    kinds = {tuple(row) for row in presence.astype(int).tolist()}
    assert len(kinds) == 7
    assert abs((presence.sum(1) == 3).mean() - 0.4) < 0.03
    assert all_subsets(2) == [(0,), (1,), (0, 1)]


def test_late_fusion_averages_the_unimodal_probabilities() -> None:
    uni = {(0,): np.array([[0.8, 0.2]]), (1,): np.array([[0.2, 0.8]]),
           (2,): np.array([[0.5, 0.5]])}
    fused = late_fusion_probs(uni, all_subsets(3))
    assert set(fused) == {(0, 1), (0, 2), (1, 2), (0, 1, 2)}
    np.testing.assert_allclose(fused[(0, 2)], [[0.65, 0.35]])


def test_ravdess_label_sets() -> None:
    labels, names = ravdess_av_labels(np.array([1, 2, 8]), "8")
    assert labels.tolist() == [0, 1, 7]
    assert names[1] == "calm"
    labels, names = ravdess_av_labels(np.array([1, 2, 8]), "7")
    assert [names[i] for i in labels] == ["neutral", "neutral", "surprise"]
    with pytest.raises(ValueError, match="1-8"):
        ravdess_av_labels(np.array([0]), "8")


def test_the_cli_knows_every_paired_model() -> None:
    assert PAIRED_MODELS == MODELS


# ------------------------------------------------------------------------ real data (../shared)


@pytest.fixture(scope="module")
def paired_dir(shared_dir: Path) -> Path:
    path = shared_dir / "data"
    for needed in (RAVDESS_AV_FILE, MOSI_FILE, Path("ravdess-speech-16k")):
        if not (path / needed).exists():
            pytest.skip(f"needs the paired data {path / needed} (SOURCES-paired.md)")
    return path


@pytest.mark.shared
def test_every_av_row_names_an_existing_flac_of_the_same_trial(paired_dir: Path) -> None:
    with np.load(paired_dir / RAVDESS_AV_FILE) as z:
        files, clips, actors, au = z["audio_file"], z["clip_id"], z["actor"], z["au"]
    assert len(files) == 1440
    assert au.shape == (1440, 35)
    for name, clip, actor in zip(files, clips, actors, strict=True):
        path = paired_dir / "ravdess-speech-16k" / str(name)
        assert path.is_file()
        assert path.stem.split("-")[1:] == str(clip).split("-")[1:]  # modality code 01 -> 03
        assert ravdess_label(path)[1] == actor


@pytest.mark.shared
def test_ravdess_av_joins_audio_and_aus_and_splits_by_actor(paired_dir: Path,
                                                            tmp_path: Path) -> None:
    data = load_ravdess_av(paired_dir, max_train=60, max_eval=30, cache_dir=tmp_path)
    assert data.modalities == ("audio", "video")
    assert data.n_classes == 8
    sizes = {s: len(v) for s, v in data.splits.items()}
    assert sizes == {"train": 60, "val": 30, "test": 30}
    actors = {s: set(v.groups.tolist()) for s, v in data.splits.items()}
    assert actors["train"] <= set(range(1, 19))
    assert actors["test"] <= {21, 22, 23, 24}
    assert actors["val"] <= {19, 20}
    for split in data.splits.values():
        mel, frames = split.inputs["audio"]
        assert mel.shape[1:] == (64, 798)
        assert (frames > 0).all()
        # the label is the clip's own emotion code (8 classes: code - 1)
        codes = np.array([int(str(c).split("-")[2]) for c in split.ids])
        np.testing.assert_array_equal(split.labels, codes - 1)
    train_au = data.splits["train"].inputs["video"][0]
    np.testing.assert_allclose(train_au.mean(0), 0.0, atol=1e-4)


@pytest.mark.shared
def test_mosi_splits_are_video_disjoint_and_val_comes_from_train(paired_dir: Path) -> None:
    data = load_mosi(paired_dir)
    sizes = {s: len(v) for s, v in data.splits.items()}
    assert sizes["train"] + sizes["val"] == 1447
    assert sizes["test"] == 752
    videos = {s: set(v.groups.tolist()) for s, v in data.splits.items()}
    assert len(videos["train"]) + len(videos["val"]) == 62
    assert len(videos["test"]) == 31
    assert not videos["train"] & videos["val"]
    assert not (videos["train"] | videos["val"]) & videos["test"]
    assert data.feature_dims == {"text": 100, "audio": 73, "video": 100}
    for split in data.splits.values():
        assert all(u.rsplit("_", 1)[0] == v for u, v in zip(split.ids, split.groups, strict=True))
        assert set(np.unique(split.labels)) == {0, 1}


def records_of(doc: dict[str, Any], dataset: str) -> list[dict[str, Any]]:
    return [r for r in doc["records"] if r["dataset"] == dataset]


@pytest.mark.shared
def test_eval_paired_runs_end_to_end_and_writes_json_records(paired_dir: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "paired.json"
    tiny = ["--seeds", "0,1", "--epochs", "1", "--max-train-examples", "40",
            "--max-eval-examples", "24", "--data-dir", str(paired_dir), "--cache-dir",
            str(tmp_path), "--out", str(out), "--no-progress"]
    for name in ("ravdess-av", "mosi"):
        result = CliRunner().invoke(main, ["eval", "--paired", name, *tiny])
        assert result.exit_code == 0, result.output
        assert "ours-subset-specific" in result.output
    doc = json.loads(out.read_text())
    assert set(doc["datasets"]) == {"ravdess-av", "mosi"}  # the second run kept the first's
    expected = {"ravdess-av": (["audio", "video"], ["audio+video"]),
                "mosi": (["audio", "text", "video"],
                         ["audio+text", "audio+video", "text+video", "audio+text+video"])}
    for name, (singles, fused) in expected.items():
        records = records_of(doc, name)
        keys = {(r["model"], r["subset"]) for r in records}
        assert len(keys) == len(records)
        every = singles + fused
        want = ({("unimodal", s) for s in singles} | {("late-fusion", s) for s in fused}
                | {("early-fusion", s) for s in fused}
                | {(m, s) for m in ("ours", "ours-no-orl", "ours-no-ed", "ours-subset-specific")
                   for s in every})
        assert keys == {(m, "+".join(sorted(s.split("+")))) for m, s in want}
        for r in records:
            for key, kind in RECORD_FIELDS.items():
                assert isinstance(r[key], kind), (key, r)
            assert r["seeds"] == [0, 1]
            assert 0.0 <= r["accuracy_mean"] <= 1.0
            assert 0.0 <= r["weighted_f1_mean"] <= 1.0
            assert r["accuracy_mean"] == pytest.approx(np.mean(r["accuracy_per_seed"]))
            assert r["accuracy_std"] == pytest.approx(np.std(r["accuracy_per_seed"], ddof=1))
        meta = doc["datasets"][name]
        assert meta["splits"]["test"]["rows"] == 24
        assert meta["seeds"] == [0, 1]
        assert meta["logistic_regression"]


def test_eval_needs_a_run_or_paired_and_not_both(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["eval"])
    assert result.exit_code == 2
    assert "--paired" in result.output
    result = CliRunner().invoke(main, ["eval", str(tmp_path), "--paired", "mosi"])
    assert result.exit_code == 2
    assert "not both" in result.output
    result = CliRunner().invoke(main, ["eval", "--paired", "mosi", "--seeds", "0,x"])
    assert result.exit_code == 2
    assert "--seeds" in result.output
    for option, value in (("--encoder-lr-scale", "0"), ("--jobs", "0")):
        result = CliRunner().invoke(main, ["eval", "--paired", "mosi", option, value])
        assert result.exit_code == 2
        assert option in result.output


def test_eval_paired_without_the_data_names_the_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["eval", "--paired", "mosi", "--data-dir", str(tmp_path),
                                       "--out", str(tmp_path / "x.json")])
    assert result.exit_code == 1
    assert str(tmp_path / MOSI_FILE) in result.output
    assert not (tmp_path / "x.json").exists()


# ------------------------------------------------- fused encoders started from unimodal models


def synthetic_paired(n: int = 48, seed: int = 0) -> PairedDataset:
    """Two feature modalities, each carrying the label weakly: enough for `fit` to train on."""
    rng = np.random.default_rng(seed)

    def split(rows: int) -> PairedSplit:
        labels = rng.integers(0, 3, rows)
        onehot = np.eye(3)[labels]
        audio = rng.normal(size=(rows, 6)) + np.pad(onehot, ((0, 0), (0, 3)))
        video = rng.normal(size=(rows, 5)) + np.pad(onehot, ((0, 0), (0, 2)))
        return PairedSplit(labels.astype(np.int64), {"audio": (audio.astype(np.float32),),
                                                     "video": (video.astype(np.float32),)},
                           np.arange(rows), np.arange(rows).astype(str))

    return PairedDataset("synthetic", ("audio", "video"), ("a", "b", "c"),
                         {"train": split(n), "val": split(n // 2), "test": split(n // 2)},
                         {"audio": 6, "video": 5})


TINY = PairedConfig(epochs=2, batch_size=16, d_model=16, n_heads=2, dropout=0.0)


def test_a_unimodal_fit_hands_back_only_its_own_encoder() -> None:
    data = synthetic_paired()
    result = fit(data, Recipe("unimodal", "late-fusion", (1,), ((1,),)), TINY, seed=0)
    assert set(result.encoder_states) == {"video"}
    sampled = fit(data, Recipe("ours", "drkf", None, ((0,), (1,), (0, 1))), TINY, seed=0)
    assert set(sampled.encoder_states) == {"audio", "video"}


def test_fused_encoders_start_from_the_unimodal_ones_and_learn_at_their_own_rate() -> None:
    data = synthetic_paired()
    start = {m: fit(data, Recipe("unimodal", "late-fusion", (i,), ((i,),)), TINY, 0)
             .encoder_states[m] for i, m in enumerate(data.modalities)}
    recipe = Recipe("ours", "drkf", None, ((0,), (1,), (0, 1)))
    frozen = fit(data, recipe, dataclasses.replace(TINY, encoder_lr_scale=1e-12), 1, start)
    moving = fit(data, recipe, TINY, 1, start)
    for m in data.modalities:
        for key, value in start[m].items():
            torch.testing.assert_close(frozen.encoder_states[m][key], value, rtol=0, atol=1e-6)
        assert any(not torch.allclose(moving.encoder_states[m][k], v, atol=1e-4)
                   for k, v in start[m].items())


def test_unimodal_init_trains_the_unimodal_models_first_even_when_not_reported() -> None:
    data = synthetic_paired()
    lines: list[str] = []
    config = dataclasses.replace(TINY, encoder_init="unimodal")
    result = run_paired(data, [0], config, models=("ours",), log=lines.append)
    assert [line.split()[3] for line in lines] == ["unimodal", "unimodal", "ours"]
    assert {r["model"] for r in result["records"]} == {"ours"}
    assert result["meta"]["config"]["encoder_init"] == "unimodal"


def test_seeds_in_parallel_processes_give_the_same_records_as_one_process() -> None:
    data = synthetic_paired()
    config = dataclasses.replace(TINY, encoder_init="unimodal")
    models = ("unimodal", "late-fusion", "ours")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what each forked job runs with
    try:
        one = run_paired(data, [0, 1], config, models, log=lambda _: None, jobs=1)
        two = run_paired(data, [0, 1], config, models, log=lambda _: None, jobs=2)
    finally:
        torch.set_num_threads(threads)
    assert two["meta"]["jobs"] == 2
    assert one["records"] == two["records"]
    assert one["meta"]["best_epochs"] == two["meta"]["best_epochs"]
