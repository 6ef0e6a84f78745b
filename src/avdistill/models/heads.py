"""Fusion heads on top of the two encoders' embeddings.

Ensemble (AVDD's best): one linear classifier per modality; training loss is the sum of the two
cross-entropies; the prediction is the mean of the two softmax distributions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class EnsembleHead(nn.Module):
    def __init__(self, audio_dim: int, visual_dim: int, num_classes: int):
        super().__init__()
        self.audio = nn.Linear(audio_dim, num_classes)
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


HEADS = {"ensemble": EnsembleHead}
