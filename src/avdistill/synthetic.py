"""The synthetic set: what every distillation method writes and every evaluation reads.

Stored in model space (normalised tensors), one safetensors file with JSON metadata in the
header plus a readable ``.json`` sidecar. The metadata records the method config, seed,
software versions, source dataset and its checksum, and the preprocessing needed to turn the
tensors back into pictures and sound.

With the IDM factor technique (``factor`` > 1, see :mod:`avdistill.factor`) each
stored sample is a factor x factor grid; :meth:`SyntheticSet.training_pairs` expands it into
factor² full-size samples, so evaluation trains on what the method matched. Files without a
``factor`` in their header are factor 1.

The header's ``sha256`` records each tensor's checksum (see :mod:`avdistill.data.storage`);
:func:`load_synthetic` verifies it. Sets written before checksums existed load unverified.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from avdistill.data.dataset import Preprocessing
from avdistill.data.storage import load_tensors, read_avdistill_header, tensor_digests, verify_digests
from avdistill.errors import DataError
from avdistill.factor import expand, expand_labels
from avdistill.files import atomic_path, write_json

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
        with torch.no_grad():
            return (expand(self.audio.detach(), self.factor), expand(self.frames.detach(), self.factor),
                    expand_labels(self.labels, self.factor))

    def save(self, path: str | os.PathLike) -> Path:
        """Atomically write the tensors (``.safetensors``) and a metadata sidecar (``.json``)."""
        path = Path(path)
        tensors = {"audio": self.audio.detach().float().contiguous().cpu(),
                   "frames": self.frames.detach().float().contiguous().cpu(),
                   "labels": self.labels.long().contiguous().cpu()}
        if not (torch.isfinite(tensors["audio"]).all() and torch.isfinite(tensors["frames"]).all()):
            raise DataError(path, "refusing to write a synthetic set with NaN or Inf values (did the optimisation "
                                  "diverge? lower the learning rates)")
        header = {"format": FORMAT, "classes": list(self.classes),
                  "preprocessing": self.preprocessing.to_dict(), "factor": self.factor, "meta": self.meta,
                  "sha256": tensor_digests(tensors)}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"avdistill": json.dumps(header)})
        write_json(path.with_suffix(".json"), header)
        return path


def load_synthetic(path: str | os.PathLike, verify: bool = True) -> SyntheticSet:
    """Load a synthetic set written by :meth:`SyntheticSet.save` (no pickle involved).

    `verify` checks the tensors' checksums when the file records them (sets are small: cheap).
    """
    path = Path(path)
    header = read_avdistill_header(path, FORMAT, "a synthetic set")
    if verify and "sha256" in header:
        verify_digests(path, header["sha256"])
    t = load_tensors(path, ("audio", "frames", "labels"))
    audio, frames, labels = t["audio"], t["frames"], t["labels"]
    if audio.dim() != 4 or frames.dim() != 4 or labels.dim() != 1 or not (len(audio) == len(frames) == len(labels)):
        raise DataError(path, f"inconsistent tensors: audio {tuple(audio.shape)}, frames {tuple(frames.shape)}, "
                              f"labels {tuple(labels.shape)}")
    if not (audio.dtype.is_floating_point and frames.dtype.is_floating_point) or labels.dtype != torch.int64:
        raise DataError(path, f"unexpected dtypes: audio {audio.dtype}, frames {frames.dtype}, labels {labels.dtype} "
                              "(expected float, float, int64)")
    if not len(labels):
        raise DataError(path, "the synthetic set is empty")
    if not (torch.isfinite(audio).all() and torch.isfinite(frames).all()):
        raise DataError(path, "synthetic tensors hold NaN or Inf values")
    classes = header.get("classes")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise DataError(path, "malformed header: 'classes' must be a list of names")
    if int(labels.min()) < 0 or int(labels.max()) >= len(classes):
        raise DataError(path, f"labels range over {int(labels.min())}..{int(labels.max())}, outside "
                              f"0..{len(classes) - 1} ({len(classes)} classes)")
    factor = header.get("factor", 1)
    if not isinstance(factor, int) or not 1 <= factor <= min(*audio.shape[-2:], *frames.shape[-2:]):
        raise DataError(path, f"factor {factor!r} is not a whole number of grid cells these samples can hold")
    try:
        preprocessing = Preprocessing.from_dict(header["preprocessing"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(path, f"malformed header: bad preprocessing ({type(exc).__name__}: {exc})") from None
    if tuple(audio.shape[1:]) != preprocessing.audio_shape or tuple(frames.shape[1:]) != preprocessing.frame_shape:
        raise DataError(path, f"samples of shape audio {tuple(audio.shape[1:])}, frames {tuple(frames.shape[1:])} do "
                              f"not match the recorded preprocessing ({preprocessing.audio_shape}, "
                              f"{preprocessing.frame_shape})")
    meta = header.get("meta", {})
    return SyntheticSet(audio=audio, frames=frames, labels=labels, classes=classes, preprocessing=preprocessing,
                        meta=meta if isinstance(meta, dict) else {}, path=str(path), factor=factor)
