"""Augmentation: differentiable siamese augmentation (DSA) shared by real and synthetic batches."""

from avdistill.augment.dsa import DEFAULT_STRATEGY, DSA, OPS

__all__ = ["DSA", "DEFAULT_STRATEGY", "OPS"]
