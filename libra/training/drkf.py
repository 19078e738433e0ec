"""DRKF-style recognizer: decoupled representations + knowledge fusion, any subset of modalities.

After DRKF (Decoupled Representations with Knowledge Fusion, ACM MM 2025, arXiv 2508.01644), with
lessons from DMD (CVPR 2023) and MCULoRA:
- encoders turn each modality into one vector: audio log-mel through a small 1-D conv stack with
  masked pooling, face crops through a small CNN with temporal pooling, text as a sentence
  embedding (all-MiniLM-L6-v2, frozen, applied outside this module so training can cache it);
- ORL (optimised representation learning): per modality a *shared* projection (what the emotion
  looks like in any modality) and a *specific* one (what only this modality carries), pulled
  apart by the losses in `drkf_losses`;
- KF (knowledge fusion): a light self-attention Fusion Encoder over the present modalities'
  shared tokens scores them and folds the others into the dominant one; an Emotion
  Discrimination head keeps per-modality predictions and how much they disagree (cross-modal
  emotional inconsistency) and predicts whether the modalities agree; the Emotion
  Classification head reads the fused vector, the specific vectors and the disagreement.
- A presence mask (B, M) in encoder order is an input: absent modalities are masked out of
  attention, pooling and losses, so any non-empty subset works.

The encoders are pluggable (`ModalityModel`): the fusion takes one (B, d) vector per modality from
whatever encoder produced it. The served model uses our own encoders on raw inputs (audio log-mel,
face crops, MiniLM text, in `MODALITIES` order); the paired experiments
(`libra.training.paired_eval`) run the same `DRKF` class on precomputed features through
`FeatureProjection`, with their own modality count and label set.

Torch lives under the `train` extra: serving runs the ONNX export with onnxruntime and numpy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from libra.runtime.labels import EMOTIONS, MODALITIES

N_CLASSES = len(EMOTIONS)
N_MODALITIES = len(MODALITIES)
AUDIO, VIDEO, TEXT = range(N_MODALITIES)


@dataclass(frozen=True)
class ModelSpec:
    """Sizes of the recognizer; saved with the weights so a checkpoint rebuilds itself."""

    n_mels: int = 64
    text_dim: int = 384  # all-MiniLM-L6-v2 sentence embedding
    d_model: int = 128
    n_heads: int = 4
    fusion_layers: int = 1
    dropout: float = 0.1


class AudioEncoder(nn.Module):
    """Log-mel (B, n_mels, F) -> (B, d): per-utterance normalisation, conv stack, masked mean."""

    input_names: tuple[str, ...] = ("audio_mel", "audio_frames")

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        d = spec.d_model
        self.convs = nn.Sequential(
            nn.Conv1d(spec.n_mels, d, 5, stride=2, padding=2), nn.GELU(),
            nn.Conv1d(d, d, 5, stride=2, padding=2), nn.GELU(),
            nn.Conv1d(d, d, 5, stride=2, padding=2), nn.GELU(),
        )
        self.out = nn.Sequential(nn.LayerNorm(2 * d), nn.Linear(2 * d, d))

    def forward(self, mel: Tensor, valid_frames: Tensor) -> Tensor:
        n_frames = mel.shape[-1]
        t = torch.arange(n_frames, device=mel.device)
        valid = (t[None, :] < valid_frames[:, None].clamp(min=1)).to(mel.dtype)  # (B, F)
        count = valid.sum(-1, keepdim=True)[:, None]  # (B, 1, 1)
        mean = (mel * valid[:, None]).sum(-1, keepdim=True) / count
        var = (((mel - mean) ** 2) * valid[:, None]).sum(-1, keepdim=True) / count
        x = self.convs((mel - mean) / torch.sqrt(var + 1e-5) * valid[:, None])
        # the valid part after three stride-2 convs, as a mask on the downsampled time axis
        ds = torch.arange(x.shape[-1], device=mel.device)
        keep = (ds[None, :] * 8 < valid_frames[:, None].clamp(min=1)).to(x.dtype)
        pooled_mean = (x * keep[:, None]).sum(-1) / keep.sum(-1, keepdim=True)
        pooled_max = (x + (keep[:, None] - 1.0) * 1e4).amax(-1)
        return self.out(torch.cat([pooled_mean, pooled_max], dim=-1))


class FaceEncoder(nn.Module):
    """Face crops (B, N, 48, 48) in [0, 1] -> (B, d): a small CNN per frame, mean over frames."""

    input_names: tuple[str, ...] = ("faces",)

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.GELU(),
                nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.GELU(),
                nn.MaxPool2d(2),
            )

        self.cnn = nn.Sequential(block(1, 32), block(32, 64), block(64, 128))  # 48 -> 6
        self.out = nn.Sequential(nn.Dropout(spec.dropout), nn.Linear(128, spec.d_model))

    def frame_features(self, faces: Tensor) -> Tensor:
        """(B, N, 48, 48) -> (B, N, 128): what the frozen-or-pretrained face branch computes."""
        b, n, h, w = faces.shape
        x = self.cnn(((faces - 0.5) / 0.25).reshape(b * n, 1, h, w))
        return x.mean(dim=(-2, -1)).reshape(b, n, -1)

    def forward(self, faces: Tensor) -> Tensor:
        return self.out(self.frame_features(faces).mean(dim=1))


class TextProjection(nn.Module):
    """Sentence embedding (B, text_dim) -> (B, d)."""

    input_names: tuple[str, ...] = ("text_emb",)

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(spec.text_dim), nn.Dropout(spec.dropout),
                                 nn.Linear(spec.text_dim, spec.d_model))

    def forward(self, emb: Tensor) -> Tensor:
        return self.net(emb)


class FeatureProjection(nn.Module):
    """A precomputed feature vector (B, dim) -> (B, d): the encoder for inputs whose extractor is
    not ours (OpenFace action units, the MOSI utterance features). Expects standardised inputs."""

    def __init__(self, input_name: str, dim: int, d_model: int, dropout: float) -> None:
        super().__init__()
        self.input_names: tuple[str, ...] = (input_name,)
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, d_model), nn.GELU(),
                                 nn.Dropout(dropout), nn.Linear(d_model, d_model))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def served_encoders(spec: ModelSpec) -> dict[str, nn.Module]:
    """The encoders of the served model, in `MODALITIES` order (audio, video, text)."""
    return {"audio": AudioEncoder(spec), "face": FaceEncoder(spec), "text": TextProjection(spec)}


def _mlp(d_in: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_out), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(d_out, d_out))


class ModalityModel(nn.Module):
    """Pluggable encoders, one per modality, and a `fuse` step: what DRKF and its baselines share.

    `encoders` maps a module name to an encoder: any module with `input_names` (the names of its
    forward arguments) that returns (B, d_model). Their order is the modality order of the
    presence mask. Each encoder is registered under its own name (the served model's `audio`,
    `face`, `text`), so the served checkpoints keep their parameter names. `forward` takes every
    encoder input, positionally in that order or by name, then `presence` (B, M).
    """

    def __init__(self, spec: ModelSpec, encoders: Mapping[str, nn.Module] | None,
                 n_classes: int) -> None:
        super().__init__()
        self.spec = spec
        chosen = dict(encoders) if encoders is not None else served_encoders(spec)
        if not chosen:
            raise ValueError("a model needs at least one encoder")
        names = [n for enc in chosen.values() for n in _input_names(enc)]
        if len(set(names)) != len(names) or "presence" in names:
            raise ValueError(f"encoder input names must be unique and not 'presence': {names}")
        for name, encoder in chosen.items():
            self.add_module(name, encoder)
        self.encoder_names: tuple[str, ...] = tuple(chosen)
        self.input_names: tuple[str, ...] = tuple(names)
        self.n_modalities = len(chosen)
        self.n_classes = n_classes

    def _check_encoders(self) -> None:
        """Call at the end of a subclass's __init__: no fusion part replaced an encoder."""
        for name in self.encoder_names:
            if not hasattr(self.get_submodule(name), "input_names"):
                raise ValueError(f"encoder name {name!r} is taken by a part of "
                                 f"{type(self).__name__}; rename the encoder")

    def encoders(self) -> list[nn.Module]:
        """The encoder modules in modality order."""
        return [self.get_submodule(name) for name in self.encoder_names]

    def encode(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """(B, M, d): one vector per modality (absent ones are computed and then masked)."""
        return torch.stack(
            [enc(*(inputs[n] for n in _input_names(enc))) for enc in self.encoders()], dim=1)

    def forward(self, *args: Tensor, **kwargs: Tensor) -> dict[str, Tensor]:
        names = (*self.input_names, "presence")
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__} takes {len(names)} inputs ({', '.join(names)})"
                            f", got {len(args)}")
        values = dict(zip(names, args, strict=False))
        for key, value in kwargs.items():
            if key not in names or key in values:
                raise TypeError(f"unexpected or repeated input {key!r}; inputs: {', '.join(names)}")
            values[key] = value
        missing = [n for n in names if n not in values]
        if missing:
            raise TypeError(f"missing inputs: {', '.join(missing)}")
        return self.fuse(self.encode(values), values["presence"])

    def fuse(self, features: Tensor, presence: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError


def _input_names(encoder: nn.Module) -> tuple[str, ...]:
    names = getattr(encoder, "input_names", None)
    if not isinstance(names, tuple) or not names:
        raise ValueError(f"{type(encoder).__name__} has no `input_names`: an encoder must name "
                         f"its forward arguments")
    return names


class DRKF(ModalityModel):
    """The recognizer: ORL + KF over any pluggable encoders (served ones by default).

    `emotion_discrimination=False` drops the Emotion Discrimination head (per-modality heads, their
    disagreement, the consistency predictor): the ablation `ours-no-ed`.
    """

    def __init__(self, spec: ModelSpec | None = None,
                 encoders: Mapping[str, nn.Module] | None = None, n_classes: int = N_CLASSES,
                 emotion_discrimination: bool = True) -> None:
        spec = spec or ModelSpec()
        super().__init__(spec, encoders, n_classes)
        d, m, c = spec.d_model, self.n_modalities, n_classes
        self.emotion_discrimination = emotion_discrimination
        self.shared = nn.ModuleList(_mlp(d, d, spec.dropout) for _ in range(m))
        self.specific = nn.ModuleList(_mlp(d, d, spec.dropout) for _ in range(m))
        self.modality_embedding = nn.Parameter(torch.zeros(m, d))
        layer = nn.TransformerEncoderLayer(d, spec.n_heads, 2 * d, spec.dropout, batch_first=True,
                                           norm_first=True)
        self.fusion = nn.TransformerEncoder(layer, spec.fusion_layers, enable_nested_tensor=False)
        self.dominance = nn.Linear(d, 1)
        if emotion_discrimination:
            self.unimodal = nn.ModuleList(nn.Linear(2 * d, c) for _ in range(m))
            self.consistency = nn.Sequential(nn.Linear(2 * c, d), nn.GELU(), nn.Linear(d, 1))
        self.modality_of_specific = nn.Linear(d, m)
        width = 2 * d + 2 * c if emotion_discrimination else 2 * d
        self.classify = nn.Sequential(nn.LayerNorm(width), nn.Dropout(spec.dropout),
                                      nn.Linear(width, d), nn.GELU(), nn.Linear(d, c))
        self._check_encoders()

    def fuse(self, features: Tensor, presence: Tensor) -> dict[str, Tensor]:
        """ORL + KF over per-modality features (B, M, d) and presence (B, M) in {0, 1}."""
        present = presence.to(features.dtype)
        # a row with nothing present (the API refuses those) must still give finite numbers
        present = torch.where(present.sum(-1, keepdim=True) > 0, present,
                              F.one_hot(torch.zeros_like(present[:, 0], dtype=torch.long),
                                        self.n_modalities).to(present.dtype))
        shared = torch.stack([f(features[:, m]) for m, f in enumerate(self.shared)], dim=1)
        specific = torch.stack([f(features[:, m]) for m, f in enumerate(self.specific)], dim=1)
        tokens = self.fusion(shared + self.modality_embedding, src_key_padding_mask=present < 0.5)
        scores = self.dominance(tokens).squeeze(-1) + (present - 1.0) * 1e4
        weights = torch.softmax(scores, dim=-1)  # which modality leads, among the present
        fused = (weights.unsqueeze(-1) * tokens).sum(1)
        if not self.emotion_discrimination:
            n_present = present.sum(-1, keepdim=True)
            specific_mean = (specific * present.unsqueeze(-1)).sum(1) / n_present
            return {"logits": self.classify(torch.cat([fused, specific_mean], dim=-1)),
                    "weights": weights, "shared": shared, "specific": specific,
                    "modality_logits": self.modality_of_specific(specific), "presence": present}
        unimodal = torch.stack(
            [head(torch.cat([shared[:, m], specific[:, m]], -1))
             for m, head in enumerate(self.unimodal)], dim=1)  # (B, M, C)
        probs = torch.softmax(unimodal, -1) * present.unsqueeze(-1)
        n_present = present.sum(-1, keepdim=True)
        mean_probs = probs.sum(1) / n_present
        spread = (((probs - mean_probs.unsqueeze(1)) ** 2) * present.unsqueeze(-1)).sum(1)
        disagreement = torch.cat([mean_probs, spread / n_present], dim=-1)  # (B, 2C)
        specific_mean = (specific * present.unsqueeze(-1)).sum(1) / n_present
        logits = self.classify(torch.cat([fused, specific_mean, disagreement], dim=-1))
        return {
            "logits": logits,
            "unimodal_logits": unimodal,
            "weights": weights,
            "shared": shared,
            "specific": specific,
            "consistency_logit": self.consistency(disagreement).squeeze(-1),
            "modality_logits": self.modality_of_specific(specific),
            "presence": present,
        }


@dataclass(frozen=True)
class LossWeights:
    """How much each DRKF loss counts; defaults are the paper-style auxiliary weights."""

    unimodal: float = 0.5
    contrastive: float = 0.1
    separation: float = 0.1
    consistency: float = 0.1
    temperature: float = 0.1


def supervised_info_nce(shared: Tensor, presence: Tensor, labels: Tensor,
                        temperature: float) -> Tensor:
    """InfoNCE over every present (sample, modality) shared vector: positives share the label.

    With paired data the same clip's modalities are positives for each other; with unpaired
    data (MELD text, RAVDESS audio) the label is the bridge, so same-emotion vectors from any
    modality are pulled together: the shared space becomes modality-invariant.
    """
    b, m, d = shared.shape
    z = F.normalize(shared.reshape(b * m, d), dim=-1)
    keep = presence.reshape(b * m) > 0.5
    z, y = z[keep], labels.repeat_interleave(m)[keep]
    if z.shape[0] < 2:
        return shared.sum() * 0.0
    sim = z @ z.T / temperature
    eye = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(eye, -1e4)
    positive = (y[:, None] == y[None, :]) & ~eye
    log_prob = sim - torch.logsumexp(sim, dim=-1, keepdim=True)
    has_pos = positive.any(-1)
    if not has_pos.any():
        return shared.sum() * 0.0
    per_anchor = (log_prob * positive).sum(-1) / positive.sum(-1).clamp(min=1)
    return -per_anchor[has_pos].mean()


def drkf_losses(out: dict[str, Tensor], labels: Tensor, weights: LossWeights = LossWeights(),
                consistent: Tensor | None = None) -> dict[str, Tensor]:
    """Classification plus the ORL and KF auxiliary losses; `total` is what training minimises.

    - `ce`: the Emotion Classification head;
    - `unimodal`: each present modality's own head (keeps modality-level cues for the
      Emotion Discrimination head);
    - `contrastive`: supervised InfoNCE on shared vectors (task-relevant, modality-invariant);
    - `separation`: shared and specific of one modality orthogonal (squared cosine), and the
      specific vectors recognisable by modality (they keep what only that modality has);
    - `consistency`: when `consistent` (B,) is given, whether the modalities agree on the emotion.
    """
    present = out["presence"]
    n_modalities = present.shape[-1]
    ce = F.cross_entropy(out["logits"], labels)
    mask = present.reshape(-1)
    losses = {"ce": ce}
    total = ce
    if "unimodal_logits" in out:  # absent without the Emotion Discrimination head
        uni = F.cross_entropy(out["unimodal_logits"].reshape(-1, out["logits"].shape[-1]),
                              labels.repeat_interleave(n_modalities), reduction="none")
        losses["unimodal"] = (uni * mask).sum() / mask.sum().clamp(min=1)
        total = total + weights.unimodal * losses["unimodal"]
    contrastive = supervised_info_nce(out["shared"], present, labels, weights.temperature)
    cos = F.cosine_similarity(out["shared"], out["specific"], dim=-1) ** 2
    which = torch.arange(n_modalities, device=labels.device).repeat(labels.shape[0])
    sep_mod = F.cross_entropy(out["modality_logits"].reshape(-1, n_modalities), which,
                              reduction="none")
    separation = ((cos.reshape(-1) + sep_mod) * mask).sum() / mask.sum().clamp(min=1)
    losses |= {"contrastive": contrastive, "separation": separation}
    total = total + weights.contrastive * contrastive + weights.separation * separation
    if consistent is not None and "consistency_logit" in out:
        bce = F.binary_cross_entropy_with_logits(out["consistency_logit"], consistent.float())
        losses["consistency"] = bce
        total = total + weights.consistency * bce
    losses["total"] = total
    return losses
