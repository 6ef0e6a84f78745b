"""K-center greedy coreset (the classic alternative to herding): per class, repeatedly add the
real pair farthest from every pair picked so far, so the picks cover the class's feature space.

Decision (open): the first centre is the pair nearest the class mean (deterministic; the seed
enters through the feature encoders' training, as for herding). Distances are Euclidean in the
same feature spaces as herding.
"""

from __future__ import annotations

import torch

from avdistill.methods.base import RunContext, register_method
from avdistill.methods.coreset import CoresetConfig, real_pairs, select_by_class, train_features


def k_center(features: torch.Tensor, n: int) -> torch.Tensor:
    """Positions (into `features`) of `n` greedy k-center picks, in pick order."""
    first = int((features - features.mean(0)).pow(2).sum(1).argmin())
    picked = [first]
    nearest = (features - features[first]).pow(2).sum(1)  # squared distance to the closest pick
    for _ in range(n - 1):
        best = int(nearest.argmax())
        picked.append(best)
        nearest = torch.minimum(nearest, (features - features[best]).pow(2).sum(1))
    return torch.tensor(picked, dtype=torch.long)


@register_method("kcenter", CoresetConfig, "K-center greedy coreset: real pairs that cover each class's features",
                 kind="coreset")
def select_kcenter(dataset, ipc: int, cfg: CoresetConfig, run: RunContext):
    features = train_features(dataset, cfg.space, cfg.encoder, cfg.feature_epochs, run.seed, run.progress)
    return real_pairs(dataset, select_by_class(dataset, ipc * cfg.factor * cfg.factor, features, k_center), cfg.factor)
