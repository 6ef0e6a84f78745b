"""Derived seeds: every random choice in a run is a pure function of (run seed, purpose, step).

Deriving instead of drawing from one global stream is what makes a resumed run identical to an
uninterrupted one, and lets processes agree on randomness without communicating.
"""

from __future__ import annotations

import numpy as np
import torch

_PURPOSES = {"encoders": 1, "augment": 2, "real_batch": 3, "init": 4, "shuffle": 5, "head": 6,
             "bank": 7, "bank_entry": 8, "expert": 9, "trajectory": 10, "validation": 11,
             "degrade": 12, "tune": 13, "matched_subset": 14}


def derive_seed(seed: int, purpose: str, *steps: int) -> int:
    """A 63-bit seed for `purpose` at the given step indices."""
    state = np.random.SeedSequence([int(seed), _PURPOSES[purpose], *map(int, steps)]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def generator(seed: int, purpose: str, *steps: int) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, purpose, *steps))
