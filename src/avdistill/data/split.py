"""Carving a validation split out of the training pairs, so choices are made without the test split.

By group where the source has groups (a speaker, a video): every pair of a group lands on one
side, so the validation split, like the test split, measures generalisation to groups never
seen in training, and the windows of one clip never straddle the two. Otherwise stratified per
class. Decisions:

- Groups that each hold a single class (videos) are drawn per class, so every class keeps its
  share; groups spanning classes (speakers saying every digit) are drawn together.
- Drawing takes groups (or pairs) in a seeded random order while each brings the validation
  side closer to ``round(fraction * n)`` pairs; at least one group (pair) goes to each side when
  there are two or more, so neither split is ever empty.
- The draw depends only on (seed, the class, the sorted group names), and the pairs keep their
  order, so the same file and options always give the same split.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from avdistill.data.dataset import AVSplit
from avdistill.errors import ConfigError
from avdistill.seeding import generator

DEFAULT_VAL_FRACTION = 0.15


def check_fraction(fraction: float) -> None:
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"--val-fraction must be in [0, 1), got {fraction}")


def validation_mask(labels: torch.Tensor, fraction: float, seed: int = 0,
                    groups: Sequence | None = None) -> torch.Tensor:
    """A bool mask over the pairs (True: validation) holding about `fraction` of them."""
    check_fraction(fraction)
    labels = labels.long()
    if groups is not None and len(groups) != len(labels):
        raise ConfigError(f"{len(groups)} group names for {len(labels)} pairs")
    mask = torch.zeros(len(labels), dtype=torch.bool)
    if fraction == 0 or len(labels) < 2:
        return mask
    if groups is None:
        groups = list(range(len(labels)))  # every pair its own group: a stratified draw of pairs
    members: dict = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    classes_of = {g: set(labels[idx].tolist()) for g, idx in members.items()}
    if all(len(c) == 1 for c in classes_of.values()):  # single-class groups: stratified per class
        strata = {}
        for g, c in classes_of.items():
            strata.setdefault(next(iter(c)), []).append(g)
    else:
        strata = {-1: list(members)}
    for stratum, names in sorted(strata.items()):
        names = sorted(names, key=str)
        total = sum(len(members[g]) for g in names)
        order = torch.randperm(len(names), generator=generator(seed, "validation", stratum + 1)).tolist()
        target, taken = max(1, round(fraction * total)), 0
        for j in order[:-1]:  # the last group always stays in train
            size = len(members[names[j]])
            if taken and abs(taken + size - target) >= abs(taken - target):
                break
            mask[members[names[j]]] = True
            taken += size
    return mask


def carve_validation(train: AVSplit, fraction: float, seed: int = 0,
                     groups: Sequence | None = None) -> tuple[AVSplit, AVSplit | None, torch.Tensor]:
    """(remaining train, validation split or None, validation mask) of `train`; see :func:`validation_mask`."""
    mask = validation_mask(train.labels, fraction, seed, groups)
    if not mask.any():
        return train, None, mask
    keep, val = torch.nonzero(~mask).flatten(), torch.nonzero(mask).flatten()
    return train.subset(keep), train.subset(val), mask
