"""Fusion heads on top of the two encoders' embeddings f_a [N, Da] and f_v [N, Dv].

Every head has one interface: ``forward(f_a, f_v) -> outputs``, ``loss(outputs, labels)`` and
``predict(outputs) -> probs [N, C]``, plus ``modalities``: the encoders it reads. A head that
reads one modality is called with ``None`` for the other, so the protocol neither runs nor
trains the unused encoder. The six heads of the AVDD fusion table:

- ``a`` / ``v`` (audio-only / visual-only): one linear classifier on f_a (f_v).
- ``concat``: one linear classifier on [f_a; f_v].
- ``sum``: one linear classifier on h_a + h_v, where h_m is f_m mapped to a common space.
- ``attention``: per-sample weights (w_a, w_v) = softmax(s(h_a), s(h_v)), then a linear
  classifier on w_a h_a + w_v h_v.
- ``ensemble`` (AVDD's best): one linear classifier per modality; the loss is the sum of the
  two cross-entropies; the prediction is the mean of the two softmax distributions.

Decisions where AVDD leaves sum and attention open (exposed as ``fusion_dim`` and
``attention_hidden``): the common space has ``fusion_dim`` dimensions (0: the smaller of Da, Dv);
a modality already of that size is used as is, another goes through a bias-free linear
projection, so with equal encoders (all shipped presets) sum is exactly "linear on f_a + f_v". The
attention score s is one additive-attention MLP, s(h) = u·tanh(W h + b) with ``attention_hidden``
units (0: a single linear score u·h), shared by both modalities so the two scores are comparable.
Every constructor takes (audio_dim, visual_dim, num_classes, **options) and ignores the options
of other heads, so the protocol builds any head the same way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avdistill.errors import ConfigError


class LogitsHead(nn.Module):
    """Shared by the heads whose output is one logits tensor: cross-entropy, softmax."""

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, labels)

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        """Class probabilities [N, C]."""
        return outputs.softmax(1)


class AudioOnlyHead(LogitsHead):
    modalities = ("audio",)

    def __init__(self, audio_dim: int, visual_dim: int, num_classes: int, **_):
        super().__init__()
        self.classifier = nn.Linear(audio_dim, num_classes)

    def forward(self, f_audio: torch.Tensor, f_visual: None = None) -> torch.Tensor:
        return self.classifier(f_audio)


class VisualOnlyHead(LogitsHead):
    modalities = ("visual",)

    def __init__(self, audio_dim: int, visual_dim: int, num_classes: int, **_):
        super().__init__()
        self.classifier = nn.Linear(visual_dim, num_classes)

    def forward(self, f_audio: None, f_visual: torch.Tensor) -> torch.Tensor:
        return self.classifier(f_visual)


class ConcatHead(LogitsHead):
    modalities = ("audio", "visual")

    def __init__(self, audio_dim: int, visual_dim: int, num_classes: int, **_):
        super().__init__()
        self.classifier = nn.Linear(audio_dim + visual_dim, num_classes)

    def forward(self, f_audio: torch.Tensor, f_visual: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.cat([f_audio, f_visual], dim=1))


class CommonSpace(nn.Module):
    """Maps f_a and f_v to h_a, h_v of one size: identity where the size already fits."""

    def __init__(self, audio_dim: int, visual_dim: int, fusion_dim: int = 0):
        super().__init__()
        if fusion_dim < 0:
            raise ConfigError(f"fusion_dim must be >= 0 (0: the smaller embedding size), got {fusion_dim}")
        self.dim = fusion_dim or min(audio_dim, visual_dim)
        self.audio = nn.Identity() if audio_dim == self.dim else nn.Linear(audio_dim, self.dim, bias=False)
        self.visual = nn.Identity() if visual_dim == self.dim else nn.Linear(visual_dim, self.dim, bias=False)

    def forward(self, f_audio: torch.Tensor, f_visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.audio(f_audio), self.visual(f_visual)


class SumHead(LogitsHead):
    modalities = ("audio", "visual")

    def __init__(self, audio_dim: int, visual_dim: int, num_classes: int, fusion_dim: int = 0, **_):
        super().__init__()
        self.common = CommonSpace(audio_dim, visual_dim, fusion_dim)
        self.classifier = nn.Linear(self.common.dim, num_classes)

    def forward(self, f_audio: torch.Tensor, f_visual: torch.Tensor) -> torch.Tensor:
        h_audio, h_visual = self.common(f_audio, f_visual)
        return self.classifier(h_audio + h_visual)


class AttentionHead(nn.Module):
    """Outputs are (logits, weights [N, 2]); the weights say how much each sample leans on each modality."""

    modalities = ("audio", "visual")

    def __init__(self, audio_dim: int, visual_dim: int, num_classes: int, fusion_dim: int = 0,
                 attention_hidden: int = 128, **_):
        super().__init__()
        if attention_hidden < 0:
            raise ConfigError(f"attention_hidden must be >= 0 (0: a linear score), got {attention_hidden}")
        self.common = CommonSpace(audio_dim, visual_dim, fusion_dim)
        dim = self.common.dim
        self.score = (nn.Sequential(nn.Linear(dim, attention_hidden), nn.Tanh(), nn.Linear(attention_hidden, 1, bias=False))
                      if attention_hidden else nn.Linear(dim, 1, bias=False))
        self.classifier = nn.Linear(dim, num_classes)

    def forward(self, f_audio: torch.Tensor, f_visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.stack(self.common(f_audio, f_visual), dim=1)  # [N, 2, D]
        weights = self.score(features).squeeze(2).softmax(1)  # [N, 2]
        return self.classifier((weights.unsqueeze(2) * features).sum(1)), weights

    def loss(self, outputs, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs[0], labels)

    def predict(self, outputs) -> torch.Tensor:
        """Class probabilities [N, C]."""
        return outputs[0].softmax(1)


class EnsembleHead(nn.Module):
    """Two single-modality classifiers trained together. The loss is the sum of their cross-entropies and
    they share no parameter, so each branch trains exactly as the audio-only (visual-only) head would:
    its accuracy alone (:meth:`branch_predict`) is that head's, without a second training run. Each
    branch's initial weights are drawn from the same random state, the one the single-modality head
    draws from under the same seed, so the equality is exact (tests/test_heads.py)."""

    modalities = ("audio", "visual")
    branches = ("a", "v")

    def __init__(self, audio_dim: int, visual_dim: int, num_classes: int, **_):
        super().__init__()
        state = torch.random.get_rng_state()
        self.audio = nn.Linear(audio_dim, num_classes)
        torch.random.set_rng_state(state)
        self.visual = nn.Linear(visual_dim, num_classes)

    def forward(self, f_audio: torch.Tensor, f_visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.audio(f_audio), self.visual(f_visual)

    def loss(self, outputs, labels: torch.Tensor) -> torch.Tensor:
        logits_audio, logits_visual = outputs
        return F.cross_entropy(logits_audio, labels) + F.cross_entropy(logits_visual, labels)

    def predict(self, outputs) -> torch.Tensor:
        """Class probabilities [N, C]."""
        logits_audio, logits_visual = outputs
        return 0.5 * (logits_audio.softmax(1) + logits_visual.softmax(1))

    def branch_predict(self, outputs) -> dict[str, torch.Tensor]:
        """Class probabilities [N, C] of each branch alone: {"a": audio, "v": visual}."""
        logits_audio, logits_visual = outputs
        return {"a": logits_audio.softmax(1), "v": logits_visual.softmax(1)}


HEADS = {"a": AudioOnlyHead, "v": VisualOnlyHead, "concat": ConcatHead, "sum": SumHead,
         "attention": AttentionHead, "ensemble": EnsembleHead}

HEAD_NAMES = {"a": "audio-only", "v": "visual-only", "concat": "concat", "sum": "sum",
              "attention": "attention", "ensemble": "ensemble"}
