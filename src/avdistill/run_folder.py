"""The file names of a run folder (``distill --out``), owned in one place.

::

    synthetic.safetensors   the distilled set (+ synthetic.json, its readable metadata)
    losses.jsonl            every loss term of every iteration (rank 0 of a multi-process run writes it)
    checkpoint.safetensors  the state to resume from, removed once the set is written
    rank-K/                 process K's checkpoint in a multi-process run
    initial.safetensors     the set the method started from (written by ``bench`` for its pictures)
"""

from __future__ import annotations

import os
from pathlib import Path


class RunFolder:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @classmethod
    def of(cls, synthetic_file: str | os.PathLike) -> "RunFolder":
        """The folder a synthetic set file lives in."""
        return cls(Path(synthetic_file).parent)

    @property
    def synthetic(self) -> Path:
        return self.path / "synthetic.safetensors"

    @property
    def losses(self) -> Path:
        return self.path / "losses.jsonl"

    @property
    def initial(self) -> Path:
        return self.path / "initial.safetensors"

    def checkpoints(self, rank: int = 0, world_size: int = 1) -> Path:
        """Where process `rank` keeps its checkpoint: the folder itself for one process, else rank-K/."""
        return self.path if world_size == 1 else self.path / f"rank-{rank}"

    def checkpoint(self, rank: int = 0, world_size: int = 1) -> Path:
        return self.checkpoints(rank, world_size) / "checkpoint.safetensors"
