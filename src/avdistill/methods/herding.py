"""Herding coreset (Welling, ICML'09): per class, greedily pick the real pair whose feature
brings the running mean of the picks closest to the class mean.

Features come from encoders trained on the real training split (:mod:`avdistill.methods.features`);
``--space`` ranks by joint AV features (AVDD's choice), audio only, or frames only. The ranking
is deterministic given the features; the seed changes the feature encoders' training. With
``--factor F`` each stored pair packs F² consecutive herded picks (AVDD's initialisation, unoptimised).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from avdistill.data.dataset import AVDataset
from avdistill.methods.base import RunContext, option, register_method
from avdistill.methods.factor import MAX_FACTOR
from avdistill.methods.features import SPACES, real_pairs, select_by_class, train_features
from avdistill.models import PRESETS


def herd(features: torch.Tensor, n: int) -> torch.Tensor:
    """Positions (into `features`) of `n` greedy herding picks, in pick order, without repeats."""
    target = features.mean(0)
    picked: list[int] = []
    total = torch.zeros_like(target)
    available = torch.ones(len(features), dtype=torch.bool)
    for k in range(1, n + 1):
        gap = (target - (total + features) / k).pow(2).sum(1)  # distance of each candidate running mean
        gap[~available] = float("inf")
        best = int(gap.argmin())
        picked.append(best)
        total += features[best]
        available[best] = False
    return torch.tensor(picked, dtype=torch.long)


def herding_indices(dataset: AVDataset, per_class: int, space: str, encoder: str, feature_epochs: int,
                    seed: int, progress: bool = False) -> torch.Tensor:
    features = train_features(dataset, space, encoder, feature_epochs, seed, progress)
    return select_by_class(dataset, per_class, features, herd)


@dataclass
class CoresetConfig:
    space: str = option("av", "feature space to rank in: 'av' (joint), 'audio' or 'visual'", choices=SPACES)
    encoder: str = option("small", "encoder preset of the feature networks", choices=tuple(PRESETS))
    feature_epochs: int = option(10, "epochs of training the feature networks on the real training split",
                                minimum=1)
    factor: int = option(1, "IDM factor: pack factor x factor selected real pairs (consecutive picks) into each "
                            "stored pair, no optimisation (1: plain)", minimum=1, maximum=MAX_FACTOR)


@dataclass
class HerdingConfig(CoresetConfig):
    # Declared rows (`avdistill bench --ablations herding`): AVDD's initialisation without its matching.
    ABLATIONS: ClassVar[dict[str, dict]] = {"herding": {}, "herding + factor": {"factor": 2}}


@register_method("herding", HerdingConfig, "Herding coreset: real pairs whose running mean tracks the class mean")
def select_herding(dataset, ipc: int, cfg: HerdingConfig, run: RunContext):
    per_class = ipc * cfg.factor * cfg.factor
    picks = herding_indices(dataset, per_class, cfg.space, cfg.encoder, cfg.feature_epochs, run.seed, run.progress)
    return real_pairs(dataset, picks, cfg.factor)
