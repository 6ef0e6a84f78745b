"""Initial synthetic sets: IPC real pairs per class (normalised), or Gaussian noise."""

from __future__ import annotations

import torch

from avdistill.data.dataset import AVDataset
from avdistill.errors import ConfigError
from avdistill.seeding import generator

INITS = ("real", "noise")


def pick_real(dataset: AVDataset, ipc: int, seed: int) -> torch.Tensor:
    """Indices of `ipc` random training pairs per class, class by class. Fails clearly on small classes."""
    g = generator(seed, "init")
    picks = []
    for c, idx in enumerate(dataset.train.class_indices(dataset.num_classes)):
        if len(idx) < ipc:
            raise ConfigError(f"class {dataset.classes[c]!r} of {dataset.name} has {len(idx)} training pairs, "
                              f"fewer than ipc={ipc}")
        picks.append(idx[torch.randperm(len(idx), generator=g)[:ipc]])
    return torch.cat(picks)


def initial_synthetic(dataset: AVDataset, ipc: int, init: str, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(audio, frames, labels) in model space: IPC pairs per class, ordered by class."""
    if init not in INITS:
        raise ConfigError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    if ipc < 1:
        raise ConfigError(f"ipc must be >= 1, got {ipc}")
    labels = torch.arange(dataset.num_classes).repeat_interleave(ipc)
    if init == "real":
        audio, frames, _ = dataset.model_inputs(dataset.train.subset(pick_real(dataset, ipc, seed)))
        return audio.clone(), frames.clone(), labels
    g = generator(seed, "init")
    prep = dataset.preprocessing
    audio = torch.randn(len(labels), *prep.audio_shape, generator=g)
    frames = torch.randn(len(labels), *prep.frame_shape, generator=g)
    return audio, frames, labels
