"""Pieces shared by the distribution-matching family (DM, AVDD, DAVDD)."""

from __future__ import annotations

import torch

from avdistill.data.dataset import AVDataset
from avdistill.seeding import generator


class RealSampler:
    """Draws a seeded batch of real training pairs per class, normalised for the encoders."""

    def __init__(self, dataset: AVDataset, per_class: int, device: str = "cpu"):
        self.dataset = dataset
        self.per_class = per_class
        self.device = device
        self.class_indices = dataset.train.class_indices(dataset.num_classes)

    def sample(self, seed: int, iteration: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(audio, frames, labels): up to `per_class` pairs of every class, without replacement."""
        g = generator(seed, "real_batch", iteration)
        picks = [idx[torch.randperm(len(idx), generator=g)[: self.per_class]] for idx in self.class_indices]
        audio, frames, labels = self.dataset.model_inputs(self.dataset.train.subset(torch.cat(picks)))
        return audio.to(self.device), frames.to(self.device), labels.to(self.device)


def class_means(embeddings: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[num_classes, D] mean embedding of each class (one batched scatter, no Python loop)."""
    sums = torch.zeros(num_classes, embeddings.shape[1], dtype=embeddings.dtype, device=embeddings.device)
    sums.index_add_(0, labels, embeddings)
    counts = torch.bincount(labels, minlength=num_classes).clamp_min(1).to(embeddings.dtype)
    return sums / counts[:, None]


def mean_matching_loss(real_means: torch.Tensor, syn_means: torch.Tensor) -> torch.Tensor:
    """DM's loss: sum over classes of the squared distance between real and synthetic mean embeddings."""
    return (real_means - syn_means).pow(2).sum()
