"""Initial synthetic sets: real pairs per class (random or herded), or Gaussian noise; with the
IDM factor technique, factor² real pairs are downscaled into each stored sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avdistill.data.dataset import AVDataset
from avdistill.errors import ConfigError
from avdistill.methods.factor import check_factor
from avdistill.methods.features import check_class_sizes, real_pairs
from avdistill.methods.herding import herding_indices
from avdistill.seeding import generator

INITS = ("real", "herding", "noise")


@dataclass(frozen=True)
class HerdingFeatures:
    """Where herding initialisation takes its features from (see :mod:`avdistill.methods.features`)."""

    space: str = "av"
    encoder: str = "small"
    epochs: int = 10
    progress: bool = False


def pick_real(dataset: AVDataset, per_class: int, seed: int) -> torch.Tensor:
    """Indices of `per_class` random training pairs per class, class by class. Fails clearly on small classes."""
    check_class_sizes(dataset, per_class)
    g = generator(seed, "init")
    return torch.cat([idx[torch.randperm(len(idx), generator=g)[:per_class]]
                      for idx in dataset.train.class_indices(dataset.num_classes)])


def initial_synthetic(dataset: AVDataset, ipc: int, init: str, seed: int, factor: int = 1,
                      herding: HerdingFeatures = HerdingFeatures()) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(audio, frames, labels) in model space: IPC stored pairs per class, ordered by class.

    With factor > 1 every stored pair packs factor² real pairs of its class (consecutive picks),
    each downscaled into one grid cell.
    """
    if init not in INITS:
        raise ConfigError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    if ipc < 1:
        raise ConfigError(f"ipc must be >= 1, got {ipc}")
    check_factor(factor)
    labels = torch.arange(dataset.num_classes).repeat_interleave(ipc)
    prep = dataset.preprocessing
    if init == "noise":
        g = generator(seed, "init")
        return torch.randn(len(labels), *prep.audio_shape, generator=g), \
            torch.randn(len(labels), *prep.frame_shape, generator=g), labels
    check_class_sizes(dataset, ipc, factor)
    per_class = ipc * factor * factor
    if init == "real":
        indices = pick_real(dataset, per_class, seed)
    else:
        indices = herding_indices(dataset, per_class, herding.space, herding.encoder, herding.epochs, seed,
                                  herding.progress)
    return real_pairs(dataset, indices, factor)
