"""Initial synthetic sets: real pairs per class (random or herded), or Gaussian noise; with the
IDM factor technique, factor² real pairs are downscaled into each stored sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avdistill.config import option
from avdistill.data.dataset import AVDataset
from avdistill.factor import check_factor
from avdistill.methods.coreset import SPACES, check_class_sizes, herding_indices, real_pairs
from avdistill.seeding import generator

INITS = ("real", "herding", "noise")
PACKINGS = ("shrink", "repeat")


@dataclass
class HerdingInit:
    """The feature networks herding initialisation ranks real pairs with (:mod:`avdistill.methods.coreset`)."""

    herding_space: str = option("av", f"features herding init ranks by: {', '.join(SPACES)}", choices=SPACES)
    herding_epochs: int = option(10, "epochs of training the herding-init feature networks on the real training split",
                                 minimum=1)


def pick_real(dataset: AVDataset, per_class: int, seed: int) -> torch.Tensor:
    """Indices of `per_class` random training pairs per class, class by class. Fails clearly on small classes."""
    check_class_sizes(dataset, per_class)
    g = generator(seed, "init")
    return torch.cat([idx[torch.randperm(len(idx), generator=g)[:per_class]]
                      for idx in dataset.train.class_indices(dataset.num_classes)])


def smallest_class(dataset: AVDataset) -> int:
    """Training pairs in the smallest class."""
    return int(torch.bincount(dataset.train.labels, minlength=dataset.num_classes).min())


def initial_synthetic(dataset: AVDataset, ipc: int, init: str, seed: int, factor: int = 1,
                      herding: HerdingInit = HerdingInit(), encoder: str = "small",
                      progress: bool = False, repeat: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(audio, frames, labels) in model space: IPC stored pairs per class, ordered by class.

    `init` is one of :data:`INITS` (methods check their options through the declared bounds). With
    factor > 1 every stored pair packs factor² real pairs of its class (consecutive picks), each
    downscaled into one grid cell. `herding` and `encoder` set the feature networks of herding init.
    `repeat`: a class with fewer than ipc x factor² pairs fills the rest by repeating its picks in their
    order (every pair once before any twice), instead of failing.
    """
    check_factor(factor)
    labels = torch.arange(dataset.num_classes).repeat_interleave(ipc)
    prep = dataset.preprocessing
    if init == "noise":
        g = generator(seed, "init")
        return torch.randn(len(labels), *prep.audio_shape, generator=g), \
            torch.randn(len(labels), *prep.frame_shape, generator=g), labels
    per_class = ipc * factor * factor
    if repeat:
        check_class_sizes(dataset, 1)
    else:
        check_class_sizes(dataset, ipc, factor)
    picked = min(per_class, smallest_class(dataset)) if repeat else per_class
    if init == "real":
        indices = pick_real(dataset, picked, seed)
    else:
        indices = herding_indices(dataset, picked, herding.herding_space, encoder, herding.herding_epochs, seed,
                                  progress)
    indices = indices.view(dataset.num_classes, picked)[:, torch.arange(per_class) % picked].reshape(-1)
    return real_pairs(dataset, indices, factor)
