"""Random coreset: IPC real pairs per class, drawn uniformly (the baseline every method must beat)."""

from __future__ import annotations

from dataclasses import dataclass

from avdistill.methods.base import RunContext, register_method
from avdistill.methods.initial_set import initial_synthetic


@dataclass
class RandomConfig:
    pass


@register_method("random", RandomConfig, "Random real pairs per class (baseline)", kind="coreset")
def select_random(dataset, ipc: int, cfg: RandomConfig, run: RunContext):
    return initial_synthetic(dataset, ipc, "real", run.seed)
