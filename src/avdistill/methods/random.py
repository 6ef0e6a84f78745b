"""Random coreset: IPC real pairs per class, drawn uniformly (the baseline every method must beat).

With ``--factor F`` (> 1) each stored pair packs F² random real pairs of its class by the IDM
factor technique, with no optimisation: the "random + factor" row that separates what AVDD's
packing alone buys (more, smaller training samples) from what its matching adds.
"""

from __future__ import annotations

from dataclasses import dataclass

from avdistill.config import option
from avdistill.factor import MAX_FACTOR
from avdistill.methods.base import RunContext, register_method
from avdistill.methods.initial_set import initial_synthetic


@dataclass
class RandomConfig:
    factor: int = option(1, "IDM factor: pack factor x factor random real pairs into each stored pair (1: plain)",
                         minimum=1, maximum=MAX_FACTOR)


# Declared rows (`avdistill bench --ablations random`): the packing without any matching.
ABLATIONS = {"random": {}, "random + factor": {"factor": 2}}


@register_method("random", RandomConfig, "Random real pairs per class (baseline); --factor packs several per pair",
                 kind="coreset", ablations=ABLATIONS)
def select_random(dataset, ipc: int, cfg: RandomConfig, run: RunContext):
    return initial_synthetic(dataset, ipc, "real", run.seed, factor=cfg.factor)
