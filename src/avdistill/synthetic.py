"""The synthetic set: what every distillation method writes and every evaluation reads.

Stored in model space (normalised tensors), one safetensors file with JSON metadata in the
header plus a readable ``.json`` sidecar. The metadata records the method config, seed,
software versions, source dataset and its checksum, and the preprocessing needed to turn the
tensors back into pictures and sound.

With the IDM factor technique (``factor`` > 1, see :mod:`avdistill.methods.factor`) each
stored sample is a factor x factor grid; :meth:`SyntheticSet.training_pairs` expands it into
factor² full-size samples, so evaluation trains on what the method matched. Files without a
``factor`` in their header are factor 1.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from avdistill.data.dataset import Preprocessing
from avdistill.data.storage import load_tensors, read_avdistill_header
from avdistill.errors import DataError
from avdistill.io import atomic_path, write_json

FORMAT = "avdistill.synthetic/1"


@dataclass
class SyntheticSet:
    """IPC stored pairs per class: audio [M,1,F,T], frames [M,C,H,W] (model space), labels [M].

    Each stored pair holds ``factor`` x ``factor`` grid cells (1: one plain sample).
    """

    audio: torch.Tensor
    frames: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    preprocessing: Preprocessing
    meta: dict = field(default_factory=dict)
    path: str | None = None
    factor: int = 1

    @property
    def ipc(self) -> int:
        """Stored pairs per class (the storage budget), whatever the factor."""
        return int(torch.bincount(self.labels, minlength=len(self.classes)).max())

    def training_pairs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(audio, frames, labels) to train evaluation networks on: factor² upsampled samples per stored one."""
        from avdistill.methods.factor import expand, expand_labels  # here: avdistill.methods imports this module

        with torch.no_grad():
            return (expand(self.audio.detach(), self.factor), expand(self.frames.detach(), self.factor),
                    expand_labels(self.labels, self.factor))

    def save(self, path: str | os.PathLike) -> Path:
        """Atomically write the tensors (``.safetensors``) and a metadata sidecar (``.json``)."""
        path = Path(path)
        header = {"format": FORMAT, "classes": list(self.classes),
                  "preprocessing": self.preprocessing.to_dict(), "factor": self.factor, "meta": self.meta}
        tensors = {"audio": self.audio.detach().float().contiguous().cpu(),
                   "frames": self.frames.detach().float().contiguous().cpu(),
                   "labels": self.labels.long().contiguous().cpu()}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"avdistill": json.dumps(header)})
        write_json(path.with_suffix(".json"), header)
        return path


def load_synthetic(path: str | os.PathLike) -> SyntheticSet:
    """Load a synthetic set written by :meth:`SyntheticSet.save` (no pickle involved)."""
    path = Path(path)
    header = read_avdistill_header(path, FORMAT, "a synthetic set")
    t = load_tensors(path, ("audio", "frames", "labels"))
    audio, frames, labels = t["audio"], t["frames"], t["labels"]
    if audio.dim() != 4 or frames.dim() != 4 or labels.dim() != 1 or not (len(audio) == len(frames) == len(labels)):
        raise DataError(path, f"inconsistent tensors: audio {tuple(audio.shape)}, frames {tuple(frames.shape)}, "
                              f"labels {tuple(labels.shape)}")
    if not (torch.isfinite(audio).all() and torch.isfinite(frames).all()):
        raise DataError(path, "synthetic tensors hold NaN or Inf values")
    factor = header.get("factor", 1)
    if not isinstance(factor, int) or not 1 <= factor <= min(*audio.shape[-2:], *frames.shape[-2:]):
        raise DataError(path, f"factor {factor!r} is not a whole number of grid cells these samples can hold")
    return SyntheticSet(audio=audio, frames=frames, labels=labels, classes=header["classes"],
                        preprocessing=Preprocessing.from_dict(header["preprocessing"]), meta=header.get("meta", {}),
                        path=str(path), factor=factor)
